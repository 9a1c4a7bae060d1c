"""report.json written only when it changed, and the contact sheet: a row per character, each drawing with KEPT
(green) or its reason for rejection (red) under it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps

from onetwo.data.pixels import save_image
from onetwo.fsutil import write_text_if_changed

THUMB = 128
WRAP = 21  # characters a line under a thumbnail
LINE = 13
KEPT, REJECTED = (30, 140, 60), (200, 40, 40)


def write_report(path: Path, document: dict[str, Any]) -> bool:
    """True when the file changed (a rerun that decided nothing new leaves it as it was)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_if_changed(path, json.dumps(document, indent=1, ensure_ascii=False) + "\n")


def contact_sheet(document: dict[str, Any], root: Path, target: Path) -> Path:
    characters = document.get("characters") or {}
    rows = [(name, entry.get("images") or []) for name, entry in sorted(characters.items())]
    columns = max((len(images) for _, images in rows), default=1) or 1
    captions = {id(image): textwrap.wrap("KEPT" if image.get("kept") else str(image.get("reason", "")), WRAP) or [""]
                for _, images in rows for image in images}
    # the whole reason under every drawing: the row is as tall as its longest one needs
    label, cell_h = 80, THUMB + max((len(lines) for lines in captions.values()), default=1) * LINE + 8
    sheet = Image.new("RGB", (label + columns * (THUMB + 6), max(1, len(rows)) * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for row, (name, images) in enumerate(rows):
        top = row * cell_h
        kept = sum(bool(image.get("kept")) for image in images)
        draw.text((4, top + THUMB // 2), f"{name}\n{kept}/{len(images)} kept", fill="black", font=font)
        for column, image in enumerate(images):
            left = label + column * (THUMB + 6)
            try:
                with Image.open(root / image["file"]) as opened:
                    picture = opened.convert("RGB")
            except OSError:
                picture = Image.new("RGB", (THUMB, THUMB), (128, 128, 128))
            # small drawings (64 px tests) are scaled up, pixel for pixel, so every label sits under its picture
            picture = ImageOps.contain(picture, (THUMB, THUMB), Image.Resampling.NEAREST)
            sheet.paste(picture, (left, top))
            colour = KEPT if image.get("kept") else REJECTED
            draw.rectangle((left, top, left + picture.width - 1, top + picture.height - 1), outline=colour, width=2)
            for number, line in enumerate(captions[id(image)]):
                draw.text((left, top + THUMB + 2 + number * LINE), line, fill=colour, font=font)
    save_image(sheet, target, "png")
    return target
