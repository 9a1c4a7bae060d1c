"""A contact sheet of built composites, to eyeball crops, pairings and the left-to-right order before GPU hours;
a composite with a loss mask is shown with its weight as an overlay beside it."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from onetwo.data.composite import CompositeJob
from onetwo.data.pixels import save_image

THUMB_HEIGHT = 256
LINE_HEIGHT = 15
LABEL_HEIGHT = 2 * LINE_HEIGHT + 4
GAP = 16  # background around every composite, so two neighbours never read as one wide picture
COLUMNS = 4
BACKGROUND = (32, 32, 32)
LABEL_COLOUR = (235, 235, 235)
DETAIL_COLOUR = (150, 150, 150)


@dataclass(frozen=True)
class SheetItem:
    label: str  # the characters in caption order, left to right: "beni | aoi"
    detail: str  # which file it is
    path: Path


def pick(stems: Sequence[str], count: int, seed: int) -> list[str]:
    """A seeded sample, shown in name order so the same project always gives the same sheet."""
    chosen = random.Random(f"preview:{seed}").sample(list(stems), min(count, len(stems)))
    return sorted(chosen)


def composite_label(names: Sequence[str]) -> str:
    """The order the caption names the characters in, which is the order they stand in: `beni | aoi`."""
    return " | ".join(names)


def sheet_items(jobs: Sequence[CompositeJob], composite_dir: Path, image_format: str, count: int,
                seed: int) -> list[SheetItem]:
    """The composites of the sheet, each labelled from its caption's names (a mirrored one is already swapped)."""
    chosen = set(pick([job.stem for job in jobs], count, seed))
    return [SheetItem(composite_label(job.names), job.stem + (", mirrored" if job.geometry.mirrored else ""),
                      composite_dir / f"{job.stem}.{image_format}")
            for job in sorted(jobs, key=lambda job: job.stem) if job.stem in chosen]


def cell_origin(index: int, columns: int, cell_width: int) -> tuple[int, int]:
    """Top-left corner of the `index`-th cell: cells of `cell_width` with GAP of background around each."""
    row, column = divmod(index, columns)
    return GAP + column * (cell_width + GAP), GAP + row * (THUMB_HEIGHT + LABEL_HEIGHT + GAP)


def _fitted(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
            width: int) -> str:
    """The text, cut with an ellipsis where it would run into the next cell."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


MASK_TINT = (200, 30, 160)  # where the loss weight is low, the overlay shades the picture with this
MASK_GAP = 4


def weight_overlay(rgb: Image.Image, weight: Image.Image) -> Image.Image:
    """The composite with its loss weight shown: full weight as it is, the floor shaded towards MASK_TINT."""
    tinted = Image.blend(rgb, Image.new("RGB", rgb.size, MASK_TINT), 0.7)
    return Image.composite(rgb, tinted, weight)


def thumbnail(image: Image.Image) -> Image.Image:
    """The composite at THUMB_HEIGHT; one with a loss weight (alpha) gets its overlay beside it."""
    width = max(1, round(image.width * THUMB_HEIGHT / image.height))
    rgb = image.convert("RGB").resize((width, THUMB_HEIGHT), Image.Resampling.LANCZOS)
    if "A" not in image.getbands():
        return rgb
    weight = image.getchannel("A").resize((width, THUMB_HEIGHT), Image.Resampling.BILINEAR)
    pair = Image.new("RGB", (2 * width + MASK_GAP, THUMB_HEIGHT), BACKGROUND)
    pair.paste(rgb, (0, 0))
    pair.paste(weight_overlay(rgb, weight), (width + MASK_GAP, 0))
    return pair


def contact_sheet(items: Sequence[SheetItem], target: Path) -> Path:
    thumbs = []
    for item in items:
        with Image.open(item.path) as image:
            thumbs.append((item, thumbnail(image)))
    cell_width = max((thumb.width for _, thumb in thumbs), default=THUMB_HEIGHT)
    columns = max(1, min(COLUMNS, len(thumbs)))
    rows = max(1, -(-len(thumbs) // columns))
    size = (GAP + columns * (cell_width + GAP), GAP + rows * (THUMB_HEIGHT + LABEL_HEIGHT + GAP))
    sheet = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for index, (item, thumb) in enumerate(thumbs):
        left, top = cell_origin(index, columns, cell_width)
        sheet.paste(thumb, (left + (cell_width - thumb.width) // 2, top))
        text_top = top + THUMB_HEIGHT + 2
        draw.text((left, text_top), _fitted(draw, item.label, font, cell_width), fill=LABEL_COLOUR, font=font)
        draw.text((left, text_top + LINE_HEIGHT), _fitted(draw, item.detail, font, cell_width), fill=DETAIL_COLOUR,
                  font=font)
    save_image(sheet, target, "png")
    return target
