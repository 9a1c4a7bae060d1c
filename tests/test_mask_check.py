"""`check` on figure masks (how many, from where, which cannot be right) and on thin data; `preview` with the
loss weight beside each composite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tomli_w
from PIL import Image, ImageDraw

from onetwo.data.preview import MASK_TINT, thumbnail
from tests.maskkit import fake_isnet_cache, make_characters, write_isnet


def write_project(root: Path, composite: dict, images: int = 3) -> None:
    data = {"project": {"name": "demo", "base_model": "model.safetensors", "work_dir": "work", "output_dir": "out"},
            "characters": [{"name": name, "images": f"data/{name}"} for name in ("alice", "bob")],
            "composite": {"per_pair": 4, "workers": 1, "width": 256, "height": 256, **composite}}
    (root / "onetwo.toml").write_text(tomli_w.dumps(data), encoding="utf-8")


def test_check_reports_masks_by_origin_and_flags_bad_ones(tmp_path, cli, monkeypatch) -> None:
    fake_isnet_cache(tmp_path / "hub", write_isnet(tmp_path / "model"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    made = make_characters(tmp_path / "data", ["alice", "bob"], count=4, cut_out=[True, False])
    Image.new("RGBA", (200, 300), (0, 0, 0, 0)).save(made["alice"][1])  # all transparent: an empty mask
    Image.new("RGB", (200, 300), (90, 90, 90)).save(made["bob"][2])  # all dark: the segmenter takes it all
    speckled = Image.new("RGB", (200, 300), (255, 255, 255))
    for left in range(0, 200, 50):
        ImageDraw.Draw(speckled).rectangle((left, 100, left + 20, 160), fill=(30, 30, 30))
    speckled.save(made["bob"][3])
    write_project(tmp_path, {"layout": "scene"})
    _, out, err = cli("check", "--no-progress")
    assert "alice: figure masks for 4 of 4 images (4 alpha)" in out
    assert "bob: figure masks for 4 of 4 images (4 isnetis)" in out
    assert "alice: 1 figure mask(s) cannot be right (img1.png: empty)" in err
    assert "img2.png: covers nearly the whole frame" in err and "img3.png: in 4 separate pieces" in err
    assert "img0.png" not in err.split("cannot be right")[1]


def test_check_says_nothing_of_masks_without_mask_options(tmp_path, cli) -> None:
    make_characters(tmp_path / "data", ["alice", "bob"], count=2)
    write_project(tmp_path, {})
    _, out, err = cli("check", "--no-progress")
    assert "figure masks" not in out + err and not (tmp_path / "work" / "masks").exists()


@pytest.mark.parametrize("images, per_pair, warned", [(3, 4, {"alice", "bob", "per_pair"}),
                                                      (20, 15, set()), (20, 14, {"per_pair"})])
def test_thin_data_warnings(tmp_path, cli, images, per_pair, warned) -> None:
    make_characters(tmp_path / "data", ["alice", "bob"], count=images, size=(64, 96))
    write_project(tmp_path, {"per_pair": per_pair})
    _, _, err = cli("check", "--no-progress")
    found = {name for name in ("alice", "bob") if f"{name}: {images} images; duo LoRA guides use at least 20" in err}
    if f"composite.per_pair = {per_pair}: duo LoRA guides use at least 15" in err:
        found.add("per_pair")
    assert found == warned


def shade(weight: int, colour: int = 255) -> np.ndarray:
    """An overlay pixel of a `colour` grey at `weight`: the picture where the weight is full, tinted where it is 0."""
    tinted = 0.3 * colour + 0.7 * np.array(MASK_TINT)
    return weight / 255 * colour + (1 - weight / 255) * tinted


def test_thumbnail_shows_the_weight_beside_the_composite() -> None:
    image = Image.new("RGBA", (512, 512), (255, 255, 255, 64))
    ImageDraw.Draw(image).rectangle((0, 0, 255, 511), fill=(255, 255, 255, 255))
    pair = np.asarray(thumbnail(image)).astype(int)
    assert pair.shape == (256, 2 * 256 + 4, 3)
    assert (pair[:, :256] == 255).all()  # the composite itself
    overlay = pair[:, 260:]
    assert (overlay[:, :120] == 255).all()  # full weight: untouched
    shaded = overlay[:, 140:].reshape(-1, 3).mean(axis=0)
    assert np.abs(shaded - shade(64)).max() <= 1  # low weight: tinted in proportion
    assert np.asarray(thumbnail(image.convert("RGB"))).shape == (256, 256, 3)  # no weight: no overlay


def test_preview_sheet_shows_masks(tmp_path, cli) -> None:
    make_characters(tmp_path / "data", ["alice", "bob"], count=2, cut_out=True)
    write_project(tmp_path, {"layout": "scene", "loss_mask": "figures"})
    code, _, err = cli("preview", "--count", "2")
    assert code == 0, err
    with Image.open(tmp_path / "work" / "preview.png") as sheet:
        pixels = np.asarray(sheet.convert("RGB")).reshape(-1, 3)
    tinted = np.abs(pixels - shade(64)).max(axis=1) <= 1  # the white background at mask_floor 0.25
    assert tinted.mean() > 0.1
