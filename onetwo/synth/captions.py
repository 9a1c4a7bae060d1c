"""A kept drawing's caption from eval's tagger, pure: the character's token and the tagger's general tags of its one
figure, spelled as the character's captions spell them, minus every tag eval counts as another character's
distinctive tag (onetwo.eval.traits), the rule the prompts already follow."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from onetwo.data.captions import single_caption, tag_key, without_token


@dataclass(frozen=True)
class TaggedCaption:
    text: str
    tags: tuple[str, ...]  # as written into the caption
    dropped: tuple[str, ...]  # the tagger's tags left out, as it spells them: other characters' distinctive tags


def spelling(captions: Sequence[Iterable[str]]) -> tuple[dict[str, str], bool]:
    """Each tag's first spelling in the captions, and whether they write words apart with spaces (boorus and the
    tagger use underscores)."""
    spelled: dict[str, str] = {}
    spaces = underscores = 0
    for tags in captions:
        for tag in tags:
            spelled.setdefault(tag_key(tag), tag)
            spaces += " " in tag.strip()
            underscores += "_" in tag
    return spelled, spaces >= underscores


def tagger_caption(name: str, class_token: str, template: str, captions: Sequence[Iterable[str]],
                   tagged: Sequence[str], distinctive: Mapping[str, frozenset[str]]) -> TaggedCaption:
    captions = [tuple(tags) for tags in captions]
    foreign = frozenset().union(*(keys for other, keys in distinctive.items() if other != name))
    spelled, spaces = spelling(captions)
    kept: dict[str, str] = {}
    dropped = []
    for tag in tagged:
        key = tag_key(tag)
        if key in foreign:
            dropped.append(tag)
        elif key not in kept:
            # a short tag with an underscore is a kaomoji (^_^), which keeps it
            kept[key] = spelled.get(key) or (tag.replace("_", " ") if spaces and len(tag) > 3 else tag)
    tags = without_token(tuple(kept.values()), name, class_token)
    return TaggedCaption(single_caption(template, name, tags, class_token), tags, tuple(dropped))
