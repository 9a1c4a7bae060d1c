"""The two models eval needs, behind one small interface each, so another pair can be plugged in (`--backend
module:function`) and tests can plug stand-ins.

A detector turns images into figure boxes; an embedder turns crops into identity vectors, tells how different two
sets of vectors are (lower = more alike, 0 = the same), and carries the difference below which two vectors show the
same character. An optional tagger turns crops into booru tags.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    @property
    def centre_x(self) -> float:
        return (self.x0 + self.x1) / 2

    def as_tuple(self) -> tuple[float, float, float, float]:
        return self.x0, self.y0, self.x1, self.y1


class Detector(Protocol):
    name: str  # identifies the model and its settings in the cache

    def detect(self, images: Sequence[Image.Image]) -> list[list[Box]]: ...


class Embedder(Protocol):
    name: str
    threshold: float

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def differences(self, queries: np.ndarray, references: np.ndarray) -> np.ndarray: ...


class Tagger(Protocol):
    name: str

    def tag(self, images: Sequence[Image.Image]) -> list[tuple[str, ...]]: ...


@dataclass(frozen=True)
class Backends:
    detector: Detector
    embedder: Embedder
    tagger: Tagger | None = None  # booru tags per figure (trait swap / merged hints); None: no tags


def crop(image: Image.Image, box: Box) -> Image.Image:
    """The box, clipped to the image, at least one pixel each way."""
    x0 = min(max(0, int(box.x0)), image.width - 1)
    y0 = min(max(0, int(box.y0)), image.height - 1)
    x1 = max(x0 + 1, min(image.width, round(box.x1)))
    y1 = max(y0 + 1, min(image.height, round(box.y1)))
    return image.crop((x0, y0, x1, y1))
