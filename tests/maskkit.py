"""Test stand-ins for figure masks: synthetic characters as cut-outs (alpha) or opaque pictures on white, and a tiny
ONNX model with the real ISNet's input and output names and shapes (`img` (1, 3, 1024, 1024) → `mask`
(1, 1, 1024, 1024), probabilities in [0, 1]) that calls a pixel figure where its darkest channel is under 0.9:
every figure drawn here is darker than that, every background lighter."""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image, ImageDraw

from onetwo.data.segment import ISNET_FILE, ISNET_REPO, ISNET_SCALE

FIGURE_COLOURS = [(200, 40, 40), (40, 150, 60), (110, 40, 170), (30, 90, 200)]


def figure_box(size: tuple[int, int], index: int) -> tuple[int, int, int, int]:
    """Where image `index` of a character has its figure: a different place and size for each image."""
    width, height = size
    left = width // 8 + (index * width // 16) % (width // 4)
    top = height // 10 + (index * height // 20) % (height // 5)
    return (left, top, left + width // 2, top + height * 3 // 5)


def draw_character(path: Path, character: int, index: int, size: tuple[int, int] = (200, 300),
                   cut_out: bool = False) -> tuple[int, int, int, int]:
    """A figure (a body and a head, in the character's colour); `cut_out`: on transparency over black RGB (so a
    composite that kept the RGB under the alpha would show black), else on white. Returns the figure's box."""
    box = figure_box(size, index)
    colour = FIGURE_COLOURS[character % len(FIGURE_COLOURS)]
    shade = tuple(max(0, value - 15 * index) for value in colour)
    image = Image.new("RGBA", size, (0, 0, 0, 0) if cut_out else (255, 255, 255, 255))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = box
    head = (bottom - top) // 4
    draw.rectangle((left, top + head, right - 1, bottom - 1), fill=(*shade, 255))
    draw.ellipse((left + (right - left) // 4, top, right - (right - left) // 4 - 1, top + head), fill=(*shade, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if cut_out else image.convert("RGB")).save(path)
    return box


def make_characters(root: Path, names: list[str], count: int = 3, cut_out: bool | list[bool] = False,
                    size: tuple[int, int] = (200, 300)) -> dict[str, list[Path]]:
    made = {}
    for character, name in enumerate(names):
        cut = cut_out[character] if isinstance(cut_out, list) else cut_out
        paths = []
        for index in range(count):
            path = root / name / f"img{index}.png"
            draw_character(path, character, index, size, cut)
            path.with_suffix(".txt").write_text(f"1girl, pose{index}", encoding="utf-8")
            paths.append(path)
        made[name] = paths
    return made


def isnet_model():
    from onnx import TensorProto, helper

    f32 = TensorProto.FLOAT
    shape = [1, 3, ISNET_SCALE, ISNET_SCALE]
    nodes = [helper.make_node("ReduceMin", ["img"], ["darkest"], axes=[1], keepdims=1),
             helper.make_node("Constant", [], ["limit"], value=helper.make_tensor("limit", f32, [], [0.9])),
             helper.make_node("Less", ["darkest", "limit"], ["figure"]),
             helper.make_node("Cast", ["figure"], ["mask"], to=f32)]
    graph = helper.make_graph(nodes, "isnetis stand-in", [helper.make_tensor_value_info("img", f32, shape)],
                              [helper.make_tensor_value_info("mask", f32, [1, 1, ISNET_SCALE, ISNET_SCALE])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onetwo tests")
    model.ir_version = 8
    return model


def write_isnet(folder: Path) -> Path:
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / ISNET_FILE
    onnx.save(isnet_model(), target)
    return target


def fake_isnet_cache(cache: Path, model: Path, commit: str = "1" * 40) -> Path:
    """huggingface_hub's cache layout holding the stand-in where skytnt/anime-seg's isnetis.onnx would be."""
    repo_dir = cache / f"models--{ISNET_REPO.replace('/', '--')}"
    target = repo_dir / "snapshots" / commit / ISNET_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, target)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit, encoding="utf-8")
    return cache
