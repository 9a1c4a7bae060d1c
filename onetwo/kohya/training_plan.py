"""What a stage's plan table needs from a project: each training folder's images and sizes (known in memory before
kohya reads them), the accelerate process count, and the speed of the stage's last run (read from its train.log)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from onetwo.data.composite import CompositeJob
from onetwo.data.originals import plan_folder, replay_selection
from onetwo.data.scan import CharacterImages
from onetwo.kohya.plan_table import COMPOSITES, StagePlan, SubsetImages, stage_plan
from onetwo.kohya.render import RenderedStage
from onetwo.project.config import Project
from onetwo.synth.join import decks, shares

# sd-scripts' tqdm bar: `steps:  40%|████      | 4/10 [00:12<00:18,  3.05s/it, avr_loss=0.11]` (or `1.52it/s`),
# redrawn with \r; not "epoch validation steps:", the bar of validation.
STEPS_BAR = re.compile(r"(?<![\w ])steps:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[[^\],]*,\s*([\d.]+)(s/it|it/s)")
TAIL_BYTES = 1 << 20


def _sizes(scan: CharacterImages, names: set[Path] | None = None) -> tuple[tuple[int, int], ...]:
    return tuple((image.width, image.height) for image in scan.images
                 if names is None or image.path in names)


def stage_images(project: Project, stage: str, scans: Sequence[CharacterImages], jobs: Sequence[CompositeJob] = (),
                 regularization: CharacterImages | None = None) -> dict[str, SubsetImages]:
    """Every folder a stage's dataset TOML names (by its image_dir text), with what will be in it; `regularization`:
    the stage's checked regularization images (`data.check.check_regularization`)."""
    folders: dict[str, SubsetImages] = {}
    if stage in ("stage1", "joint"):
        for scan in scans:
            name = scan.character.name
            folders[str(project.originals_dir / scan.character.slug)] = SubsetImages(
                name, _sizes(scan), ((name, len(scan.images)),))
    if stage in ("stage2", "joint"):
        shown = Counter(name for job in jobs for name in job.names)
        sizes = tuple((job.geometry.width, job.geometry.height) for job in jobs)
        folders[str(project.composite_dir)] = SubsetImages(COMPOSITES, sizes, tuple(sorted(shown.items())))
    if stage == "stage2" and project.replay:
        for scan in decks(project, scans):
            chosen = replay_selection(plan_folder(scan, project.single_caption), project.replay,
                                      project.composite.seed)
            name = scan.character.name
            folders[str(project.replay_dir / scan.character.slug)] = SubsetImages(
                f"{name} (replay)", _sizes(scan, {entry.source for entry in chosen}), ((name, len(chosen)),))
    if regularization is not None:
        folders[str(project.regularization_dir(stage))] = SubsetImages("regularization", _sizes(regularization))
    return folders


def plan_stage(project: Project, rendered: RenderedStage, scans: Sequence[CharacterImages],
               jobs: Sequence[CompositeJob], accelerate: Mapping[str, Any],
               regularization: CharacterImages | None) -> StagePlan:
    log = project.stage_dir(rendered.stage) / "train.log"
    rate = measured_rate(log)
    plan = stage_plan(rendered.stage, rendered.dataset, rendered.flat_config(),
                      stage_images(project, rendered.stage, scans, jobs, regularization), rendered.sample_prompts,
                      int(accelerate.get("num_processes") or 1), rate, f"measured in {log}" if rate else "",
                      project.composite.share if rendered.stage == "stage2" else None)
    if rendered.stage == "stage1":
        return plan
    synthetic = tuple((item.name, item.synthetic, item.real + item.synthetic, item.appearances,
                       item.synthetic_appearances) for item in shares(project, scans, jobs))
    return replace(plan, synthetic=synthetic, synthetic_cap=project.synthetic.max_share) if synthetic else plan


def seconds_per_step(log_text: str) -> float | None:
    """The last rate the bar showed (sd-scripts runs tqdm with smoothing=0: the average since the first step)."""
    rate = None
    for match in STEPS_BAR.finditer(log_text):
        if int(match.group(1)) < 1:
            continue
        value = float(match.group(3))
        if value > 0:
            rate = value if match.group(4) == "s/it" else 1 / value
    return rate


def measured_rate(log_file: Path) -> float | None:
    """seconds_per_step of the log's last megabyte; None when there is no log or no step was logged."""
    try:
        with log_file.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - TAIL_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    return seconds_per_step(text)
