"""Composite planning: which groups, which order, which sources, where each goes, which caption. Pure and seeded."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from onetwo.data.captions import CLIP_COUNTER, TokenCounter, composite_caption, trim_to_budget
from onetwo.data.scan import CharacterImages, SourceImage
from onetwo.project.config import CompositeSettings

GEOMETRY_VERSION = 3  # bump when the pixels a job produces change for the same inputs
PORTRAIT = 0.5  # the method's halves: 1:2 portraits, so a pair is square

SizeForAspect = Callable[[float], tuple[int, int]]
IntBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class SceneFigure:
    """A figure of a scene: its source's crop (upright pixels) and mask, and where it lands (before mirroring)."""

    mask: str
    crop: IntBox
    left: int
    top: int
    width: int
    height: int

    @property
    def scale(self) -> float:
        return self.height / (self.crop[3] - self.crop[1])


@dataclass(frozen=True)
class FigureBox:
    """What planning needs of a source's mask: its file, the figure's box and the upright source's size."""

    mask: str
    box: IntBox
    size: tuple[int, int]


@dataclass(frozen=True)
class Geometry:
    """Where each source lands: cells (left, width) spanning the full height, left to right as captioned; or, for
    a scene, `figures` in caption order drawn back to front in `front` order."""

    width: int
    height: int
    cells: tuple[tuple[int, int], ...]
    vertical_anchor: float
    background: tuple[int, int, int]
    mirrored: bool = False
    figures: tuple[SceneFigure, ...] = ()
    front: tuple[int, ...] = ()
    loss_mask: str = "none"  # written as the alpha: "seam" or "figures" (from `masks`, one per source)
    mask_floor: float = 0.0
    masks: tuple[str, ...] = ()

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


def scene_crop(figure: FigureBox, margin: float) -> IntBox:
    """The mask's box grown by `margin` of its longer side, inside the source."""
    left, top, right, bottom = figure.box
    grow = round(margin * max(right - left, bottom - top))
    return (max(0, left - grow), max(0, top - grow), min(figure.size[0], right + grow),
            min(figure.size[1], bottom + grow))


def scene_layout(figures: Sequence[FigureBox], settings: CompositeSettings, width: int, height: int,
                 rng: random.Random, mirrored: bool) -> Geometry:
    """MuDI's Seg-Mix for a caption-ordered group: each figure scaled to a random share of its largest fit in its
    share of the width, placed left to right with random gaps, neighbours overlapping by at most `scene_overlap`
    of the narrower, on one ground line or at random heights, drawn in a random front-to-back order."""
    count = len(figures)
    crops = [scene_crop(figure, settings.scene_margin) for figure in figures]
    sizes = []
    for left, top, right, bottom in crops:
        fit = min(height / (bottom - top), width / count / (right - left))
        scale = fit * rng.uniform(*settings.scene_scale)
        sizes.append((max(1, min(width // count, math.floor((right - left) * scale))),
                      max(1, min(height, math.floor((bottom - top) * scale)))))
    free = width - sum(size[0] for size in sizes)
    steps = [rng.randint(-math.floor(settings.scene_overlap * min(sizes[index][0], sizes[index + 1][0])),
                         free // count) for index in range(count - 1)]
    span = sum(size[0] for size in sizes) + sum(steps)
    lefts = [rng.randint(0, width - span)]
    for index, step in enumerate(steps):
        lefts.append(lefts[-1] + sizes[index][0] + step)
    if settings.scene_placement == "ground":
        ground = rng.randint(max(size[1] for size in sizes), height)
        tops = [ground - size[1] for size in sizes]
    else:
        tops = [rng.randint(0, height - size[1]) for size in sizes]
    front = list(range(count))
    rng.shuffle(front)
    placed = tuple(SceneFigure(figure.mask, crop, left, top, *size)
                   for figure, crop, left, top, size in zip(figures, crops, lefts, tops, sizes, strict=True))
    return Geometry(width, height, (), settings.vertical_anchor, settings.background, mirrored, placed, tuple(front))


def is_scene(settings: CompositeSettings, occurrence: int, order: int, orders: int) -> bool:
    """Whether the `occurrence`-th composite in the `order`-th left-to-right order is a scene: `scene_share` of each
    order's composites, spread evenly, the orders' rounding staggered so a group's total is floor(share x count)
    (Hermite's identity) wherever every order has as many composites; exact and seed-independent."""
    if settings.layout != "scene":
        return False
    offset = order / orders
    share = settings.scene_share
    return math.floor((occurrence + 1) * share + offset + 1e-9) > math.floor(occurrence * share + offset + 1e-9)


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


ADDED_FIELDS = ("figures", "front", "loss_mask", "mask_floor", "masks")


def job_key(sources: Sequence[SourceImage], geo: Geometry, image_format: str) -> str:
    shape = asdict(geo)
    for item in fields(Geometry):  # keys stay what they were before scenes and loss masks: no rebuild on upgrade
        if item.name in ADDED_FIELDS and shape[item.name] == item.default:
            del shape[item.name]
    payload = json.dumps([GEOMETRY_VERSION, [[str(source.path), source.fingerprint] for source in sources],
                          shape, image_format], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def plan(scans: Sequence[CharacterImages], settings: CompositeSettings,
         size_for: SizeForAspect = lambda aspect: (768, 768),
         figure_boxes: Mapping[Path, FigureBox] | None = None,
         counter: TokenCounter = CLIP_COUNTER) -> list[CompositeJob]:
    """Every unordered group gets `per_pair` composites in balanced orders, sources spread evenly, some mirrored;
    with `layout = "scene"`, `scene_share` of them are scenes, placed from `figure_boxes` (every source's mask).

    A mirrored composite is built in one order and flipped, so its caption names the characters reversed: the
    only flip augmentation that keeps image and caption in agreement.
    """
    rng = random.Random(f"onetwo:{settings.seed}")
    decks = {scan.character.name: _Deck(scan.images, rng) for scan in scans}
    mirror_rng = random.Random(f"onetwo-mirror:{settings.seed}")
    scene_rng = random.Random(f"onetwo-scene:{settings.seed}")
    jobs: list[CompositeJob] = []
    for group_index, group in enumerate(itertools.combinations(scans, settings.group_size)):
        prefix = "+".join(scan.character.slug for scan in group)
        orders = math.factorial(len(group))
        for index, order in enumerate(group_orders(group, settings.per_pair, group_index)):
            members = [group[position] for position in order]
            sources = tuple(decks[member.character.name].draw() for member in members)
            mirrored = mirror_rng.random() < settings.mirror
            geo = layout(sources, settings, size_for, mirrored)
            scene = is_scene(settings, index // orders, (index + group_index) % orders, orders)
            if scene:
                if figure_boxes is None or any(source.path not in figure_boxes for source in sources):
                    raise ValueError("scene composites need every source's figure box")
                geo = scene_layout([figure_boxes[source.path] for source in sources], settings, geo.width,
                                   geo.height, scene_rng, mirrored)
            if settings.loss_mask != "none":
                masks = tuple(figure_boxes[source.path].mask for source in sources) \
                    if settings.loss_mask == "figures" and figure_boxes is not None else ()
                if settings.loss_mask == "figures" and len(masks) != len(sources):
                    raise ValueError("loss_mask = figures needs every source's figure mask")
                geo = replace(geo, loss_mask=settings.loss_mask, mask_floor=settings.mask_floor, masks=masks)
            names = tuple(member.character.name for member in members)
            tags = tuple(source.tags for source in sources)
            stand_ins = tuple(member.character.class_token or member.character.name for member in members)
            if mirrored:
                names, tags, stand_ins = names[::-1], tags[::-1], stand_ins[::-1]
            caption = composite_caption(settings.caption, names, tags, stand_ins)
            if settings.trim_captions:
                caption = trim_to_budget(settings.caption, names, tags, counter.limit, counter, stand_ins)
            if scene and settings.scene_tag:
                caption = f"{caption}, {settings.scene_tag}"
            jobs.append(CompositeJob(f"{prefix}_{index:04d}", names, sources, caption, geo,
                                     job_key(sources, geo, settings.format)))
    return jobs


def over_budget(jobs: Sequence[CompositeJob], counter: TokenCounter = CLIP_COUNTER) -> list[tuple[CompositeJob, int]]:
    """Jobs whose caption the trainer would cut at the family's budget, with their token counts."""
    found = []
    for job in jobs:
        tokens, _ = counter.count(job.caption)
        if tokens > counter.limit:
            found.append((job, tokens))
    return found


# Community duo trainers' guides: at least 20 images a character, and 15-40 pair images per pair (docs/composites.md).
THIN_IMAGES = 20
THIN_COMPOSITES = 15


def thin_data(scans: Sequence[CharacterImages], settings: CompositeSettings) -> list[str]:
    """Where the data is thinner than the guides use: too few images of a character, too few composites a group."""
    found = [f"{scan.character.name}: {len(scan.images)} images; duo LoRA guides use at least {THIN_IMAGES} a "
             "character, so stage 1 may learn it poorly" for scan in scans if len(scan.images) < THIN_IMAGES]
    if settings.per_pair < THIN_COMPOSITES:
        found.append(f"composite.per_pair = {settings.per_pair}: duo LoRA guides use at least {THIN_COMPOSITES} pair "
                     "images a pair")
    return found
