"""The preview shows the order: each composite labelled left | right as its caption names them, with a gap of
background between composites."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from onetwo.data.preview import BACKGROUND, GAP, THUMB_HEIGHT, cell_origin, composite_label, sheet_items
from onetwo.data.scan import scan_project
from onetwo.project.file import load_project
from onetwo.stages import composite_plan


@pytest.mark.parametrize(("names", "label"), [(("beni", "aoi"), "beni | aoi"), (("aoi", "beni"), "aoi | beni"),
                                              (("a", "b", "c"), "a | b | c"), (("rin_(fate)", "saber"),
                                                                              "rin_(fate) | saber")])
def test_label_is_the_caption_order(names: tuple[str, ...], label: str) -> None:
    assert composite_label(names) == label


def caption_names(caption: str) -> str:
    """`beni/aoi/COMPOSITE, …` → `beni | aoi`: the order a caption teaches."""
    return " | ".join(caption.split(",")[0].split("/")[:-1])


def test_labels_come_from_the_captions_order_mirrored_ones_included(make_project, cli, tmp_path: Path) -> None:
    file = make_project(composite={"per_pair": 8, "mirror": 0.5, "width": 128, "height": 128, "workers": 1})
    assert cli("composite")[0] == 0
    project = load_project(file)
    jobs = composite_plan(project, scan_project(project))
    items = sheet_items(jobs, project.composite_dir, "png", 8, project.composite.seed)
    assert len(items) == 8 and any(item.detail.endswith(", mirrored") for item in items)
    for item in items:
        caption = item.path.with_suffix(".txt").read_text(encoding="utf-8")
        assert item.label == caption_names(caption), (item, caption)
    # both orders appear, so the label is not the pair's name order
    assert {item.label for item in items} == {"alice | bob", "bob | alice"}


def test_sheet_has_a_gap_of_background_between_composites(make_project, cli, tmp_path: Path) -> None:
    make_project(composite={"per_pair": 4, "width": 128, "height": 128, "workers": 1})
    code, _, err = cli("preview", "--count", "4")
    assert code == 0 and "labelled left | right as captioned" in err, err
    with Image.open(tmp_path / "work" / "preview.png") as opened:
        sheet = opened.convert("RGB")
    cell_width = THUMB_HEIGHT  # square composites: thumbnails THUMB_HEIGHT wide
    first, second = cell_origin(0, 4, cell_width), cell_origin(1, 4, cell_width)
    assert second[0] - (first[0] + cell_width) == GAP
    for y in range(first[1], first[1] + THUMB_HEIGHT, 16):
        assert sheet.getpixel((first[0] + cell_width // 2, y)) != BACKGROUND  # the composite itself
        for x in range(first[0] + cell_width, second[0]):
            assert sheet.getpixel((x, y)) == BACKGROUND, (x, y)
        for x in range(first[0]):  # and a margin before the first one
            assert sheet.getpixel((x, y)) == BACKGROUND, (x, y)
    assert sheet.width == GAP + 4 * (cell_width + GAP)
