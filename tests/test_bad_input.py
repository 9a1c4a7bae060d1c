"""Bad input never gives a traceback: a clear error (exit 2, the file and the fix) or a logged skip."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import tomli_w
from PIL import Image

from onetwo.project.strict import tomllib
from tests.conftest import make_character, project_data


def write_project(tmp_path: Path, data: dict) -> None:
    (tmp_path / "onetwo.toml").write_text(tomli_w.dumps(data), encoding="utf-8")


def assert_clean_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert err.startswith("Error: ") or "\nError: " in err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def corrupt(path: Path) -> None:
    Image.effect_noise((100, 100), 60).save(path)
    data = bytearray(path.read_bytes())
    data[200:260] = bytes(60)
    path.write_bytes(bytes(data))


def truncated(path: Path) -> None:
    Image.effect_noise((300, 300), 60).convert("RGB").save(path.with_suffix(".jpg"), quality=90)
    data = path.with_suffix(".jpg").read_bytes()
    path.with_suffix(".jpg").unlink()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("name", "make", "why"),
    [
        ("zero.png", lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
        ("corrupt.png", corrupt, "cannot be decoded"),
        ("truncated.jpg", truncated, "cannot be decoded"),
        ("text.png", lambda p: p.write_text("hello"), "not an image Pillow can read"),
    ],
)
def test_broken_images_are_skipped_with_the_reason(make_project, cli, tmp_path: Path, name, make, why) -> None:
    make_project()
    make(tmp_path / "data" / "alice" / name)
    code, _, err = cli("composite")
    assert code == 0, err
    assert f"{name}: skipped, {why}" in err
    assert "alice: 4 images, 1 skipped" in err


def test_decompression_bomb_is_skipped(make_project, cli, tmp_path: Path, monkeypatch) -> None:
    make_project()
    Image.new("L", (1000, 1000)).save(tmp_path / "data" / "alice" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    code, _, err = cli("composite", "--workers", "1")
    assert code == 0, err
    assert "huge.png: skipped, larger than Pillow's decompression-bomb limit" in err


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA", "CMYK", "I;16", "L"])
def test_unusual_modes_are_used(make_project, cli, tmp_path: Path, mode: str) -> None:
    make_project()
    image = Image.new(mode, (100, 200))
    path = tmp_path / "data" / "alice" / ("odd.jpg" if mode == "CMYK" else "odd.png")
    image.save(path)
    code, _, err = cli("composite")
    assert code == 0 and "skipped" not in err, err


@pytest.mark.parametrize(
    ("caption", "outcome"),
    [
        (b"", "empty caption; the character token alone is used"),
        (b"\xef\xbb\xbf1girl, smile\r\n", None),
        (b"caf\xe9, smile", "caption is not UTF-8 text"),
    ],
)
def test_captions(make_project, cli, tmp_path: Path, caption: bytes, outcome: str | None) -> None:
    make_project()
    (tmp_path / "data" / "alice" / "img0.txt").write_bytes(caption)
    code, _, err = cli("composite")
    if outcome and "not UTF-8" in outcome:
        assert_clean_error(code, err, "img0.txt: caption is not UTF-8", "re-save it as UTF-8")
        return
    assert code == 0, err
    if outcome:
        assert outcome in err
    captions = sorted((tmp_path / "work" / "composites").glob("*.txt"))
    assert len(captions) == 4  # per_pair 4, one pair
    assert all("\ufeff" not in path.read_text(encoding="utf-8") and "\r" not in path.read_text(encoding="utf-8")
               for path in captions)


def test_missing_caption_uses_the_token(make_project, cli, tmp_path: Path) -> None:
    make_project()
    (tmp_path / "data" / "alice" / "img0.txt").unlink()
    code, _, err = cli("render", "stage1")
    assert code == 0, err
    assert "alice: 3 images, 1 without a caption" in err
    assert (tmp_path / "work" / "originals" / "alice" / "img0.txt").read_text() == "alice"


@pytest.mark.parametrize(
    ("setup", "fragments"),
    [
        (lambda tmp: shutil.rmtree(tmp / "data" / "bob"), ["data/bob: the images folder of character 'bob' does not"]),
        (lambda tmp: [p.unlink() for p in (tmp / "data" / "bob").iterdir()], ["data/bob: no images", "'bob'"]),
        (lambda tmp: Image.new("RGB", (9, 9)).save(tmp / "data" / "bob" / "img0.jpg"),
         ["img0.png: shares its name with img0.jpg", "rename one of them"]),
    ],
)
def test_folder_problems(make_project, cli, tmp_path: Path, setup, fragments) -> None:
    make_project()
    setup(tmp_path)
    assert_clean_error(*cli("composite")[::2], *fragments)


def test_symlinked_folder_is_followed_and_reported(make_project, cli, tmp_path: Path) -> None:
    make_project()
    shutil.move(tmp_path / "data" / "bob", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", tmp_path / "data" / "bob")
    out = cli("check")[1]
    assert f"bob: {tmp_path / 'data' / 'bob'} (a link to {tmp_path / 'elsewhere'})" in out
    assert cli("composite")[0] == 0


def test_duplicate_files_are_reported(make_project, cli, tmp_path: Path) -> None:
    make_project()
    shutil.copy(tmp_path / "data" / "alice" / "img1.png", tmp_path / "data" / "alice" / "copy.png")
    code, _, err = cli("composite")
    assert code == 0
    assert "copy.png: the same file as" in err or "img1.png: the same file as" in err
    assert "it will be trained on twice" in err


@pytest.mark.parametrize(
    ("names", "fragment"),
    [
        (["solo"], "needs at least two characters"),
        (["alice", "Alice"], "'Alice' is used by another character"),
        (["a,b", "c"], "must not contain ','"),
        (["a/b", "c"], "must not contain '/'"),
        (["../../evil", "c"], "must not contain '/'"),
        (["..\\evil", "c"], "must not contain '\\\\'"),
    ],
)
def test_bad_character_sets(cli, tmp_path: Path, names: list[str], fragment: str) -> None:
    write_project(tmp_path, project_data(names))
    assert_clean_error(*cli("composite")[::2], "onetwo.toml", fragment)


@pytest.mark.parametrize("name", ['o"neil', "o'neil", "hatsune miku", "初音ミク", ".."])
def test_odd_but_valid_names_stay_inside_the_work_dir(cli, tmp_path: Path, name: str) -> None:
    make_character(tmp_path / "data" / "one", 0)
    make_character(tmp_path / "data" / "two", 1)
    data = project_data([name, "b"])
    data["characters"][0]["images"] = "data/one"
    data["characters"][1]["images"] = "data/two"
    write_project(tmp_path, data)
    code, _, err = cli("render", "stage2")
    assert code == 0, err
    work = (tmp_path / "work").resolve()
    for path in work.rglob("*"):
        assert path.resolve(strict=False).is_relative_to(work) or path.is_symlink()
    captions = [path.read_text(encoding="utf-8") for path in (work / "composites").glob("*.txt")]
    assert any(caption.startswith(f"{name}/b/COMPOSITE") for caption in captions)
    assert cli("render", "stage1")[0] == 0
    dataset = tomllib.loads((work / "stage1" / "dataset.toml").read_text(encoding="utf-8"))
    assert dataset["datasets"][0]["subsets"][0]["class_tokens"] == name


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["project"].update(unknown=1), "project.unknown: unknown key"),
        (lambda d: d["composite"].update(per_pair="4"), "composite.per_pair: must be an integer"),
        (lambda d: d["project"].pop("name"), "project.name: missing"),
        (lambda d: d.update(stage1={"xformer": False}), "'xformer' is not an option of train_network.py"),
    ],
)
def test_project_file_problems(make_project, cli, tmp_path: Path, mutate, fragment: str) -> None:
    make_project()
    data = project_data(["alice", "bob"])
    mutate(data)
    write_project(tmp_path, data)
    assert_clean_error(*cli("train", "stage1", "--dry-run")[::2], fragment)


def test_stage2_without_stage1_output(make_project, cli, tmp_path: Path) -> None:
    make_project()
    (tmp_path / "model.safetensors").write_bytes(b"x")
    sd = tmp_path / "sd"
    sd.mkdir()
    (sd / "train_network.py").write_text("")
    data = project_data(["alice", "bob"])
    data["project"]["sd_scripts"] = "sd"
    write_project(tmp_path, data)
    assert_clean_error(*cli("train", "stage2")[::2], "demo-stage1.safetensors: stage 1's LoRA is not there yet",
                       "run `onetwo train stage1` first")


def tree_hashes(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def _build_in_child(project: str) -> None:
    from onetwo.cli import main

    os.chdir(Path(project).parent)
    main(["--project", project, "composite", "--workers", "1", "--no-progress"])


def test_a_killed_build_resumes_to_the_same_result(make_project, cli, tmp_path: Path) -> None:
    for index, name in enumerate(["alice", "bob"]):
        make_character(tmp_path / "data" / name, index, count=6, size=(1200, 1800))
    make_project(composite={"per_pair": 40, "width": 512, "height": 512, "workers": 1})
    assert cli("composite")[0] == 0
    reference = tree_hashes(tmp_path / "work" / "composites")
    shutil.rmtree(tmp_path / "work")

    child = multiprocessing.get_context("fork").Process(target=_build_in_child, args=[str(tmp_path / "onetwo.toml")])
    child.start()
    deadline = time.monotonic() + 60
    folder = tmp_path / "work" / "composites"
    while time.monotonic() < deadline and len(list(folder.glob("*.png")) if folder.is_dir() else []) < 10:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    partial = len(list(folder.glob("*.png")))
    assert 0 < partial < 40, "the kill should land mid-build"
    code, _, err = cli("composite")
    assert code == 0, err
    assert tree_hashes(folder) == reference
    assert not list(folder.glob(".*.tmp"))
