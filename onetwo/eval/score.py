"""Per image: detect the figures, embed each, assign them to characters, classify; plus the seam score. The ONNX
calls are batched, and everything per image goes through the cache."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from onetwo.eval.backends import Backends, Box, crop
from onetwo.eval.cache import Entry, FeatureCache, file_key
from onetwo.eval.identify import Verdict, classify, figures_of
from onetwo.eval.samples import Sample
from onetwo.eval.seam import seam_score
from onetwo.eval.traits import figure_hint

IMAGE_BATCH = 16
MAX_FIGURES = 8  # more boxes than this in one sample is noise: keep the most confident
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Settings:
    threshold: float  # the embedder's difference at or below which a figure is a character
    blend_margin: float  # two characters within this of each other (both under the threshold): a blend
    seam_threshold: float


@dataclass(frozen=True)
class Scored:
    sample: Sample
    verdict: Verdict


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def load_reference(path: Path, background: tuple[int, int, int]) -> Image.Image:
    """A training image as training saw it: upright, transparency flattened onto the composites' background (a
    cut-out's transparent pixels are often stored black, which CCIP would otherwise see)."""
    from onetwo.data.pixels import load_upright

    return load_upright(path, background)


def _analyse(paths: Sequence[Path], backends: Backends, cache: FeatureCache, whole: bool,
             progress: Callable[[int], None] | None = None,
             background: tuple[int, int, int] = WHITE) -> dict[Path, Entry]:
    """Cache lookups first; the rest in batches: one detector call and one embedder call per batch."""
    role = "reference" if whole else "sample"
    variant = f"on {bytes(background).hex()}" if whole else ""  # a reference's vector depends on the background
    result: dict[Path, Entry] = {}
    todo = []
    for path in paths:
        entry = cache.get(file_key(path, role, variant))
        if entry is not None:
            result[path] = entry
        else:
            todo.append(path)
    for start in range(0, len(todo), IMAGE_BATCH):
        chunk = todo[start:start + IMAGE_BATCH]
        images = [load_reference(path, background) if whole else load_rgb(path) for path in chunk]
        if whole:
            boxes_per_image = [[Box(0, 0, image.width, image.height, 1.0)] for image in images]
        else:
            boxes_per_image = [sorted(sorted(found, key=lambda box: -box.score)[:MAX_FIGURES],
                                      key=lambda box: box.centre_x) for found in backends.detector.detect(images)]
        crops = [crop(image, box) for image, boxes in zip(images, boxes_per_image, strict=True) for box in boxes]
        features = backends.embedder.embed(crops) if crops else np.zeros((0, 0), np.float32)
        tagger = None if whole else backends.tagger
        tags = tagger.tag(crops) if tagger and crops else []
        row = 0
        for path, image, boxes in zip(chunk, images, boxes_per_image, strict=True):
            entry = Entry(tuple((box.x0, box.y0, box.x1, box.y1, box.score) for box in boxes),
                          features[row:row + len(boxes)], None if whole else seam_score(image),
                          tuple(tags[row:row + len(boxes)]))
            row += len(boxes)
            cache.put(file_key(path, role, variant), entry)
            result[path] = entry
        if progress:
            progress(len(chunk))
    return result


def reference_features(references: dict[str, Sequence[Path]], backends: Backends, cache: FeatureCache,
                       background: tuple[int, int, int] = WHITE) -> dict[str, np.ndarray]:
    """Each character's reference images, embedded whole (they show one character each), transparency flattened
    onto `background` (the project's `composite.background`)."""
    entries = _analyse([path for paths in references.values() for path in paths], backends, cache, whole=True,
                       background=background)
    return {name: np.concatenate([entries[path].features for path in paths]) for name, paths in references.items()}


def character_distances(features: np.ndarray, references: dict[str, np.ndarray], backends: Backends) -> np.ndarray:
    """(figures, characters): the median difference of each figure to each character's references."""
    names = list(references)
    stacked = np.concatenate([references[name] for name in names])
    bounds = np.cumsum([0] + [len(references[name]) for name in names])
    distances = np.zeros((len(features), len(names)), np.float32)
    for start in range(0, len(features), 64):
        block = backends.embedder.differences(features[start:start + 64], stacked)
        for column in range(len(names)):
            distances[start:start + 64, column] = np.median(block[:, bounds[column]:bounds[column + 1]], axis=1)
    return distances


def score_samples(samples: Sequence[Sample], references: dict[str, np.ndarray], backends: Backends,
                  settings: Settings, cache: FeatureCache, progress: Callable[[int], None] | None = None,
                  distinctive: Mapping[str, frozenset[str]] | None = None) -> list[Scored]:
    """`distinctive`: each character's distinctive caption tags, for the figures' trait-swap and merged hints
    (where the backends tag figures)."""
    entries = _analyse([sample.path for sample in samples], backends, cache, whole=False, progress=progress)
    names = list(references)
    all_features = [entries[sample.path].features for sample in samples]
    counts = [len(features) for features in all_features]
    nonempty = [features for features in all_features if len(features)]
    stacked = np.concatenate(nonempty) if nonempty else np.zeros((0, 1), np.float32)
    distances = character_distances(stacked, references, backends) if len(stacked) else np.zeros((0, len(names)))
    scored, row = [], 0
    for sample, count in zip(samples, counts, strict=True):
        entry = entries[sample.path]
        boxes = [box[:4] for box in entry.boxes]
        figures = figures_of(boxes, distances[row:row + count], names, settings.threshold, settings.blend_margin)
        if distinctive is not None and len(entry.tags) == len(figures):
            figures = tuple(replace(figure, tags=tags, hint=figure_hint(figure.name, figure.ambiguous, tags,
                                                                        distinctive))
                            for figure, tags in zip(figures, entry.tags, strict=True))
        row += count
        seam = float(entry.seam or 0.0)
        verdict = Verdict(sample.characters, classify(sample.characters, figures), figures,
                          seam > settings.seam_threshold, seam)
        scored.append(Scored(sample, verdict))
    return scored
