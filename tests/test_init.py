"""`onetwo init [FOLDER]`: a commented project file from a folder of character folders, that loads, that `check`
reports the base model placeholder of, and that passes `check` once the base model is filled in."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import tomli_w
from PIL import Image

from onetwo.data.scan import scan_project
from onetwo.project.file import load_project
from onetwo.project.init_file import BASE_MODEL_PLACEHOLDER, project_name_for, survey
from onetwo.project.strict import tomllib
from tests.conftest import missing_facts
from tests.sdscripts import ACCELERATE_CPU, SD_SCRIPTS, TRAINING_CPU, needs_sdscripts


def images(folder: Path, count: int, captions: dict[int, tuple[str, str]] | None = None) -> None:
    """`count` small PNGs; `captions` maps an index to (extension, text)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.new("RGB", (48, 96), (40 * index, 120, 200)).save(folder / f"{index}.png")
    for index, (extension, text) in (captions or {}).items():
        (folder / f"{index}{extension}").write_text(text, encoding="utf-8")


def kohya_dataset(root: Path) -> None:
    """kohya's layout: `.caption` files for alice (sd-scripts' default), `.txt` for bob, one uncaptioned image."""
    images(root / "img" / "10_alice girl", 3, {0: (".caption", "1girl, smile"), 1: (".caption", "1girl, blush")})
    images(root / "img" / "8_bob boy", 2, {0: (".txt", "1boy"), 1: (".txt", "1boy, hat")})
    (root / "img" / "notes").mkdir()


def test_init_writes_a_commented_project_from_kohya_folders(cli, tmp_path: Path) -> None:
    kohya_dataset(tmp_path)
    code, _, err = cli("init", "img")
    assert code == 0, err
    assert "alice (girl): 3 images, repeats 10" in err and "set project.base_model" in err
    text = (tmp_path / "onetwo.toml").read_text(encoding="utf-8")
    assert tomllib.loads(text) == {
        "project": {"name": project_name_for(tmp_path), "base_model": BASE_MODEL_PLACEHOLDER, "work_dir": "build",
                    "output_dir": "output"},
        "characters": [
            {"name": "alice", "class": "girl", "images": "img/10_alice girl", "repeats": 10},
            {"name": "bob", "class": "boy", "images": "img/8_bob boy", "repeats": 8},
        ],
        "composite": {"per_pair": 40},
    }
    lines = text.splitlines()
    alice = lines.index('name = "alice"') - 2  # the comment above [[characters]]
    assert lines[alice].startswith("# 10_alice girl: ")
    assert not missing_facts(lines[alice], "3 images", "0 .txt, 2 .caption", "1 without one", "`alice girl`")
    assert "# 8_bob boy: 2 images; caption files: 2 .txt, 0 .caption; 0 without one" in text
    assert "#   notes/: no images" in text and "Replace the placeholder." in text

    project = load_project(tmp_path / "onetwo.toml")
    assert [(c.name, c.class_token, c.repeats) for c in project.characters] == [("alice", "girl", 10),
                                                                               ("bob", "boy", 8)]
    alice_scan = scan_project(project)[0]
    assert sorted(image.tags for image in alice_scan.images) == [(), ("1girl", "blush"), ("1girl", "smile")]


def test_check_names_the_base_model_placeholder(cli, tmp_path: Path) -> None:
    kohya_dataset(tmp_path)
    assert cli("init", "img")[0] == 0
    code, _, err = cli("check")
    assert code == 2
    assert f"{tmp_path / BASE_MODEL_PLACEHOLDER}: base model not found; fix project.base_model" in err, err


def test_init_never_overwrites(cli, tmp_path: Path) -> None:
    kohya_dataset(tmp_path)
    (tmp_path / "onetwo.toml").write_text("# mine\n", encoding="utf-8")
    code, _, err = cli("init", "img")
    assert code == 2 and "Traceback" not in err
    assert f"Error: {tmp_path / 'onetwo.toml'}: already exists" in err and "-o FILE" in err
    assert (tmp_path / "onetwo.toml").read_text(encoding="utf-8") == "# mine\n"


def test_out_file_elsewhere_gets_paths_relative_to_itself(cli, tmp_path: Path) -> None:
    kohya_dataset(tmp_path)
    assert cli("init", "img", "-o", "projects/duo.toml")[0] == 0
    data = tomllib.loads((tmp_path / "projects" / "duo.toml").read_text(encoding="utf-8"))
    assert [c["images"] for c in data["characters"]] == ["../img/10_alice girl", "../img/8_bob boy"]
    assert data["project"]["name"] == "projects"
    project = load_project(tmp_path / "projects" / "duo.toml")
    assert project.characters[0].images == tmp_path / "img" / "10_alice girl"


def test_plain_folders_in_the_current_folder(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images(tmp_path / "duo" / "aoi", 3, {0: (".txt", "1girl"), 1: (".txt", "1girl"), 2: (".caption", "1girl")})
    (tmp_path / "duo" / "aoi" / "1.caption").write_text("1girl, smile", encoding="utf-8")
    images(tmp_path / "duo" / "beni" / "set1", 2)  # images only in a subfolder: recursive
    images(tmp_path / "duo" / "build" / "composites", 2)  # onetwo's own output is never a character
    monkeypatch.chdir(tmp_path / "duo")
    assert cli("init")[0] == 0
    text = (tmp_path / "duo" / "onetwo.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    assert data["characters"] == [{"name": "aoi", "images": "aoi"},
                                  {"name": "beni", "images": "beni", "recursive": True}]
    assert "#   build/: onetwo's own output folder" in text and "2 images (in subfolders)" in text
    assert "# aoi: 3 images; caption files: 2 .txt, 2 .caption; 0 without one" in text
    assert "# 1 image(s) with both a .txt and a .caption file: set caption_extension" in text
    assert [c.name for c in load_project(tmp_path / "duo" / "onetwo.toml").characters] == ["aoi", "beni"]


def test_unusable_and_repeated_names_are_made_valid_with_a_note(tmp_path: Path) -> None:
    images(tmp_path / "img" / "10_alice girl", 1)
    images(tmp_path / "img" / "5_alice girl", 1)
    images(tmp_path / "img" / "3_a,b", 1)
    found, _ = survey(tmp_path / "img", tmp_path)
    assert [(c.name, c.repeats) for c in found] == [("alice", 10), ("a_b", 3), ("alice_2", 5)]
    assert "written as 'a_b'" in found[1].notes[0] and "written as 'alice_2'" in found[2].notes[0]


@pytest.mark.parametrize(
    ("setup", "fragments"),
    [
        (lambda root: images(root / "img" / "10_alice girl", 2), ["has 1 subfolder(s) with images", "at least two"]),
        (lambda root: images(root / "img", 3), ["holds 3 images itself", "one folder per character"]),
        (lambda root: (root / "img").write_text("x"), ["img: not a folder"]),
    ],
)
def test_init_explains_a_folder_that_is_not_a_folder_of_characters(cli, tmp_path: Path, setup, fragments) -> None:
    setup(tmp_path)
    code, _, err = cli("init", "img")
    assert code == 2 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    assert not (tmp_path / "onetwo.toml").exists()


def tiny_sd1_checkpoint(path: Path) -> None:
    """A .safetensors whose header has the key names of an SD1 checkpoint (UNet and CLIP text encoder): what
    `check` reads, without a model's gigabytes."""
    tensors = {"model.diffusion_model.input_blocks.0.0.weight": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]},
               "cond_stage_model.transformer.text_model.final_layer_norm.weight":
                   {"dtype": "F16", "shape": [1], "data_offsets": [2, 4]}}
    header = json.dumps(tensors).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))


@pytest.mark.sdscripts
@needs_sdscripts
def test_the_written_file_passes_check_once_the_base_model_is_filled(cli, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONETWO_SD_SCRIPTS", str(SD_SCRIPTS))
    kohya_dataset(tmp_path)
    assert cli("init", "img")[0] == 0
    tiny_sd1_checkpoint(tmp_path / "models" / "sd15.safetensors")
    file = tmp_path / "onetwo.toml"
    text = file.read_text(encoding="utf-8")
    placeholder = tomli_w.dumps({"base_model": BASE_MODEL_PLACEHOLDER})
    assert placeholder in text
    text = text.replace(placeholder, tomli_w.dumps({"base_model": "models/sd15.safetensors"}))
    # this machine has no GPU: the CPU settings a user without one adds (fp16 and xformers need CUDA)
    text += "\n" + tomli_w.dumps({"accelerate": ACCELERATE_CPU, "training": TRAINING_CPU})
    file.write_text(text, encoding="utf-8")
    code, out, err = cli("check")
    assert code == 0, err
    assert "check: no problems found" in err and "alice: " in out and "bob: " in out
