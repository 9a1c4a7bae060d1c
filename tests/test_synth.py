"""issue 18, the pure parts of `onetwo synth`: the prompt builder (never another character's distinctive tags), the
keep rule, the max_share cap and the deck the composites deal from."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from onetwo.data.captions import tag_key
from onetwo.data.composite import plan
from onetwo.data.scan import CharacterImages, SourceImage
from onetwo.eval.traits import distinctive_tags
from onetwo.project.config import Character, CompositeSettings
from onetwo.synth import prompts
from onetwo.synth.mix import KeptImage, cap, chosen, with_synthetic

CAPTIONS = {
    "alice": [("1girl", "solo", "pink hair", "red eyes", "smile", "standing", "upper body"),
              ("1girl", "solo", "pink_hair", "red eyes", "blush", "sitting", "full body"),
              ("1girl", "solo", "pink hair", "red eyes", "smile", "arms up", "cowboy shot", "blue hair")],
    "bob": [("1boy", "solo", "blue hair", "glasses", "grin", "standing"),
            ("1boy", "solo", "blue hair", "glasses", "frown", "sitting", "portrait")],
}


def test_prompts_vary_pose_framing_and_expression_from_the_characters_own_captions() -> None:
    distinctive = distinctive_tags(CAPTIONS)
    built = prompts.build_prompts("alice", "", "{name}, {tags}", CAPTIONS["alice"], distinctive, 6, 0)
    assert [prompt.index for prompt in built] == list(range(6))
    for prompt in built:
        assert prompt.text.startswith("alice, 1girl, solo, pink hair, red eyes")
        kinds = [prompts.varying_kind(tag) for tag in prompt.tags]
        assert kinds.count("pose") == kinds.count("framing") == kinds.count("expression") == 1
        assert {tag_key(tag) for tag in prompt.tags} <= {tag_key(tag) for tags in CAPTIONS["alice"] for tag in tags}
    # every pose is used once before any twice: 3 poses in 6 prompts, twice each
    poses = [tag for prompt in built for tag in prompt.tags if prompts.varying_kind(tag) == "pose"]
    assert sorted(poses) == sorted(["standing", "sitting", "arms up"] * 2)
    assert built == prompts.build_prompts("alice", "", "{name}, {tags}", CAPTIONS["alice"], distinctive, 6, 0)
    assert built != prompts.build_prompts("alice", "", "{name}, {tags}", CAPTIONS["alice"], distinctive, 6, 1)


def test_no_prompt_carries_another_characters_distinctive_tags() -> None:
    distinctive = distinctive_tags(CAPTIONS)
    assert {"glasses", "1boy"} <= distinctive["bob"] and "blue hair" not in distinctive["bob"]  # alice has it once
    for name in CAPTIONS:
        foreign = set().union(*(keys for other, keys in distinctive.items() if other != name))
        for prompt in prompts.build_prompts(name, "", "{name}, {tags}", CAPTIONS[name], distinctive, 8, 3):
            assert not {tag_key(tag) for tag in prompt.tags} & foreign, prompt
    # alice's one caption with bob's blue hair does not put it in her prompts, even were it frequent
    heavy = {"alice": [(*tags, "blue hair") for tags in CAPTIONS["alice"]], "bob": CAPTIONS["bob"]}
    found = prompts.build_prompts("alice", "", "{name}, {tags}", heavy["alice"], {"bob": frozenset({"blue hair"})},
                                  4, 0)
    assert all("blue hair" not in prompt.tags for prompt in found)


def test_the_class_token_and_template_are_the_characters_caption_style() -> None:
    built = prompts.build_prompts("alice", "girl", "{name} / {tags}", [("alice girl", "pink hair")], {}, 1, 0)
    assert built[0].text == "alice girl / pink hair" and built[0].tags == ("pink hair",)


def test_a_tagger_caption_is_the_token_and_the_figures_tags_minus_other_characters_distinctive_ones() -> None:
    from onetwo.synth.captions import tagger_caption

    captions = [("alice girl", "pink hair", "smile"), ("alice girl", "pink hair", "sitting")]
    distinctive = {"alice": frozenset({"pink hair"}), "bob": frozenset({"blue hair", "hat"})}
    tagged = tagger_caption("alice", "girl", "{name} / {tags}", captions,
                            ["Pink_Hair", "blue_hair", "open_mouth", "^_^", "pink_hair", "HAT"], distinctive)
    # her spelling where her captions have the tag, spaces where they write words so, kaomoji as they are
    assert tagged.tags == ("pink hair", "open mouth", "^_^")
    assert tagged.text == "alice girl / pink hair, open mouth, ^_^"
    assert tagged.dropped == ("blue_hair", "HAT")  # bob's, as the tagger spelled them
    underscored = tagger_caption("alice", "", "{name}, {tags}", [("alice", "pink_hair")], ["open_mouth"], {})
    assert underscored.text == "alice, open_mouth"  # captions written with underscores keep them


# ---- the keep rule ---------------------------------------------------------------------------------------------

def figure(best: str | None, distance: float, ambiguous: bool = False):
    from onetwo.eval.identify import Figure

    return Figure((0, 0, 10, 10), best, best, distance, ambiguous)


def picture(offset: int) -> Image.Image:
    image = Image.new("RGB", (64, 64), (255, 255, 255))
    ImageDraw.Draw(image).rectangle((offset, 10, offset + 20, 60), fill=(200, 40, 40))
    return image


def test_the_keep_rule_gives_each_reason() -> None:
    from onetwo.synth.keep import Drawing, KeepRule, decide, decide_all, difference_hash

    rule = KeepRule(threshold=0.178, margin=0.01, duplicate_bits=8)
    training = {"alice0.png": difference_hash(picture(2))}
    fresh = difference_hash(picture(40))
    cases = [
        ((), "no figure"),
        ((figure("alice", 0.16), figure("alice", 0.16)), "2 figures, not one"),
        ((figure("alice", 0.166, ambiguous=True),), "a blend"),
        ((figure("bob", 0.16),), "shows bob"),
        ((figure(None, 0.3),), "no character within the threshold"),
        ((figure("alice", 0.172),), "not within 0.168"),
    ]
    for figures, reason in cases:
        decision = decide("alice", Drawing("d", figures, fresh), rule, training, {})
        assert not decision.kept and reason in decision.reason, (figures, decision)
    duplicate = decide("alice", Drawing("d", (figure("alice", 0.16),), difference_hash(picture(3))), rule, training,
                       {})
    assert not duplicate.kept and "near-duplicate of training image alice0.png" in duplicate.reason
    kept = decide("alice", Drawing("d", (figure("alice", 0.168),), fresh), rule, training, {})
    assert kept.kept and kept.distance == 0.168  # at the limit is within it
    # the second of two near-identical drawings is a duplicate of the first kept one
    both = decide_all("alice", [Drawing("a", (figure("alice", 0.16),), fresh),
                                Drawing("b", (figure("alice", 0.16),), difference_hash(picture(41)))], rule, training)
    assert [item.kept for item in both] == [True, False] and "kept drawing a" in both[1].reason
    strict = KeepRule(threshold=0.178, margin=0.01, duplicate_bits=0)
    assert decide("alice", Drawing("b", (figure("alice", 0.16),), difference_hash(picture(41))), strict, {},
                  {"a": fresh}).kept == (fresh != difference_hash(picture(41)))


def test_difference_hash_is_stable_under_resizing_and_apart_for_other_pictures() -> None:
    from onetwo.synth.keep import difference_hash, hash_distance

    a = picture(10)
    assert hash_distance(difference_hash(a), difference_hash(a.resize((128, 128)))) <= 2
    assert hash_distance(difference_hash(a), difference_hash(picture(40))) > 8


# ---- the cap and the deck --------------------------------------------------------------------------------------

def source(name: str, index: int) -> SourceImage:
    return SourceImage(Path(f"/data/{name}/{index}.png"), f"{name}/{index}.png", (f"{name} tag",), True, 1, 1, 64,
                       128)


def scan_of(name: str, count: int) -> CharacterImages:
    character = Character(name, Path(f"/data/{name}"), 1, False, name)
    return CharacterImages(character, tuple(source(name, index) for index in range(count)), 1, ())


@pytest.mark.parametrize(("real", "share", "allowed"), [(8, 0.3, 3), (20, 0.3, 8), (8, 0.5, 8), (3, 0.25, 1),
                                                         (8, 0.0, 0), (0, 0.3, 0), (7, 0.3, 3)])
def test_the_cap_keeps_drawings_at_most_max_share_of_the_deck(real: int, share: float, allowed: int) -> None:
    assert cap(real, share) == allowed
    assert allowed / max(1, real + allowed) <= share + 1e-9
    assert (allowed + 1) / (real + allowed + 1) > share or real == 0


def test_the_closest_drawings_join_the_deck_after_the_characters_own_images() -> None:
    kept = [KeptImage(SourceImage(Path(f"/w/synthetic/alice/{index}.png"), f"alice/{index}.png", ("alice",), True,
                                  1, 1, 64, 64), distance) for index, distance in enumerate([0.165, 0.150, 0.160,
                                                                                             0.155])]
    assert [item.image.rel for item in chosen(kept, 4, 0.34)] == ["alice/1.png", "alice/3.png"]
    scans = [scan_of("alice", 4), scan_of("bob", 6)]
    mixed = with_synthetic(scans, {"alice": kept}, 0.34)
    assert mixed[1] is scans[1]
    assert mixed[0].images[:4] == scans[0].images
    assert [image.synthetic for image in mixed[0].images] == [False] * 4 + [True] * 2
    jobs = plan(mixed, CompositeSettings(per_pair=12, seed=0))
    used = [source.path for job in jobs for source in job.sources if "alice" in str(source.path)]
    synthetic = [path for path in used if "synthetic" in str(path)]
    # the deck deals evenly: 12 composites, 6 alice images, each twice; the drawings are 2 of 6 = 1/3 of them
    assert len(used) == 12 and len(synthetic) == 4 and synthetic.count(kept[1].image.path) == 2


# ---- the [synthetic] table -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("table", "expected"), [
    ({"per_charcter": 4}, "synthetic.per_charcter: unknown key (did you mean 'per_character'?)"),
    ({"max_share": 1}, "synthetic.max_share: must be below 1"),
    ({"max_share": 1.5}, "synthetic.max_share: is the most of a character's composite deck"),
    ({"margin": -0.1}, "synthetic.margin: must be at least 0"),
    ({"duplicate_bits": 65}, "synthetic.duplicate_bits: counts differing bits"),
    ({"per_character": 0}, "synthetic.per_character: must be at least 1"),
    ({"below": "few"}, "synthetic.below: must be an integer"),
    ({"stage1": "yes"}, "synthetic.stage1: must be true or false"),
])
def test_the_synthetic_table_is_strict(tmp_path: Path, table: dict, expected: str) -> None:
    from onetwo.errors import OnetwoError
    from onetwo.project.file import parse_project
    from tests.conftest import project_data

    data = {**project_data(["alice", "bob"]), "synthetic": table}
    with pytest.raises(OnetwoError) as error:
        parse_project(data, tmp_path / "onetwo.toml")
    assert expected in str(error.value) and str(tmp_path / "onetwo.toml") in str(error.value)


def test_the_synthetic_defaults(tmp_path: Path) -> None:
    from onetwo.project.file import parse_project
    from tests.conftest import project_data

    project = parse_project(project_data(["alice", "bob"]), tmp_path / "onetwo.toml")
    assert (project.synthetic.per_character, project.synthetic.max_share, project.synthetic.below) == (16, 0.3, 0)
    assert project.synthetic.stage1 is False
    assert project.synthetic_dir == project.work_dir / "synthetic"
    custom = parse_project({**project_data(["alice", "bob"]), "synthetic": {"below": 12, "max_share": 0.2}},
                           tmp_path / "onetwo.toml")
    assert (custom.synthetic.below, custom.synthetic.max_share) == (12, 0.2)


def test_the_plan_table_shows_each_characters_drawings_and_their_share() -> None:
    from dataclasses import replace

    from onetwo.kohya.plan_table import format_plan, stage_plan

    plan = stage_plan("stage2", {"datasets": []}, {"max_train_epochs": 1}, {}, "")
    assert "synthetic" not in format_plan(plan)
    shown = format_plan(replace(plan, synthetic=(("aoi", 3, 11, 40, 11), ("bob", 1, 21, 40, 2)), synthetic_cap=0.3))
    assert ("  synthetic                aoi 3 of 11 deck images, in 11 of 40 composites (28%); bob 1 of 21 deck "
            "images, in 2 of 40 composites (5%); max_share 0.3") in shown.splitlines()


def test_the_contact_sheet_shows_every_reason_whole_under_its_drawing(tmp_path: Path) -> None:
    import textwrap

    from onetwo.synth import sheet

    reason = "near-duplicate of kept drawing beni/e2e-stage1-000001__p00__s0 (0 of 64 hash bits differ)"
    Image.new("RGB", (64, 64), (10, 200, 10)).save(tmp_path / "a.png")
    document = {"characters": {"beni": {"images": [{"file": "a.png", "kept": False, "reason": reason}]}}}
    with Image.open(sheet.contact_sheet(document, tmp_path, tmp_path / "sheet.png")) as drawn:
        lines = len(textwrap.wrap(reason, sheet.WRAP))
        assert lines > 4 and drawn.height >= sheet.THUMB + lines * sheet.LINE
        assert drawn.getpixel((80 + sheet.THUMB // 2, sheet.THUMB // 2)) == (10, 200, 10)  # scaled up to the cell
