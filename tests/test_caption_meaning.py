"""Captions and prompts that say what they mean: a tagless side keeps its place, count tags are merged once, names
with brackets are escaped where a prompt parser reads them, and `check` warns about captions kohya reads otherwise
than their writer meant."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import pytest
import tomli_w

from onetwo.data.caption_check import caption_warnings
from onetwo.data.captions import composite_caption, merge_count_tags, prompt_escape, real_tokenizer, weighting_syntax
from onetwo.data.scan import scan_project
from onetwo.project.file import load_project
from onetwo.project.strict import tomllib
from tests.conftest import make_character, project_data
from tests.sdscripts import SD_SCRIPTS

TEMPLATE = "{left}/{right}/COMPOSITE, {left_tags}, {right_tags}"


@pytest.mark.parametrize(
    ("sides", "front", "rest"),
    [
        ((["1girl", "pink hair"], ["1girl", "red eyes"]), ("2girls",), [("pink hair",), ("red eyes",)]),
        ((["1girl"], ["1boy"]), ("1girl", "1boy"), [(), ()]),
        ((["1boy"], ["1girl"]), ("1girl", "1boy"), [(), ()]),  # girls first, whatever the side order
        ((["1boy"], ["1boy"]), ("2boys",), [(), ()]),
        ((["2girls"], ["1girl"]), ("3girls",), [(), ()]),
        ((["1girl"], ["6+girls"]), ("6+girls",), [(), ()]),
        ((["1other"], ["1girl"]), ("1girl", "1other"), [(), ()]),
        ((["1girl", "solo", "smile"], ["1girl", "solo_focus"]), ("2girls",), [("smile",), ()]),
        ((["1Girl", "SOLO"], ["1girl"]), ("2girls",), [(), ()]),  # any case
        ((["1girl", "1boy"], ["1girl"]), ("2girls", "1boy"), [(), ()]),
        ((["1girl"], ["1girl"], ["1boy"]), ("2girls", "1boy"), [(), (), ()]),  # a trio
        # a side that does not count its figures: nothing can be summed, each side keeps its own (solo still goes)
        ((["1girl", "solo"], ["smile"]), (), [("1girl",), ("smile",)]),
        ((["1girl"], []), (), [("1girl",), ()]),
        ((["multiple girls"], ["1girl"]), (), [("multiple girls",), ("1girl",)]),
        ((["smile"], ["blush"]), (), [("smile",), ("blush",)]),
    ],
)
def test_count_tags_merge_once_at_the_front(sides, front, rest) -> None:
    assert merge_count_tags(sides) == (front, rest)


@pytest.mark.parametrize(
    ("names", "tags", "stand_ins", "caption"),
    [
        # the case: bob has no tags, and must not hand his place to alice's pink hair
        (("bob", "alice"), ((), ("1girl", "pink_hair")), ("boy", "girl"), "bob/alice/COMPOSITE, boy, 1girl, pink_hair"),
        (("bob", "alice"), ((), ("1girl", "pink_hair")), (), "bob/alice/COMPOSITE, bob, 1girl, pink_hair"),
        (("bob", "alice"), (("bob",), ("pink_hair",)), (), "bob/alice/COMPOSITE, bob, pink_hair"),  # own token only
        (("a", "b"), (("1girl", "solo", "smile"), ("1girl", "blush")), (), "a/b/COMPOSITE, 2girls, smile, blush"),
        (("a", "b"), (("1girl", "solo"), ("1boy", "red")), ("girl", "boy"), "a/b/COMPOSITE, 1girl, 1boy, girl, red"),
    ],
)
def test_composite_caption_keeps_every_side(names, tags, stand_ins, caption) -> None:
    assert composite_caption(TEMPLATE, names, tags, stand_ins) == caption


def sd_scripts_attention_parser():
    """sd-scripts' own `parse_prompt_attention` (the sampler's prompt parser), lifted from its source without
    importing the module, which would load torch and diffusers."""
    source = SD_SCRIPTS / "library" / "lpw_stable_diffusion.py"
    if not source.is_file():
        pytest.skip(f"sd-scripts checkout not found at {SD_SCRIPTS}: run `make setup`")
    namespace: dict = {"re": re}
    with warnings.catch_warnings():  # its docstring holds `\(`, an invalid escape in a plain string
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(source.read_text(encoding="utf-8"))
        wanted = [node for node in tree.body
                  if (isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == ["re_attention"])
                  or (isinstance(node, ast.FunctionDef) and node.name == "parse_prompt_attention")]
        assert len(wanted) == 2, "sd-scripts moved its prompt parser"
        code = compile(ast.Module(body=wanted, type_ignores=[]), str(source), "exec")
    exec(code, namespace)
    return namespace["parse_prompt_attention"]


@pytest.mark.sdscripts  # reads the checkout's prompt parser
@pytest.mark.parametrize("text", ["rin_(fate)", "rin_(fate)/alice/COMPOSITE, hat_(object)", "[tag]", "a\\b",
                                  "(smile:1.2)", "plain, tags", "tohsaka_rin_(fate/stay_night)"])
def test_escaped_prompt_reads_as_the_literal_caption_in_kohyas_parser(text: str) -> None:
    parse = sd_scripts_attention_parser()
    assert parse(prompt_escape(text)) == [[text, 1.0]]
    if "(" in text:
        assert parse(text) != [[text, 1.0]], "the unescaped text would be read as a weight"


@pytest.mark.parametrize(
    ("tag", "what"),
    [("(smile:1.2)", "a weight"), ("(smile: 0.8)", "a weight"), ("a (b:1.1) c", "a weight"),
     ("(smile)", "emphasis brackets"), ("((smile))", "emphasis brackets"), ("[smile]", "emphasis brackets"),
     ("{smile}", "emphasis brackets"), ("rin_\\(fate\\)", "escaped brackets"),
     ("rin_(fate)", None), ("hat_(object)", None), (":)", None), ("smile", None), ("^_^", None)],
)
def test_weighting_syntax(tag: str, what: str | None) -> None:
    assert weighting_syntax(tag) == what


def write_project(tmp_path: Path, names: list[str], characters: list[dict] | None = None, **sections) -> Path:
    data = project_data(names, **sections)
    if characters:
        data["characters"] = characters
    file = tmp_path / "onetwo.toml"
    file.write_text(tomli_w.dumps(data), encoding="utf-8")
    return file


def test_a_tagless_side_keeps_its_place_in_built_captions(cli, tmp_path: Path) -> None:
    make_character(tmp_path / "data" / "alice", 0, tags="1girl, pink_hair")
    make_character(tmp_path / "data" / "bob", 1, tags=None)  # no caption files at all
    write_project(tmp_path, ["alice", "bob"], [{"name": "alice", "images": "data/alice"},
                                               {"name": "bob", "class": "boy", "images": "data/bob"}])
    assert cli("composite")[0] == 0
    captions = [path.read_text(encoding="utf-8") for path in (tmp_path / "work" / "composites").glob("*.txt")]
    assert len(captions) == 4
    for caption in captions:
        if caption.startswith("bob/alice/"):
            assert re.fullmatch(r"bob/alice/COMPOSITE, boy, 1girl, pink_hair, pose\d", caption), caption
        else:
            assert re.fullmatch(r"alice/bob/COMPOSITE, 1girl, pink_hair, pose\d, boy", caption), caption


def test_count_tags_are_merged_in_built_captions(make_project, cli, tmp_path: Path) -> None:
    make_project()  # every image tagged "1girl, smile, poseN"
    for path in (tmp_path / "data" / "bob").glob("*.txt"):
        path.write_text(path.read_text().replace("1girl", "1boy, solo"))
    assert cli("composite")[0] == 0
    built = sorted((tmp_path / "work" / "composites").glob("*.txt"))
    assert len(built) == 4  # per_pair 4, one pair
    for path in built:
        caption = path.read_text(encoding="utf-8")
        assert re.fullmatch(r"\w+/\w+/COMPOSITE, 1girl, 1boy, smile, pose\d, smile, pose\d", caption), caption


def test_bracketed_names_are_escaped_in_prompts_and_trigger_phrase_but_not_in_captions(cli, tmp_path: Path) -> None:
    make_character(tmp_path / "data" / "rin", 0, tags="1girl, hat_(object)")
    make_character(tmp_path / "data" / "saber", 1)
    write_project(tmp_path, [], [{"name": "rin_(fate)", "images": "data/rin"},
                                 {"name": "saber", "images": "data/saber"}])
    assert cli("render", "stage2")[0] == 0
    prompts = (tmp_path / "work" / "stage2" / "sample_prompts.txt").read_text(encoding="utf-8").splitlines()
    assert prompts[0].startswith("rin_\\(fate\\), ") and "hat_\\(object\\)" in prompts[0]
    assert any(line.startswith("saber/rin_\\(fate\\)/COMPOSITE, ") for line in prompts)
    assert all("--n lowres, bad anatomy" in line for line in prompts)  # the negative prompt is left as written
    config = tomllib.loads((tmp_path / "work" / "stage2" / "config.toml").read_text(encoding="utf-8"))
    flat = {key: value for section in config.values() if isinstance(section, dict) for key, value in section.items()}
    assert flat["metadata_trigger_phrase"].split(", ")[:2] == ["rin_\\(fate\\)", "saber"]
    # kohya trains on the caption text as it is (no prompt parsing without weighted_captions): names stay plain
    captions = [path.read_text(encoding="utf-8") for path in (tmp_path / "work" / "composites").glob("*.txt")]
    assert captions and all("rin_(fate)/" in caption for caption in captions)
    assert not any("\\" in caption for caption in captions)
    assert cli("render", "stage1")[0] == 0
    originals = [path.read_text(encoding="utf-8") for path in (tmp_path / "work" / "originals").rglob("*.txt")]
    assert originals and all(text.startswith(("rin_(fate), ", "saber, ")) for text in originals)


def test_check_warns_about_weighting_syntax_and_long_captions_naming_the_files(make_project, cli,
                                                                              tmp_path: Path) -> None:
    make_project()
    (tmp_path / "data" / "alice" / "img1.txt").write_text("1girl, (smile:1.2), [blush]", encoding="utf-8")
    (tmp_path / "data" / "bob" / "img2.txt").write_text("1girl, rin_\\(fate\\)", encoding="utf-8")
    long = tmp_path / "data" / "bob" / "img0.txt"
    long.write_text(", ".join(f"tag{index} word{index}" for index in range(120)), encoding="utf-8")
    _, _, err = cli("check")
    weighting = [line for line in err.splitlines() if "prompt-weighting syntax" in line]
    assert len(weighting) == 2, err
    alice, bob = sorted(weighting)
    assert str(tmp_path / "data" / "alice" / "img1.txt") in alice
    assert "`(smile:1.2)` (a weight), `[blush]` (emphasis brackets)" in alice and "literal text" in alice
    assert str(tmp_path / "data" / "bob" / "img2.txt") in bob and "(escaped brackets)" in bob
    too_long = [line for line in err.splitlines() if "over max_token_length" in line]
    assert len(too_long) == 1 and str(long) in too_long[0] and "max_token_length = 225" in too_long[0], err
    estimated = real_tokenizer() is None
    assert ("an estimate" in too_long[0]) == estimated and ("about" in too_long[0]) == estimated


def scans_with(tmp_path: Path, captions: dict[str, str], count: int = 3) -> list:
    for name, index in (("alice", 0), ("bob", 1)):
        make_character(tmp_path / "data" / name, index, count)
    for relative, text in captions.items():
        (tmp_path / "data" / relative).write_text(text, encoding="utf-8")
    return scan_project(load_project(write_project(tmp_path, ["alice", "bob"])))


def test_weighted_captions_silence_the_weighting_warning(tmp_path: Path) -> None:
    scans = scans_with(tmp_path, {"alice/img1.txt": "1girl, (smile:1.2)"})
    assert len(caption_warnings(scans, "{name}, {tags}", {"max_token_length": 225})) == 1
    assert caption_warnings(scans, "{name}, {tags}", {"max_token_length": 225, "weighted_captions": True}) == []


@pytest.mark.parametrize(("limit", "tags", "warned"), [(150, 25, False), (150, 70, True), (None, 30, True),
                                                       (None, 12, False)])
def test_the_token_limit_is_the_stages_max_token_length(tmp_path: Path, limit: int | None, tags: int,
                                                        warned: bool) -> None:
    """kohya's max_token_length: 75, 150 or 225; unset means one CLIP window of 75 tokens."""
    scans = scans_with(tmp_path, {"bob/img0.txt": ", ".join(f"tag{index}" for index in range(tags))})
    found = caption_warnings(scans, "{name}, {tags}", {"max_token_length": limit})
    assert len(found) == warned
    if warned:
        assert str(tmp_path / "data" / "bob" / "img0.txt") in found[0] and f"= {limit or 75};" in found[0]


def test_many_warnings_are_counted_past_ten(tmp_path: Path) -> None:
    scans = scans_with(tmp_path, {f"alice/img{index}.txt": "(smile:1.1)" for index in range(14)}, count=14)
    found = caption_warnings(scans, "{name}, {tags}", {})
    assert len(found) == 11 and found[-1] == "... and 4 more captions with prompt-weighting syntax"
