"""kohya's folder convention in full: `<repeats>_<name> <class>` folders, `.caption` files, a folder of such folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w
from PIL import Image

from onetwo.data.captions import single_caption, without_token
from onetwo.project.strict import tomllib
from tests.conftest import colour_of, make_character, project_data
from tests.sdscripts import needs_sdscripts, run_probe

RENDER = ("render", "stage1", "--no-progress", "--workers", "1")


def image(path: Path, index: int, caption: str | None = None, extension: str = ".txt") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (200, 300), colour_of(index, index)).save(path)
    if caption is not None:
        path.with_suffix(extension).write_text(caption, encoding="utf-8")


def kohya_dataset(root: Path) -> None:
    """img/10_alice girl and img/8_bob boy, as a kohya user has them: tags that repeat the token in every spelling."""
    image(root / "img" / "10_alice girl" / "a.png", 0, "Alice  Girl, 1girl, alice_girl, ALICE, smile, girl")
    image(root / "img" / "10_alice girl" / "b.png", 1)
    image(root / "img" / "8_bob boy" / "c.png", 2, "bob, Bob_Boy, 1boy, grin")


def write(root: Path, characters: list[dict], **sections: dict) -> Path:
    data = project_data(["alice", "bob"], **sections)
    data["characters"] = characters
    file = root / "onetwo.toml"
    file.write_text(tomli_w.dumps(data), encoding="utf-8")
    return file


def read_toml(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


KOHYA_CHARACTERS = [{"images": "img/10_alice girl"}, {"images": "img/8_bob boy"}]


def test_a_kohya_folder_gives_name_class_and_repeats(cli, tmp_path: Path) -> None:
    kohya_dataset(tmp_path)
    write(tmp_path, KOHYA_CHARACTERS)
    code, _, err = cli(*RENDER)
    assert code == 0, err
    subsets = read_toml(tmp_path / "work" / "stage1" / "dataset.toml")["datasets"][0]["subsets"]
    assert [(s["class_tokens"], s["num_repeats"], Path(s["image_dir"]).name) for s in subsets] == [
        ("alice girl", 10, "alice"), ("bob boy", 8, "bob")]
    originals = tmp_path / "work" / "originals"
    # the kept first token is kohya's `name class`; every spelling of it is dropped from the tags, `girl` alone is not
    assert (originals / "alice" / "a.txt").read_text(encoding="utf-8") == "alice girl, 1girl, smile, girl"
    assert (originals / "alice" / "b.txt").read_text(encoding="utf-8") == "alice girl"  # kohya's uncaptioned caption
    assert (originals / "bob" / "c.txt").read_text(encoding="utf-8") == "bob boy, 1boy, grin"
    prompts = (tmp_path / "work" / "stage1" / "sample_prompts.txt").read_text(encoding="utf-8").splitlines()
    assert prompts[0].startswith("alice girl, ") and prompts[1].startswith("bob boy, ")
    assert "alice: 2 images" in err and "repeats 10" in err
    config = read_toml(tmp_path / "work" / "stage1" / "config.toml")
    trigger = {key: value for section in config.values() if isinstance(section, dict) for key, value in section.items()}
    assert trigger["metadata_trigger_phrase"] == "alice girl, bob boy"  # what stage 1 trained, class included


def test_composite_sides_drop_the_token_too(cli, tmp_path: Path) -> None:
    kohya_dataset(tmp_path)
    write(tmp_path, KOHYA_CHARACTERS)
    assert cli("composite", "--no-progress", "--workers", "1")[0] == 0
    captions = [path.read_text(encoding="utf-8") for path in (tmp_path / "work" / "composites").glob("*.txt")]
    assert captions and all(caption.split(", ")[0] in ("alice/bob/COMPOSITE", "bob/alice/COMPOSITE")
                            for caption in captions)
    assert not [caption for caption in captions if "alice girl" in caption.casefold().replace("_", " ")
                or "bob boy" in caption.casefold().replace("_", " ") or "ALICE" in caption]


@pytest.mark.parametrize(
    ("entry", "token"),
    [
        ({"images": "img/10_alice girl", "name": "Alice"}, "Alice girl"),  # the folder still gives the class
        ({"images": "img/10_alice girl", "class": "1girl"}, "alice 1girl"),
        ({"images": "img/10_alice girl", "class": ""}, "alice"),
        ({"images": "img/10_alice girl", "repeats": 2}, "alice girl"),
    ],
)
def test_the_project_file_wins_over_the_folder_name(cli, tmp_path: Path, entry: dict, token: str) -> None:
    kohya_dataset(tmp_path)
    write(tmp_path, [entry, {"images": "img/8_bob boy"}])
    assert cli(*RENDER)[0] == 0
    subset = read_toml(tmp_path / "work" / "stage1" / "dataset.toml")["datasets"][0]["subsets"][0]
    assert subset["class_tokens"] == token and subset["num_repeats"] == entry.get("repeats", 10)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"images": "data/alice"}, "characters[0].name: missing; add it"),
        ({"images": "img/3_a{b} girl"}, "characters[0].images: 'a{b}' must not contain '{'"),
        ({"images": "img/3_alice girl", "class": "girl, solo"},
         "characters[0].class: 'girl, solo' must not contain ','"),
        ({"images": "data/alice", "name": "alice", "caption_extension": "txt"},
         "characters[0].caption_extension: must be a caption file extension like \".txt\""),
        ({"images": "data/alice", "name": "alice", "caption_extension": ".PNG"},
         "characters[0].caption_extension: must be a caption file extension"),
    ],
)
def test_what_the_folder_cannot_give_is_an_error(cli, tmp_path: Path, entry: dict, message: str) -> None:
    make_character(tmp_path / "data" / "alice", 0)
    make_character(tmp_path / "data" / "bob", 1)
    write(tmp_path, [entry, {"name": "bob", "images": "data/bob"}])
    code, _, err = cli("check", "--no-progress")
    assert code == 2 and message in err, err


def test_caption_files_are_read_by_sd_scripts_default_extension_too(cli, tmp_path: Path) -> None:
    image(tmp_path / "data" / "alice" / "a.png", 0, "1girl, from caption", extension=".caption")
    image(tmp_path / "data" / "alice" / "b.png", 1, "1girl, from txt")
    (tmp_path / "data" / "alice" / "b.caption").write_text("1girl, from b caption", encoding="utf-8")
    make_character(tmp_path / "data" / "bob", 1)
    write(tmp_path, [{"name": "alice", "images": "data/alice"}, {"name": "bob", "images": "data/bob"}])
    code, _, err = cli(*RENDER)
    assert code == 0, err
    folder = tmp_path / "work" / "originals" / "alice"
    assert (folder / "a.txt").read_text(encoding="utf-8") == "alice, 1girl, from caption"
    assert (folder / "b.txt").read_text(encoding="utf-8") == "alice, 1girl, from txt"
    both = tmp_path / "data" / "alice" / "b.txt"
    assert f"Warning: {both} and b.caption: two caption files for b.png; b.txt is used" in err
    assert 'caption_extension = ".caption"' in err


@pytest.mark.parametrize("where", ["project", "character"])
def test_caption_extension_picks_one(cli, tmp_path: Path, where: str) -> None:
    image(tmp_path / "data" / "alice" / "a.png", 0, "from txt")
    (tmp_path / "data" / "alice" / "a.caption").write_text("from caption", encoding="utf-8")
    image(tmp_path / "data" / "alice" / "b.png", 1, "only txt")
    make_character(tmp_path / "data" / "bob", 1, tags=None)
    (tmp_path / "data" / "bob" / "img0.caption").write_text("bob caption", encoding="utf-8")
    alice = {"name": "alice", "images": "data/alice"}
    if where == "character":
        alice["caption_extension"] = ".caption"
    write(tmp_path, [alice, {"name": "bob", "images": "data/bob"}],
          project={"caption_extension": ".caption"} if where == "project" else {})
    code, _, err = cli(*RENDER)
    assert code == 0, err
    assert "two caption files" not in err
    originals = tmp_path / "work" / "originals"
    assert (originals / "alice" / "a.txt").read_text(encoding="utf-8") == "alice, from caption"
    assert (originals / "alice" / "b.txt").read_text(encoding="utf-8") == "alice"  # its .txt is not the extension
    assert (originals / "bob" / "img0.txt").read_text(encoding="utf-8") == "bob, bob caption"  # auto reads .caption


@pytest.mark.parametrize("named", [True, False])
def test_a_folder_of_kohya_folders_is_an_error_that_shows_the_tables(cli, tmp_path: Path, named: bool) -> None:
    kohya_dataset(tmp_path)
    (tmp_path / "img" / "notes").mkdir()
    make_character(tmp_path / "data" / "bob", 1)
    parent = {"name": "duo", "images": "img"} if named else {"images": "img"}  # unnamed: caught with the project file
    write(tmp_path, [parent, {"name": "bob", "images": "data/bob"}])
    code, _, err = cli("check", "--no-progress")
    assert code == 2
    assert "holds kohya folders (10_alice girl, 8_bob boy), not images" in err
    assert "recursive" not in err
    snippet = err[err.index("\n[[characters]]"):]
    tables = tomllib.loads(snippet)["characters"]
    assert tables == [{"images": "img/10_alice girl"}, {"images": "img/8_bob boy"}]
    write(tmp_path, tables)  # what the error shows, pasted in, works
    assert cli(*RENDER)[0] == 0


@pytest.mark.parametrize(
    ("tags", "kept"),
    [
        (("alice", "Alice", "ALICE", " alice "), ()),
        (("alice girl", "Alice  Girl", "alice_girl", "ALICE_GIRL", "alice\tgirl"), ()),
        (("girl", "alice_smile", "girl alice", "alice girls"), ("girl", "alice_smile", "girl alice", "alice girls")),
    ],
)
def test_without_token_drops_the_name_and_name_class_in_any_case_and_spacing(tags, kept) -> None:
    assert without_token(tags, "alice", "girl") == kept


def test_single_caption_keeps_the_class_after_the_name() -> None:
    assert single_caption("{name}, {tags}", "alice", ("Alice_Girl", "1girl"), "girl") == "alice girl, 1girl"
    assert single_caption("{name}, {tags}", "alice", (), "girl") == "alice girl"
    assert single_caption("{name}, {tags}", "alice", ("smile",)) == "alice, smile"


@pytest.mark.sdscripts
@needs_sdscripts
def test_kohya_reads_the_token_repeats_and_captions(cli, tmp_path: Path) -> None:
    """sd-scripts' own dataset code, on the rendered files: what kohya's folder convention would have given."""
    kohya_dataset(tmp_path)
    write(tmp_path, KOHYA_CHARACTERS)
    assert cli(*RENDER)[0] == 0
    stage = tmp_path / "work" / "stage1"
    job = {"config": str(stage / "config.toml"), "dataset": str(stage / "dataset.toml"), "images": True}
    result = run_probe({"jobs": {"stage1": job}}, tmp_path / "probe")["stage1"]
    assert result["dataset_problems"] == [], result["dataset_problems"]
    (dataset,) = result["datasets"]
    assert [(s["class_tokens"], s["num_repeats"], s["keep_tokens"]) for s in dataset["subsets"]] == [
        ("alice girl", 10, 1), ("bob boy", 8, 1)]
    captions = {Path(path).stem: item["caption"] for path, item in dataset["images"].items()}
    assert captions == {"a": "alice girl, 1girl, smile, girl", "b": "alice girl", "c": "bob boy, 1boy, grin"}


def test_a_bad_project_caption_extension_is_reported_once(cli, make_project) -> None:
    make_project(project={"caption_extension": "caption"})
    code, _, err = cli("check", "--no-progress")
    assert code == 2 and err.count("caption_extension: must be a caption file extension") == 1, err
    assert "project.caption_extension" in err
