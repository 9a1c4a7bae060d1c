"""Per-figure tags: is a failed pair a trait swap or a merged face? Pure.

Community trainers read the failure by eye: traits moving between the two characters (one wears the other's hair
or outfit) is taken for overtraining, two faces merging into one for undertraining. Here each detected figure is
tagged with a booru tagger and its tags compared with each character's **distinctive tags**: those in at least
`FREQUENT` of the character's own captions and in at most `RARE` of every other character's. A figure is

- a **trait swap** when CCIP gave it a character but it carries more of another character's distinctive tags than
  of its own;
- **merged** when CCIP gave it no character (none within the threshold, or two about equally: a blend) and it
  carries distinctive tags of two characters or more.

It is a hint for reading the samples, not a verdict: the tagger sees outfits and colours, not identity, and a
character drawn in another costume is tagged as it is drawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from onetwo.data.captions import tag_key

FREQUENT = 0.5  # in at least half of the character's own captions
RARE = 0.2  # in at most a fifth of each other character's
HINTS = ("trait_swap", "merged")


def distinctive_tags(captions: Mapping[str, Sequence[Iterable[str]]], frequent: float = FREQUENT,
                     rare: float = RARE) -> dict[str, frozenset[str]]:
    """Each character's distinctive tags (as `tag_key` spells them) from its captions' tags."""
    shares: dict[str, dict[str, float]] = {}
    for name, tag_lists in captions.items():
        counts: dict[str, int] = {}
        for tags in tag_lists:
            for key in {tag_key(tag) for tag in tags}:
                counts[key] = counts.get(key, 0) + 1
        total = max(1, len(tag_lists))
        shares[name] = {key: count / total for key, count in counts.items()}
    return {name: frozenset(key for key, share in own.items() if share >= frequent
                            and all(shares[other].get(key, 0.0) <= rare for other in shares if other != name))
            for name, own in shares.items()}


def carried(tags: Iterable[str], distinctive: Mapping[str, frozenset[str]]) -> dict[str, int]:
    """How many of each character's distinctive tags a figure's tags hold."""
    keys = {tag_key(tag) for tag in tags}
    return {name: len(keys & own) for name, own in distinctive.items()}


def figure_hint(name: str | None, ambiguous: bool, tags: Iterable[str],
                distinctive: Mapping[str, frozenset[str]]) -> str | None:
    """"trait_swap", "merged" or None for one figure: `name` is the character CCIP assigned (None: none)."""
    counts = carried(tags, distinctive)
    if name is not None and not ambiguous:
        own = counts.get(name, 0)
        return "trait_swap" if any(count > own for other, count in counts.items() if other != name) else None
    return "merged" if sum(count > 0 for count in counts.values()) >= 2 else None
