"""Figure masks: from alpha, from the ISNet wrapper on a stand-in model with the real input and output names, the
cache by size and mtime, and the errors for a missing extra or model file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from onetwo.data import masks
from onetwo.data.masks import figure_masks
from onetwo.data.scan import SourceImage
from onetwo.data.segment import IsnetSegmenter, letterbox
from onetwo.errors import OnetwoError
from tests.maskkit import draw_character, fake_isnet_cache, write_isnet


def source(path: Path) -> SourceImage:
    stat = path.stat()
    return SourceImage(path, path.name, (), True, stat.st_size, stat.st_mtime_ns)


def mask_box(file: Path) -> tuple[int, int, int, int] | None:
    with Image.open(file) as mask:
        return mask.point(lambda value: 255 if value >= 128 else 0).getbbox()


def test_letterbox_follows_imgutils():
    assert letterbox(200, 300) == ((1024 - 682) // 2, 0, 682, 1024)
    assert letterbox(300, 200) == (0, (1024 - 682) // 2, 1024, 682)
    assert letterbox(64, 64) == (0, 0, 1024, 1024)


def test_alpha_masks_need_no_segmenter(tmp_path):
    boxes = [draw_character(tmp_path / f"a{index}.png", 0, index, cut_out=True) for index in range(3)]
    sources = [source(tmp_path / f"a{index}.png") for index in range(3)]

    def no_segmenter():
        raise AssertionError("cut-outs must not load a segmenter")

    found = figure_masks(sources, tmp_path / "masks", no_segmenter, progress=False)
    for item, box in zip(sources, boxes, strict=True):
        mask = found[item.path]
        assert mask.origin == "alpha"
        assert mask.size == (200, 300)
        assert mask_box(mask.file) == box == mask.box
        assert mask.pieces == 1
        assert 0.2 < mask.coverage < 0.3  # a 1/2 x 3/5 box, less the head's corners


def test_segmented_masks_through_the_stand_in_model(tmp_path):
    model = IsnetSegmenter(write_isnet(tmp_path / "model"), "stand-in isnetis")
    assert model.input_name == "img"
    paths = [tmp_path / f"o{index}.png" for index in range(2)]
    boxes = [draw_character(path, 1, index, size=(240, 160)) for index, path in enumerate(paths)]
    found = figure_masks([source(path) for path in paths], tmp_path / "masks", lambda: model, progress=False)
    for path, box in zip(paths, boxes, strict=True):
        mask = found[path]
        assert mask.origin == "stand-in isnetis"
        assert mask.size == (240, 160)
        got = mask.box
        assert got is not None and all(abs(a - b) <= 2 for a, b in zip(got, box, strict=True)), (got, box)
        with Image.open(mask.file) as image:
            assert image.mode == "L" and image.getpixel((0, 0)) == 0
            assert image.getpixel(((box[0] + box[2]) // 2, (box[1] + box[3]) * 2 // 3)) == 255


def test_cache_by_size_and_mtime(tmp_path):
    path = tmp_path / "o.png"
    draw_character(path, 0, 0)
    calls = []

    class Counting:
        name = "counting"

        def segment(self, image):
            calls.append(image.size)
            return Image.new("L", image.size, 255)

    first = figure_masks([source(path)], tmp_path / "masks", Counting, progress=False)
    again = figure_masks([source(path)], tmp_path / "masks", Counting, progress=False)
    assert len(calls) == 1 and first == again
    draw_character(path, 0, 1)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    figure_masks([source(path)], tmp_path / "masks", Counting, progress=False)
    assert len(calls) == 2


def test_flags_masks_that_cannot_be_right(tmp_path):
    image = Image.new("L", (100, 100), 0)
    for left in range(0, 100, 25):
        image.paste(255, (left, 10, left + 10, 30))
    split = masks.describe(image, tmp_path / "x.png", "test")
    assert split.pieces == 4
    assert masks.describe(Image.new("L", (50, 50), 0), tmp_path / "y.png", "test").box is None
    assert masks.describe(Image.new("L", (50, 50), 255), tmp_path / "z.png", "test").coverage == 1.0


def test_offline_without_the_model_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "o.png"
    draw_character(path, 0, 0)
    with pytest.raises(OnetwoError) as error:
        figure_masks([source(path)], tmp_path / "masks", progress=False)
    assert "skytnt/anime-seg: isnetis.onnx" in str(error.value)
    assert not (tmp_path / "masks").exists()  # nothing written before the error


def test_offline_with_the_cached_model(tmp_path, monkeypatch):
    fake_isnet_cache(tmp_path / "hub", write_isnet(tmp_path / "model"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "o.png"
    box = draw_character(path, 2, 1)
    found = figure_masks([source(path)], tmp_path / "masks", progress=False)
    assert found[path].origin == "isnetis"
    assert all(abs(a - b) <= 2 for a, b in zip(found[path].box, box, strict=True))


def test_missing_runtime_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'", name="onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    path = tmp_path / "o.png"
    draw_character(path, 0, 0)
    with pytest.raises(OnetwoError, match=r"onetwo\[masks\]"):
        figure_masks([source(path)], tmp_path / "masks", progress=False)
