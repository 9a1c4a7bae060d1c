"""Pixels: decode a source at the smallest scale that still covers its cell, crop and resize once, compose, save."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageOps

from onetwo.composite import Geometry
from onetwo.fsutil import atomic_path

Box = tuple[float, float, float, float]
TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}
SAVE_OPTIONS = {
    # compress_level 1: lossless, and zlib's fastest level costs little size over the default 6.
    "png": {"format": "PNG", "compress_level": 1},
    "webp": {"format": "WEBP", "lossless": True, "quality": 0, "method": 0},
}


def cover_box(width: int, height: int, cell_width: int, cell_height: int, vertical_anchor: float) -> Box:
    """The largest box of the cell's aspect inside the image, centred across, anchored vertically."""
    aspect = cell_width / cell_height
    if width / height > aspect:
        box_width, box_height = height * aspect, float(height)
    else:
        box_width, box_height = float(width), width / aspect
    left = (width - box_width) / 2
    top = (height - box_height) * vertical_anchor
    return (left, top, left + box_width, top + box_height)


def _flatten(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "RGBA":
        canvas = Image.new("RGB", image.size, background)
        canvas.paste(image, mask=image.getchannel("A"))
        return canvas
    return image.convert("RGB")


def _to_resizable(image: Image.Image) -> Image.Image:
    """A mode LANCZOS works on without losing transparency or the range of 16-bit and float images."""
    if image.mode in ("RGB", "RGBA", "L"):
        return image
    if image.mode in ("LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        peak = 65535 if image.mode != "F" else 1.0
        return image.convert("F").point(lambda value: value * (255 / peak)).convert("L")
    return image.convert("RGB")


def load_cell(path: Path, cell_width: int, cell_height: int, vertical_anchor: float,
              background: tuple[int, int, int]) -> tuple[Image.Image, Box]:
    """The source cropped to the cell's aspect and resized to the cell; also the crop box in source pixels."""
    with Image.open(path) as image:
        orientation = image.getexif().get(0x0112, 1)
        raw_width, raw_height = image.size
        upright = (raw_height, raw_width) if orientation in TRANSPOSING_ORIENTATIONS else (raw_width, raw_height)
        box = cover_box(*upright, cell_width, cell_height, vertical_anchor)
        scale = (box[2] - box[0]) / cell_width
        if image.format == "JPEG" and scale >= 2:
            image.draft("RGB", (math.ceil(raw_width / scale), math.ceil(raw_height / scale)))
        image = ImageOps.exif_transpose(image) if orientation != 1 else image
        ratio = image.size[0] / upright[0]
        decoded_box = tuple(value * ratio for value in box)
        cell = _to_resizable(image).resize((cell_width, cell_height), Image.Resampling.LANCZOS, box=decoded_box)
    return _flatten(cell, background), box


def compose(sources: list[Path], geo: Geometry) -> tuple[Image.Image, list[Box]]:
    canvas = Image.new("RGB", (geo.width, geo.height), geo.background)
    boxes = []
    for index, path in enumerate(sources):
        cell, box = load_cell(path, geo.cell_width(index), geo.height, geo.vertical_anchor, geo.background)
        canvas.paste(cell, (geo.cell_left(index), 0))
        boxes.append(box)
    if geo.mirrored:
        canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return canvas, boxes


def save_image(image: Image.Image, target: Path, image_format: str) -> None:
    options = dict(SAVE_OPTIONS[image_format])
    with atomic_path(target) as tmp:
        image.save(tmp, **options)
