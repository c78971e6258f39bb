"""Magnetic Tile (Huang et al.): ``MT_<Class>/Imgs/<name>.jpg`` with a same-name ``.png`` mask.

Grouping rule (images of one tile region must never straddle splits): the dataset
photographs each region under up to six exposures named ``exp<K>_num_<N>`` with
consecutive ``N`` and rising ``K``. Within a class, sorted by ``N``, a new group starts
when ``K`` does not rise, when ``N`` jumps by more than 200, or when the size jumps by
more than 80 px in width or 40 px in height. On the full set this gives ~270 groups
from 1,344 images (see docs in the README).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from training.data.importers.base import ImporterSpec, ImportOptions, Scan, SourceItem

_NAME = re.compile(r"^exp(?P<exp>\d+)_num_(?P<num>\d+)$")
MAX_NUM_GAP = 200
MAX_WIDTH_JUMP_PX = 80
MAX_HEIGHT_JUMP_PX = 40
GROUP_RULE = (
    "per class, sorted by num: new group when exp does not rise, num gap > 200, "
    "width jump > 80 px or height jump > 40 px"
)


def _png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG header without decoding (masks carry the image size)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(24)
    except OSError:
        return None
    if len(head) < 24 or not head.startswith(b"\x89PNG"):
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def assign_groups(entries: list[tuple[str, int, int, tuple[int, int] | None]]) -> dict[str, str]:
    """Group ids for ``(stem, exp, num, size)`` entries of one class (see module docstring)."""
    groups: dict[str, str] = {}
    previous: tuple[int, int, tuple[int, int] | None] | None = None
    current = ""
    for stem, exp, num, size in sorted(entries, key=lambda entry: (entry[2], entry[1])):
        new_group = previous is None
        if previous is not None:
            prev_exp, prev_num, prev_size = previous
            size_jump = (
                size is not None
                and prev_size is not None
                and (
                    abs(size[0] - prev_size[0]) > MAX_WIDTH_JUMP_PX or abs(size[1] - prev_size[1]) > MAX_HEIGHT_JUMP_PX
                )
            )
            new_group = exp <= prev_exp or num - prev_num > MAX_NUM_GAP or size_jump
        if new_group:
            current = stem
        groups[stem] = current
        previous = (exp, num, size)
    return groups


def scan_magnetic_tile(src: Path, options: ImportOptions) -> Scan:
    scan = Scan()
    class_dirs = sorted(path for path in src.glob("MT_*") if (path / "Imgs").is_dir())
    for class_dir in class_dirs:
        label = class_dir.name.removeprefix("MT_")
        entries = []
        for image_path in sorted((class_dir / "Imgs").glob("*.jpg")):
            match = _NAME.match(image_path.stem)
            if not match:
                scan.problems.append((image_path, "name does not follow exp<K>_num_<N>"))
                continue
            mask_path = image_path.with_suffix(".png")
            entries.append((image_path, mask_path, int(match["exp"]), int(match["num"]), _png_size(mask_path)))
        groups = assign_groups([(path.stem, exp, num, size) for path, _, exp, num, size in entries])
        for image_path, mask_path, _, _, _ in entries:
            scan.items.append(
                SourceItem(
                    id=f"{label}-{image_path.stem}",
                    image_path=image_path,
                    mask_path=mask_path,
                    group=f"{label}-{groups[image_path.stem]}",
                    label=label,
                )
            )
    scan.notes["groups_rule"] = GROUP_RULE
    return scan


SPEC = ImporterSpec(
    key="magnetic-tile",
    description="Magnetic Tile: MT_<Class>/Imgs/*.jpg + same-name .png masks; MT_Free is defect-free.",
    scan=scan_magnetic_tile,
    fixed_structure=False,
    good_labels=("Free",),
)
