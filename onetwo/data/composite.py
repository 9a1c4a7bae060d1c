"""Composite planning: which groups, which order, which sources, where each goes, which caption. Pure and seeded."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

from onetwo.data.captions import MAX_TOKEN_LENGTH, composite_caption, count_tokens, trim_to_budget
from onetwo.data.scan import CharacterImages, SourceImage
from onetwo.project.config import CompositeSettings

GEOMETRY_VERSION = 3  # bump when the pixels a job produces change for the same inputs
PORTRAIT = 0.5  # the method's halves: 1:2 portraits, so a pair is square

SizeForAspect = Callable[[float], tuple[int, int]]


@dataclass(frozen=True)
class Geometry:
    """Where each source lands: cells (left, width) spanning the full height, left to right as captioned."""

    width: int
    height: int
    cells: tuple[tuple[int, int], ...]
    vertical_anchor: float
    background: tuple[int, int, int]
    mirrored: bool = False

    def cell_left(self, index: int) -> int:
        return self.cells[index][0]

    def cell_width(self, index: int) -> int:
        return self.cells[index][1]


@dataclass(frozen=True)
class CompositeJob:
    stem: str
    names: tuple[str, ...]
    sources: tuple[SourceImage, ...]
    caption: str
    geometry: Geometry
    key: str


def cell_spans(width: int, widths: Sequence[float], gap: int) -> tuple[tuple[int, int], ...]:
    """Cells proportional to `widths`, filling `width` exactly with `gap` between them."""
    free = width - gap * (len(widths) - 1)
    total = sum(widths)
    edges = [round(free * sum(widths[:index]) / total) for index in range(len(widths) + 1)]
    return tuple((edges[index] + gap * index, edges[index + 1] - edges[index]) for index in range(len(widths)))


def layout(sources: Sequence[SourceImage], settings: CompositeSettings, size_for: SizeForAspect,
           mirrored: bool) -> Geometry:
    """Equal cells of 1:2 portraits, or `natural`: each source keeps its aspect, heights matched."""
    if settings.layout == "natural" and all(source.width and source.height for source in sources):
        aspects = [source.width / source.height for source in sources]
    else:
        aspects = [PORTRAIT] * len(sources)
    if settings.width and settings.height:
        width, height = settings.width, settings.height
    else:
        width, height = size_for(sum(aspects))
    cells = cell_spans(width, aspects, settings.gap)
    return Geometry(width, height, cells, settings.vertical_anchor, settings.background, mirrored)


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


def group_orders(group: Sequence[CharacterImages], count: int, group_index: int) -> Iterator[tuple[int, ...]]:
    """Every left-to-right order in turn, starting one further for each group, so orders stay balanced overall."""
    orders = list(itertools.permutations(range(len(group))))
    for index in range(count):
        yield orders[(index + group_index) % len(orders)]


def job_key(sources: Sequence[SourceImage], geo: Geometry, image_format: str) -> str:
    payload = json.dumps([GEOMETRY_VERSION, [[str(source.path), source.fingerprint] for source in sources],
                          asdict(geo), image_format], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def plan(scans: Sequence[CharacterImages], settings: CompositeSettings,
         size_for: SizeForAspect = lambda aspect: (768, 768)) -> list[CompositeJob]:
    """Every unordered group gets `per_pair` composites in balanced orders, sources spread evenly, some mirrored.

    A mirrored composite is built in one order and flipped, so its caption names the characters reversed: the
    only flip augmentation that keeps image and caption in agreement.
    """
    rng = random.Random(f"onetwo:{settings.seed}")
    decks = {scan.character.name: _Deck(scan.images, rng) for scan in scans}
    mirror_rng = random.Random(f"onetwo-mirror:{settings.seed}")
    jobs: list[CompositeJob] = []
    for group_index, group in enumerate(itertools.combinations(scans, settings.group_size)):
        prefix = "+".join(scan.character.slug for scan in group)
        for index, order in enumerate(group_orders(group, settings.per_pair, group_index)):
            members = [group[position] for position in order]
            sources = tuple(decks[member.character.name].draw() for member in members)
            mirrored = mirror_rng.random() < settings.mirror
            geo = layout(sources, settings, size_for, mirrored)
            names = tuple(member.character.name for member in members)
            tags = tuple(source.tags for source in sources)
            stand_ins = tuple(member.character.class_token or member.character.name for member in members)
            if mirrored:
                names, tags, stand_ins = names[::-1], tags[::-1], stand_ins[::-1]
            caption = composite_caption(settings.caption, names, tags, stand_ins)
            if settings.trim_captions:
                caption = trim_to_budget(settings.caption, names, tags, stand_ins=stand_ins)
            jobs.append(CompositeJob(f"{prefix}_{index:04d}", names, sources, caption, geo,
                                     job_key(sources, geo, settings.format)))
    return jobs


def over_budget(jobs: Sequence[CompositeJob], limit: int = MAX_TOKEN_LENGTH) -> list[tuple[CompositeJob, int]]:
    """Jobs whose caption kohya would cut at `max_token_length`, with their token counts."""
    found = []
    for job in jobs:
        tokens, _ = count_tokens(job.caption, limit)
        if tokens > limit:
            found.append((job, tokens))
    return found
