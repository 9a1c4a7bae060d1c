"""kohya's aspect-ratio buckets, the one model of them onetwo has: the settings a rendered dataset gives, the buckets
they make, the bucket each image lands in and what its crop cuts, the size a composite needs to fit one. Pure.

Mirrors sd-scripts (the pinned commit): config_util's fallbacks (dataset → general → the training config, then
kohya's defaults), both spellings of a resolution (a dataset's 640 or [640, 512], train_network.py's "640" or
"640,512"), `model_util.make_bucket_resolutions`, and `BucketManager.select_bucket` with its cover-resize and
centre crop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

DEFAULT_RESOLUTION = 512  # what onetwo assumes where neither the dataset nor the training config sets one
# train_network.py's argparse names for the dataset keys it falls back to (config_util's name map).
TRAIN_KEY_OF = {"batch_size": "train_batch_size", "num_repeats": "dataset_repeats"}
# config_util's defaults for the dataset keys the buckets and batches depend on.
DATASET_DEFAULTS: dict[str, Any] = {"batch_size": 1, "enable_bucket": False, "min_bucket_reso": 256,
                                    "max_bucket_reso": 1024, "bucket_reso_steps": 64, "bucket_no_upscale": False,
                                    "resolution": None}
RESOLUTION_FORMS = {"dataset": "one size (640) or [width, height] ([640, 512])",
                    "training": 'a string, "640" or "width,height" ("640,512")'}


def parse_resolution(value: Any, level: str) -> tuple[int, int]:
    """(width, height) of a resolution as kohya reads it at `level`: "dataset" (a dataset TOML's, config_util's
    int or [int, int]) or "training" (train_network.py's --resolution string); ValueError says what kohya takes."""
    if level == "dataset":
        numbers = (list(value) if len(value) == 2 else []) if isinstance(value, list | tuple) else [value]
        valid = bool(numbers) and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in numbers)
    else:
        parts = value.split(",") if isinstance(value, str) else []
        valid = len(parts) in (1, 2) and all(part.strip().isdigit() and int(part) > 0 for part in parts)
        numbers = [int(part) for part in parts] if valid else []
    if not valid:
        raise ValueError(f"kohya takes {RESOLUTION_FORMS[level]} here")
    return numbers[0], numbers[-1]


@dataclass(frozen=True)
class BucketSettings:
    resolution: tuple[int, int]
    min_reso: int = 256
    max_reso: int = 1024
    step: int = 64
    enabled: bool = True
    no_upscale: bool = False

    def buckets(self) -> list[tuple[int, int]]:
        """The predefined buckets (with bucket_no_upscale kohya sizes each image's own bucket instead: `select`)."""
        return list(self._predefined)

    @cached_property
    def _predefined(self) -> tuple[tuple[int, int], ...]:
        if not self.enabled:
            return (self.resolution,)
        return tuple(make_bucket_resolutions(self.resolution, self.min_reso, self.max_reso, self.step))

    def select(self, width: int, height: int) -> tuple[int, int]:
        """BucketManager.select_bucket: the predefined bucket of an image's exact size, else of the nearest aspect;
        with bucket_no_upscale the image's own size, shrunk to the resolution's area, cut to whole steps."""
        return self._landing(width, height)[0]

    def cut(self, width: int, height: int) -> float:
        """The share of an image kohya's centre crop cuts away once it has resized the image for its bucket."""
        (bucket_width, bucket_height), (resized_width, resized_height) = self._landing(width, height)
        return max(0.0, 1 - bucket_width * bucket_height / (resized_width * resized_height))

    def _landing(self, width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(the bucket, the size kohya resizes the image to before cropping it to the bucket)."""
        if self.no_upscale and self.enabled:
            return _no_upscale_landing(width, height, self.resolution[0] * self.resolution[1], self.step)
        buckets = self._predefined
        bucket = (width, height) if (width, height) in buckets else nearest_bucket(width, height, buckets)
        scale = bucket[1] / height if width / height > bucket[0] / bucket[1] else bucket[0] / width
        return bucket, (int(width * scale + 0.5), int(height * scale + 0.5))


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


def _round_to_steps(value: float, steps: int) -> int:
    value = int(value + 0.5)
    return value - value % steps


def _no_upscale_landing(width: int, height: int, max_area: int,
                        steps: int) -> tuple[tuple[int, int], tuple[int, int]]:
    aspect = width / height
    if width * height > max_area:
        resized_width = math.sqrt(max_area * aspect)
        resized_height = max_area / resized_width
        width_rounded = _round_to_steps(resized_width, steps)
        height_in_wr = _round_to_steps(width_rounded / aspect, steps)
        height_rounded = _round_to_steps(resized_height, steps)
        width_in_hr = _round_to_steps(height_rounded * aspect, steps)
        if abs(width_rounded / height_in_wr - aspect) < abs(width_in_hr / height_rounded - aspect):
            width, height = width_rounded, int(width_rounded / aspect + 0.5)
        else:
            width, height = int(height_rounded * aspect + 0.5), height_rounded
    return (width - width % steps, height - height % steps), (width, height)


def setting(key: str, levels: Sequence[Mapping[str, Any]], default: Any = None) -> Any:
    """config_util's search_value: the first level that has the key with a value that is not None."""
    for level in levels:
        value = level.get(key)
        if value is not None:
            return value
    return default


def dataset_levels(general: Mapping[str, Any], dataset: Mapping[str, Any],
                   flat_config: Mapping[str, Any] | None = None) -> list[Mapping[str, Any]]:
    """Where config_util looks for a dataset key, first to last; the training config under kohya's argparse names."""
    flat = flat_config or {}
    return [dataset, general, {key: flat.get(TRAIN_KEY_OF.get(key, key)) for key in DATASET_DEFAULTS}]


def settings_from_dataset(general: Mapping[str, Any], dataset: Mapping[str, Any],
                          flat_config: Mapping[str, Any] | None = None) -> BucketSettings:
    """The bucket settings kohya gives one [[datasets]] entry of a dataset TOML run with this training config.
    ValueError when its resolution is not one kohya reads (render reports it with the key's origin first)."""
    levels = dataset_levels(general, dataset, flat_config)
    value = {key: setting(key, levels, default) for key, default in DATASET_DEFAULTS.items()}
    from_training = setting("resolution", levels[:2]) is None
    resolution = value["resolution"]
    size = (DEFAULT_RESOLUTION,) * 2 if resolution is None else parse_resolution(
        resolution, "training" if from_training else "dataset")
    return BucketSettings(size, int(value["min_bucket_reso"]), int(value["max_bucket_reso"]),
                          int(value["bucket_reso_steps"]), bool(value["enable_bucket"]),
                          bool(value["bucket_no_upscale"]))


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
