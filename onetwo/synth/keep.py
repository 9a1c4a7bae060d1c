"""Which drawings `onetwo synth` keeps, pure: eval's figures of each drawing in, a decision and its reason out.

A drawing of character C is kept only when
1. eval's detector found exactly one figure in it;
2. that figure is not a blend (no second character within the identity threshold and the blend margin of it);
3. its closest character is C, at a difference at most the identity threshold minus `margin`;
4. it is not a near-duplicate of one of C's training images nor of a drawing kept before it: its 64-bit
   difference hash (dHash: the picture in grey at 9x8, one bit per pair of horizontal neighbours, the left one
   brighter) differs from theirs in more than `duplicate_bits` bits.
The first rule a drawing fails is its reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PIL import Image

from onetwo.eval.identify import Figure

HASH_SIZE = 8


def difference_hash(image: Image.Image) -> int:
    """dHash: grey, resized to 9x8 (Lanczos), a bit per pixel brighter than its right neighbour; 64 bits."""
    grey = image.convert("L").resize((HASH_SIZE + 1, HASH_SIZE), Image.Resampling.LANCZOS).tobytes()
    value = 0
    for row in range(HASH_SIZE):
        for column in range(HASH_SIZE):
            left = grey[row * (HASH_SIZE + 1) + column]
            value = value << 1 | (left > grey[row * (HASH_SIZE + 1) + column + 1])
    return value


def hash_distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


@dataclass(frozen=True)
class KeepRule:
    threshold: float  # the embedder's identity threshold (or --threshold)
    margin: float  # [synthetic] margin: kept only at or below threshold - margin
    duplicate_bits: int  # [synthetic] duplicate_bits


@dataclass(frozen=True)
class Drawing:
    stem: str
    figures: tuple[Figure, ...]
    image_hash: int


@dataclass(frozen=True)
class Decision:
    stem: str
    kept: bool
    reason: str
    distance: float | None  # the figure's difference to its closest character, where one figure was found
    image_hash: int


def _nearest(image_hash: int, others: Mapping[str, int]) -> tuple[str, int] | None:
    found = [(hash_distance(image_hash, value), key) for key, value in others.items()]
    return (min(found)[1], min(found)[0]) if found else None


def decide(name: str, drawing: Drawing, rule: KeepRule, training: Mapping[str, int],
           kept: Mapping[str, int]) -> Decision:
    """One drawing of `name`; `training` and `kept`: the hashes of its training images and of the drawings kept so
    far, by name."""
    figures = drawing.figures

    def rejected(reason: str) -> Decision:
        distance = figures[0].distance if len(figures) == 1 else None
        return Decision(drawing.stem, False, reason, distance, drawing.image_hash)

    if len(figures) != 1:
        return rejected(f"{len(figures)} figures, not one" if figures else "no figure")
    figure = figures[0]
    if figure.ambiguous:
        return rejected("a blend: two characters about equally close")
    if figure.best != name:
        return rejected(f"shows {figure.best}" if figure.best else "no character within the threshold")
    limit = rule.threshold - rule.margin
    if figure.distance > limit + 1e-9:  # at the limit is within it
        return rejected(f"{name} at {figure.distance:.3f}, not within {limit:.3f} (threshold {rule.threshold:.3f} "
                        f"- margin {rule.margin:g})")
    for what, hashes in (("training image", training), ("kept drawing", kept)):
        near = _nearest(drawing.image_hash, hashes)
        if near is not None and near[1] <= rule.duplicate_bits:
            return rejected(f"near-duplicate of {what} {near[0]} ({near[1]} of 64 hash bits differ)")
    return Decision(drawing.stem, True, f"{name} at {figure.distance:.3f}, alone", figure.distance,
                    drawing.image_hash)


def decide_all(name: str, drawings: Sequence[Drawing], rule: KeepRule,
               training: Mapping[str, int]) -> list[Decision]:
    """Every drawing in order; each kept one counts as a duplicate source for the later ones."""
    kept: dict[str, int] = {}
    decisions = []
    for drawing in drawings:
        decision = decide(name, drawing, rule, training, kept)
        if decision.kept:
            kept[drawing.stem] = drawing.image_hash
        decisions.append(decision)
    return decisions
