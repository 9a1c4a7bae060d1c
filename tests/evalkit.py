"""Test stand-ins for `onetwo eval`: synthetic scenes with known ground truth, and tiny ONNX models with the real
models' input and output names and shapes, built at test time, that the real wrappers run.

- Characters are colour palettes (a body colour and a head colour) on a near-white background; a figure fills a
  quarter of the width. Pairs sit centred at 1/4 and 3/4 of the width, singles at 1/2, three figures at 1/8, 1/2
  and 7/8.
- The detector stand-in (`images` (1, 3, 640, 640) → `output0` (1, 5, 8400), YOLOv8's layout; a dynamic batch axis
  or another input size on request) scores 13 full-height
  strips a quarter of the width wide, 1/16 apart, by the share of their columns that hold any non-white pixel, and
  finds the figures' common top and bottom; the real post-processing (confidence, NMS) keeps one strip per figure.
- The embedder stand-in (`input` (N, 3, 384, 384) CLIP-normalised → `output` (N, 768)) undoes the normalisation,
  averages 4x4 blocks, gives each block to its nearest palette colour (a 1x1 convolution and a sharp softmax) and
  averages again: a colour histogram, background bin dropped. The metric head (`input` (N, 768) → `output`
  (N, N)) puts 1 - cosine similarity c on the real CCIP's scale, 0.16 + 0.24 c³, and metrics.json's threshold is
  the real 0.178: one character differs by about 0.16, two by 0.40, a half-and-half blend by about 0.166 from both
  (within the blend margin), a figure three quarters one character by 0.16 from it and 0.24 from the other.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from onetwo.eval import hub

CHARACTERS = {  # body, head
    "aoi": ((200, 40, 40), (30, 30, 120)),
    "midori": ((40, 160, 60), (230, 140, 20)),
    "murasaki": ((120, 40, 160), (220, 200, 30)),
}
BACKGROUND = (255, 255, 255)
SEAM_BACKGROUND = (232, 238, 255)  # light enough to be background, different enough to make a seam
THRESHOLD = 0.178  # the real CCIP's metrics.json (ccip-caformer-24-randaug-pruned)
SAME, DIFFERENT = 0.16, 0.40  # the stand-in metric's differences for one character and for two
SIZE = 512


def palette() -> list[tuple[int, int, int]]:
    return [BACKGROUND] + [colour for pair in CHARACTERS.values() for colour in pair]


def draw_figure(image: Image.Image, centre_x: float, width: float,
                colours: tuple[tuple[int, int, int], tuple[int, int, int]], split: tuple | None = None) -> None:
    """A body (rectangle, the full figure width) and a head (circle); `split` paints the right half in another
    palette (a blend of two characters)."""
    height = image.height
    x0, x1 = round(centre_x - width / 2), round(centre_x + width / 2)
    head_top, head_bottom, body_bottom = round(height * 0.18), round(height * 0.38), round(height * 0.86)
    middle = (x0 + x1) // 2
    figure = Image.new("RGB", (x1 - x0, height), BACKGROUND)
    mask = Image.new("L", figure.size, 0)
    draw = ImageDraw.Draw(figure)
    ImageDraw.Draw(mask).ellipse((width * 0.2, head_top, figure.width - width * 0.2 - 1, head_bottom), fill=255)
    ImageDraw.Draw(mask).rectangle((0, head_bottom, figure.width - 1, body_bottom), fill=255)
    body, head = colours
    draw.rectangle((0, 0, figure.width - 1, head_bottom - 1), fill=head)
    draw.rectangle((0, head_bottom, figure.width - 1, height), fill=body)
    if split:
        draw.rectangle((middle - x0, 0, figure.width - 1, head_bottom - 1), fill=split[1])
        draw.rectangle((middle - x0, head_bottom, figure.width - 1, height), fill=split[0])
    image.paste(figure, (x0, 0), mask)


def scene(figures: Sequence[str | tuple[str, str]], seam: bool = False, size: int = SIZE) -> Image.Image:
    """Figures left to right: a character name, (name, name) for a half-and-half blend, or (name, other, "head")
    for the one's body with the other's head (a trait swap)."""
    image = Image.new("RGB", (size, size), BACKGROUND)
    if seam:
        ImageDraw.Draw(image).rectangle((size // 2, 0, size, size), fill=SEAM_BACKGROUND)
    centres = {0: [], 1: [0.5], 2: [0.25, 0.75], 3: [0.125, 0.5, 0.875]}[len(figures)]
    for figure, centre in zip(figures, centres, strict=True):
        if isinstance(figure, tuple) and len(figure) == 3:  # (body of, head of, "head"): a trait swapped
            body, head = CHARACTERS[figure[0]][0], CHARACTERS[figure[1]][1]
            draw_figure(image, centre * size, size / 4, (body, head))
        elif isinstance(figure, tuple):
            draw_figure(image, centre * size, size / 4, CHARACTERS[figure[0]], CHARACTERS[figure[1]])
        else:
            draw_figure(image, centre * size, size / 4, CHARACTERS[figure])
    return image


def figure_mask(image: Image.Image) -> Image.Image:
    """Where a scene is not background: the alpha a cut-out of it would carry."""
    pixels = np.asarray(image.convert("RGB"), np.int16)
    return Image.fromarray(((np.abs(pixels - BACKGROUND).sum(axis=2) > 0) * 255).astype(np.uint8), "L")


@dataclass(frozen=True)
class Case:
    prompted: tuple[str, ...]
    figures: tuple
    label: str
    seam: bool = False


def scene_cases() -> list[Case]:
    """One scene of every kind the issue names, with the label eval must give it."""
    return [
        Case(("aoi", "midori"), ("aoi", "midori"), "correct"),
        Case(("midori", "aoi"), ("midori", "aoi"), "correct"),
        Case(("aoi", "midori"), ("midori", "aoi"), "swapped"),
        Case(("aoi", "midori"), ("aoi", "aoi"), "clone"),
        Case(("midori", "murasaki"), ("murasaki", "murasaki"), "clone"),
        Case(("aoi", "midori"), ("aoi", ("aoi", "midori")), "blend"),
        Case(("aoi", "midori"), ("aoi",), "missing"),
        Case(("aoi", "midori"), ("aoi", "midori", "murasaki"), "extra"),
        Case(("aoi", "midori"), ("aoi", "murasaki"), "wrong_character"),
        Case(("aoi", "midori"), ("aoi", "midori"), "correct", seam=True),
        Case(("aoi",), ("aoi",), "correct"),
        Case(("midori",), ("aoi",), "wrong_character"),
        Case(("murasaki",), ("murasaki", "murasaki"), "duplicated"),
        Case(("aoi",), (), "missing"),
    ]


def reference_images(folder: Path, count: int = 2) -> dict[str, list[Path]]:
    """Single-character training images of each character (whole images, as a user's are)."""
    found: dict[str, list[Path]] = {}
    for name in CHARACTERS:
        target = folder / name
        target.mkdir(parents=True, exist_ok=True)
        found[name] = []
        for index in range(count):
            path = target / f"{name}{index}.png"
            scene([name], size=SIZE - 64 * index).save(path)
            found[name].append(path)
    return found


# ---- the seam set: blurred and off-centre seams vs poles, outlines and gradients ------------------------------

def _textured(rng: np.random.Generator, size: int, base: np.ndarray) -> np.ndarray:
    """A smooth, noisy picture around a base colour: soft blobs, like a painted background."""
    small = rng.normal(0, 18, (8, 8, 3))
    field = np.asarray(Image.fromarray(np.clip(small + 128, 0, 255).astype(np.uint8)).resize((size, size),
                                                                                          Image.BICUBIC), np.float32)
    return np.clip(base + (field - 128) + rng.normal(0, 3, (size, size, 3)), 0, 255)


def seam_set(count: int = 40, seed: int = 0, size: int = 384) -> tuple[list[Image.Image], list[Image.Image]]:
    """(positives, negatives). Positives: two different pictures side by side, the seam anywhere between 35 % and
    65 % of the width, some blurred (radius up to 2 px), some slightly tilted. Negatives: one picture with a
    vertical pole, a drawn outline, or a left-to-right gradient, anywhere in the same band."""
    rng = np.random.default_rng(seed)
    positives, negatives = [], []
    for index in range(count):
        left = _textured(rng, size, rng.uniform(40, 215, 3))
        right = _textured(rng, size, rng.uniform(40, 215, 3))
        at = int(size * rng.uniform(0.35, 0.65))
        tilt = rng.uniform(-0.015, 0.015) * size if index % 3 == 2 else 0.0
        columns = np.arange(size)[None, :]
        line = at + tilt * (np.arange(size)[:, None] / size - 0.5)
        picture = np.where((columns < line)[..., None], left, right)
        image = Image.fromarray(picture.astype(np.uint8))
        if index % 2:
            image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 2.0)))
        positives.append(image)

        base = _textured(rng, size, rng.uniform(40, 215, 3))
        kind = index % 3
        at = int(size * rng.uniform(0.35, 0.65))
        if kind == 0:  # a pole: a dark or bright bar a few pixels wide, background the same on both sides
            base[:, at:at + int(rng.integers(2, 7))] = rng.uniform(0, 255, 3)
        elif kind == 1:  # an outline: a thin dark line drawn top to bottom, slightly wavy
            for row in range(size):
                x = at + int(3 * np.sin(row / 40))
                base[row, x:x + 2] = 20
        else:  # a gradient across the whole picture
            ramp = np.linspace(-60, 60, size)[None, :, None] * rng.uniform(0.5, 1.0, 3)
            base = np.clip(base + ramp, 0, 255)
        negatives.append(Image.fromarray(base.astype(np.uint8)))
    return positives, negatives


# ---- tiny ONNX models ------------------------------------------------------------------------------------------

DETECTOR_INPUT = 640
ANCHORS = 8400
STRIPS = 13  # a quarter of the width wide, 1/16 apart
FEATURES = 768


def _initializer(name: str, array: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(array), name)


def _model(nodes, inputs, outputs, initializers, metadata: dict[str, str] | None = None):
    from onnx import helper

    graph = helper.make_graph(nodes, "stand-in", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onetwo tests")
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def detector_model(batch: int | str = 1, height: int | str = DETECTOR_INPUT, width: int | str = DETECTOR_INPUT,
                   imgsz: tuple[int, int] | None = (DETECTOR_INPUT, DETECTOR_INPUT)):
    """YOLOv8 person detector stand-in; `batch` 1 is a static export like the real one, a name makes it dynamic.
    `height` and `width` are the input's dimensions (a name: dynamic), `imgsz` the metadata the exporter writes,
    (height, width) as ultralytics writes it, or None for none. The strips are laid out for the `imgsz` width
    (or 640)."""
    from onnx import TensorProto, helper

    f32 = TensorProto.FLOAT
    laid_out = imgsz[1] if imgsz else DETECTOR_INPUT
    strip, stride = laid_out // 4, laid_out // 16
    centres = (strip / 2 + stride * np.arange(STRIPS, dtype=np.float32))[None, None, :]
    nodes = [
        helper.make_node("ReduceMin", ["images"], ["darkest"], axes=[1], keepdims=1),  # (B,1,H,W)
        helper.make_node("Sub", ["white_cut", "darkest"], ["below"]),
        helper.make_node("Mul", ["below", "sharp"], ["scaled"]),
        helper.make_node("Clip", ["scaled", "zero", "one"], ["ink"]),  # 1 where a pixel is not near-white
        helper.make_node("ReduceMax", ["ink"], ["columns"], axes=[2], keepdims=1),  # (B,1,1,W)
        helper.make_node("AveragePool", ["columns"], ["share"], kernel_shape=[1, strip], strides=[1, stride]),
        helper.make_node("Reshape", ["share", "strip_shape"], ["share3"]),  # (B,1,13)
        helper.make_node("Sub", ["share3", "share_cut"], ["over"]),
        helper.make_node("Mul", ["over", "share_gain"], ["raw_score"]),
        helper.make_node("Clip", ["raw_score", "zero", "one"], ["score"]),
        helper.make_node("ReduceMax", ["ink"], ["rows"], axes=[3], keepdims=1),  # (B,1,H,1)
        helper.make_node("ArgMax", ["rows"], ["top_i"], axis=2, keepdims=1),
        helper.make_node("ArgMax", ["rows"], ["bottom_i"], axis=2, keepdims=1, select_last_index=1),
        helper.make_node("Cast", ["top_i"], ["top"], to=f32),
        helper.make_node("Cast", ["bottom_i"], ["bottom"], to=f32),
        helper.make_node("Add", ["top", "bottom"], ["rim"]),
        helper.make_node("Add", ["rim", "one"], ["rim1"]),
        helper.make_node("Mul", ["rim1", "half"], ["cy1"]),
        helper.make_node("Sub", ["bottom", "top"], ["span"]),
        helper.make_node("Add", ["span", "one"], ["h1"]),
        helper.make_node("Reshape", ["cy1", "one_shape"], ["cy_s"]),  # (B,1,1)
        helper.make_node("Reshape", ["h1", "one_shape"], ["h_s"]),
        helper.make_node("Mul", ["score", "zero"], ["nothing"]),  # (B,1,13) zeros: broadcasts the rest to B
        helper.make_node("Add", ["nothing", "cy_s"], ["cy"]),
        helper.make_node("Add", ["nothing", "h_s"], ["h"]),
        helper.make_node("Add", ["nothing", "cx_row"], ["cx"]),
        helper.make_node("Add", ["nothing", "w_row"], ["w"]),
        helper.make_node("Concat", ["cx", "cy", "w", "h", "score"], ["strips"], axis=1),  # (B,5,13)
        helper.make_node("Pad", ["strips", "padding"], ["output0"]),  # (B,5,8400)
    ]
    initializers = [
        _initializer("white_cut", np.float32(0.9)), _initializer("sharp", np.float32(100.0)),
        _initializer("zero", np.float32(0.0)), _initializer("one", np.float32(1.0)),
        _initializer("half", np.float32(0.5)),
        _initializer("share_cut", np.float32(0.6)), _initializer("share_gain", np.float32(2.5)),
        _initializer("strip_shape", np.array([-1, 1, STRIPS], np.int64)),
        _initializer("one_shape", np.array([-1, 1, 1], np.int64)),
        _initializer("cx_row", centres.astype(np.float32)),
        _initializer("w_row", np.full((1, 1, STRIPS), strip, np.float32)),
        _initializer("padding", np.array([0, 0, 0, 0, 0, ANCHORS - STRIPS], np.int64)),
    ]
    inputs = [helper.make_tensor_value_info("images", f32, [batch, 3, height, width])]
    outputs = [helper.make_tensor_value_info("output0", f32, [batch, 5, ANCHORS])]
    metadata = {"names": "{0: 'person'}"}
    if imgsz:
        metadata["imgsz"] = json.dumps(list(imgsz))
    return _model(nodes, inputs, outputs, initializers, metadata)


def embedder_models(colours: Sequence[tuple[int, int, int]] | None = None):
    """(model_feat, model_metrics): the CCIP stand-ins. Palette colour 0 is the background and is not counted."""
    from onnx import TensorProto, helper

    from onetwo.eval.onnx_models import CLIP_MEAN, CLIP_STD

    f32 = TensorProto.FLOAT
    centres = np.asarray(colours or palette(), np.float32) / 255.0  # (K, 3)
    k = len(centres)
    sharpness = 400.0
    weight = (centres * sharpness)[:, :, None, None]  # logits: sharpness * (x·c - |c|²/2), nearest colour wins
    bias = -sharpness * (centres ** 2).sum(axis=1) / 2
    projection = np.zeros((k, FEATURES), np.float32)
    projection[1:, : k - 1] = np.eye(k - 1)  # the background bin maps to nothing
    feature_nodes = [
        helper.make_node("Mul", ["input", "std"], ["scaled"]),
        helper.make_node("Add", ["scaled", "mean"], ["rgb_full"]),
        helper.make_node("AveragePool", ["rgb_full"], ["rgb"], kernel_shape=[4, 4], strides=[4, 4]),  # speed
        helper.make_node("Conv", ["rgb", "weight", "bias"], ["logits"], kernel_shape=[1, 1]),
        helper.make_node("Softmax", ["logits"], ["nearest"], axis=1),
        helper.make_node("GlobalAveragePool", ["nearest"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["histogram"], axis=1),
        helper.make_node("MatMul", ["histogram", "projection"], ["output"]),
    ]
    features = _model(
        feature_nodes,
        [helper.make_tensor_value_info("input", f32, ["batch", 3, 384, 384])],
        [helper.make_tensor_value_info("output", f32, ["batch", FEATURES])],
        [_initializer("std", CLIP_STD[None].astype(np.float32)),
         _initializer("mean", CLIP_MEAN[None].astype(np.float32)),
         _initializer("weight", weight.astype(np.float32)), _initializer("bias", bias.astype(np.float32)),
         _initializer("projection", projection)])
    metric_nodes = [
        helper.make_node("ReduceL2", ["input"], ["norm"], axes=[1], keepdims=1),
        helper.make_node("Add", ["norm", "tiny"], ["safe_norm"]),
        helper.make_node("Div", ["input", "safe_norm"], ["unit"]),
        helper.make_node("Transpose", ["unit"], ["unit_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["unit", "unit_t"], ["cosine"]),
        helper.make_node("Sub", ["one", "cosine"], ["apart"]),
        helper.make_node("Clip", ["apart", "zero", "one"], ["clipped"]),
        helper.make_node("Pow", ["clipped", "three"], ["cubed"]),
        helper.make_node("Mul", ["cubed", "spread"], ["stretched"]),
        helper.make_node("Add", ["stretched", "same"], ["output"]),
    ]
    metrics = _model(
        metric_nodes,
        [helper.make_tensor_value_info("input", f32, ["n", FEATURES])],
        [helper.make_tensor_value_info("output", f32, ["n", "n"])],
        [_initializer("tiny", np.float32(1e-6)), _initializer("one", np.float32(1.0)),
         _initializer("zero", np.float32(0.0)), _initializer("three", np.float32(3.0)),
         _initializer("spread", np.float32(DIFFERENT - SAME)), _initializer("same", np.float32(SAME))])
    return features, metrics


def stand_in_backends(folder: Path, tags: bool = False):
    """The real onnxruntime wrappers (onetwo.eval.onnx_models) on the stand-in models written into `folder`; with
    the tagger if `tags`."""
    from onetwo.eval.backends import Backends
    from onetwo.eval.onnx_models import CcipEmbedder, WdTagger, YoloPersonDetector

    files = write_models(folder)
    return Backends(YoloPersonDetector(files["model"], "stand-in detector"),
                    CcipEmbedder(files["features"], files["metrics"], files["threshold"], "stand-in embedder"),
                    WdTagger(files["tagger"], files["tags"], "stand-in tagger") if tags else None)


# The tagger stand-in's tags: each palette colour (body, head of each character) gives its tags when it covers more
# than about 6 % of a figure; `1girl` whenever anything is drawn. Rating and character rows are there to be ignored.
COLOUR_TAGS = {
    "aoi": (("red_dress",), ("blue_hair", "hat")),
    "midori": (("green_dress",), ("orange_hair", "ponytail")),
    "murasaki": (("purple_dress",), ("yellow_hair", "twintails")),
}
TAGGER_INPUT = 448
TAG_GAIN = 6.0


def captions() -> dict[str, str]:
    """Each character's caption, in the spelling users write (spaces): its colours' tags, and tags all share."""
    return {name: ", ".join(["1girl", "smile", *(tag.replace("_", " ") for tags in parts for tag in tags)])
            for name, parts in COLOUR_TAGS.items()}


def tag_rows() -> list[tuple[str, int]]:
    """selected_tags.csv's rows: (name, category), in the model's output order."""
    rows = [("general", 9), ("sensitive", 9), ("1girl", 0)]
    rows += [(tag, 0) for parts in COLOUR_TAGS.values() for tags in parts for tag in tags]
    return rows + [(f"{name}_(onetwo)", 4) for name in COLOUR_TAGS]


def tagger_model(batch: int | str = "batch"):
    """wd v3 tagger stand-in: `input` (N, 448, 448, 3) BGR in [0, 255] → predictions (N, tags) and embeddings
    (N, 1024). A colour histogram as in the embedder stand-in (BGR weights), background dropped and the rest
    normalised, mapped to the tags of `tag_rows` and scaled by TAG_GAIN."""
    from onnx import TensorProto, helper

    f32 = TensorProto.FLOAT
    centres = np.asarray(palette(), np.float32)[:, ::-1] / 255.0  # BGR
    k = len(centres)
    sharpness = 400.0
    weight = (centres * sharpness)[:, :, None, None]
    bias = -sharpness * (centres ** 2).sum(axis=1) / 2
    rows = tag_rows()
    mapping = np.zeros((k - 1, len(rows)), np.float32)  # palette colour (background dropped) → tag
    colours = [colour for name in CHARACTERS for colour in ("body", "head")]
    for column, (tag, category) in enumerate(rows):
        if tag in ("1girl", "general") or category == 4:
            mapping[:, column] = 1.0  # anything drawn (the character rows fire on anything: they must be ignored)
        for index, (name, part) in enumerate(zip([n for n in CHARACTERS for _ in (0, 1)], colours, strict=True)):
            if tag in COLOUR_TAGS[name][0 if part == "body" else 1]:
                mapping[index, column] = 1.0
    nodes = [
        helper.make_node("Transpose", ["input"], ["planes"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["planes", "to_unit"], ["unit"]),
        helper.make_node("AveragePool", ["unit"], ["small"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Conv", ["small", "weight", "bias"], ["logits"], kernel_shape=[1, 1]),
        helper.make_node("Softmax", ["logits"], ["nearest"], axis=1),
        helper.make_node("GlobalAveragePool", ["nearest"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["histogram"], axis=1),  # (N, K)
        helper.make_node("Slice", ["histogram", "starts", "ends", "axes"], ["ink"]),  # background dropped
        helper.make_node("ReduceSum", ["ink", "axes"], ["total"], keepdims=1),
        helper.make_node("Add", ["total", "tiny"], ["safe_total"]),
        helper.make_node("Div", ["ink", "safe_total"], ["shares"]),
        helper.make_node("MatMul", ["shares", "mapping"], ["tag_share"]),
        helper.make_node("Mul", ["tag_share", "gain"], ["raw"]),
        helper.make_node("Clip", ["raw", "zero", "one"], ["predictions"]),
        helper.make_node("MatMul", ["histogram", "projection"], ["embeddings"]),
    ]
    projection = np.zeros((k, 1024), np.float32)
    projection[:, :k] = np.eye(k)
    initializers = [
        _initializer("to_unit", np.float32(1 / 255)), _initializer("weight", weight.astype(np.float32)),
        _initializer("bias", bias.astype(np.float32)), _initializer("starts", np.array([1], np.int64)),
        _initializer("ends", np.array([k], np.int64)), _initializer("axes", np.array([1], np.int64)),
        _initializer("tiny", np.float32(1e-6)), _initializer("mapping", mapping),
        _initializer("gain", np.float32(TAG_GAIN)), _initializer("zero", np.float32(0.0)),
        _initializer("one", np.float32(1.0)), _initializer("projection", projection),
    ]
    inputs = [helper.make_tensor_value_info("input", f32, [batch, TAGGER_INPUT, TAGGER_INPUT, 3])]
    outputs = [helper.make_tensor_value_info("predictions", f32, [batch, len(rows)]),
               helper.make_tensor_value_info("embeddings", f32, [batch, 1024])]
    return _model(nodes, inputs, outputs, initializers)


def write_tag_csv(path: Path) -> Path:
    """selected_tags.csv as SmilingWolf's repositories hold it: tag_id, name, category, count."""
    lines = ["tag_id,name,category,count"]
    lines += [f"{100 + index},{name},{category},{1000 - index}" for index, (name, category) in enumerate(tag_rows())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_models(folder: Path) -> dict[str, Path]:
    """The stand-ins as files, named like the real ones: model.onnx, model_feat.onnx, model_metrics.onnx,
    metrics.json, and the tagger's model.onnx (here tagger.onnx) and selected_tags.csv."""
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    features, metrics = embedder_models()
    files = {"model": folder / "model.onnx", "features": folder / "model_feat.onnx",
             "metrics": folder / "model_metrics.onnx", "threshold": folder / "metrics.json",
             "tagger": folder / "tagger.onnx", "tags": folder / "selected_tags.csv"}
    onnx.save(detector_model(), files["model"])
    onnx.save(features, files["features"])
    onnx.save(metrics, files["metrics"])
    onnx.save(tagger_model(), files["tagger"])
    write_tag_csv(files["tags"])
    files["threshold"].write_text(json.dumps({"threshold": THRESHOLD}), encoding="utf-8")
    return files


def fake_hub_cache(cache: Path, models: dict[str, Path], commit: str = "0" * 40,
                   leave_out: Sequence[str] = ()) -> Path:
    """A huggingface_hub cache holding the stand-ins where the real files would be: models--<org>--<name>/
    snapshots/<commit>/<path>, with refs/main naming the commit."""
    wanted = {**hub.detector_files(), **hub.embedder_files(), **hub.tagger_files()}
    for role, item in wanted.items():
        if role in leave_out:
            continue
        repo_dir = cache / f"models--{item.repo.replace('/', '--')}"
        target = repo_dir / "snapshots" / commit / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(models[role], target)
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / "main").write_text(commit, encoding="utf-8")
    return cache


# ---- a stage's runs: epoch files and `onetwo sample` output ----------------------------------------------------

def write_epoch_file(path: Path, epoch: int, started_at: float, salt: int = 0) -> str:
    """A LoRA-shaped .safetensors file as one sd-scripts run saves it (`ss_training_started_at`, `ss_epoch`); `salt`
    changes its tensor bytes, so each run's files hash apart. Returns its sshs_model_hash."""
    import struct

    from onetwo.kohya import hashes

    data = bytes([salt % 256, epoch % 256]) * 8
    header = {"__metadata__": {"ss_training_started_at": repr(started_at), "ss_epoch": str(epoch)},
              "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight":
                  {"dtype": "F16", "shape": [len(data) // 2], "data_offsets": [0, len(data)]}}
    text = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return hashes.compute(path)[0]


def write_sampled(folder: Path, epoch_file: Path, epoch: int, prompt_index: int, characters: Sequence[str],
                  seed: int, figures: Sequence[str] | None = None) -> Path:
    """One `onetwo sample` image and its sidecar, as the sample command writes them; `figures` (default: the
    prompted characters) is what the picture shows."""
    from onetwo.kohya import hashes

    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{epoch_file.stem}__p{prompt_index:02d}__s{seed}"
    scene(list(figures if figures is not None else characters)).save(folder / f"{stem}.png")
    sidecar = {"lora_file": epoch_file.name, "sshs_model_hash": hashes.compute(epoch_file)[0], "epoch": epoch,
               "prompt_index": prompt_index, "prompt": ", ".join(characters), "negative_prompt": "",
               "characters": list(characters), "seed": seed, "settings": {"steps": 1, "width": SIZE}}
    (folder / f"{stem}.json").write_text(json.dumps(sidecar), encoding="utf-8")
    return folder / f"{stem}.png"
