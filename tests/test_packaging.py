"""A wheel holds only the packages pyproject.toml lists: a new subpackage left off works in an editable install and
is missing from a built one."""

from pathlib import Path

from onetwo.project.strict import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_under_onetwo_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "onetwo").rglob("__init__.py")}
    assert found == listed
