"""Distinctive tags from captions, and the per-figure trait-swap and merged hints, on tags written by hand."""

from __future__ import annotations

import pytest

from onetwo.eval.traits import distinctive_tags, figure_hint

CAPTIONS = {
    "aoi": [("1girl", "blue hair", "hat", "smile"), ("1girl", "blue_hair", "hat"), ("1girl", "Blue Hair", "red dress")],
    "midori": [("1girl", "orange hair", "ponytail", "smile"), ("1girl", "orange hair", "ponytail", "hat")],
}


def test_distinctive_tags_are_frequent_in_ones_own_captions_and_rare_in_the_others() -> None:
    found = distinctive_tags(CAPTIONS)
    # 1girl is everyone's; smile is in half of midori's and a third of aoi's; red dress is in a third of aoi's only;
    # hat is in two thirds of aoi's but half of midori's
    assert found == {"aoi": frozenset({"blue hair"}), "midori": frozenset({"orange hair", "ponytail"})}
    assert distinctive_tags(CAPTIONS, rare=0.5)["aoi"] == {"blue hair", "hat"}


DISTINCTIVE = {"aoi": frozenset({"blue hair", "hat"}), "midori": frozenset({"orange hair", "ponytail"})}


@pytest.mark.parametrize(("name", "ambiguous", "tags", "hint"), [
    ("aoi", False, ("1girl", "blue_hair", "hat"), None),  # its own traits
    ("aoi", False, ("blue_hair", "orange_hair", "ponytail"), "trait_swap"),  # more of midori's than its own
    ("aoi", False, ("blue_hair", "orange_hair"), None),  # as many: not more
    ("aoi", False, ("1girl",), None),  # no traits at all: nothing to say
    (None, False, ("blue_hair", "ponytail"), "merged"),  # no identity, both characters' traits
    ("aoi", True, ("hat", "orange_hair"), "merged"),  # two characters about equally close: no identity either
    (None, False, ("blue_hair", "hat"), None),  # no identity, one character's traits: not a merge
])
def test_figure_hints(name, ambiguous, tags, hint) -> None:
    assert figure_hint(name, ambiguous, tags, DISTINCTIVE) == hint
