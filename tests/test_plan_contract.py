"""The plan's batches per epoch equal the len() of the dataset kohya builds from the same rendered files.

Each project is rendered through the real CLI (which prints the plan), then sd-scripts' own config_util builds the
dataset group from the rendered dataset TOML in a subprocess (tests/sdscripts.py `probe`): its images, repeats,
regularization fill, buckets and batches.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from PIL import Image

from onetwo.cli import main
from tests.sdscripts import SD_SCRIPTS, needs_sdscripts, run_probe

pytestmark = [pytest.mark.sdscripts, needs_sdscripts]

# Aspects that land in several buckets at 256 px, so batches differ from ceil(images x repeats / batch).
SIZES = ((200, 300), (300, 200), (256, 256), (400, 100), (100, 400), (310, 290), (640, 480))
BUCKETS = {"resolution": 256, "min_bucket_reso": 64, "max_bucket_reso": 512}
CASES: dict[str, dict[str, Any]] = {
    "stage1-regularization": {"stage": "stage1", "sets": ["dataset.batch_size=3"],
                              "project": {"regularization": {"stage1": "reg", "class_tokens": "1girl",
                                                             "repeats": 2}}},
    "stage1-no-upscale": {"stage": "stage1", "sets": ["dataset.batch_size=2", "dataset.bucket_no_upscale=true",
                                                      "gradient_accumulation_steps=2"], "project": {}},
    "stage1-many-reg": {"stage": "stage1", "sets": ["dataset.batch_size=4"],
                        "project": {"regularization": {"stage1": "bigreg", "class_tokens": "1boy"}}},
    "stage2-replay": {"stage": "stage2", "sets": ["dataset.batch_size=3", "max_train_epochs=3"],
                      "project": {"project": {"replay": 0.5}, "composite": {"per_pair": 5}}},
    "joint": {"stage": "joint", "sets": [], "project": {"project": {"mode": "joint"}, "composite": {"per_pair": 3}}},
}


def write_images(folder: Path, sizes: tuple[tuple[int, int], ...], colour: tuple[int, int, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, size in enumerate(sizes):
        Image.new("RGB", size, colour).save(folder / f"i{index}.png")
        (folder / f"i{index}.txt").write_text(f"1girl, pose{index}", encoding="utf-8")


def write_case(root: Path, case: dict[str, Any]) -> Path:
    write_images(root / "data" / "3_alice", SIZES, (200, 40, 40))
    write_images(root / "data" / "bob", SIZES[2:], (40, 40, 200))
    write_images(root / "reg", SIZES[:3], (90, 90, 90))
    write_images(root / "bigreg", SIZES * 6, (90, 90, 90))
    (root / "model.safetensors").write_bytes(b"")
    data: dict[str, Any] = {
        "project": {"name": "plan", "base_model": "model.safetensors", "sd_scripts": str(SD_SCRIPTS)},
        "characters": [{"name": "alice", "images": "data/3_alice"}, {"name": "bob", "images": "data/bob",
                                                                     "repeats": 2}],
        "composite": {"per_pair": 4, "workers": 1},
        "stage1": {"dataset": BUCKETS}, "stage2": {"dataset": BUCKETS}, "joint": {"dataset": BUCKETS},
    }
    for key, value in case["project"].items():
        data[key] = {**data.get(key, {}), **value}
    file = root / "onetwo.toml"
    file.write_text(tomli_w.dumps(data), encoding="utf-8")
    return file


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every case rendered through the CLI (its printed plan kept), then one probe builds all their datasets."""
    root = tmp_path_factory.mktemp("plans")
    printed, jobs = {}, {}
    for name, case in CASES.items():
        file = write_case(root / name, case)
        sets = [part for item in case["sets"] for part in ("--set", item)]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["--project", str(file), "render", case["stage"], "--no-progress", *sets]) == 0
        printed[name] = err.getvalue()
        folder = root / name / "build" / case["stage"]
        jobs[name] = {"config": str(folder / "config.toml"), "dataset": str(folder / "dataset.toml"), "images": True}
    results = run_probe({"jobs": jobs}, root / "probe")
    return {name: (printed[name], results[name]) for name in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_plan_counts_what_kohya_builds(name: str, built: dict[str, tuple[str, dict[str, Any]]]) -> None:
    case = CASES[name]
    err, result = built[name]
    batches = re.search(r"steps per epoch\s+(\d+) \((\d+) batches", err)
    total = re.search(r"total steps\s+(\d+) \((\d+) epochs?\)", err)
    assert batches and total, err
    assert not result["dataset_problems"], result["dataset_problems"]
    assert int(batches.group(2)) == sum(dataset["batches"] for dataset in result["datasets"])
    trained = [int(value) for value in re.findall(r"repeats = +(\d+)$", err, re.M)]
    assert sum(trained) == sum(dataset["num_train_images"] for dataset in result["datasets"])
    registered_reg = sum(image["num_repeats"] for dataset in result["datasets"]
                         for path, image in dataset["images"].items() if "regularization" in Path(path).parts)
    planned_reg = [int(value) for value in re.findall(r"repeats = +(\d+) +regularization$", err, re.M)]
    assert sum(planned_reg) == registered_reg
    assert bool(planned_reg) == ("regularization" in case["project"])
    accumulation = 2 if "gradient_accumulation_steps=2" in case["sets"] else 1
    per_epoch = -(-int(batches.group(2)) // accumulation)
    assert int(batches.group(1)) == per_epoch
    epochs = 3 if "max_train_epochs=3" in case["sets"] else 40  # the template's 40 unless --set
    assert (int(total.group(1)), int(total.group(2))) == (epochs * per_epoch, epochs)
