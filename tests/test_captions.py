from __future__ import annotations

import pytest

from onetwo.data.captions import (
    composite_caption,
    estimate_tokens,
    parse_tags,
    sample_prompt_line,
    single_caption,
    top_tags,
    trim_to_budget,
)

TEMPLATE = "{left}/{right}/COMPOSITE, {left_tags}, {right_tags}"


@pytest.mark.parametrize(
    ("text", "tags"),
    [
        ("1girl, smile", ("1girl", "smile")),
        ("\ufeff1girl,smile\r\n", ("1girl", "smile")),
        ("1girl\nsmile\n\n", ("1girl", "smile")),
        (" , ,", ()),
        ("", ()),
    ],
)
def test_parse_tags(text: str, tags: tuple[str, ...]) -> None:
    assert parse_tags(text) == tags


def test_composite_caption_puts_the_composite_token_first() -> None:
    caption = composite_caption(TEMPLATE, ("uzuki", "rin"), (("1girl", "smile"), ("1girl", "twintails")))
    assert caption == "uzuki/rin/COMPOSITE, 2girls, smile, twintails"


def test_empty_sides_leave_no_empty_tokens() -> None:
    assert composite_caption(TEMPLATE, ("a", "b"), ((), ("x",))) == "a/b/COMPOSITE, a, x"  # a keeps its side
    assert single_caption("{name}, {tags}", "a", ()) == "a"


def test_own_token_is_not_repeated() -> None:
    assert single_caption("{name}, {tags}", "uzuki", ("Uzuki", "smile")) == "uzuki, smile"


def test_estimate_grows_with_text_and_counts_punctuation() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("a, b") == 3
    short, long = estimate_tokens("red hair"), estimate_tokens("red hair, very long flowing hair")
    assert 0 < short < long
    assert estimate_tokens("初音ミク") == 8


def test_trim_keeps_both_sides_leading_tags() -> None:
    left = tuple(f"lefttag{i}" for i in range(60))
    right = tuple(f"righttag{i}" for i in range(10))
    caption = trim_to_budget(TEMPLATE, ("a", "b"), (left, right), limit=120)
    assert estimate_tokens(caption) <= 120
    assert "lefttag0" in caption and "righttag0" in caption
    assert "lefttag59" not in caption
    assert caption.index("lefttag0") < caption.index("righttag0")


def test_top_tags_are_ranked_and_deterministic() -> None:
    lists = [("alice", "smile", "red hair"), ("red hair", "sitting"), ("smile", "red hair")]
    assert top_tags(lists, "alice", 2) == ("red hair", "smile")


def test_sample_prompt_line_uses_kohya_syntax() -> None:
    line = sample_prompt_line("a/b/COMPOSITE", "lowres", 770, 500, 28, 7.0, 3)
    assert line == "a/b/COMPOSITE --n lowres --w 768 --h 496 --s 28 --l 7 --d 3"
