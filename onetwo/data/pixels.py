"""Pixels: decode a source at the smallest scale that still covers its cell, crop and resize once, compose, save;
and where kohya's loader would see other pixels than onetwo (`kohya_difference`), the upright, flattened copy it
trains on instead (`load_upright`)."""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageOps

from onetwo.data.composite import Geometry, SceneFigure
from onetwo.fsutil import atomic_path

Box = tuple[float, float, float, float]
CellKey = tuple[str, int, int, float, tuple[int, int, int]]
TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}
# Both lossless; measured on 768x768 composites of textured drawings (benchmarks/README.md): WebP at method 0
# encodes in 60% of the time of the fastest PNG and is 10% smaller; for PNG, zlib level 1 with the RLE strategy is
# both faster and 7% smaller than level 1's default strategy, and 3.5x faster than Pillow's default level 6.
SAVE_OPTIONS = {
    "png": {"format": "PNG", "compress_level": 1, "compress_type": 3},  # 3: Z_RLE
    "webp": {"format": "WEBP", "lossless": True, "quality": 0, "method": 0},
}
# kohya trains on the RGB under a loss-weight alpha: WebP must keep it exactly even where the alpha is low.
RGBA_OPTIONS = {"webp": {"exact": True}}
# Integer pre-reduction only where a single LANCZOS pass would span more than this many source pixels per output
# pixel: Pillow documents 3.0 as indistinguishable from a fair resize, and it bounds the cost of huge non-JPEGs.
REDUCING_GAP = 3.0
LANCZOS_REACH = 3  # LANCZOS weighs source pixels up to 3 output pixels away


@dataclass
class Decoded:
    """A source opened at the scale it will be resized from: upright, in the mode it will be resized in."""

    image: Image.Image
    box: Box  # the crop in the upright source's own pixels, for the manifest
    decoded_box: Box  # the same crop in `image`'s pixels


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


def _to_resizable(image: Image.Image) -> Image.Image:
    """A mode LANCZOS works on without losing transparency or the range of 16-bit and float images."""
    if image.mode in ("LA", "PA") or (image.mode in ("P", "RGB", "L") and "transparency" in image.info):
        return image.convert("RGBA")  # a palette entry or colour key (PNG tRNS) marked transparent included
    if image.mode in ("RGB", "RGBA", "L"):
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        peak = 65535 if image.mode != "F" else 1.0
        return image.convert("F").point(lambda value: value * (255 / peak)).convert("L")
    return image.convert("RGB")


def decode(path: Path, cell_width: int, cell_height: int, vertical_anchor: float) -> Decoded:
    """Decode the source, a JPEG at the smallest DCT scale (1/2, 1/4, 1/8) that still covers the cell."""
    with Image.open(path) as image:
        orientation = image.getexif().get(0x0112, 1)
        raw_width, raw_height = image.size
        upright = (raw_height, raw_width) if orientation in TRANSPOSING_ORIENTATIONS else (raw_width, raw_height)
        box = cover_box(*upright, cell_width, cell_height, vertical_anchor)
        scale = (box[2] - box[0]) / cell_width
        if image.format == "JPEG" and scale >= 2:
            image.draft("RGB", (math.ceil(raw_width / scale), math.ceil(raw_height / scale)))
        image.load()
        upright_image = ImageOps.exif_transpose(image) if orientation != 1 else image
        ratio = upright_image.size[0] / upright[0]
        resizable = _to_resizable(upright_image)
    decoded_box = (box[0] * ratio, box[1] * ratio, box[2] * ratio, box[3] * ratio)
    return Decoded(resizable, box, decoded_box)


def _flattened_region(image: Image.Image, box: Box, scale: float,
                      background: tuple[int, int, int]) -> tuple[Image.Image, Box]:
    """Transparency flattened before resampling, on the crop and the filter's reach only.

    Resampling is linear, so this equals Pillow's premultiplied RGBA resize followed by flattening, at a third of
    the cost, and no colour of a fully transparent pixel can bleed in.
    """
    margin = math.ceil(scale * (LANCZOS_REACH + REDUCING_GAP)) + 2
    left, top = max(0, math.floor(box[0]) - margin), max(0, math.floor(box[1]) - margin)
    right, bottom = min(image.width, math.ceil(box[2]) + margin), min(image.height, math.ceil(box[3]) + margin)
    region = image.crop((left, top, right, bottom))
    canvas = Image.new("RGB", region.size, background)
    canvas.paste(region, mask=region.getchannel("A"))
    return canvas, (box[0] - left, box[1] - top, box[2] - left, box[3] - top)


def load_cell(path: Path, cell_width: int, cell_height: int, vertical_anchor: float,
              background: tuple[int, int, int]) -> tuple[Image.Image, Box]:
    """The source cropped to the cell's aspect and resized to the cell; also the crop box in source pixels."""
    decoded = decode(path, cell_width, cell_height, vertical_anchor)
    image, decoded_box = decoded.image, decoded.decoded_box
    if image.mode == "RGBA":
        scale = (decoded_box[2] - decoded_box[0]) / cell_width
        image, decoded_box = _flattened_region(image, decoded_box, scale, background)
    cell = image.resize((cell_width, cell_height), Image.Resampling.LANCZOS, box=decoded_box,
                        reducing_gap=REDUCING_GAP)
    return (cell if cell.mode == "RGB" else cell.convert("RGB")), decoded.box


def load_upright(path: Path, background: tuple[int, int, int]) -> Image.Image:
    """The whole source as the composites see it: upright, transparency flattened onto `background`, RGB."""
    with Image.open(path) as image:
        orientation = image.getexif().get(0x0112, 1)
        size = (image.height, image.width) if orientation in TRANSPOSING_ORIENTATIONS else image.size
    return load_cell(path, *size, 0.5, background)[0]


def kohya_difference(image: Image.Image) -> str:
    """Why sd-scripts' loader (Image.open, then convert("RGB") unless RGB; no EXIF transpose, no alpha) would see
    other pixels than onetwo's decoding of the same opened, loaded image; "" when it sees the same."""
    orientation = image.getexif().get(0x0112, 1)
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        how = "sideways" if orientation in TRANSPOSING_ORIENTATIONS else "mirrored or upside down"
        return f"EXIF orientation {orientation}: kohya ignores it and would train it {how}"
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        return f"{image.mode} ({'16-bit' if image.mode.startswith('I;16') else '32-bit'}): kohya clips it to 8 bits"
    if image.mode == "CMYK":
        return "CMYK: stored as RGB, so every reader converts it the same way"
    resizable = _to_resizable(image)
    if resizable.mode == "RGBA" and resizable.getchannel("A").getextrema()[0] < 255:
        kind = {"RGBA": "alpha", "LA": "alpha", "PA": "alpha", "P": "palette"}.get(image.mode, "colour-key (tRNS)")
        return f"{kind} transparency: kohya drops it and would train on the colours under it"
    return ""


def compose(sources: list[Path], geo: Geometry,
            cells: MutableMapping[CellKey, tuple[Image.Image, Box]] | None = None) -> tuple[Image.Image, list[Box]]:
    """The composite and each source's crop; `cells` reuses resized cells between composites that share a source."""
    covered = geo.cells[0][0] == 0 and all(left + width == following for (left, width), (following, _) in
                                              zip(geo.cells, [*geo.cells[1:], (geo.width, 0)], strict=True))
    canvas = Image.new("RGB", (geo.width, geo.height), None if covered else geo.background)  # None: no fill
    boxes = []
    for index, path in enumerate(sources):
        key = (str(path), geo.cell_width(index), geo.height, geo.vertical_anchor, geo.background)
        found = cells.pop(key, None) if cells is not None else None
        if found is None:
            found = load_cell(path, geo.cell_width(index), geo.height, geo.vertical_anchor, geo.background)
        if cells is not None:
            cells[key] = found  # re-inserted last, so a dict evicting its first key is least-recently-used
        cell, box = found
        canvas.paste(cell, (geo.cell_left(index), 0))
        boxes.append(box)
    if geo.mirrored:
        canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return canvas, boxes


def load_source(path: Path, mask_file: str, background: tuple[int, int, int]) -> tuple[Image.Image, Image.Image]:
    """A scene source whole: upright, transparency flattened onto `background`, RGB; and its figure mask. Scenes
    that share a source in a row reuse this (`compose_scene`'s `sources`), as side-by-side ones reuse cells."""
    with Image.open(path) as image:
        image.load()
        upright = _to_resizable(ImageOps.exif_transpose(image) if image.getexif().get(0x0112, 1) != 1 else image)
    if upright.mode == "RGBA":  # flattened before resampling, so no colour under full transparency bleeds in
        canvas = Image.new("RGB", upright.size, background)
        canvas.paste(upright, mask=upright.getchannel("A"))
        upright = canvas
    elif upright.mode != "RGB":
        upright = upright.convert("RGB")
    with Image.open(mask_file) as mask:
        mask.load()
        return upright, mask.convert("L")


def load_figure(source: tuple[Image.Image, Image.Image], figure: SceneFigure) -> tuple[Image.Image, Image.Image]:
    """A scene figure's crop of the source and of its mask, resized to the figure's size: the RGB and the weight
    it is pasted with."""
    rgb, mask = source
    size = (figure.width, figure.height)
    return (rgb.resize(size, Image.Resampling.LANCZOS, box=figure.crop, reducing_gap=REDUCING_GAP),
            mask.resize(size, Image.Resampling.BILINEAR, box=figure.crop, reducing_gap=REDUCING_GAP))


def compose_scene(sources: list[Path], geo: Geometry, union_wanted: bool = True,
                  loaded: MutableMapping[str, tuple[Image.Image, Image.Image]] | None = None
                  ) -> tuple[Image.Image, Image.Image | None]:
    """The scene on one background, and (where wanted) the union of the figures' masks where they landed."""
    canvas = Image.new("RGB", (geo.width, geo.height), geo.background)
    union = Image.new("L", (geo.width, geo.height), 0) if union_wanted else None
    for index in geo.front:
        figure = geo.figures[index]
        key = f"{sources[index]}\0{figure.mask}\0{geo.background}"
        source = loaded.pop(key, None) if loaded is not None else None
        if source is None:
            source = load_source(sources[index], figure.mask, geo.background)
        if loaded is not None:
            loaded[key] = source  # re-inserted last: the caller evicts the oldest first
        rgb, weight = load_figure(source, figure)
        canvas.paste(rgb, (figure.left, figure.top), weight)
        if union is not None:
            placed = Image.new("L", union.size, 0)
            placed.paste(weight, (figure.left, figure.top))
            union = ImageChops.lighter(union, placed)
    if geo.mirrored:
        canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        union = union.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if union is not None else None
    return canvas, union


SEAM_BAND = 1 / 32  # each side of a join, as a share of the width: 24 px (3 latent pixels) at 768


def weighted(mask: Image.Image, floor: float) -> Image.Image:
    """The loss weight as kohya reads the alpha (value / 255): `floor` where the mask is 0, 1 where it is 255."""
    low = round(floor * 255)
    return mask.point(lambda value: low + round((255 - low) * value / 255))


def seam_mask(geo: Geometry) -> Image.Image:
    """255 except over each join of a side-by-side composite, its gap and SEAM_BAND either side; a scene has none."""
    mask = Image.new("L", (geo.width, geo.height), 255)
    band = round(SEAM_BAND * geo.width)
    for (left, width), (following, _) in zip(geo.cells, geo.cells[1:], strict=False):
        mask.paste(0, (max(0, left + width - band), 0, min(geo.width, following + band), geo.height))
    return mask


def cell_figures(geo: Geometry, boxes: list[Box]) -> Image.Image:
    """The sources' masks cropped and resized exactly as their cells were; 0 over gaps."""
    mask = Image.new("L", (geo.width, geo.height), 0)
    for index, (file, box) in enumerate(zip(geo.masks, boxes, strict=True)):
        with Image.open(file) as source_mask:
            cell = source_mask.convert("L").resize((geo.cell_width(index), geo.height), Image.Resampling.BILINEAR,
                                                   box=box, reducing_gap=REDUCING_GAP)
        mask.paste(cell, (geo.cell_left(index), 0))
    return mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if geo.mirrored else mask


def loss_weight(geo: Geometry, boxes: list[Box], union: Image.Image | None) -> Image.Image | None:
    """The composite's alpha for sd-scripts' masked loss, or None (loss_mask = "none": RGB as the method has it)."""
    if geo.loss_mask == "none":
        return None
    if geo.loss_mask == "seam":
        mask = seam_mask(geo) if not geo.figures else Image.new("L", (geo.width, geo.height), 255)
        mask = mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if geo.mirrored else mask
    else:
        mask = union if geo.figures and union is not None else cell_figures(geo, boxes)
    return weighted(mask, geo.mask_floor)


def with_alpha(image: Image.Image, weight: Image.Image | None) -> Image.Image:
    """The full composite's RGB (background, never black, where no figure is) under the weight as alpha."""
    if weight is None:
        return image
    rgba = image.convert("RGBA")
    rgba.putalpha(weight)
    return rgba


def save_image(image: Image.Image, target: Path, image_format: str) -> None:
    options = dict(SAVE_OPTIONS[image_format])
    if image.mode == "RGBA":
        options.update(RGBA_OPTIONS.get(image_format, {}))
    with atomic_path(target) as tmp:
        image.save(tmp, **options)
