"""One reading of kohya's resolutions (onetwo.kohya.buckets.parse_resolution) for the buckets, the plan, the sample
prompt sizes and kohya_ss.json: a dataset's 640 or [640, 512], the training config's "640" or "640,512" (used where
no dataset sets one), and a clear error naming the key for anything kohya would not read."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from onetwo.kohya.buckets import make_bucket_resolutions, nearest_bucket, parse_resolution

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def templates_without_dataset_resolution(root: Path) -> str:
    shutil.copytree(TEMPLATES, root / "tpl")
    for file in (root / "tpl").glob("dataset-*.toml"):
        file.write_text(re.sub(r"(?m)^resolution = .*\n", "", file.read_text(encoding="utf-8")), encoding="utf-8")
    return "tpl"


def gui(stage: str = "stage1") -> dict:
    return json.loads(Path(f"work/{stage}/kohya_ss.json").read_text(encoding="utf-8"))


def prompt_sizes(stage: str = "stage1") -> set[tuple[int, int]]:
    text = Path(f"work/{stage}/sample_prompts.txt").read_text(encoding="utf-8")
    return {(int(width), int(height)) for width, height in re.findall(r"--w (\d+) --h (\d+)", text)}


@pytest.mark.parametrize(("value", "level", "size"), [
    (640, "dataset", (640, 640)), ([640, 512], "dataset", (640, 512)),
    ("640", "training", (640, 640)), ("640,512", "training", (640, 512)), (" 640, 512", "training", (640, 512)),
])
def test_the_forms_kohya_reads(value: object, level: str, size: tuple[int, int]) -> None:
    assert parse_resolution(value, level) == size


@pytest.mark.parametrize(("value", "level"), [
    ([640], "dataset"), ([640, 512, 3], "dataset"), ("640,512", "dataset"), (True, "dataset"), ([0, 512], "dataset"),
    (640, "training"), ("640x512", "training"), ("640,512,3", "training"), ("0", "training"),
])
def test_forms_kohya_rejects(value: object, level: str) -> None:
    with pytest.raises(ValueError, match="kohya takes"):
        parse_resolution(value, level)


def test_a_dataset_width_height_pair_reaches_the_gui_as_the_gui_writes_it(make_project, cli) -> None:
    make_project(stage1={"dataset": {"resolution": [640, 512]}})
    code, _, err = cli("render", "stage1", "--no-progress")
    assert code == 0, err
    assert gui()["max_resolution"] == "640,512"
    square = nearest_bucket(1, 1, make_bucket_resolutions((640, 512)))
    assert square in prompt_sizes()


@pytest.mark.parametrize(("value", "size"), [("640", (640, 640)), ("768,512", (768, 512))])
def test_a_training_resolution_is_used_where_no_dataset_sets_one(make_project, cli, tmp_path: Path, value: str,
                                                                  size: tuple[int, int]) -> None:
    make_project(project={"templates": templates_without_dataset_resolution(tmp_path)}, training={"resolution": value})
    code, _, err = cli("render", "stage1", "--no-progress")
    assert code == 0, err
    assert gui()["max_resolution"] == f"{size[0]},{size[1]}"
    # The sample prompts are sized from the buckets of that resolution (kohya's fallback), not a 512 default.
    assert nearest_bucket(1, 1, make_bucket_resolutions(size)) in prompt_sizes()


@pytest.mark.parametrize(("section", "value", "where"), [
    ({"stage1": {"dataset": {"resolution": [640, 512, 3]}}}, "[640, 512, 3]", "[stage1.dataset]"),
    ({"stage1": {"dataset": {"resolution": "640,512"}}}, "'640,512'", "[stage1.dataset]"),
    ({"training": {"resolution": "640x512"}}, "'640x512'", "[training]"),
])
def test_a_resolution_kohya_would_not_read_is_an_error_naming_it(make_project, cli, section: dict, value: str,
                                                                 where: str) -> None:
    file = make_project(**section)
    code, _, err = cli("render", "stage1", "--no-progress")
    assert code == 2 and "Traceback" not in err
    line = next(line for line in err.splitlines() if f"resolution = {value}" in line)
    assert str(file) in line and where in line and "kohya takes" in line


def test_set_checks_a_resolution_before_anything_is_written(make_project, cli) -> None:
    make_project()
    code, _, err = cli("render", "stage1", "--no-progress", "--set", "dataset.resolution=[640]")
    assert code == 2 and "--set dataset.resolution=[640]" in err and "kohya takes" in err
    assert not Path("work/stage1/config.toml").exists()
