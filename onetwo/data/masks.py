"""Figure masks: which pixels of a source are the character. From the image's own alpha where it has real
transparency, else from a segmentation model (`segment.py`, onetwo[masks]); cached in work_dir by the source's
path, size and mtime, so a rerun decodes nothing and a changed source gets a new mask."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image, ImageOps
from tqdm import tqdm

from onetwo.data.scan import CharacterImages, SourceImage
from onetwo.errors import OnetwoError
from onetwo.fsutil import atomic_path, write_text_atomic

MASK_VERSION = 1
TRANSPARENT_SHARE = 0.01  # real transparency: at least this share of the pixels is under half opacity
HALF = 128
MASKS_EXTRA = "pip install 'onetwo[masks]'"

MaskBox = tuple[int, int, int, int]


class Segmenter(Protocol):
    name: str  # recorded as the masks' origin

    def segment(self, image: Image.Image) -> Image.Image: ...  # an L mask of the image's size, 255 = figure


@dataclass(frozen=True)
class FigureMask:
    file: Path
    origin: str  # "alpha" or the segmenter's name
    size: tuple[int, int]  # the upright source's size, which the mask has
    box: MaskBox | None  # the figure's bounding box (mask at least half) in upright source pixels; None: empty
    coverage: float  # share of the frame at least half figure
    pieces: int  # separate parts of the figure, each at least PIECE_SHARE of it


def mask_key(source: SourceImage) -> str:
    payload = json.dumps([MASK_VERSION, str(source.path), source.size, source.mtime_ns])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def open_upright(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return ImageOps.exif_transpose(image)


def alpha_of(image: Image.Image) -> Image.Image | None:
    """The image's alpha as a mask where enough of it is transparent; None for an opaque image."""
    if image.mode in ("LA", "PA") or (image.mode in ("P", "RGB", "L") and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode != "RGBA":
        return None
    alpha = image.getchannel("A")
    histogram = alpha.histogram()
    if sum(histogram[:HALF]) < TRANSPARENT_SHARE * image.width * image.height:
        return None
    return alpha


PIECE_SHARE = 0.02  # a part smaller than this share of the figure (a stray speck) is not counted as a piece
STATS_SIZE = 64


def pieces(mask: Image.Image) -> int:
    """Connected parts of the half-figure mask at 64 px, 4-neighbour, ignoring specks."""
    small = mask.resize((STATS_SIZE, STATS_SIZE), Image.BILINEAR)
    on = [value >= HALF for value in small.tobytes()]
    total = sum(on)
    seen = [False] * len(on)
    sizes = []
    for start, value in enumerate(on):
        if not value or seen[start]:
            continue
        seen[start] = True
        stack, size = [start], 0
        while stack:
            index = stack.pop()
            size += 1
            row, col = divmod(index, STATS_SIZE)
            for near_row, near_col in ((row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1)):
                near = near_row * STATS_SIZE + near_col
                if 0 <= near_row < STATS_SIZE and 0 <= near_col < STATS_SIZE and on[near] and not seen[near]:
                    seen[near] = True
                    stack.append(near)
        sizes.append(size)
    return sum(1 for size in sizes if size >= PIECE_SHARE * total)


def describe(mask: Image.Image, file: Path, origin: str) -> FigureMask:
    half = mask.point(lambda value: 255 if value >= HALF else 0)
    covered = half.histogram()[255]
    return FigureMask(file, origin, mask.size, half.getbbox(), covered / (mask.width * mask.height), pieces(mask))


class MaskCache:
    """work_dir/masks/<key>.png and an index of what each holds, read once and written atomically."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.index_file = folder / "index.json"
        try:
            data = json.loads(self.index_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}  # an unreadable index only costs recomputing the masks
        self.entries: dict[str, dict] = data.get("masks", {}) if data.get("version") == MASK_VERSION else {}

    def get(self, source: SourceImage) -> FigureMask | None:
        entry = self.entries.get(mask_key(source))
        file = self.folder / f"{mask_key(source)}.png"
        if not entry or not file.is_file():
            return None
        box = tuple(entry["box"]) if entry["box"] else None
        return FigureMask(file, entry["origin"], tuple(entry["size"]), box, entry["coverage"], entry["pieces"])

    def put(self, source: SourceImage, mask: Image.Image, origin: str) -> FigureMask:
        file = self.folder / f"{mask_key(source)}.png"
        with atomic_path(file) as tmp:
            mask.save(tmp, format="PNG", compress_level=1)
        found = describe(mask, file, origin)
        self.entries[mask_key(source)] = {"source": str(source.path), "origin": origin, "size": list(found.size),
                                          "box": list(found.box) if found.box else None,
                                          "coverage": round(found.coverage, 4), "pieces": found.pieces}
        return found

    def save(self) -> None:
        payload = {"version": MASK_VERSION, "masks": dict(sorted(self.entries.items()))}
        write_text_atomic(self.index_file, json.dumps(payload, indent=1) + "\n")


def offline_wanted() -> bool:
    """huggingface_hub's own switch: HF_HUB_OFFLINE=1 reads the cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def load_segmenter() -> Segmenter:
    """The default backend, or one clear error naming the extra to install or the model file missing."""
    try:
        import huggingface_hub  # noqa: F401
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnetwoError(f"figure masks for opaque images need the segmentation model's runtime ({exc.name} is "
                          f"missing): {MASKS_EXTRA}, or give every source an alpha channel") from exc
    from onetwo.data.segment import load_isnet

    return load_isnet(offline_wanted())


def figure_masks(sources: Sequence[SourceImage], folder: Path,
                 segmenter: Callable[[], Segmenter] = load_segmenter, progress: bool = True) -> dict[Path, FigureMask]:
    """Every source's mask, from the cache where its path, size and mtime match; the segmenter is loaded only when
    an uncached source has no transparency, and before any mask is written, so a missing backend fails first."""
    cache = MaskCache(folder)
    found: dict[Path, FigureMask] = {}
    todo: list[tuple[SourceImage, bool]] = []
    for source in dict.fromkeys(sources):
        cached = cache.get(source)
        if cached:
            found[source.path] = cached
        else:
            with Image.open(source.path) as image:
                opaque = alpha_of(image) is None
            todo.append((source, opaque))
    if not todo:
        return found
    model = segmenter() if any(opaque for _, opaque in todo) else None
    try:
        for source, opaque in tqdm(todo, desc="figure masks", unit="img", disable=not progress):
            image = open_upright(source.path)
            alpha = None if opaque else alpha_of(image)
            if alpha is not None:
                found[source.path] = cache.put(source, alpha, "alpha")
            else:
                assert model is not None
                found[source.path] = cache.put(source, model.segment(image.convert("RGB")), model.name)
    finally:
        cache.save()
    return found


EMPTY_SHARE = 0.02  # a figure under this share of the frame is no figure
FULL_SHARE = 0.95  # a "figure" over this share of the frame is the whole picture
MANY_PIECES = 4  # a character in this many separate parts is more likely a bad mask than a figure
LISTED = 5


def doubtful(mask: FigureMask) -> str:
    """Why a mask cannot be right, or ""."""
    if mask.box is None or mask.coverage < EMPTY_SHARE:
        return "empty"
    if mask.coverage > FULL_SHARE:
        return "covers nearly the whole frame"
    if mask.pieces >= MANY_PIECES:
        return f"in {mask.pieces} separate pieces"
    return ""


def mask_report(scans: Sequence[CharacterImages], masks: dict[Path, FigureMask]) -> tuple[list[str], list[str]]:
    """Per character how many images have masks and from where (lines), and the masks that cannot be right
    (warnings, naming the files)."""
    lines, warnings = [], []
    for item in scans:
        found = [masks[image.path] for image in item.images if image.path in masks]
        origins = Counter(mask.origin for mask in found)
        where = ", ".join(f"{count} {origin}" for origin, count in sorted(origins.items()))
        lines.append(f"{item.character.name}: figure masks for {len(found)} of {len(item.images)} images"
                     + (f" ({where})" if where else ""))
        bad = [(image, why) for image in item.images if image.path in masks and (why := doubtful(masks[image.path]))]
        if bad:
            shown = "; ".join(f"{image.rel}: {why}" for image, why in bad[:LISTED])
            more = f"; and {len(bad) - LISTED} more" if len(bad) > LISTED else ""
            warnings.append(f"{item.character.name}: {len(bad)} figure mask(s) cannot be right ({shown}{more}); "
                            "give those images an alpha channel of the figure, or leave them out of the scenes")
    return lines, warnings
