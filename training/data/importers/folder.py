"""A plain folder: ``SRC/images/*`` and ``SRC/masks/*`` matched by file stem.

Every image needs a mask (an all-black mask marks a good image). Labels come from the
mask (``defect``/``good``); groups are the image itself unless ``group_regex`` names one.
"""

from __future__ import annotations

import re
from pathlib import Path

from training.data.imageio import IMAGE_SUFFIXES
from training.data.importers.base import ImporterSpec, ImportOptions, Scan, SourceItem


def _files_by_stem(folder: Path) -> dict[str, Path]:
    return {path.stem: path for path in sorted(folder.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES}


def scan_folder(src: Path, options: ImportOptions) -> Scan:
    scan = Scan()
    images_dir, masks_dir = src / "images", src / "masks"
    if not images_dir.is_dir():
        scan.problems.append((src, "expected an images/ folder"))
        return scan
    images = _files_by_stem(images_dir)
    masks = _files_by_stem(masks_dir) if masks_dir.is_dir() else {}
    pattern = re.compile(options.group_regex) if options.group_regex else None
    for stem, image_path in images.items():
        group = ""
        if pattern is not None:
            match = pattern.search(stem)
            if not match or not match.groups():
                scan.problems.append((image_path, f"group_regex {options.group_regex!r} does not match the name"))
                continue
            group = match.group(1)
        scan.items.append(
            SourceItem(
                id=stem,
                image_path=image_path,
                mask_path=masks.get(stem, masks_dir / f"{stem}.png"),
                group=group,
            )
        )
    for stem in sorted(set(masks) - set(images)):
        scan.notes.setdefault("masks_without_image", []).append(str(masks[stem].relative_to(src)))
    return scan


SPEC = ImporterSpec(
    key="folder",
    description="SRC/images and SRC/masks matched by stem; --group-regex derives groups from names.",
    scan=scan_folder,
    fixed_structure=False,
    good_labels=("good",),
)
