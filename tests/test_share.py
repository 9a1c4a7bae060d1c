"""`[composite] share`: solved into num_repeats, shown in the plan table, refused where it cannot mean anything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomli_w
import tomllib

from onetwo.kohya.share import CLOSE_ENOUGH, solve_share
from tests.maskkit import make_characters


@pytest.mark.parametrize("composites, replay_views, share", [
    (120, 10, 0.25), (120, 10, 0.9), (12, 30, 0.2), (6, 3, 0.5), (240, 20, 0.13), (80, 60, 0.4)])
def test_solved_share_is_within_a_point(composites: int, replay_views: int, share: float) -> None:
    repeats, multiplier = solve_share(composites, replay_views, share)
    views = composites * repeats + replay_views * multiplier
    assert abs(composites * repeats / views - share) <= CLOSE_ENOUGH
    for fewer_repeats in range(1, repeats + 1):  # no shorter epoch gets as close
        for fewer_multiplier in range(1, multiplier + 1):
            shorter = composites * fewer_repeats + replay_views * fewer_multiplier
            if shorter < views:
                assert abs(composites * fewer_repeats / shorter - share) > CLOSE_ENOUGH


def write_project(root: Path, composite: dict, replay: float = 1.0, **project: object) -> None:
    data = {"project": {"name": "demo", "base_model": "model.safetensors", "work_dir": "work", "output_dir": "out",
                        "replay": replay, **project},
            "characters": [{"name": "alice", "images": "data/alice", "repeats": 2},
                           {"name": "bob", "images": "data/bob"}],
            "composite": {"per_pair": 20, "workers": 1, "width": 128, "height": 128, **composite}}
    (root / "onetwo.toml").write_text(tomli_w.dumps(data), encoding="utf-8")


def test_share_reaches_the_dataset_and_the_plan_table(tmp_path, cli) -> None:
    make_characters(tmp_path / "data", ["alice", "bob"], count=4, size=(64, 96))
    write_project(tmp_path, {"share": 0.25})
    code, _, err = cli("render", "stage2", "--no-progress")
    assert code == 0, err
    dataset = tomllib.loads((tmp_path / "work" / "stage2" / "dataset.toml").read_text(encoding="utf-8"))
    repeats = {Path(subset["image_dir"]).name: subset["num_repeats"] for subset in dataset["datasets"][0]["subsets"]}
    views = 20 * repeats["composites"] + 4 * repeats["alice"] + 4 * repeats["bob"]
    assert abs(20 * repeats["composites"] / views - 0.25) <= CLOSE_ENOUGH
    assert repeats["alice"] == 2 * repeats["bob"]  # each character's own repeats keep their ratio
    line = re.search(r"composite share\s+([\d.]+)% of (\d+) image views \(composite.share 0.25\)", err)
    assert line and int(line.group(2)) == views
    assert float(line.group(1)) == pytest.approx(100 * 20 * repeats["composites"] / views, abs=0.05)


def test_without_share_the_repeats_are_as_set(tmp_path, cli) -> None:
    make_characters(tmp_path / "data", ["alice", "bob"], count=4, size=(64, 96))
    write_project(tmp_path, {"repeats": 3}, replay=0.5)
    assert cli("render", "stage2", "--no-progress")[0] == 0
    dataset = tomllib.loads((tmp_path / "work" / "stage2" / "dataset.toml").read_text(encoding="utf-8"))
    repeats = {Path(subset["image_dir"]).name: subset["num_repeats"] for subset in dataset["datasets"][0]["subsets"]}
    assert repeats == {"composites": 3, "alice": 2, "bob": 1}


@pytest.mark.parametrize("composite, replay, project, fact", [
    ({"share": 0.3}, 0.0, {}, "set project.replay"),
    ({"share": 1.0}, 0.5, {}, "remove one of them"),
    ({"share": 0.3, "repeats": 2}, 0.5, {}, "remove composite.repeats"),
    ({"share": 0}, 0.5, {}, "must be above 0"),
    ({"share": 1.5}, 0.5, {}, "composite.share"),
    ({"share": 0.3}, 0.5, {"mode": "joint"}, "joint mode has no stage 2")])
def test_share_that_cannot_be_met(tmp_path, cli, composite, replay, project, fact) -> None:
    make_characters(tmp_path / "data", ["alice", "bob"], count=1, size=(64, 96))
    write_project(tmp_path, composite, replay=replay, **project)
    code, _, err = cli("render", "stage2", "--no-progress")
    assert code == 2 and "composite.share" in err and fact in err
