"""One model of kohya's buckets (onetwo.kohya.buckets.BucketSettings) behind `check`'s bucket table, its crop warnings,
the plan's batch count and the composites' sizes: with bucket_no_upscale kohya crops an image to its own size cut to
whole steps instead of resizing it into a predefined bucket."""

from __future__ import annotations

import re

from onetwo.kohya.buckets import BucketSettings
from onetwo.kohya.render import role_buckets
from onetwo.project.file import load_project
from onetwo.stages import scan


def test_no_upscale_crops_the_image_itself() -> None:
    settings = BucketSettings((640, 640), no_upscale=True)
    assert settings.select(200, 300) == (192, 256)
    assert settings.cut(200, 300) == 1 - (192 * 256) / (200 * 300)  # cropped, not resized
    assert settings.select(2000, 1000) == (896, 448) and settings.cut(2000, 1000) == 0  # shrunk to the area


def test_a_predefined_bucket_resizes_to_cover_then_crops() -> None:
    settings = BucketSettings((640, 640))
    assert settings.select(512, 768) == (512, 768) and settings.cut(512, 768) == 0
    bucket = settings.select(1800, 1000)
    assert bucket in settings.buckets() and 0 < settings.cut(1800, 1000) < 0.05


def test_check_reports_the_buckets_and_crops_kohya_makes_with_no_upscale(make_project, capsys) -> None:
    """`check`'s per-character table (stages.scan with the originals' bucket settings)."""
    project = load_project(make_project(stage1={"dataset": {"bucket_no_upscale": True}}))
    scan(project, 1, False, tables=role_buckets(project, "originals"))
    out = capsys.readouterr().out
    assert re.findall(r"buckets +(.*)", out) == ["192x256: 3", "192x256: 3"]  # alice, bob: 200x300 each
    cut = round(100 * (1 - (192 * 256) / (200 * 300)))
    assert len(re.findall(rf"img\d\.png \(200x300 → 192x256, {cut}% cut\)", out)) == 6
