"""A run's statistics as JSONL: ``report(name, value)`` collects, ``flush(...)`` writes one line.

Names are ``/``-namespaced by what they measure, e.g. ``train/loss`` and ``val/f1`` (the
classifier and segmenter), ``Loss/G/main``, ``Metrics/val/f1`` or ``Progress/kimg``. Values
reported several times between two flushes are averaged, so a loop may report every step and
flush every tick. Each line holds ``seconds`` since the log was opened, the step keys given to
:meth:`RunLog.flush` (``iteration=…``) and the means; :mod:`training.train.curves` plots it.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path


class RunLog:
    """Append-only JSONL of training statistics; ``path=None`` collects without writing (e.g. rank > 0)."""

    def __init__(self, path: Path | None) -> None:
        self.path = None if path is None else Path(path)
        self.started = time.perf_counter()
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def report(self, name: str, value: float) -> None:
        """Add one value of ``name`` to the current line (averaged with others of the same name)."""
        if not name or name.startswith("/") or name.endswith("/"):
            raise ValueError(f"statistic name {name!r}: expected a '/'-namespaced name such as 'val/f1'")
        self._sums[name] += float(value)
        self._counts[name] += 1

    def pending(self) -> dict[str, float]:
        """The means reported since the last flush (nan stays nan)."""
        return {name: self._sums[name] / self._counts[name] for name in self._sums}

    def flush(self, **step: float) -> dict[str, float]:
        """Write one line (``seconds``, the step keys, then the means) and start a new one; returns it."""
        record = {"seconds": round(time.perf_counter() - self.started, 2), **step, **self.pending()}
        self._sums.clear()
        self._counts.clear()
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        return record


def read_runlog(path: Path) -> list[dict[str, float]]:
    """Every line of a run log (NaN values as written by :meth:`RunLog.flush` come back as nan)."""
    text = Path(path).read_text(encoding="utf-8") if Path(path).is_file() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]
