"""Tests write nothing outside their temp dirs: HOME, the XDG folders and the caches of the libraries onetwo and
sd-scripts use point into the run's temp dir, for every test and for the fixtures of a whole module."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from pathlib import Path

import pytest

from onetwo.trainer.python import cache_file_for, probe_cache_dir
from tests.model_files import SD1_KEYS, write_safetensors
from tests.venvs import bare_venv

REDIRECTED = ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "HF_HOME",
              "TORCHINDUCTOR_CACHE_DIR")
ACCOUNT_HOME = Path(pwd.getpwuid(os.getuid()).pw_dir)


@pytest.fixture(scope="module")
def module_home() -> str:
    """What a module-scoped fixture (as the end-to-end runs are) sees: it is set up before any test's own fixture."""
    return os.environ["HOME"]


def test_home_and_caches_are_inside_the_runs_temp_dir(tmp_path_factory: pytest.TempPathFactory,
                                                      module_home: str) -> None:
    base = tmp_path_factory.getbasetemp()
    for name in REDIRECTED:
        assert Path(os.environ.get(name, ACCOUNT_HOME)).is_relative_to(base), (name, os.environ.get(name))
    assert Path(module_home).is_relative_to(base) and Path.home().is_relative_to(base)
    assert "HF_HUB_CACHE" not in os.environ and "TORCH_HOME" not in os.environ  # they follow HF_HOME and the cache
    assert probe_cache_dir().is_relative_to(base)


def test_a_probe_through_the_cli_lands_in_the_temp_cache_not_the_users(
        make_project: Callable[..., Path], cli, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    python = str(bare_venv(tmp_path / "venv"))  # no torch: a quick probe, of a path no other run has probed
    write_safetensors(tmp_path / "model.safetensors", SD1_KEYS)
    make_project(project={"python": python})
    assert cli("check", "--no-progress")[0] == 2  # that Python lacks torch
    assert cache_file_for(probe_cache_dir(), python).is_file()
    assert probe_cache_dir().is_relative_to(tmp_path_factory.getbasetemp())
    assert not cache_file_for(ACCOUNT_HOME / ".cache" / "onetwo" / "trainer-probe", python).exists()
