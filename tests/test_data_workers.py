"""One worker rule for the image steps: `check` and `build` start as many processes as the cores this process may run
on (its CPU affinity), not one per core of the host."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image

from onetwo.data import build as build_module
from onetwo.data import check as check_module
from onetwo.data.composite import CompositeJob, Geometry
from onetwo.data.scan import SourceImage, scan_project
from onetwo.project.file import load_project


class RecordingPool:
    """Stands in for ProcessPoolExecutor: records how many workers were asked for, then refuses to start them."""

    asked: ClassVar[list[int]] = []

    def __init__(self, max_workers: int) -> None:
        RecordingPool.asked.append(max_workers)
        raise RuntimeError("no pool in this test")


@pytest.fixture
def one_core_of_many(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {3}, raising=False)
    RecordingPool.asked = []


def sources(folder: Path, count: int) -> list[SourceImage]:
    folder.mkdir()
    images = []
    for index in range(count):
        path = folder / f"{index}.png"
        Image.new("RGB", (16, 16), (index, 0, 0)).save(path)
        stat = path.stat()
        images.append(SourceImage(path, path.name, (), False, stat.st_size, stat.st_mtime_ns))
    return images


def test_the_rule_follows_affinity_and_an_explicit_count_wins(one_core_of_many: None) -> None:
    from onetwo.data.workers import default_workers, worker_count

    assert default_workers() == 1
    assert worker_count(0) == worker_count(None) == 1
    assert worker_count(5) == 5


def test_check_decodes_in_as_many_processes_as_usable_cores(one_core_of_many: None, make_project, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    make_project(images=12)  # more images than check decodes in its own process
    project = load_project(tmp_path / "onetwo.toml")
    monkeypatch.setattr(check_module, "ProcessPoolExecutor", RecordingPool)
    usable, reports, _ = check_module.check_images(project, scan_project(project), 0, progress=False)
    assert RecordingPool.asked == []  # one usable core: decoded here, no pool of 64
    assert [len(report.usable) for report in reports] == [12, 12]
    assert [len(scan.images) for scan in usable] == [12, 12]


def test_build_uses_the_same_rule(one_core_of_many: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_module, "ProcessPoolExecutor", RecordingPool)
    images = sources(tmp_path / "images", 4)
    geometry = Geometry(32, 16, ((0, 16), (16, 16)), 0.5, (255, 255, 255))
    jobs = [CompositeJob(f"c{index}", ("a", "b"), (images[index], images[(index + 1) % 4]), "a/b/COMPOSITE",
                         geometry, f"key{index}") for index in range(4)]
    report = build_module.build(jobs, "png", tmp_path / "out", tmp_path / "manifest.json", 0, progress=False)
    assert RecordingPool.asked == [] and report.built == 4 and not report.failed
