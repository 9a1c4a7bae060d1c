"""issue 17 §1: the model families as data; project.model is checked against them."""

from __future__ import annotations

import pytest

from onetwo.errors import OnetwoError
from onetwo.kohya.args import SDXL_ONLY_ARGS
from onetwo.kohya.families import FAMILIES, family_of_kind
from onetwo.kohya.render import read_toml
from onetwo.kohya.validate import validate_train_keys
from onetwo.project.config import REPO_ROOT, STAGES
from onetwo.project.file import load_project


def test_a_misspelt_model_names_the_families(make_project) -> None:
    with pytest.raises(OnetwoError) as caught:
        load_project(make_project(project={"model": "sdxll"}))
    expected = f"project.model: must be one of {', '.join(FAMILIES)}, got 'sdxll' (did you mean 'sdxl'?)"
    assert expected in str(caught.value)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_has_its_templates(make_project, name: str) -> None:
    family = FAMILIES[name]
    slots = {slot.key: f"{slot.key}.safetensors" for slot in family.files if slot.required}
    project = load_project(make_project(project={"model": name, **slots}))
    assert project.templates == REPO_ROOT / "templates" / family.templates
    assert project.train_script.name == family.train_script
    for stage in STAGES:
        assert (project.templates / f"dataset-{stage}.toml").is_file()
    train = read_toml(project.templates / "train.toml")
    flat = {key: value for section in train.values() for key, value in section.items()}
    assert validate_train_keys(flat, {}, name) == []


def test_the_arguments_are_the_families_own() -> None:
    key = next(iter(SDXL_ONLY_ARGS))
    assert validate_train_keys({key: True}, {}, "sdxl") == []
    assert validate_train_keys({key: True}, {}, "sd1")[0].startswith(f"template: {key!r} is not an option of "
                                                                     "train_network.py")


@pytest.mark.parametrize(("kind", "family"), [("sd1", "sd1"), ("sd2", "sd1"), ("sdxl", "sdxl"), ("lora", None),
                                              ("vae", None), ("anima_dit", "anima"), ("qwen3", None)])
def test_which_family_trains_on_a_kind(kind: str, family: str | None) -> None:
    found = family_of_kind(kind)
    assert (found.name if found else None) == family


def test_every_kind_belongs_to_one_family_at_most() -> None:
    kinds = [kind for family in FAMILIES.values() for kind in family.base_kinds]
    assert len(kinds) == len(set(kinds))


def test_no_branch_on_a_family_name_is_left_in_the_code() -> None:
    """The families are read from their declaration: no `model == "sdxl"` in onetwo's code."""
    sources = [path for path in (REPO_ROOT / "onetwo").rglob("*.py") if path.name != "families.py"]
    found = [f"{path.name}: {line.strip()}" for path in sources for line in path.read_text().splitlines()
             if any(f'{left} == "{name}"' in line for name in FAMILIES for left in ("model", "project_model"))]
    assert found == []
