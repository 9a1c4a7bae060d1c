"""Who is in a sample, and was it what the prompt asked for. Pure: distances in, verdicts out.

`distances[f, c]` is how far figure f is from character c's references (the embedder's difference, lower = more
alike); figures come sorted left to right.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GROUP_CLASSES = ("correct", "swapped", "clone", "blend", "missing", "extra", "wrong_character")
SINGLE_CLASSES = ("correct", "wrong_character", "duplicated", "missing")
UNKNOWN = None


@dataclass(frozen=True)
class Figure:
    """One detected figure: its box in image pixels, the character it was assigned (None: unknown), and why."""

    box: tuple[float, float, float, float]
    name: str | None
    best: str | None  # the closest character whatever the assignment
    distance: float  # to `best`
    ambiguous: bool  # two characters match about equally: a blend
    tags: tuple[str, ...] = ()  # the tagger's general tags for the figure, where one ran
    hint: str | None = None  # "trait_swap" or "merged" (onetwo.eval.traits), from the tags


@dataclass(frozen=True)
class Verdict:
    prompted: tuple[str, ...]
    label: str
    figures: tuple[Figure, ...]
    leak: bool
    seam: float

    @property
    def single(self) -> bool:
        return len(self.prompted) == 1

    @property
    def hints(self) -> frozenset[str]:
        return frozenset(figure.hint for figure in self.figures if figure.hint)


def assign(distances: np.ndarray, threshold: float) -> list[int | None]:
    """Optimal one-to-one assignment of figures to characters: the most figures matched within `threshold`, then
    the lowest total distance; a figure left over gets None. Exact (dynamic programming over the set of characters
    taken), and instant at the handful of figures and characters a sample holds."""
    figures, characters = distances.shape

    @functools.cache
    def best(index: int, taken: int) -> tuple[int, float, tuple[int | None, ...]]:
        if index == figures:
            return 0, 0.0, ()
        matched, cost, rest = best(index + 1, taken)
        options = [(matched, -cost, (None, *rest))]
        for character in range(characters):
            distance = float(distances[index, character])
            if taken & (1 << character) or distance > threshold:
                continue
            matched, cost, rest = best(index + 1, taken | (1 << character))
            options.append((matched + 1, -(cost + distance), (character, *rest)))
        matched, negative_cost, choice = max(options, key=lambda option: option[:2])
        return matched, -negative_cost, choice

    return list(best(0, 0)[2])


def figures_of(boxes: Sequence[tuple[float, float, float, float]], distances: np.ndarray, names: Sequence[str],
               threshold: float, blend_margin: float) -> tuple[Figure, ...]:
    """Assign each figure (boxes sorted left to right) and mark the ambiguous ones."""
    if not len(boxes):
        return ()
    assigned = assign(distances, threshold)
    figures = []
    for index, box in enumerate(boxes):
        row = distances[index]
        order = np.argsort(row, kind="stable")
        nearest = float(row[order[0]])
        second = float(row[order[1]]) if len(order) > 1 else float("inf")
        ambiguous = second <= threshold and second - nearest < blend_margin
        slot = assigned[index]
        figures.append(Figure(tuple(float(v) for v in box), names[slot] if slot is not None else UNKNOWN,
                              names[order[0]] if nearest <= threshold else UNKNOWN, nearest, ambiguous))
    return tuple(figures)


def classify(prompted: Sequence[str], figures: Sequence[Figure]) -> str:
    """One label per image; for a group prompt one of GROUP_CLASSES, for a single prompt one of SINGLE_CLASSES."""
    return classify_single(prompted[0], figures) if len(prompted) == 1 else classify_group(prompted, figures)


def classify_single(name: str, figures: Sequence[Figure]) -> str:
    if not figures:
        return "missing"
    if sum(figure.best == name for figure in figures) >= 2:
        return "duplicated"
    if len(figures) == 1 and figures[0].best == name and not figures[0].ambiguous:
        return "correct"
    return "wrong_character"


def classify_group(prompted: Sequence[str], figures: Sequence[Figure]) -> str:
    if len(figures) < len(prompted):
        return "missing"
    if len(figures) > len(prompted):
        return "extra"
    if any(figure.ambiguous or figure.best is UNKNOWN for figure in figures):
        return "blend"
    # the assignment takes each character once: a figure left without one, whose closest character another figure
    # took, is that character's clone
    if any(figure.name is UNKNOWN for figure in figures) or len({figure.best for figure in figures}) < len(figures):
        return "clone"
    names = [figure.name for figure in figures]
    if sorted(names) != sorted(prompted):  # type: ignore[type-var]
        return "wrong_character"
    return "correct" if tuple(names) == tuple(prompted) else "swapped"
