"""Regularization images are checked like the originals: one that cannot be decoded is named and left out of the
folder kohya reads and of the plan, one kohya would read differently is a normalised copy, and the folder is scanned
once per command."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from onetwo.data import scan as scan_module

ORIENTATION = 0x0112


def truncated_png(path: Path) -> None:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 64).convert("RGB").save(buffer, "PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def rotated_jpeg(path: Path) -> None:
    image = Image.new("RGB", (40, 80), (30, 60, 200))
    exif = image.getexif()
    exif[ORIENTATION] = 6  # kohya ignores it: upright, the image is 80x40
    image.save(path, quality=95, exif=exif)


@pytest.fixture
def regularization(make_project: Callable[..., Path], tmp_path: Path) -> Path:
    folder = tmp_path / "reg"
    folder.mkdir()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(folder / "r1.png")
    truncated_png(folder / "r2.png")
    rotated_jpeg(folder / "r3.jpg")
    make_project(regularization={"stage1": "reg", "class_tokens": "1girl"})
    return folder


def plan_row(text: str, label: str) -> tuple[int, str]:
    """(images, the row) of the plan table's row for `label`."""
    match = re.search(rf"^  {label} +(\d+) images x", text, re.M)
    assert match, text
    return int(match.group(1)), match.group(0)


def test_an_undecodable_regularization_image_is_named_and_left_out(regularization: Path, cli: Callable,
                                                                   tmp_path: Path) -> None:
    code, _, err = cli("render", "stage1", "--no-progress", "--workers", "1")
    assert code == 0, err
    assert re.search(r"r2\.png: skipped, cannot be decoded", err), err
    folder = tmp_path / "work" / "regularization" / "stage1"
    assert sorted(path.name for path in folder.iterdir() if not path.name.startswith(".")) == [
        "r1.png", "r1.txt", "r3.png", "r3.txt"]
    assert (folder / "r1.png").is_symlink() and not (folder / "r3.png").is_symlink()
    with Image.open(folder / "r3.png") as image:
        assert image.size == (80, 40)  # the normalised copy is upright, as onetwo sees it
    assert "1 linked, 1 normalised copy" in err
    assert plan_row(err, "regularization")[0] == 2
    cached = json.loads((tmp_path / "work" / "images.check.json").read_text(encoding="utf-8"))["images"]
    assert len(cached) == 6 + 3  # the characters' images and the regularization images: a rerun decodes none again


def test_check_names_the_undecodable_regularization_image(regularization: Path, cli: Callable) -> None:
    _, out, err = cli("check", "--no-progress", "--workers", "1")
    assert "r2.png: skipped, cannot be decoded" in err
    assert plan_row(out, "regularization")[0] == 2  # check prints its tables on stdout


def test_no_usable_regularization_image_is_an_error_naming_the_key(make_project: Callable[..., Path], cli: Callable,
                                                                  tmp_path: Path) -> None:
    (tmp_path / "reg").mkdir()
    truncated_png(tmp_path / "reg" / "bad.png")
    make_project(regularization={"stage1": "reg", "class_tokens": "1girl"})
    code, _, err = cli("render", "stage1", "--no-progress", "--workers", "1")
    assert code == 2
    assert str(tmp_path / "reg") in err and "regularization.stage1" in err and "bad.png" in err


def test_the_regularization_folder_is_scanned_once(regularization: Path, cli: Callable,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    listed: list[Path] = []
    real = scan_module._image_files

    def counting(folder: Path, recursive: bool) -> list[Path]:
        listed.append(folder)
        return real(folder, recursive)

    monkeypatch.setattr(scan_module, "_image_files", counting)
    code, _, err = cli("render", "stage1", "--no-progress", "--workers", "1")
    assert code == 0, err
    assert listed.count(regularization) == 1
