"""kohya's aspect-ratio buckets, recomputed so onetwo can size composites to fit them and report crops.

Mirrors sd-scripts' `library/model_util.make_bucket_resolutions` and the bucket choice and cover-resize of
`BucketManager` (bucket_no_upscale off): the bucket with the nearest aspect ratio, resized to cover, centre-cropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BucketSettings:
    resolution: tuple[int, int]
    min_reso: int = 256
    max_reso: int = 1024
    step: int = 64
    enabled: bool = True

    def buckets(self) -> list[tuple[int, int]]:
        if not self.enabled:
            return [self.resolution]
        return make_bucket_resolutions(self.resolution, self.min_reso, self.max_reso, self.step)


def make_bucket_resolutions(max_reso: tuple[int, int], min_size: int = 256, max_size: int = 1024,
                            divisible: int = 64) -> list[tuple[int, int]]:
    max_area = max_reso[0] * max_reso[1]
    side = int(math.sqrt(max_area) // divisible) * divisible
    resos = {(side, side)}
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    return sorted(resos)


def settings_from_dataset(general: dict[str, Any], dataset: dict[str, Any]) -> BucketSettings:
    """The bucket settings a rendered dataset TOML gives one [[datasets]] entry (dataset keys win over general)."""
    merged = {**general, **dataset}
    resolution = merged.get("resolution", 512)
    if isinstance(resolution, (list, tuple)):
        size = (int(resolution[0]), int(resolution[-1]))
    elif isinstance(resolution, str):
        parts = [int(part) for part in resolution.split(",")]
        size = (parts[0], parts[-1])
    else:
        size = (int(resolution), int(resolution))
    return BucketSettings(size, int(merged.get("min_bucket_reso", 256)), int(merged.get("max_bucket_reso", 1024)),
                          int(merged.get("bucket_reso_steps", 64)), bool(merged.get("enable_bucket", False)))


def nearest_bucket(width: int, height: int, buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
    aspect = width / height
    return min(buckets, key=lambda bucket: abs(bucket[0] / bucket[1] - aspect))


def crop_fraction(width: int, height: int, bucket: tuple[int, int]) -> float:
    """The share of the image kohya cuts away after resizing it to cover `bucket`."""
    scale = max(bucket[0] / width, bucket[1] / height)
    covered = (width * scale) * (height * scale)
    return max(0.0, 1 - bucket[0] * bucket[1] / covered)


def fit_size(aspect: float, settings: BucketSettings) -> tuple[int, int]:
    """The bucket a picture of this aspect would land in: a composite of exactly this size is never cropped."""
    return nearest_bucket(round(aspect * 1000), 1000, settings.buckets())
