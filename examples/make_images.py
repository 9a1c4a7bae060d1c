"""Draw the example project's single-character images: seeded, so every run gives the same files.

Each character is a simple figure with its own hair colour and outfit; the tag files say so. Run from the
repository root: python examples/make_images.py
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent / "trio" / "data"
CHARACTERS = {
    # folder (kohya "repeats_name" style): hair colour, outfit colour, tags
    "5_aoi": ((40, 90, 220), (240, 240, 250), "blue hair, long hair, white dress"),
    "5_beni": ((210, 40, 50), (30, 30, 40), "red hair, short hair, black jacket"),
    "5_kiiro": ((240, 200, 30), (60, 140, 70), "blonde hair, ponytail, green skirt"),
}
POSES = ["standing", "looking at viewer", "smile", "arms up", "from side", "full body"]


def draw_figure(rng: random.Random, hair: tuple[int, int, int], outfit: tuple[int, int, int], size: tuple[int, int],
                transparent: bool) -> Image.Image:
    width, height = size
    mode = "RGBA" if transparent else "RGB"
    top = (rng.randrange(150, 256), rng.randrange(150, 256), rng.randrange(150, 256))
    image = Image.new(mode, size, (0, 0, 0, 0) if transparent else top)
    draw = ImageDraw.Draw(image)
    if not transparent:
        for y in range(height):
            shade = tuple(int(channel * (1 - 0.4 * y / height)) for channel in top)
            draw.line([(0, y), (width, y)], fill=shade)
        for _ in range(30):
            x, y, r = rng.randrange(width), rng.randrange(height), rng.randrange(4, 30)
            draw.ellipse([x - r, y - r, x + r, y + r], outline=tuple(rng.randrange(256) for _ in range(3)), width=2)
    cx = width // 2 + rng.randrange(-width // 10, width // 10)
    head = width // 7
    head_y = height // 4
    draw.ellipse([cx - head * 1.3, head_y - head * 1.2, cx + head * 1.3, head_y + head * 2.2], fill=hair)
    draw.ellipse([cx - head, head_y - head, cx + head, head_y + head], fill=(250, 215, 190))
    draw.polygon([(cx - head * 1.8, height * 0.95), (cx + head * 1.8, height * 0.95), (cx + head * 0.8, head_y + head),
                  (cx - head * 0.8, head_y + head)], fill=outfit)
    for eye in (-1, 1):
        draw.ellipse([cx + eye * head * 0.45 - 5, head_y - 6, cx + eye * head * 0.45 + 5, head_y + 6], fill=hair)
    return image.filter(ImageFilter.SMOOTH) if not transparent else image


def main() -> None:
    for index, (folder, (hair, outfit, tags)) in enumerate(CHARACTERS.items()):
        rng = random.Random(index)
        target = ROOT / folder
        target.mkdir(parents=True, exist_ok=True)
        for number, pose in enumerate(POSES):
            size = rng.choice([(384, 576), (400, 600), (512, 512), (576, 384)])
            transparent = number == len(POSES) - 1
            image = draw_figure(rng, hair, outfit, size, transparent)
            stem = target / f"{number + 1:02d}"
            if transparent:
                image.save(stem.with_suffix(".png"), optimize=True)
            else:
                image.save(stem.with_suffix(".jpg"), quality=90)
            stem.with_suffix(".txt").write_text(f"1girl, {tags}, {pose}\n", encoding="utf-8")


if __name__ == "__main__":
    main()
