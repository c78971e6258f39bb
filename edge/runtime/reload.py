"""Hot model reload: a new bundle (or thresholds) is prepared beside the running models, then swapped between frames.

:meth:`ModelReloader.reload` validates a bundle (checksum, schema, geometry and input the
same as the running tiler's), creates and warms up its backends (a TensorRT engine builds or
comes from the cache) while the inference worker goes on with the old ones, and then *offers*
the result as a :class:`Generation`. The worker takes it between two frames
(:meth:`ModelReloader.take`), so a frame in progress finishes on the old model and the next
one runs on the new one; nothing is skipped. A bundle that fails is rejected with the reason
and the running models stay. A reload brings the new bundle's thresholds (thresholds are
model artefacts, with ``[postprocess]`` overrides applied as at start-up); ``cmd/thresholds``
changes them afterwards within :data:`~shared.messages.THRESHOLD_RANGE`.

:class:`BundleWatcher` polls ``bundles.watch_dir``: a folder that appears there after start-up
(renamed into place, complete) is reloaded as if a command had named it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.config import EdgeSettings
from edge.postprocess import Thresholds
from edge.publish.commands import CommandResult
from edge.runtime.inspector import Inspector
from shared.bundle import MANIFEST_NAME, BundleError, LoadedBundle, load_bundle
from shared.config import GeometryConfig
from shared.messages import THRESHOLD_RANGE, ReloadCommand, ThresholdsCommand, model_ref

log = logging.getLogger("pump.edge.reload")

OpenInspector = Callable[[dict[str, LoadedBundle], Thresholds], Inspector]


def model_refs(bundles: dict[str, LoadedBundle]) -> dict[str, str]:
    """task -> ``name@version+sha`` (what results and status carry)."""
    return {t: model_ref(b.manifest.name, b.manifest.version, b.manifest.model_sha256) for t, b in bundles.items()}


def thresholds_dict(thresholds: Thresholds) -> dict[str, float | None]:
    return dataclasses.asdict(thresholds)


@dataclass
class Generation:
    """Models and thresholds to use from the next frame on; ``inspector`` None = keep the backends."""

    bundles: dict[str, LoadedBundle]
    thresholds: Thresholds
    inspector: Inspector | None
    reason: str

    @property
    def models(self) -> dict[str, str]:
        return model_refs(self.bundles)


class ModelReloader:
    """Prepares new generations one at a time and hands the latest to the inference worker."""

    def __init__(
        self,
        settings: EdgeSettings,
        geometry: GeometryConfig,
        bundles: dict[str, LoadedBundle],
        thresholds: Thresholds,
        open_inspector: OpenInspector,
        on_rejected: Callable[[str], None],
    ) -> None:
        self.settings, self.geometry = settings, geometry
        self._open_inspector, self._on_rejected = open_inspector, on_rejected
        self._latest = Generation(dict(bundles), thresholds, None, "start-up")  # accepted, maybe not yet taken
        self._pending: Generation | None = None
        self._lock = threading.Lock()  # guards _pending (worker thread vs. reload thread)
        self._serial = threading.Lock()  # one reload or thresholds change at a time

    # --- what the worker calls -------------------------------------------------------------

    def take(self) -> Generation | None:
        """The generation waiting to take over, if any (the inference worker calls this between frames)."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def close(self) -> None:
        """Close backends prepared but never taken (at shutdown)."""
        pending = self.take()
        if pending is not None and pending.inspector is not None:
            pending.inspector.close()

    # --- commands -----------------------------------------------------------------------------

    def reload_command(self, command: ReloadCommand) -> CommandResult:
        try:
            path = self.resolve(command.bundle)
        except LookupError as error:
            return self._reject(str(error))
        if path is None:
            return self._reject(f"bundle {command.bundle!r} not found (an absolute folder, or a version in watch_dir)")
        return self.reload(path)

    def thresholds_command(self, command: ThresholdsCommand) -> CommandResult:
        with self._serial:
            current = self._latest.thresholds
            changes = {name: getattr(command, name) for name in ("decision", "pixel", "cascade")}
            changes = {name: value for name, value in changes.items() if value is not None}
            low, high = THRESHOLD_RANGE
            for name, value in changes.items():
                if not low <= value <= high:
                    return self._reject(f"thresholds: {name}={value} outside [{low}, {high}]")
                if getattr(current, name) is None:
                    return self._reject(f"thresholds: {name} has no model to act on (no bundle uses it)")
            if not changes:
                return self._reject("thresholds: nothing to change (give decision, pixel and/or cascade)")
            new = dataclasses.replace(current, **changes)
            said = ", ".join(f"{name} {getattr(current, name):g} -> {value:g}" for name, value in changes.items())
            self._offer(Generation(self._latest.bundles, new, None, f"thresholds: {said}"))
            return CommandResult(
                True, f"thresholds from the next frame: {said}", self._latest.models, thresholds_dict(new)
            )

    def resolve(self, bundle: str) -> Path | None:
        """A bundle folder: an absolute path, or a folder name or manifest version in ``watch_dir``.

        A folder name wins; a version must name one folder: raises LookupError when several bundles
        (a classifier and a segmenter, say) carry it, since guessing could swap the wrong model.
        """
        path = Path(bundle)
        if path.is_absolute():
            return path if path.is_dir() else None
        folder = self.settings.bundles.watch_dir
        if folder is None or not Path(folder).is_dir():
            return None
        children = [c for c in sorted(Path(folder).iterdir()) if not c.name.startswith(".") and c.is_dir()]
        named = [child for child in children if child.name == bundle]
        if named:
            return named[0]
        versioned = [child for child in children if _manifest_version(child) == bundle]
        if len(versioned) > 1:
            names = ", ".join(child.name for child in versioned)
            raise LookupError(
                f"bundle {bundle!r} is ambiguous: {len(versioned)} folders of watch_dir have that "
                f"version ({names}); name the folder"
            )
        return versioned[0] if versioned else None

    def reload(self, path: Path) -> CommandResult:
        """Validate and warm up the bundle at ``path`` beside the running models; offer it to the worker."""
        with self._serial:
            latest = self._latest
            try:
                bundle = load_bundle(path, self.geometry)  # the geometry in force: the tiler cannot change live
                task = bundle.manifest.task
                if task not in latest.bundles:
                    raise BundleError(f"{path}: a {task} bundle, but this station runs no {task}")
                if bundle.manifest.input != latest.bundles[task].manifest.input:
                    raise BundleError(f"{path}: input spec differs from the running {task}'s (needs a restart)")
                bundles = {**latest.bundles, task: bundle}
                thresholds = Thresholds.from_bundles(
                    bundles["classifier"].manifest if "classifier" in bundles else None,
                    bundles["segmenter"].manifest if "segmenter" in bundles else None,
                    self.settings.postprocess,
                )
                log.info("reload: preparing %s %s from %s beside the running models", task, model_refs(bundles), path)
                inspector = self._open_inspector(bundles, thresholds)
            except Exception as error:  # noqa: BLE001 - any failure rejects the bundle; the old one runs on
                return self._reject(f"{path}: {error}" if str(path) not in str(error) else str(error))
            old, new = latest.models[task], model_refs(bundles)[task]
            self._offer(Generation(bundles, thresholds, inspector, f"{task}: {old} -> {new}"))
            return CommandResult(
                True, f"{task} {new} from the next frame", model_refs(bundles), thresholds_dict(thresholds)
            )

    # --- internals ----------------------------------------------------------------------------

    def _offer(self, generation: Generation) -> None:
        with self._lock:
            replaced, self._pending = self._pending, generation
        if replaced is not None:  # never taken: a thresholds change keeps a prepared bundle's backends
            if generation.inspector is None:
                generation.inspector = replaced.inspector
                if generation.inspector is not None:
                    generation.reason = f"{replaced.reason}; {generation.reason}"
            elif replaced.inspector is not None:
                replaced.inspector.close()
        self._latest = generation

    def _reject(self, reason: str) -> CommandResult:
        log.warning("model-rejected: %s", reason)
        self._on_rejected(reason)
        latest = self._latest
        return CommandResult(False, reason, latest.models, thresholds_dict(latest.thresholds))


def _manifest_version(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8")).get("version"))
    except (OSError, ValueError, AttributeError):
        return None


class BundleWatcher:
    """Polls ``bundles.watch_dir``; a complete bundle folder that appears there is reloaded once.

    ``reload`` returns whether the bundle was taken. A rejected folder is tried again when its files
    change and then stay unchanged for one poll: a folder copied in place (``cp -r``, not renamed)
    can be seen half-written, and must not stay rejected once the copy completes.
    """

    def __init__(self, folder: Path, interval_s: float, reload: Callable[[Path], bool], stop: threading.Event):
        self.folder, self.interval_s, self._reload, self._stop = Path(folder), interval_s, reload, stop
        self._seen = self._entries()  # what is there at start-up is not new
        self._rejected: dict[str, tuple[object, object]] = {}  # name -> (files when rejected, files at last poll)
        self._thread = threading.Thread(target=self._loop, name="bundle-watch", daemon=True)

    def start(self) -> None:
        log.info("watching %s for new bundles every %.1f s", self.folder, self.interval_s)
        self._thread.start()

    def _entries(self) -> set[str]:
        if not self.folder.is_dir():
            return set()
        return {c.name for c in self.folder.iterdir() if not c.name.startswith(".") and (c / MANIFEST_NAME).is_file()}

    def _files(self, name: str) -> object:
        """What changes while a folder is being written: each file's name, size and modification time."""
        try:
            return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in (self.folder / name).iterdir())
        except OSError:
            return None

    def poll(self) -> None:
        """One scan: new folders are tried once; rejected ones again after their files changed and settled."""
        entries = self._entries()
        retry = []
        for name, (when_rejected, last) in list(self._rejected.items()):
            now = self._files(name) if name in entries else None
            if now is None:
                del self._rejected[name]  # gone
            elif now != when_rejected and now == last:
                retry.append(name)
            else:
                self._rejected[name] = (when_rejected, now)
        for name in sorted(entries - self._seen) + retry:
            self._seen.add(name)
            log.info("bundle-watch: %s bundle folder %s", "changed" if name in retry else "new", self.folder / name)
            files = self._files(name)
            if self._reload(self.folder / name):
                self._rejected.pop(name, None)
            else:
                self._rejected[name] = (files, files)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - a watcher error must not stop the line
                log.exception("bundle-watch: scanning %s failed", self.folder)
