"""Scene composites (`[composite] layout = "scene"`): exact geometry from the plan, and the built files through
the real CLI on synthetic cut-outs and opaque pictures (segmented by the stand-in ISNet model)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from PIL import Image

from onetwo.data.composite import FigureBox, plan
from onetwo.eval.seam import calibrate, seam_score
from onetwo.project.config import CompositeSettings
from tests.maskkit import fake_isnet_cache, make_characters, write_isnet
from tests.test_plan import scans


def boxes_for(counts: dict[str, int]) -> dict[Path, FigureBox]:
    """Figures of varied shapes: tall, wide and square boxes inside 400x600 pictures."""
    shapes = [(100, 50, 300, 550), (20, 200, 380, 400), (150, 150, 250, 250)]
    return {image.path: FigureBox(f"/masks/{image.path.stem}.png", shapes[index % 3], (400, 600))
            for item in scans(counts) for index, image in enumerate(item.images)}


def scene_plan(counts: dict[str, int], **settings):
    return plan(scans(counts), CompositeSettings(layout="scene", **settings), lambda aspect: (768, 768),
                boxes_for(counts))


@pytest.mark.parametrize("group_size", [2, 3])
@pytest.mark.parametrize("placement", ["ground", "random"])
def test_scene_geometry(group_size: int, placement: str) -> None:
    settings = {"per_pair": 30, "group_size": group_size, "scene_placement": placement, "seed": 3}
    if group_size == 3:
        settings["caption"] = "{names}/COMPOSITE, {tags}"
    jobs = scene_plan({"a": 4, "b": 5, "c": 3}, **settings)
    boxes = boxes_for({"a": 4, "b": 5, "c": 3})
    low, high = CompositeSettings().scene_scale
    overlap = CompositeSettings().scene_overlap
    for job in jobs:
        geo = job.geometry
        assert len(geo.figures) == group_size and sorted(geo.front) == list(range(group_size))
        for source, figure in zip(job.sources, geo.figures, strict=True):
            box = boxes[source.path].box
            assert figure.crop[0] <= box[0] and figure.crop[2] >= box[2]  # the margin grows the box
            assert figure.left >= 0 and figure.left + figure.width <= geo.width
            assert figure.top >= 0 and figure.top + figure.height <= geo.height
            crop_w, crop_h = figure.crop[2] - figure.crop[0], figure.crop[3] - figure.crop[1]
            fit = min(geo.height / crop_h, geo.width / group_size / crop_w)
            scale = max(figure.width / crop_w, figure.height / crop_h)
            assert low * fit - 2 / crop_w <= scale <= high * fit + 1e-9
        for left, right in zip(geo.figures, geo.figures[1:], strict=False):
            assert left.left < right.left  # caption order, left to right
            overlapped = max(0, left.left + left.width - right.left)
            assert overlapped <= math.floor(overlap * min(left.width, right.width))
        if placement == "ground":
            assert len({figure.top + figure.height for figure in geo.figures}) == 1
    assert Counter(job.sources for job in jobs) and all(
        max(uses.values()) - min(uses.values()) <= 1 for uses in
        [Counter(source for job in jobs for source, name in zip(job.sources, job.names, strict=True) if name == who)
         for who in "abc"])


def test_scenes_keep_the_side_by_side_pairing() -> None:
    """The same seed deals the same sources in the same orders: the layout changes only the pixels."""
    side = plan(scans({"a": 4, "b": 5}), CompositeSettings(per_pair=12))
    scene = scene_plan({"a": 4, "b": 5}, per_pair=12)
    assert [(job.names, job.sources) for job in side] == [(job.names, job.sources) for job in scene]
    assert scene_plan({"a": 4, "b": 5}, per_pair=12) == scene
    assert scene_plan({"a": 4, "b": 5}, per_pair=12, seed=1) != scene


@pytest.mark.parametrize("share", [0.0, 0.3, 0.5, 1.0])
def test_scene_share(share: float) -> None:
    jobs = scene_plan({"a": 4, "b": 5, "c": 3}, per_pair=20, scene_share=share)
    for pair in [{"a", "b"}, {"a", "c"}, {"b", "c"}]:
        group = [job for job in jobs if set(job.names) == pair]
        scenes = [job for job in group if job.geometry.figures]
        assert len(scenes) == math.floor(share * 20 + 1e-9)
        by_order = Counter(job.names for job in scenes if not job.geometry.mirrored)
        assert not by_order or max(by_order.values()) - min(by_order.values()) <= 1


def test_scene_tag_only_on_scenes() -> None:
    jobs = scene_plan({"a": 2, "b": 2}, per_pair=4, scene_share=0.5, scene_tag="simple background")
    assert sorted(job.caption.endswith(", simple background") for job in jobs) == [False, False, True, True]
    assert all(bool(job.geometry.figures) == job.caption.endswith("simple background") for job in jobs)


def test_side_by_side_keys_do_not_change() -> None:
    """Adding scenes must not rebuild side-by-side composites: the plain layout keeps the key it had before."""
    (job,) = plan(scans({"a": 1, "b": 1}), CompositeSettings(per_pair=1))
    assert job.key == "6fc9f30cf5283f17cd1b538d8321774c"


def write_project(root: Path, composite: dict) -> None:
    data = {"project": {"name": "demo", "base_model": "model.safetensors", "work_dir": "work", "output_dir": "out"},
            "characters": [{"name": name, "images": f"data/{name}"} for name in ("alice", "bob")],
            "composite": {"per_pair": 8, "workers": 1, "width": 256, "height": 256, **composite}}
    (root / "onetwo.toml").write_text(tomli_w.dumps(data), encoding="utf-8")


def built(root: Path) -> dict[str, dict]:
    return json.loads((root / "work" / "composites.manifest.json").read_text(encoding="utf-8"))["composites"]


def test_cut_out_scenes_through_the_cli(tmp_path, cli) -> None:
    make_characters(tmp_path / "data", ["alice", "bob"], count=3, cut_out=True)
    write_project(tmp_path, {"layout": "scene", "mirror": 0.5, "background": "#f0f0f0"})
    code, _, err = cli("composite")
    assert code == 0, err
    entries = built(tmp_path)
    assert len(entries) == 8 and all(entry["layout"] == "scene" for entry in entries.values())
    colours = {"alice": (200, 40, 40), "bob": (40, 150, 60)}
    for stem, entry in entries.items():
        with Image.open(tmp_path / "work" / "composites" / entry["file"]) as image:
            assert image.mode == "RGB" and image.size == (256, 256)
            assert image.getpixel((0, 0)) == (240, 240, 240)  # the background, not the black under the alpha
            assert image.convert("L").getextrema()[0] > 20, stem
            for name, figure in zip(entry["names"], entry["figures"], strict=True):
                left, top, right, bottom = figure["box"]
                centre = image.getpixel(((left + right) // 2, (top + 3 * bottom) // 4))
                if figure["layer"] == len(entry["figures"]) - 1:  # the front figure is seen whole
                    red, green = colours[name][0], colours[name][1]
                    assert (centre[0] > centre[1]) == (red > green), (stem, name, centre)
        lefts = [figure["box"][0] for figure in entry["figures"]]
        assert lefts == sorted(lefts)  # caption order, mirrored ones included
    code, _, err = cli("composite")
    assert "0 built, 8 unchanged" in err


def test_opaque_scenes_segmented_and_seamless(tmp_path, cli, monkeypatch) -> None:
    """Opaque pictures on two different near-white backgrounds: side by side they meet in a seam; as scenes on
    one background, seam_score stays under the threshold calibrated on the side-by-side ones."""
    fake_isnet_cache(tmp_path / "hub", write_isnet(tmp_path / "model"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    made = make_characters(tmp_path / "data", ["alice", "bob"], count=3)
    for path in made["bob"]:  # bob's pictures on a light blue: still background to the segmenter (min over 0.9)
        with Image.open(path) as image:
            pixels = np.array(image.convert("RGB"))
        pixels[(pixels == 255).all(axis=-1)] = (232, 238, 255)
        Image.fromarray(pixels).save(path)
    write_project(tmp_path, {"layout": "scene", "scene_share": 0.5, "per_pair": 12})
    code, _, err = cli("composite")
    assert code == 0, err
    entries = built(tmp_path)
    index = json.loads((tmp_path / "work" / "masks" / "index.json").read_text(encoding="utf-8"))["masks"]
    assert {entry["origin"] for entry in index.values()} == {"isnetis"}

    def score(entry: dict) -> float:
        with Image.open(tmp_path / "work" / "composites" / entry["file"]) as image:
            return seam_score(image)

    scenes = [score(entry) for entry in entries.values() if entry.get("layout") == "scene"]
    sides = [score(entry) for entry in entries.values() if entry.get("layout") != "scene"]
    originals = []
    for path in made["alice"] + made["bob"]:
        with Image.open(path) as image:
            originals.append(seam_score(image))
    assert len(scenes) == len(sides) == 6
    calibration = calibrate(sides, originals, "side-by-side composites")
    assert calibration.auc == 1.0
    assert max(scenes) < calibration.threshold < min(sides), (scenes, sides, calibration)


def test_opaque_scenes_without_a_model_fail_before_building(tmp_path, cli, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_characters(tmp_path / "data", ["alice", "bob"], count=2, cut_out=[True, False])
    write_project(tmp_path, {"layout": "scene"})
    code, _, err = cli("composite")
    assert code == 2
    assert "skytnt/anime-seg: isnetis.onnx" in err
    assert not (tmp_path / "work" / "composites").exists() and not (tmp_path / "work" / "masks").exists()


def test_offline_flag_names_the_missing_model_file(tmp_path, cli, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # restored after the test: --offline sets it for the process
    make_characters(tmp_path / "data", ["alice", "bob"], count=2, cut_out=[True, False])
    write_project(tmp_path, {"layout": "scene"})
    code, _, err = cli("composite", "--offline")
    assert code == 2
    assert "skytnt/anime-seg: isnetis.onnx" in err and str(tmp_path / "empty-hub") in err
    assert "fetch them once with network access" in err  # the cache-only answer, not a failed download
    assert not (tmp_path / "work" / "composites").exists() and not (tmp_path / "work" / "masks").exists()


@pytest.mark.parametrize("key, value, fact", [
    ("scene_share", 1.5, "composite.scene_share"), ("scene_scale", [0.9, 0.5], "composite.scene_scale"),
    ("scene_placement", "floating", "composite.scene_placement"), ("scene_overlap", -0.1, "composite.scene_overlap"),
    ("scene_tag", "a, b", "composite.scene_tag"), ("layout", "scenes", "composite.layout")])
def test_bad_scene_settings(tmp_path, cli, key, value, fact) -> None:
    make_characters(tmp_path / "data", ["alice", "bob"], count=1, cut_out=True)
    write_project(tmp_path, {"layout": "scene", key: value})
    code, _, err = cli("composite")
    assert code == 2 and fact in err
