"""The masked-loss contract: sd-scripts' own dataset code, from the dataset TOML onetwo renders, gives each
composite's `alpha_masks` equal to the alpha onetwo wrote and its `images` equal to the composite's RGB (the full
picture, never black under a low weight). No training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from onetwo.cli import main
from onetwo.project.file import load_project
from tests.maskkit import fake_isnet_cache, write_isnet
from tests.sdscripts import CHARACTERS, needs_sdscripts, run_probe, write_character, write_project

pytestmark = [pytest.mark.sdscripts, needs_sdscripts]

DATASET = {"resolution": 128, "min_bucket_reso": 64, "max_bucket_reso": 256, "batch_size": 1}
VARIANTS = {
    "scene-figures": {"layout": "scene", "loss_mask": "figures", "mask_floor": 0.25, "mirror": 0.5},
    "side-figures": {"loss_mask": "figures", "mask_floor": 0.1},
    "side-seam": {"loss_mask": "seam", "gap": 8},
}


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("contract-masks")
    hub = fake_isnet_cache(root / "hub", write_isnet(root / "model"))
    jobs, projects = {}, {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_CACHE", str(hub))
        patch.setenv("HF_HUB_OFFLINE", "1")
        for name, composite in VARIANTS.items():
            file = write_project(root / name, {"composite": {"width": 128, "height": 128, "per_pair": 2,
                                                             **composite},
                                               "stage2": {"dataset": DATASET}})
            assert main(["--project", str(file), "render", "stage2", "--no-progress", "--workers", "1"]) == 0
            projects[name] = load_project(file)
            folder = file.parent / "build" / "stage2"
            jobs[name] = {"config": str(folder / "config.toml"), "dataset": str(folder / "dataset.toml"),
                          "images": True, "items": str(root / name / "items")}
        for name in CHARACTERS:  # squares of the training resolution: kohya resizes nothing, so pixels compare
            write_character(root / "stage1" / "data" / name, name, sizes=((128, 128), (128, 128)))
        file = write_project(root / "stage1", {"stage1": {"loss_mask": "figures", "mask_floor": 0.5,
                                                          "dataset": DATASET}})
        assert main(["--project", str(file), "render", "stage1", "--no-progress", "--workers", "1"]) == 0
        projects["stage1"] = load_project(file)
        folder = file.parent / "build" / "stage1"
        jobs["stage1"] = {"config": str(folder / "config.toml"), "dataset": str(folder / "dataset.toml"),
                          "images": True, "items": str(root / "stage1" / "items")}
    return {"results": run_probe({"jobs": jobs}, root / "probe"), "projects": projects}


def weight_and_rgb(path: str, files: dict[str, str]) -> np.ndarray:
    """The file onetwo wrote, after checking that sd-scripts' item holds its alpha and its RGB."""
    with Image.open(path) as image:
        assert image.mode == "RGBA"
        written = np.asarray(image)
    alpha = np.load(files["alpha"])
    assert alpha.shape == written.shape[:2]
    np.testing.assert_array_equal(alpha, written[:, :, 3].astype(np.float32) / 255.0)
    rgb = np.load(files["image"])  # kohya's tensor: (C, H, W) in [-1, 1]
    np.testing.assert_allclose(rgb, written[:, :, :3].transpose(2, 0, 1) / 127.5 - 1.0, atol=1e-6)
    return written


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_sd_scripts_reads_the_weight_and_the_full_rgb(probed: dict[str, Any], variant: str) -> None:
    result = probed["results"][variant]
    assert result["dataset_problems"] == []
    project = probed["projects"][variant]
    assert len(result["datasets"]) == 1
    composites = [subset for subset in result["dataset"]["datasets"][0]["subsets"]
                  if Path(subset["image_dir"]) == project.composite_dir]
    assert [subset["alpha_mask"] for subset in composites] == [True]
    items = {path: files for path, files in result["items"].items() if Path(path).parent == project.composite_dir}
    assert len(items) == 6  # three pairs, two each
    floor = round(VARIANTS[variant]["mask_floor"] * 255) if "mask_floor" in VARIANTS[variant] else \
        round(project.composite.mask_floor * 255)
    for path, files in items.items():
        written = weight_and_rgb(path, files)
        weights = set(np.unique(written[:, :, 3]).tolist())
        assert floor in weights and 255 in weights
        background = written[:, :, 3] == floor
        under = written[background][:, :3]  # the background colour under a low weight (figure edges aside), not black
        assert np.median(under) >= 240 and under.max(axis=1).min() > 30
    if variant == "side-seam":  # the low band sits over the join of each composite: the middle columns
        for path in items:
            with Image.open(path) as image:
                column = np.asarray(image)[:, :, 3].min(axis=0)
            assert column[64] == floor and column[0] == column[-1] == 255


def test_stage1_trains_the_figures_through_weighted_copies(probed: dict[str, Any]) -> None:
    result = probed["results"]["stage1"]
    assert result["dataset_problems"] == []
    project = probed["projects"]["stage1"]
    subsets = result["dataset"]["datasets"][0]["subsets"]
    assert len(subsets) == 3 and all(subset["alpha_mask"] for subset in subsets)
    assert len(result["items"]) == 6  # three characters, two images each
    for path, files in result["items"].items():
        assert Path(path).parent.parent == project.originals_dir and not Path(path).is_symlink()
        written = weight_and_rgb(path, files)
        assert set(np.unique(written[:, :, 3]).tolist()) >= {128, 255}  # floor 0.5 off the figure, 1 on it
        assert (written[written[:, :, 3] == 128][:, :3] == 245).all()  # the original's own background
    sources = sorted(path.name for path in (project.file.parent / "data").rglob("*.png"))
    assert sources == sorted(Path(path).name for path in result["items"])  # the originals are left as they were
