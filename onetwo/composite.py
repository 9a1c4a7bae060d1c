"""Composite planning: which pairs, which order, which sources, which caption. Pure and seeded."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from onetwo.captions import MAX_TOKEN_LENGTH, composite_caption, count_tokens, trim_to_budget
from onetwo.config import CompositeSettings
from onetwo.dataset import CharacterImages, SourceImage

GEOMETRY_VERSION = 1  # bump when the pixels a job produces change for the same inputs


@dataclass(frozen=True)
class Geometry:
    """Where each source lands in the composite: equal cells, left to right, `gap` pixels apart."""

    width: int
    height: int
    gap: int
    cells: int
    vertical_anchor: float
    background: tuple[int, int, int]

    @property
    def cell_width(self) -> int:
        return (self.width - self.gap * (self.cells - 1)) // self.cells

    def cell_left(self, index: int) -> int:
        used = self.cell_width * self.cells + self.gap * (self.cells - 1)
        return (self.width - used) // 2 + index * (self.cell_width + self.gap)


@dataclass(frozen=True)
class CompositeJob:
    stem: str
    names: tuple[str, ...]
    sources: tuple[SourceImage, ...]
    caption: str
    key: str


def geometry(settings: CompositeSettings, cells: int = 2) -> Geometry:
    return Geometry(settings.width, settings.height, settings.gap, cells, settings.vertical_anchor,
                    settings.background)


class _Deck:
    """Hands out a character's images so that use counts never differ by more than one."""

    def __init__(self, images: Sequence[SourceImage], rng: random.Random):
        self.images = list(images)
        self.rng = rng
        self.pending: list[SourceImage] = []

    def draw(self) -> SourceImage:
        if not self.pending:
            self.pending = self.images[:]
            self.rng.shuffle(self.pending)
        return self.pending.pop()


def pair_orders(count: int, pair_index: int) -> Iterator[bool]:
    """True for original order; alternating, with odd counts' extra one alternating between pairs."""
    flip_first = pair_index % 2 == 1
    for index in range(count):
        yield (index % 2 == 0) != flip_first


def job_key(sources: Sequence[SourceImage], geo: Geometry, image_format: str) -> str:
    payload = json.dumps([GEOMETRY_VERSION, [[str(source.path), source.fingerprint] for source in sources],
                          geo.__dict__, image_format], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def plan(scans: Sequence[CharacterImages], settings: CompositeSettings) -> list[CompositeJob]:
    """Every unordered pair gets `per_pair` composites, half in each order, sources spread evenly."""
    rng = random.Random(f"onetwo:{settings.seed}")
    decks = {scan.character.name: _Deck(scan.images, rng) for scan in scans}
    geo = geometry(settings)
    jobs: list[CompositeJob] = []
    for pair_index, (first, second) in enumerate(itertools.combinations(scans, 2)):
        for index, keep_order in enumerate(pair_orders(settings.per_pair, pair_index)):
            left, right = (first, second) if keep_order else (second, first)
            sources = (decks[left.character.name].draw(), decks[right.character.name].draw())
            names = (left.character.name, right.character.name)
            tags = tuple(source.tags for source in sources)
            caption = composite_caption(settings.caption, names, tags)
            if settings.trim_captions:
                caption = trim_to_budget(settings.caption, names, tags)
            stem = f"{first.character.slug}+{second.character.slug}_{index:04d}"
            jobs.append(CompositeJob(stem, names, sources, caption, job_key(sources, geo, settings.format)))
    return jobs


def over_budget(jobs: Sequence[CompositeJob], limit: int = MAX_TOKEN_LENGTH) -> list[tuple[CompositeJob, int]]:
    """Jobs whose caption kohya would cut at `max_token_length`, with their token counts."""
    found = []
    for job in jobs:
        tokens, _ = count_tokens(job.caption, limit)
        if tokens > limit:
            found.append((job, tokens))
    return found
