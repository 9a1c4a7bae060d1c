from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from onetwo.data.pixels import cover_box, load_cell


@pytest.mark.parametrize(
    ("size", "cell", "anchor", "box"),
    [
        ((400, 800), (100, 200), 0.5, (0, 0, 400, 800)),
        ((800, 800), (100, 200), 0.5, (200, 0, 600, 800)),
        ((400, 1200), (100, 200), 0.0, (0, 0, 400, 800)),
        ((400, 1200), (100, 200), 1.0, (0, 400, 400, 1200)),
    ],
)
def test_cover_box(size, cell, anchor, box) -> None:
    assert cover_box(*size, *cell, anchor) == pytest.approx(box)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "L", "P", "CMYK", "I;16", "I", "1"])
def test_every_mode_becomes_rgb_of_the_cell_size(tmp_path: Path, mode: str) -> None:
    suffix = "tif" if mode in ("CMYK", "I") else "png"
    path = tmp_path / f"image.{suffix}"
    image = Image.new(mode, (60, 90))
    if mode.startswith("I"):
        image = Image.new(mode, (60, 90), 65535 if mode == "I;16" else 40000)
    image.save(path)
    cell, _ = load_cell(path, 20, 40, 0.5, (10, 20, 30))
    assert cell.mode == "RGB" and cell.size == (20, 40)
    if mode.startswith("I"):
        assert cell.getpixel((5, 5))[0] > 100  # 16-bit range scaled, not clipped to white or black


def test_jpeg_draft_decodes_smaller_but_reports_full_size_box(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (2000, 4000), (200, 100, 50)).save(path, quality=92)
    cell, box = load_cell(path, 100, 200, 0.5, (0, 0, 0))
    assert cell.size == (100, 200)
    assert box == pytest.approx((0, 0, 2000, 4000))
    assert abs(cell.getpixel((50, 100))[0] - 200) < 4
