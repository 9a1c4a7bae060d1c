"""How many of a character's kept drawings join its composite deck, pure: the `max_share` cap and the deck.

With n training images and `max_share` s, at most floor(s·n / (1 - s)) drawings join, so that drawings are at most
s of the deck; the composite planner deals a deck evenly (use counts differ by at most one), so they are then at
most about s of the character's composite appearances as well. The closest drawings (lowest identity difference)
go first; ties by name."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from onetwo.data.scan import CharacterImages, SourceImage


def cap(real: int, max_share: float) -> int:
    if max_share <= 0 or real <= 0:
        return 0
    return math.floor(max_share * real / (1 - max_share) + 1e-9)


@dataclass(frozen=True)
class KeptImage:
    image: SourceImage  # marked synthetic
    distance: float


def chosen(kept: Sequence[KeptImage], real: int, max_share: float) -> list[KeptImage]:
    ordered = sorted(kept, key=lambda item: (item.distance, item.image.rel))
    return ordered[:cap(real, max_share)]


def with_synthetic(scans: Sequence[CharacterImages], kept: dict[str, Sequence[KeptImage]],
                   max_share: float) -> list[CharacterImages]:
    """Each character's scan with its chosen drawings after its own images: the deck the composites deal from."""
    mixed = []
    for scan in scans:
        extra = chosen(kept.get(scan.character.name, ()), len(scan.images), max_share)
        images = scan.images + tuple(replace(item.image, synthetic=True) for item in extra)
        mixed.append(replace(scan, images=images) if extra else scan)
    return mixed
