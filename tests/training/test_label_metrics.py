"""Label-distribution metrics (thesis Tables 3.2 / 4.3): fractions, EMD, the table and the histogram."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from shared.masks import MASK_DEFECT, MASK_GOOD, MASK_IGNORE
from training.metrics.labels import (
    compare_labels,
    defect_fractions,
    label_distance,
    label_metrics,
    label_table_markdown,
    write_fraction_histogram,
)


def test_fractions_count_defect_pixels_over_labelled_pixels():
    masks = np.full((3, 4, 4), MASK_GOOD, np.uint8)
    masks[0, 0, :2] = MASK_DEFECT  # 2 of 16
    masks[1, :2] = MASK_IGNORE  # 8 labelled ...
    masks[1, 2, :2] = MASK_DEFECT  # ... 2 of them defect
    masks[2] = MASK_IGNORE  # nothing labelled
    assert defect_fractions(masks).tolist() == [2 / 16, 2 / 8, 0.0]
    assert defect_fractions(np.eye(4, dtype=bool)[None]).tolist() == [4 / 16]
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        defect_fractions(np.zeros((4, 4), np.uint8))


def test_metrics_separate_the_share_with_defects_from_their_size():
    m = label_metrics(np.array([0.0, 0.0, 0.1, 0.3]))
    assert (m.count, m.share_with_defects) == (4, 0.5)
    assert m.mean_defect_fraction == pytest.approx(0.1) and m.mean_defect_fraction_defective == pytest.approx(0.2)
    d = label_metrics(np.zeros(3)).to_dict()
    assert d["pct_with_defects"] == 0.0 and d["pct_defect_pixels_defective"] is None


def test_emd_is_zero_for_equal_sets_and_the_shift_for_a_shifted_one():
    real = np.array([0.0, 0.02, 0.05, 0.1])
    assert label_distance(real, real)["emd_all"] == 0.0
    shifted = label_distance(real, real + 0.01)
    assert shifted["emd_all"] == pytest.approx(0.01, abs=1e-12)
    assert label_distance(real, np.array([0.02, 0.05]))["emd_all"] > 0  # sizes may differ
    assert label_distance(real, np.zeros(5))["emd_defective"] is None


def test_compare_table_puts_real_first_and_one_line_per_set():
    rows = compare_labels(np.array([0.1, 0.2]), {"semgan": np.array([0.0, 0.1]), "ours": np.array([0.1, 0.2])})
    assert [r["set"] for r in rows] == ["real", "semgan", "ours"]
    assert rows[0]["emd_all"] == 0.0 and rows[2]["emd_all"] == 0.0 and rows[1]["emd_all"] > 0
    assert rows[1]["pct_with_defects"] == 50.0
    table = label_table_markdown(rows)
    assert len(table.strip().splitlines()) == 2 + 3 and "| semgan | 2 | 50.00 |" in table
    assert "% defect pixels (defective only)" in table.splitlines()[0]


def test_compare_without_real_defects_leaves_the_defective_emd_undefined():
    rows = compare_labels(np.zeros(3), {"ours": np.array([0.0, 0.2])})
    assert rows[0]["emd_defective"] is None and rows[1]["emd_defective"] is None
    assert rows[1]["emd_all"] == pytest.approx(0.2 / 2)  # half the mass moves by 0.2
    assert "| real | 3 | 0.00 | 0.00 | – | 0.0000 | – |" in label_table_markdown(rows)


def test_histogram_is_a_whole_png(tmp_path: Path):
    path = write_fraction_histogram(
        tmp_path / "figs" / "h.png", np.array([0.0, 0.01, 0.03]), {"ours": np.array([0.0, 0.02])}
    )
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[2] == 3 and image.shape[0] > 100
    assert [p.name for p in path.parent.iterdir()] == ["h.png"], "no temporary file left behind"
