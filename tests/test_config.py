from __future__ import annotations

from pathlib import Path

import pytest

from onetwo.errors import OnetwoError
from onetwo.project.file import load_project, name_problem, parse_project
from tests.conftest import project_data


def parse(data: dict, tmp_path: Path):
    return parse_project(data, tmp_path / "onetwo.toml")


def test_paths_resolve_against_the_project_file(tmp_path: Path) -> None:
    project = parse(project_data(["alice", "bob"]), tmp_path)
    assert project.base_model == (tmp_path / "model.safetensors").resolve()
    assert project.work_dir == (tmp_path / "work").resolve()
    assert project.characters[0].images == (tmp_path / "data" / "alice").resolve()
    assert project.lora_file("stage1") == (tmp_path / "out" / "demo-stage1.safetensors").resolve()
    assert project.composite.per_pair == 4


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["project"].update(colour="red"), "project.colour: unknown key"),
        (lambda d: d.update(stage3={}), "stage3: unknown key"),
        (lambda d: d["project"].pop("base_model"), "project.base_model: missing"),
        (lambda d: d["composite"].update(per_pair="many"), "composite.per_pair: must be an integer"),
        (lambda d: d["composite"].update(per_pair=0), "composite.per_pair: must be at least 1"),
        (lambda d: d["composite"].update(format="jpg"), "composite.format: must be one of png, webp"),
        (lambda d: d["composite"].update(caption="{left} only"), "composite.caption: must name every character"),
        (lambda d: d["composite"].update(caption="{lefty}"), "composite.caption: has an unknown or broken placeholder"),
        (lambda d: d["composite"].update(group_size=4), "composite.group_size: must be 2 (pairs) or 3"),
        (lambda d: d["composite"].pop("height"), "set both width and height, or neither"),
        (lambda d: d["composite"].update(mirror=2), "composite.mirror: is the share of composites mirrored"),
        (lambda d: d["project"].update(mode="parallel"), "project.mode: must be one of sequential, joint"),
        (lambda d: d["composite"].update(background="white"), "composite.background: must be a colour"),
        (lambda d: d["characters"][0].update(name="a,b"), "characters[0].name: 'a,b' must not contain ','"),
        (lambda d: d["characters"][0].update(name="a/b"), "must not contain '/'"),
        (lambda d: d["characters"][1].update(name="ALICE"), "characters[1].name: 'ALICE' is used by another"),
        (lambda d: d["characters"].pop(), "needs at least two characters"),
        (lambda d: d["characters"][0].update(repeats=True), "characters[0].repeats: must be an integer, got a bool"),
        (lambda d: d["project"].update(name="my project"), "project.name: 'my project' names output files"),
    ],
)
def test_each_problem_names_the_key(tmp_path: Path, mutate, expected: str) -> None:
    data = project_data(["alice", "bob"])
    mutate(data)
    with pytest.raises(OnetwoError) as error:
        parse(data, tmp_path)
    assert expected in str(error.value)
    assert str(tmp_path / "onetwo.toml") in str(error.value)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    data = project_data(["alice", "bob"])
    data["project"]["colour"] = "red"
    data["composite"]["per_pair"] = "x"
    data["characters"][0]["name"] = ""
    with pytest.raises(OnetwoError) as error:
        parse(data, tmp_path)
    assert len(error.value.problems) == 3


@pytest.mark.parametrize("name", ["uzuki", "hatsune miku", "初音ミク", "o'neil", 'say "hi"', "a.b"])
def test_acceptable_names(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", " lead", "a,b", "a/b", "a\\b", "a--b", "COMPOSITE", "{x}", "tab\there", "n chan",
                                  "W 2"])
def test_rejected_names(name: str) -> None:
    assert name_problem(name)


def test_slugs_are_safe_and_unique(tmp_path: Path) -> None:
    project = parse(project_data(["a b", "a_b", "..", "初音"]), tmp_path)
    slugs = [character.slug for character in project.characters]
    assert len(set(slugs)) == 4
    assert all("/" not in slug and slug not in ("", ".", "..") for slug in slugs)


def test_missing_and_broken_project_files(tmp_path: Path) -> None:
    with pytest.raises(OnetwoError, match="no such project file"):
        load_project(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[project\n", encoding="utf-8")
    with pytest.raises(OnetwoError, match="not valid TOML"):
        load_project(bad)


def test_stage_overrides_layer_training_then_stage(tmp_path: Path) -> None:
    stage2 = {"seed": 2, "dataset": {"resolution": 64}}
    data = project_data(["alice", "bob"], training={"seed": 1, "xformers": False}, stage2=stage2)
    project = parse(data, tmp_path)
    assert project.stage_overrides("stage1").train == {"seed": 1, "xformers": False}
    merged = project.stage_overrides("stage2")
    assert merged.train == {"seed": 2, "xformers": False}
    assert merged.dataset == {"resolution": 64}
