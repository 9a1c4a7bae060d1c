"""A contact sheet of built composites, to eyeball crops and pairings before spending GPU hours."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from onetwo.imaging import save_image

THUMB_HEIGHT = 256
LABEL_HEIGHT = 18
COLUMNS = 4


def pick(stems: Sequence[str], count: int, seed: int) -> list[str]:
    """A seeded sample, shown in name order so the same project always gives the same sheet."""
    chosen = random.Random(f"preview:{seed}").sample(list(stems), min(count, len(stems)))
    return sorted(chosen)


def contact_sheet(images: Sequence[tuple[str, Path]], target: Path) -> Path:
    thumbs = []
    for label, path in images:
        with Image.open(path) as image:
            image = image.convert("RGB")
            width = max(1, round(image.width * THUMB_HEIGHT / image.height))
            thumbs.append((label, image.resize((width, THUMB_HEIGHT), Image.Resampling.LANCZOS)))
    cell_width = max((thumb.width for _, thumb in thumbs), default=THUMB_HEIGHT)
    columns = max(1, min(COLUMNS, len(thumbs)))
    rows = max(1, -(-len(thumbs) // columns))
    sheet = Image.new("RGB", (columns * cell_width, rows * (THUMB_HEIGHT + LABEL_HEIGHT)), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for index, (label, thumb) in enumerate(thumbs):
        left, top = (index % columns) * cell_width, (index // columns) * (THUMB_HEIGHT + LABEL_HEIGHT)
        sheet.paste(thumb, (left + (cell_width - thumb.width) // 2, top))
        draw.text((left + 4, top + THUMB_HEIGHT + 3), label, fill=(230, 230, 230), font=font)
    save_image(sheet, target, "png")
    return target
