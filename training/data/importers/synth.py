"""Output of ``pump-train synth``: ``images/`` + ``masks/`` + ``frames.jsonl``.

Every frame is its own physical part (own group) and shows the same part design at
(almost) the same place, so the dataset has a fixed structure. Labels are ``defect`` or
``good`` from the mask. No split is declared; ``patches`` makes one by group.
"""

from __future__ import annotations

import json
from pathlib import Path

from training.data.importers.base import ImporterSpec, ImportOptions, Scan, SourceItem


def scan_synth(src: Path, options: ImportOptions) -> Scan:
    scan = Scan()
    frames_file = src / "frames.jsonl"
    if not frames_file.is_file():
        scan.problems.append((src, "not a synth output folder (no frames.jsonl); create one with `pump-train synth`"))
        return scan
    for line_no, line in enumerate(frames_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            frame = json.loads(line)
            item = SourceItem(id=frame["id"], image_path=src / frame["image"], mask_path=src / frame["mask"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            scan.problems.append((frames_file, f"line {line_no}: not a frame record ({error})"))
            continue
        scan.items.append(item)
    scan.notes["groups_rule"] = "each synthetic frame is its own part"
    return scan


SPEC = ImporterSpec(
    key="synth",
    description="Output of `pump-train synth` (fixed part structure).",
    scan=scan_synth,
    fixed_structure=True,
    good_labels=("good",),
)
