"""issue 9.8: the files onetwo writes honour the umask, and the recorded sd-scripts commit is the checkout's own."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from onetwo.kohya.provenance import sd_scripts_commit
from onetwo.kohya.render import read_toml

MakeProject = Callable[..., Path]
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.mark.parametrize("umask", [0o022, 0o027])
@pytest.mark.parametrize("originals", ["link", "copy"])
def test_files_onetwo_writes_honour_the_umask(make_project: MakeProject, cli, tmp_path: Path, umask: int,
                                              originals: str) -> None:
    make_project(project={"originals": originals})
    previous = os.umask(umask)
    try:
        for argv in (("render", "stage1"), ("render", "stage2"), ("preview",)):
            code, _, err = cli(*argv)
            assert code == 0, err
    finally:
        os.umask(previous)
    work = tmp_path / "work"
    files = [path for path in work.rglob("*") if path.is_file() and not path.is_symlink()]
    named = {path.relative_to(work).as_posix() for path in files}
    assert {"stage1/config.toml", "stage1/dataset.toml", "stage1/sample_prompts.txt", "stage2/config.toml",
            "composites.manifest.json", "preview.png", "originals/alice/img0.txt"} <= named
    assert any(name.startswith("composites/") and name.endswith(".png") for name in named)
    assert any(name.startswith("composites/") and name.endswith(".txt") for name in named)
    assert any(name.startswith("originals/alice/") and name.endswith(".json") for name in named)  # its manifest
    if originals == "copy":
        assert "originals/alice/img0.png" in named
    wrong = {path.relative_to(work).as_posix(): oct(stat.S_IMODE(path.stat().st_mode)) for path in files
             if stat.S_IMODE(path.stat().st_mode) != 0o666 & ~umask}
    assert wrong == {}, f"expected {oct(0o666 & ~umask)}"
    folders = [path for path in work.rglob("*") if path.is_dir()]
    assert {"stage1", "stage2", "composites", "originals/alice"} <= {str(path.relative_to(work)) for path in folders}
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o777 & ~umask for path in folders)


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=onetwo", "-c", "user.email=onetwo@example.invalid",
                           "-c", "init.defaultBranch=main", *args], cwd=folder, check=True, capture_output=True,
                          text=True)
    return done.stdout.strip()


def repository(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    git(folder, "init", "-q")
    (folder / "README").write_text(folder.name, encoding="utf-8")
    git(folder, "add", "README")
    git(folder, "commit", "-q", "-m", "first")
    return git(folder, "rev-parse", "HEAD")


@needs_git
def test_only_a_repository_of_its_own_reports_its_commit(tmp_path: Path) -> None:
    parent_head = repository(tmp_path / "onetwo")
    submodule = tmp_path / "onetwo" / "third_party" / "sd-scripts"
    submodule.mkdir(parents=True)  # what a clone without --recurse-submodules leaves
    nested_head = repository(tmp_path / "onetwo" / "vendor" / "sd-scripts")
    assert sd_scripts_commit(submodule) == "unknown"
    assert sd_scripts_commit(tmp_path / "onetwo" / "vendor" / "sd-scripts") == nested_head != parent_head
    assert sd_scripts_commit(tmp_path / "onetwo") == parent_head
    (tmp_path / "plain").mkdir()
    assert sd_scripts_commit(tmp_path / "plain") == "unknown"
    assert sd_scripts_commit(tmp_path / "missing") == "unknown"


@needs_git
def test_render_records_unknown_for_an_uninitialised_submodule(make_project: MakeProject, cli,
                                                                tmp_path: Path) -> None:
    repository(tmp_path)
    (tmp_path / "third_party" / "sd-scripts").mkdir(parents=True)
    make_project(project={"sd_scripts": "third_party/sd-scripts"})
    code, _, err = cli("render", "stage1")
    assert code == 0, err
    config = read_toml(tmp_path / "work" / "stage1" / "config.toml")
    flat = {key: value for section in config.values() if isinstance(section, dict) for key, value in section.items()}
    assert json.loads(flat["metadata_onetwo"])["sd_scripts_commit"] == "unknown"
