"""Beyond the method: trios, mirrored composites, natural layout, bucket-aware sizes, joint mode and replay."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from onetwo.kohya.buckets import BucketSettings, crop_fraction, fit_size, make_bucket_resolutions, nearest_bucket
from onetwo.kohya.render import read_toml
from onetwo.project.config import CompositeSettings
from tests.conftest import colour_of
from tests.test_plan import make_plan, scans


def test_buckets_match_kohya_at_768() -> None:
    buckets = make_bucket_resolutions((768, 768), 256, 1024, 64)
    assert (768, 768) in buckets and (1024, 576) in buckets and (576, 1024) in buckets
    assert all(w * h <= 768 * 768 and w % 64 == 0 and h % 64 == 0 for w, h in buckets)
    assert nearest_bucket(2000, 1000, buckets) == (1024, 512)
    assert crop_fraction(2000, 1000, (1024, 512)) == 0
    assert crop_fraction(1800, 1000, (1024, 576)) == pytest.approx(1 - (1024 * 576) / (1037 * 576), abs=1e-3)


def test_fit_size_is_a_bucket_of_the_nearest_aspect() -> None:
    settings = BucketSettings((768, 768))
    assert fit_size(1.0, settings) == (768, 768)
    width, height = fit_size(1.5, settings)
    assert (width, height) in settings.buckets() and crop_fraction(width, height, (width, height)) == 0
    assert fit_size(1.0, BucketSettings((64, 64), 64, 128)) == (64, 64)


def test_trios_cycle_through_all_six_orders() -> None:
    jobs = make_plan({"a": 2, "b": 2, "c": 2, "d": 2}, per_pair=12, group_size=3,
                     caption="{names}/COMPOSITE, {tags}")
    groups = Counter(frozenset(job.names) for job in jobs)
    assert len(groups) == 4 and set(groups.values()) == {12}
    orders = Counter(job.names for job in jobs if set(job.names) == {"a", "b", "c"})
    assert len(orders) == 6 and set(orders.values()) == {2}
    job = jobs[0]
    assert job.caption == f"{'/'.join(job.names)}/COMPOSITE, " + ", ".join(f"{name}-tag" for name in job.names)
    assert len(job.geometry.cells) == 3


def test_mirrored_jobs_name_characters_in_the_flipped_order() -> None:
    jobs = make_plan({"a": 3, "b": 3}, per_pair=40, mirror=0.5)
    mirrored = [job for job in jobs if job.geometry.mirrored]
    assert 5 < len(mirrored) < 35
    for job in mirrored:
        assert [source.path.parent.name for source in job.sources] == list(job.names[::-1])
        assert job.caption.startswith(f"{job.names[0]}/{job.names[1]}/COMPOSITE, {job.names[0]}-tag")


def test_mirrored_composite_pixels_follow_the_caption(make_project, cli, tmp_path: Path) -> None:
    make_project(composite={"mirror": 1.0})
    assert cli("composite")[0] == 0
    entries = json.loads((tmp_path / "work" / "composites.manifest.json").read_text())["composites"]
    names = ["alice", "bob"]
    for stem, entry in entries.items():
        assert entry["mirrored"] is True
        caption = (tmp_path / "work" / "composites" / f"{stem}.txt").read_text()
        left_name = caption.split("/")[0]
        assert left_name == entry["names"][0]
        with Image.open(tmp_path / "work" / "composites" / entry["file"]) as image:
            left_pixel = image.getpixel((10, 64))
        source = next(s for s in entry["sources"] if f"/{left_name}/" in s)
        assert left_pixel == colour_of(names.index(left_name), int(Path(source).stem[3:]))


def test_natural_layout_keeps_each_aspect(make_project, cli, tmp_path: Path) -> None:
    make_project(composite={"layout": "natural", "per_pair": 2})
    data = (tmp_path / "onetwo.toml").read_text().replace("width = 128\nheight = 128\n", "")
    (tmp_path / "onetwo.toml").write_text(data)
    for path in (tmp_path / "data" / "bob").glob("*.png"):
        Image.new("RGB", (400, 300), (1, 2, 3)).save(path)
    assert cli("composite")[0] == 0
    entry = next(iter(json.loads((tmp_path / "work" / "composites.manifest.json").read_text())["composites"].values()))
    side = entry["names"].index("bob")
    crop = entry["crops"][side]
    assert (crop[2] - crop[0]) / (crop[3] - crop[1]) == pytest.approx(400 / 300, rel=0.1)


def test_unset_size_fits_the_composite_stage_bucket(make_project, cli, tmp_path: Path) -> None:
    make_project(composite={"per_pair": 2}, stage2={"dataset": {"resolution": 512}})
    data = (tmp_path / "onetwo.toml").read_text().replace("width = 128\nheight = 128\n", "")
    (tmp_path / "onetwo.toml").write_text(data)
    assert cli("composite")[0] == 0
    built = sorted((tmp_path / "work" / "composites").glob("*.png"))
    assert len(built) == 2  # per_pair 2, one pair
    for path in built:
        with Image.open(path) as image:
            assert image.size == (512, 512)


def test_explicit_size_outside_the_buckets_warns(make_project, cli) -> None:
    make_project(composite={"per_pair": 2, "width": 1000, "height": 300})
    code, _, err = cli("composite")
    assert code == 0 and "whose centre crop cuts" in err


def test_check_reports_buckets_and_crops(make_project, cli, tmp_path: Path) -> None:
    make_project()
    Image.new("RGB", (3000, 500)).save(tmp_path / "data" / "alice" / "wide.png")
    out = cli("check")[1]
    assert "buckets     512x768: 3, 1024x256: 1" in out
    assert "cropped     1 lose more than 2%" in out and "wide.png (3000x500 → 1024x256, 33% cut)" in out


def test_joint_mode_renders_two_datasets(make_project, cli, tmp_path: Path) -> None:
    make_project(project={"mode": "joint"})
    code, _, err = cli("render", "joint")
    assert code == 0, err
    dataset = read_toml(tmp_path / "work" / "joint" / "dataset.toml")
    originals, composites = dataset["datasets"]
    assert (originals["resolution"], originals["batch_size"]) == (640, 4)
    assert [s["class_tokens"] for s in originals["subsets"]] == ["alice", "bob"]
    assert (composites["resolution"], composites["batch_size"]) == (768, 2)
    assert composites["subsets"][0]["image_dir"].endswith("composites")
    config = read_toml(tmp_path / "work" / "joint" / "config.toml")
    assert "network_weights" not in {k for section in config.values() for k in section}
    code, _, err = cli("train", "stage1", "--dry-run")
    assert code == 2 and "project.mode is 'joint'" in err


def test_replay_adds_a_share_of_originals_to_stage2(make_project, cli, tmp_path: Path) -> None:
    make_project(images=4, project={"replay": 0.5})
    assert cli("render", "stage2")[0] == 0
    (dataset,) = read_toml(tmp_path / "work" / "stage2" / "dataset.toml")["datasets"]
    dirs = [Path(subset["image_dir"]).name for subset in dataset["subsets"]]
    assert dirs == ["composites", "alice", "bob"]
    for name in ("alice", "bob"):
        linked = sorted(p.name for p in (tmp_path / "work" / "replay" / name).glob("*.png"))
        assert len(linked) == 2


def test_trio_sample_prompts_and_settings(make_project, cli, tmp_path: Path) -> None:
    make_project(["a", "b", "c"], composite={"group_size": 3, "per_pair": 6, "width": 192, "height": 128})
    assert cli("render", "stage2")[0] == 0
    prompts = (tmp_path / "work" / "stage2" / "sample_prompts.txt").read_text().splitlines()
    assert len(prompts) == 3 + 6
    assert any(line.startswith("c/a/b/COMPOSITE, 3girls") for line in prompts)
    captions = [p.read_text() for p in (tmp_path / "work" / "composites").glob("*.txt")]
    assert len(captions) == 6 and all(c.count("/") == 3 for c in captions)


def test_composite_settings_default_to_auto_size() -> None:
    settings = CompositeSettings()
    assert settings.width is None and settings.group_size == 2
    assert scans({"a": 1})[0].images[0].width == 0


def test_regularization_subsets_are_linked_and_flagged(make_project, cli, tmp_path: Path) -> None:
    make_project(regularization={"stage1": "reg", "class_tokens": "1girl", "repeats": 2})
    (tmp_path / "reg").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "reg" / "r1.png")
    Image.new("RGB", (64, 64), (9, 9, 9)).save(tmp_path / "reg" / "r2.png")
    (tmp_path / "reg" / "r2.txt").write_text("1girl, standing")
    code, _, err = cli("render", "stage1")
    assert code == 0, err
    (dataset,) = read_toml(tmp_path / "work" / "stage1" / "dataset.toml")["datasets"]
    reg = dataset["subsets"][-1]
    assert reg["is_reg"] is True and reg["num_repeats"] == 2 and reg["class_tokens"] == "1girl"
    folder = Path(reg["image_dir"])
    assert folder.is_relative_to(tmp_path / "work")
    assert (folder / "r1.txt").read_text() == "1girl" and (folder / "r2.txt").read_text() == "1girl, standing"
    assert not (tmp_path / "reg" / "r1.txt").exists()
    assert cli("render", "stage2")[0] == 0
    (stage2,) = read_toml(tmp_path / "work" / "stage2" / "dataset.toml")["datasets"]
    assert not any(subset.get("is_reg") for subset in stage2["subsets"])


def test_sdxl_uses_its_trainer_and_templates(make_project, cli, tmp_path: Path) -> None:
    make_project(project={"model": "sdxl"}, stage1={"cache_text_encoder_outputs": False})
    code, out, err = cli("train", "stage1", "--dry-run")
    assert code == 0, err
    assert "sdxl_train_network.py --config_file" in out
    config = read_toml(tmp_path / "work" / "stage1" / "config.toml")
    flat = {key: value for section in config.values() for key, value in section.items()}
    assert flat["no_half_vae"] is True and "clip_skip" not in flat
    (dataset,) = read_toml(tmp_path / "work" / "stage1" / "dataset.toml")["datasets"]
    assert dataset["resolution"] == 1024
    make_project(stage1={"cache_text_encoder_outputs": False})
    code, _, err = cli("train", "stage1", "--dry-run")
    assert code == 2 and "'cache_text_encoder_outputs' is not an option of train_network.py" in err
