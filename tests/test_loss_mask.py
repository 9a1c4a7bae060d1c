"""`[composite] loss_mask` and `[stage1] loss_mask`: the alpha written as the loss weight, the subsets rendered
with alpha_mask, and the default (none) unchanged. sd-scripts' own reading: tests/test_contract_masks.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from PIL import Image

from onetwo.data.composite import Geometry
from onetwo.data.pixels import SEAM_BAND, seam_mask, weighted
from tests.maskkit import make_characters


def write_project(root: Path, composite: dict, **sections: dict) -> None:
    data = {"project": {"name": "demo", "base_model": "model.safetensors", "work_dir": "work", "output_dir": "out"},
            "characters": [{"name": name, "images": f"data/{name}"} for name in ("alice", "bob")],
            "composite": {"per_pair": 4, "workers": 1, "width": 256, "height": 256, **composite}, **sections}
    (root / "onetwo.toml").write_text(tomli_w.dumps(data), encoding="utf-8")


def composites(root: Path) -> dict[str, np.ndarray]:
    manifest = json.loads((root / "work" / "composites.manifest.json").read_text(encoding="utf-8"))["composites"]
    found = {}
    for stem, entry in manifest.items():
        with Image.open(root / "work" / "composites" / entry["file"]) as image:
            found[stem] = np.asarray(image)
    return found


def test_weight_maps_the_mask_onto_floor_to_one() -> None:
    mask = Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint8))
    assert list(np.asarray(weighted(mask, 0.25))[0]) == [64, 160, 255]
    assert list(np.asarray(weighted(mask, 1.0))[0]) == [255, 255, 255]


def test_seam_band_covers_each_join_and_gap() -> None:
    geo = Geometry(768, 100, ((0, 380), (388, 380)), 0.5, (255, 255, 255))
    columns = np.asarray(seam_mask(geo))[0]
    band = round(SEAM_BAND * 768)
    low = np.flatnonzero(columns == 0)
    assert (low[0], low[-1]) == (380 - band, 388 + band - 1)
    assert (columns[: 380 - band] == 255).all() and (columns[388 + band:] == 255).all()


def test_default_stays_rgb_without_alpha_mask(tmp_path, cli) -> None:
    make_characters(tmp_path / "data", ["alice", "bob"], count=2, cut_out=True)
    write_project(tmp_path, {})
    assert cli("render", "stage2")[0] == 0
    assert all(pixels.shape[2] == 3 for pixels in composites(tmp_path).values())
    dataset = (tmp_path / "work" / "stage2" / "dataset.toml").read_text(encoding="utf-8")
    assert "alpha_mask" not in dataset
    assert not (tmp_path / "work" / "masks").exists()  # no mask is computed unless an option needs it


@pytest.mark.parametrize("image_format", ["png", "webp"])
def test_figures_weight_on_side_by_side_composites(tmp_path, cli, image_format) -> None:
    make_characters(tmp_path / "data", ["alice", "bob"], count=2, cut_out=True)
    write_project(tmp_path, {"loss_mask": "figures", "mask_floor": 0.2, "format": image_format, "mirror": 0.5})
    code, _, err = cli("render", "stage2")
    assert code == 0, err
    for stem, pixels in composites(tmp_path).items():
        assert pixels.shape[2] == 4, stem
        alpha, rgb = pixels[:, :, 3], pixels[:, :, :3]
        assert set(np.unique(alpha).tolist()) >= {51, 255}
        figure = (rgb < 230).any(axis=-1)  # figure colours; the background is white
        assert (alpha[figure] > 200).mean() > 0.9 and (alpha[~figure] < 100).mean() > 0.9  # edges blend
        under = rgb[alpha == 51]  # the white background under the low weight (edges aside), not the black under
        assert np.median(under) == 255 and under.max(axis=1).min() > 100
    dataset = (tmp_path / "work" / "stage2" / "dataset.toml").read_text(encoding="utf-8")
    assert dataset.count("alpha_mask = true") == 1


def test_seam_needs_no_masks(tmp_path, cli) -> None:
    make_characters(tmp_path / "data", ["alice", "bob"], count=2)  # opaque, and no segmentation model anywhere
    write_project(tmp_path, {"loss_mask": "seam"})
    code, _, err = cli("composite")
    assert code == 0, err
    for pixels in composites(tmp_path).values():
        columns = pixels[:, :, 3].min(axis=0)
        assert columns[128] == 64 and columns[0] == columns[-1] == 255  # mask_floor 0.25 by default
    assert not (tmp_path / "work" / "masks").exists()


def test_stage1_figures_are_weighted_copies_and_never_reach_the_trainer_config(tmp_path, cli) -> None:
    made = make_characters(tmp_path / "data", ["alice", "bob"], count=2, cut_out=True)
    write_project(tmp_path, {}, stage1={"loss_mask": "figures", "mask_floor": 0.0, "learning_rate": 0.001})
    code, _, err = cli("render", "stage1")
    assert code == 0, err
    config = (tmp_path / "work" / "stage1" / "config.toml").read_text(encoding="utf-8")
    assert "loss_mask" not in config and "mask_floor" not in config and "learning_rate = 0.001" in config
    dataset = (tmp_path / "work" / "stage1" / "dataset.toml").read_text(encoding="utf-8")
    assert dataset.count("alpha_mask = true") == 2
    copy = tmp_path / "work" / "originals" / "alice" / "img0.png"
    assert not copy.is_symlink()
    with Image.open(copy) as image:
        pixels = np.asarray(image)
    with Image.open(made["alice"][0]) as source:
        np.testing.assert_array_equal(pixels[:, :, 3], np.asarray(source)[:, :, 3])  # floor 0: the alpha itself
    assert (pixels[pixels[:, :, 3] == 0][:, :3] == 255).all()  # flattened onto white, not the black under


@pytest.mark.parametrize("section, key, value, fact", [
    ("composite", "loss_mask", "edges", "composite.loss_mask"), ("composite", "mask_floor", 2, "composite.mask_floor"),
    ("stage1", "loss_mask", "seam", "stage1.loss_mask"), ("stage1", "mask_floor", -1, "stage1.mask_floor")])
def test_bad_loss_mask_settings(tmp_path, cli, section, key, value, fact) -> None:
    make_characters(tmp_path / "data", ["alice", "bob"], count=1, cut_out=True)
    if section == "composite":
        write_project(tmp_path, {key: value})
    else:
        write_project(tmp_path, {}, stage1={key: value})
    code, _, err = cli("check")
    assert code == 2 and fact in err
