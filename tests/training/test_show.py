import cv2
import numpy as np

from training.data.paste import PasteOptions, make_pasted
from training.data.show import write_grid


def _red_pixels(image: np.ndarray) -> int:
    b, g, r = cv2.split(image)
    return int(np.count_nonzero((r > 200) & (g < 80) & (b < 80)))


def test_grid_of_real_patches_outlines_defects(small_patchset, tmp_path):
    path = write_grid(small_patchset.root, tmp_path / "grid.png", rows=2, columns=3, scale=2)
    grid = cv2.imread(str(path))
    assert grid is not None and grid.shape[0] > 2 * 64 and grid.shape[1] > 3 * 64
    assert _red_pixels(grid) > 20, "defect outlines are drawn"


def test_grid_of_pasted_patches_puts_each_source_beside_its_copies(small_patchset, tmp_path):
    make_pasted(small_patchset, tmp_path / "pasted", PasteOptions(per_defect=2), seed=0, progress=False)
    grid = cv2.imread(str(write_grid(tmp_path / "pasted", tmp_path / "g.png", rows=2, columns=3, scale=1)))
    tile_w = 32 + 4
    assert grid.shape[1] == 3 * tile_w + 4, "source + 2 pasted copies per row"
    assert _red_pixels(grid) > 10
