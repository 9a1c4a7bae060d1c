"""Where the file system refuses links, `originals = "link"` copies instead, says so with why, and does not copy
again on every run."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from onetwo.data import originals

RENDER = ("render", "stage1", "--no-progress", "--workers", "1")


def refuse_links(monkeypatch: pytest.MonkeyPatch) -> None:
    def symlink(*_: object, **__: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(originals.os, "symlink", symlink)


def originals_line(err: str) -> str:
    match = re.search(r"^originals: .*$", err, re.M)
    assert match, err
    return match.group(0)


def test_copies_made_because_links_fail_are_reported_as_copies(make_project: Callable[..., Path], cli: Callable,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    make_project()
    refuse_links(monkeypatch)
    code, _, err = cli(*RENDER)
    assert code == 0, err
    line = originals_line(err)
    assert "6 copied because the file system refused links" in line and os.strerror(errno.EPERM) in line
    assert "linked" not in line
    folder = tmp_path / "work" / "originals" / "alice"
    assert sorted(path.name for path in folder.glob("*.png")) == ["img0.png", "img1.png", "img2.png"]
    assert not any(path.is_symlink() for path in folder.iterdir())

    code, _, err = cli(*RENDER)
    assert code == 0, err
    line = originals_line(err)
    assert "6 copied because the file system refused links" in line and "(0 files updated)" in line


def test_links_that_work_are_reported_as_links(make_project: Callable[..., Path], cli: Callable) -> None:
    make_project()
    code, _, err = cli(*RENDER)
    assert code == 0, err
    line = originals_line(err)
    assert "6 linked" in line and "copied" not in line
