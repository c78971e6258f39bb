"""MVTec AD: ``<category>/train/good``, ``<category>/test/<defect>``, ``ground_truth/<defect>/*_mask.png``.

SRC may be one category folder (it holds ``train/``) or the root of several. Good images
have no mask file (defect-free by the dataset's convention); a defect image without its
``_mask.png`` is a missing mask. The declared train/test split is kept.
"""

from __future__ import annotations

from pathlib import Path

from training.data.imageio import IMAGE_SUFFIXES
from training.data.importers.base import ImporterSpec, ImportOptions, Scan, SourceItem


def _scan_category(category: Path, prefix: str, scan: Scan) -> None:
    for split in ("train", "test"):
        split_dir = category / split
        if not split_dir.is_dir():
            continue
        for defect_dir in sorted(path for path in split_dir.iterdir() if path.is_dir()):
            defect = defect_dir.name
            for image_path in sorted(defect_dir.iterdir()):
                if image_path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                mask_path = None
                if defect != "good":
                    mask_path = category / "ground_truth" / defect / f"{image_path.stem}_mask.png"
                scan.items.append(
                    SourceItem(
                        id=f"{prefix}{split}-{defect}-{image_path.stem}",
                        image_path=image_path,
                        mask_path=mask_path,
                        split=split,
                        label=defect,
                    )
                )


def scan_mvtec(src: Path, options: ImportOptions) -> Scan:
    scan = Scan()
    if (src / "train").is_dir() or (src / "test").is_dir():
        _scan_category(src, "", scan)
    else:
        for category in sorted(path for path in src.iterdir() if (path / "train").is_dir()):
            _scan_category(category, f"{category.name}-", scan)
    scan.notes["split"] = "kept as declared by MVTec AD (train/test)"
    return scan


SPEC = ImporterSpec(
    key="mvtec",
    description="MVTec AD: train/good, test/<defect>, ground_truth/<defect>/*_mask.png (one category or many).",
    scan=scan_mvtec,
    fixed_structure=False,
    good_labels=("good",),
)
