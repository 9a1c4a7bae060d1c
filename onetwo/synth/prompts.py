"""The prompts `onetwo synth` draws a character with, pure: the character's token and its own steady tags (in at
least half of its captions), plus a pose, a framing and an expression drawn, seeded, from the ones its captions
use. No tag that eval counts as another character's distinctive tag (onetwo.eval.traits) ever enters a prompt, so
the drawings do not teach one character another's traits."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from onetwo.data.captions import single_caption, tag_key, without_token
from onetwo.eval.traits import FREQUENT

# Booru tags (as tag_key spells them) that vary from picture to picture of one character: what a thin set repeats.
POSE = frozenset({
    "standing", "sitting", "kneeling", "lying", "on back", "on stomach", "squatting", "walking", "running",
    "jumping", "leaning forward", "arms up", "arms behind back", "hand on hip", "hands on hips", "crossed arms",
    "outstretched arm", "waving", "peace sign", "v", "head tilt", "looking back", "looking at viewer",
    "looking away", "looking to the side", "from side", "from behind", "from above", "from below", "contrapposto",
    "hand up", "hands up", "holding", "sitting on chair", "seiza", "indian style",
})
FRAMING = frozenset({
    "portrait", "upper body", "cowboy shot", "full body", "close-up", "lower body", "feet out of frame",
    "head out of frame", "profile", "wide shot", "dutch angle",
})
EXPRESSION = frozenset({
    "smile", "grin", "open mouth", "closed mouth", "closed eyes", "one eye closed", "blush", "frown", "angry",
    "sad", "crying", "surprised", "expressionless", "smug", "pout", "laughing", "tongue out", ":d", ":o", ";)",
    "parted lips", "light smile", "serious", "happy", "embarrassed", "scared",
})
KINDS = {"pose": POSE, "framing": FRAMING, "expression": EXPRESSION}


@dataclass(frozen=True)
class SynthPrompt:
    index: int
    tags: tuple[str, ...]  # the caption's tags, without the character's token, as its captions spell them
    text: str  # the caption template filled: what is drawn, and what a kept image is captioned with


def varying_kind(tag: str) -> str | None:
    key = tag_key(tag)
    return next((kind for kind, keys in KINDS.items() if key in keys), None)


def steady_tags(captions: Sequence[Iterable[str]], name: str, class_token: str = "") -> tuple[str, ...]:
    """The tags in at least FREQUENT of the captions that are not a pose, framing or expression, most frequent
    first (ties: as first seen), each spelled as first seen."""
    counts: Counter[str] = Counter()
    spelling: dict[str, str] = {}
    for tags in captions:
        own = without_token(tuple(tags), name, class_token)
        for tag in own:
            spelling.setdefault(tag_key(tag), tag)
        counts.update({tag_key(tag) for tag in own})
    total = max(1, len(captions))
    order = {key: position for position, key in enumerate(spelling)}
    chosen = [key for key in sorted(spelling, key=lambda key: (-counts[key], order[key]))
              if counts[key] / total >= FREQUENT and varying_kind(key) is None]
    return tuple(spelling[key] for key in chosen)


def varying_tags(captions: Sequence[Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """Each kind's tags that the captions use, as first spelled, in order of first use."""
    found: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    for tags in captions:
        for tag in tags:
            kind = varying_kind(tag)
            if kind is not None:
                found[kind].setdefault(tag_key(tag), tag)
    return {kind: tuple(spelled.values()) for kind, spelled in found.items()}


def build_prompts(name: str, class_token: str, template: str, captions: Sequence[Iterable[str]],
                  distinctive: Mapping[str, frozenset[str]], count: int, seed: int) -> list[SynthPrompt]:
    """`count` prompts for `name`: its steady tags, then one tag of each kind its captions use, drawn evenly (every
    tag of a kind once before any twice), seeded by `seed` and the name."""
    captions = [tuple(tags) for tags in captions]
    foreign = frozenset().union(*(keys for other, keys in distinctive.items() if other != name))
    steady = [tag for tag in steady_tags(captions, name, class_token) if tag_key(tag) not in foreign]
    pools = {kind: [tag for tag in tags if tag_key(tag) not in foreign]
             for kind, tags in varying_tags(captions).items()}
    rng = random.Random(f"onetwo-synth:{seed}:{name}")
    decks: dict[str, list[str]] = {kind: [] for kind in KINDS}
    prompts = []
    for index in range(count):
        chosen = []
        for kind in KINDS:
            if not pools[kind]:
                continue
            if not decks[kind]:
                decks[kind] = pools[kind][:]
                rng.shuffle(decks[kind])
            chosen.append(decks[kind].pop())
        tags = tuple(steady + [tag for tag in chosen if tag_key(tag) not in {tag_key(s) for s in steady}])
        prompts.append(SynthPrompt(index, tags, single_caption(template, name, tags, class_token)))
    return prompts
