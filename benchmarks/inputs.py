"""Seeded benchmark inputs that make codecs work as they do on drawn pictures: gradients, shapes, lines, grain."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

GENERATOR_VERSION = 1  # bump when the pixels change, so cached sets are rebuilt
CHARACTERS = ("aoi", "beni", "kiiro")
IMAGES_PER_CHARACTER = 60
PNG_EVERY = 6  # one source in six is an RGBA PNG, the rest JPEG q92
TAGS = ("1girl", "solo", "smile", "long hair", "short hair", "blue eyes", "red eyes", "looking at viewer", "dress",
        "school uniform", "skirt", "standing", "sitting", "outdoors", "indoors", "hat", "ribbon", "bow",
        "open mouth", "closed eyes", "holding", "simple background", "white background", "jacket", "gloves")


def _gradient(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    angle = rng.uniform(0, np.pi)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    t = np.clip(x * np.cos(angle) + y * np.sin(angle), 0, 1)[..., None]
    return start * (1 - t) + end * t


def _shapes(draw: ImageDraw.ImageDraw, rng: random.Random, width: int, height: int, count: int) -> None:
    for _ in range(count):
        colour = tuple(rng.randrange(256) for _ in range(3))
        x0, y0 = rng.uniform(-0.1, 1) * width, rng.uniform(-0.1, 1) * height
        x1, y1 = x0 + rng.uniform(0.05, 0.5) * width, y0 + rng.uniform(0.05, 0.5) * height
        kind = rng.random()
        if kind < 0.4:
            draw.ellipse((x0, y0, x1, y1), fill=colour, outline=(0, 0, 0), width=rng.randrange(2, 8))
        elif kind < 0.7:
            points = [(rng.uniform(x0, x1), rng.uniform(y0, y1)) for _ in range(rng.randrange(3, 7))]
            draw.polygon(points, fill=colour, outline=(20, 20, 20), width=rng.randrange(2, 6))
        else:
            points = [(rng.uniform(0, width), rng.uniform(0, height)) for _ in range(rng.randrange(2, 6))]
            draw.line(points, fill=colour, width=rng.randrange(2, 14), joint="curve")


def make_image(seed: int, width: int, height: int, rgba: bool) -> Image.Image:
    """Background gradient, a figure of shapes, soft edges, then grain: what a drawn picture costs a codec."""
    nrng = np.random.default_rng(seed)
    rng = random.Random(seed)
    image = Image.fromarray(_gradient(nrng, width, height).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    _shapes(draw, rng, width, height, 25)
    for _ in range(120):  # strands and hatching: the fine detail of line art
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        points = [(x, y)] + [(x := x + rng.uniform(-80, 80), y := y + rng.uniform(0, 120)) for _ in range(4)]
        draw.line(points, fill=tuple(rng.randrange(256) for _ in range(3)), width=rng.randrange(1, 4))
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    pixels = np.asarray(image, dtype=np.int16) + nrng.normal(0, 3.5, (height, width, 1)).astype(np.int16)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if not rgba:
        return image
    mask = Image.new("L", (width, height), 0)
    figure = ImageDraw.Draw(mask)
    figure.ellipse((width * 0.3, height * 0.05, width * 0.7, height * 0.35), fill=255)
    figure.rounded_rectangle((width * 0.2, height * 0.3, width * 0.8, height * 0.98), radius=width // 10, fill=255)
    image.putalpha(mask.filter(ImageFilter.GaussianBlur(2)))
    return image


def image_size(rng: random.Random) -> tuple[int, int]:
    width = rng.randrange(800, 2049, 8)
    return width, rng.randrange(max(1200, width * 3 // 4), 2049, 8) if width < 2048 else 2048


def ensure_inputs(root: Path, seed: int) -> Path:
    """3 characters x 60 images with captions under root/inputs-<seed>-v<N>; reused when already complete."""
    folder = root / f"inputs-{seed}-v{GENERATOR_VERSION}"
    done = folder / "complete.json"
    if done.is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    rng = random.Random(f"bench:{seed}")
    listing = []
    for character in CHARACTERS:
        (folder / character).mkdir(parents=True)
        for index in range(IMAGES_PER_CHARACTER):
            width, height = image_size(rng)
            rgba = index % PNG_EVERY == PNG_EVERY - 1
            image = make_image(rng.randrange(1 << 30), width, height, rgba)
            path = folder / character / f"{index:03d}.{'png' if rgba else 'jpg'}"
            if rgba:
                image.save(path)
            else:
                image.save(path, quality=92)
            tags = [character, *rng.sample(TAGS, rng.randrange(8, 20))]
            path.with_suffix(".txt").write_text(", ".join(tags), encoding="utf-8")
            listing.append([path.relative_to(folder).as_posix(), width, height, path.stat().st_size])
    done.write_text(json.dumps({"seed": seed, "version": GENERATOR_VERSION, "files": listing}), encoding="utf-8")
    return folder


def ensure_planning_set(root: Path, count: int, seed: int, characters: int = 5) -> Path:
    """A project of `count` tiny but real, distinct images with tag files: costs per image, not per pixel."""
    folder = root / f"planning-{count}-{seed}-v{GENERATOR_VERSION}"
    project = folder / "onetwo.toml"
    if project.is_file():
        return project
    shutil.rmtree(folder, ignore_errors=True)
    rng = random.Random(f"planning:{seed}")
    names = [f"char{index}" for index in range(characters)]
    for number in range(count):
        name = names[number % characters]
        path = folder / "data" / name / f"{number:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", (16, 24), (number % 256, number // 256 % 256, number // 65536))
        image.save(path, quality=90)
        tags = [name, *rng.sample(TAGS, rng.randrange(8, 20))]
        path.with_suffix(".txt").write_text(", ".join(tags), encoding="utf-8")
    lines = ['[project]', 'name = "planning"', 'base_model = "model.safetensors"', 'work_dir = "work"', '']
    for name in names:
        lines += ['[[characters]]', f'name = "{name}"', f'images = "data/{name}"', '']
    project.write_text("\n".join(lines), encoding="utf-8")
    return project
