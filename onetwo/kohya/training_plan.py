"""What a stage's plan table needs from a project: each training folder's images and sizes (known in memory before
kohya reads them), the accelerate process count, and the speed of the stage's last run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from onetwo.data.composite import CompositeJob
from onetwo.data.originals import plan_folder, replay_selection
from onetwo.data.scan import CharacterImages, scan_character
from onetwo.kohya.plan_table import StagePlan, SubsetImages, stage_plan
from onetwo.kohya.render import RenderedStage
from onetwo.kohya.train_rate import measured_rate
from onetwo.project.config import Character, Project


def _sizes(scan: CharacterImages, names: set[Path] | None = None) -> tuple[tuple[int, int], ...]:
    return tuple((image.width, image.height) for image in scan.images
                 if names is None or image.path in names)


def _header_sizes(paths: Sequence[Path]) -> tuple[tuple[int, int], ...]:
    """Pixel sizes as kohya reads them (the file's header, no EXIF transpose); unreadable files are left out."""
    sizes = []
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.append(image.size)
        except OSError:
            continue
    return tuple(sizes)


def stage_images(project: Project, stage: str, scans: Sequence[CharacterImages],
                 jobs: Sequence[CompositeJob] = ()) -> dict[str, SubsetImages]:
    """Every folder a stage's dataset TOML names (by its image_dir text), with what will be in it."""
    folders: dict[str, SubsetImages] = {}
    if stage in ("stage1", "joint"):
        for scan in scans:
            name = scan.character.name
            folders[str(project.originals_dir / scan.character.slug)] = SubsetImages(
                name, _sizes(scan), ((name, len(scan.images)),))
    if stage in ("stage2", "joint"):
        shown = Counter(name for job in jobs for name in job.names)
        sizes = tuple((job.geometry.width, job.geometry.height) for job in jobs)
        folders[str(project.composite_dir)] = SubsetImages("composites", sizes, tuple(sorted(shown.items())))
    if stage == "stage2" and project.replay:
        for scan in scans:
            chosen = replay_selection(plan_folder(scan, project.single_caption), project.replay,
                                      project.composite.seed)
            name = scan.character.name
            folders[str(project.replay_dir / scan.character.slug)] = SubsetImages(
                f"{name} (replay)", _sizes(scan, {entry.source for entry in chosen}), ((name, len(chosen)),))
    regularization = project.regularization
    if stage in regularization.folders:
        character = Character(regularization.class_tokens, regularization.folders[stage], regularization.repeats,
                              False, "regularization")
        paths = [image.path for image in scan_character(character).images]
        folders[str(project.regularization_dir(stage))] = SubsetImages("regularization", _header_sizes(paths))
    return folders


def plan_stage(project: Project, rendered: RenderedStage, scans: Sequence[CharacterImages],
               jobs: Sequence[CompositeJob], accelerate: Mapping[str, Any]) -> StagePlan:
    log = project.stage_dir(rendered.stage) / "train.log"
    rate = measured_rate(log)
    return stage_plan(rendered.stage, rendered.dataset, rendered.flat_config(),
                      stage_images(project, rendered.stage, scans, jobs), rendered.sample_prompts,
                      int(accelerate.get("num_processes") or 1), rate, f"measured in {log}" if rate else "")
