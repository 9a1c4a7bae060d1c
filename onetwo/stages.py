"""The steps of a stage, in order: scan and check the images, link the originals, build the composites, render the
kohya files with their provenance and fit them to the trainer's Python (`fit_stage`, which `onetwo matrix` shares),
launch the trainer. The CLI, `onetwo matrix` and the benchmarks call these."""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onetwo.best_epoch import BEST, best_stage1
from onetwo.data.build import BuildReport, build
from onetwo.data.caption_check import caption_warnings
from onetwo.data.captions import caption_counter
from onetwo.data.check import check_images, check_regularization, summary_table
from onetwo.data.composite import CompositeJob, FigureBox, over_budget, plan, thin_data
from onetwo.data.masks import FigureMask, figure_masks, mask_report
from onetwo.data.originals import (
    FolderWrite,
    plan_folder,
    plan_regularization,
    replay_selection,
    with_weights,
    write_folder,
)
from onetwo.data.scan import CharacterImages, scan_project
from onetwo.errors import OnetwoError
from onetwo.kohya.base_model import base_model_problems, model_file_problems
from onetwo.kohya.buckets import BucketSettings, fit_size
from onetwo.kohya.families import FAMILIES
from onetwo.kohya.gui import gui_config, write_gui_config
from onetwo.kohya.hashes import rehash_trained
from onetwo.kohya.plan_table import format_plan
from onetwo.kohya.provenance import handoff_problems, provenance
from onetwo.kohya.render import (
    RenderedStage,
    Templates,
    load_templates,
    parse_assignment,
    parse_set,
    render_stage,
    role_buckets,
    switch_to_sdpa,
    write_stage,
)
from onetwo.kohya.set_options import handoff_fix, require_valid_sets
from onetwo.kohya.training_plan import plan_stage
from onetwo.messages import info, warn
from onetwo.project.config import Overrides, Project
from onetwo.synth.join import decks as synthetic_decks
from onetwo.trainer.launch import command, preflight, require, run
from onetwo.trainer.python import TrainerCheck, choose_python, trainer_for

CROP_WARNING = 0.02  # a share of the picture kohya may cut before onetwo warns


def scan(project: Project, workers: int | None = None, progress: bool = True,
         tables: BucketSettings | None = None) -> list[CharacterImages]:
    """Scan the folders and decode-check every image; undecodable ones are skipped with the reason. With `tables`
    (the originals' bucket settings), a table per character of the buckets kohya puts its images in."""
    found = scan_project(project)
    usable, reports, notes = check_images(project, found, workers or project.composite.workers, progress)
    for item, report in zip(usable, reports, strict=True):
        if tables:
            print(summary_table(report, tables, CROP_WARNING))
        else:
            missing = len(item.uncaptioned)
            note = f", {missing} without a caption (captioned {item.character.token!r} alone)" if missing else ""
            skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
            info(f"{item.character.name}: {len(report.scan.images)} images{skipped}{note}, repeats {item.repeats} "
                 f"({item.character.images})")
        for message in item.warnings:
            warn(message)
    for message in notes:
        warn(message)
    empty = [f"{item.character.images}: no usable image for {item.character.name!r}" for item in usable
             if not item.images]
    if empty:
        raise OnetwoError("nothing to train on:", empty)
    return usable


def masks_needed(project: Project) -> bool:
    return project.composite.layout == "scene" or "figures" in (project.composite.loss_mask,
                                                                 project.stage1_loss_mask)


def project_masks(project: Project, scans: Sequence[CharacterImages], progress: bool = True) -> dict[Path, FigureMask]:
    return figure_masks([image for item in scans for image in item.images], project.mask_dir, progress=progress)


def figure_boxes(project: Project, scans: Sequence[CharacterImages],
                 progress: bool = True) -> dict[Path, FigureBox] | None:
    """Every source's figure mask (computed once, then cached) where the composites need them; an empty mask
    stands for the whole picture (check flags it)."""
    if project.composite.layout != "scene" and project.composite.loss_mask != "figures":
        return None
    found = project_masks(project, scans, progress)
    return {path: FigureBox(str(mask.file), mask.box or (0, 0, *mask.size), mask.size) for path, mask in found.items()}


def stage1_decks(project: Project, scans: Sequence[CharacterImages]) -> list[CharacterImages]:
    """Stage 1's folders: the characters' own images; with `[synthetic] stage1 = true`, and their kept drawings up
    to max_share (the model then trains on its own output: only when asked)."""
    return synthetic_decks(project, scans) if project.synthetic.stage1 else list(scans)


def composite_plan(project: Project, scans: Sequence[CharacterImages], sets: Sequence[str] = (),
                   buckets: BucketSettings | None = None, progress: bool = True) -> list[CompositeJob]:
    buckets = buckets or role_buckets(project, "composites", parse_set(sets))
    scans = synthetic_decks(project, scans)  # `onetwo synth`'s kept drawings, up to [synthetic] max_share
    return plan(scans, project.composite, lambda aspect: fit_size(aspect, buckets),
                figure_boxes(project, scans, progress), caption_counter(project))


def make_composites(project: Project, scans: Sequence[CharacterImages], workers: int | None, progress: bool,
                    sets: Sequence[str] = (), templates: Templates | None = None
                    ) -> tuple[list[CompositeJob], BuildReport]:
    """Plan and build the composites; `templates`: those of the stage that trains on them, when already read."""
    settings = project.composite
    buckets = role_buckets(project, "composites", parse_set(sets), templates)
    jobs = composite_plan(project, scans, sets, buckets, progress)
    counter = caption_counter(project)
    long_captions = over_budget(jobs, counter)
    if long_captions:
        worst, tokens = max(long_captions, key=lambda item: item[1])
        warn(f"{len(long_captions)} of {len(jobs)} composite captions may exceed {counter.limit} {counter.name} "
             f"and be cut by kohya (longest: {worst.stem}, about {tokens}); shorten the tag files or set "
             "composite.trim_captions = true")
    if settings.width and settings.height and jobs:
        bucket = buckets.select(settings.width, settings.height)
        lost = buckets.cut(settings.width, settings.height)
        if lost > CROP_WARNING:
            warn(f"{settings.width}x{settings.height} composites land in kohya's {bucket[0]}x{bucket[1]} bucket, "
                 f"whose centre crop cuts {lost:.0%} of each; leave composite.width and height unset to size them "
                 "to a bucket")
    report = build(jobs, settings.format, project.composite_dir, project.manifest_file,
                   workers if workers is not None else settings.workers, progress)
    info(f"composites: {len(jobs)} planned, {report.built} built, {report.skipped} unchanged, "
         f"{len(report.removed)} removed → {project.composite_dir}")
    if report.foreign:
        warn(f"{project.composite_dir} holds {len(report.foreign)} file(s) onetwo did not make, which kohya will "
             f"train on too: {', '.join(report.foreign[:5])}")
    if report.failed:
        raise OnetwoError(f"{len(report.failed)} composite(s) could not be built:", report.failed)
    return jobs, report


def prepare_originals(project: Project, scans: Sequence[CharacterImages], replay: bool = False,
                      weighted: bool = False, progress: bool = True) -> None:
    """Link or copy the originals (or stage 2's replayed share of them) into the work dir, with onetwo's captions;
    those kohya would read differently are normalised copies; `weighted` ([stage1] loss_mask = "figures"): RGBA
    copies whose alpha is the figure mask."""
    folder = project.replay_dir if replay else project.originals_dir
    written = FolderWrite()
    every = []
    masks = {}
    if weighted:
        found = project_masks(project, scans, progress)
        masks = {path: str(mask.file) for path, mask in found.items()}
    for item in scans:
        entries = plan_folder(item, project.single_caption)
        if weighted:
            entries = with_weights(entries, item.images, masks, project.stage1_mask_floor)
        if replay:
            entries = replay_selection(entries, project.replay, project.composite.seed)
        written += write_folder(folder / item.character.slug, entries, project.originals, project.composite.background)
        every += entries
    what = "replayed originals" if replay else "originals"
    info(f"{what}: {len(every)} images with captions: {written.describe()} ({written.changed} files updated) → "
         f"{folder}")


def prepare_regularization(project: Project, stage: str, workers: int | None = None,
                           progress: bool = True) -> CharacterImages | None:
    """Check the stage's regularization images like the originals and link (or copy) the usable ones into the work
    dir; return them for the plan."""
    regularization, notes = check_regularization(project, stage, workers or project.composite.workers, progress)
    for message in notes:
        warn(message)
    if regularization is None:
        return None
    folder = project.regularization_dir(stage)
    written = write_folder(folder, plan_regularization(regularization.images, project.regularization.class_tokens),
                           project.originals, project.composite.background)
    info(f"regularization: {len(regularization.images)} images: {written.describe()} ({written.changed} files "
         f"updated) → {folder}")
    return regularization


def stage1_weights(project: Project, from_file: str | None = None, epoch: int | str | None = None) -> Path:
    if from_file:
        return Path(from_file).resolve()
    if epoch == BEST:
        weights, why = best_stage1(project)
        info(f"stage2: {why}")
        return weights
    if epoch is not None:
        # kohya names per-epoch saves <output_name>-<epoch:06d>.safetensors
        return project.output_dir / f"{project.output_name('stage1')}-{epoch:06d}.safetensors"
    return project.lora_file("stage1")


def trigger_tokens(project: Project, stage: str) -> list[str]:
    singles = [character.token for character in project.characters]
    if stage == "stage1":
        return singles
    groups = itertools.permutations([character.name for character in project.characters], project.composite.group_size)
    return singles + ["/".join(group) + "/COMPOSITE" for group in groups]


def stages_of(project: Project) -> tuple[str, ...]:
    return ("joint",) if project.mode == "joint" else ("stage1", "stage2")


@dataclass(frozen=True)
class StageRequest:
    """What the command line asks of one stage: overrides, accelerate options, stage 2's input, trainer arguments."""

    stage: str
    sets: Sequence[str] = ()
    accelerate: Sequence[str] = ()
    extra: Sequence[str] = ()
    from_file: str | None = None
    epoch: int | str | None = None  # a number, or best_epoch.BEST
    workers: int | None = None
    progress: bool = True
    launch: bool = False  # to be launched here: probe the trainer's Python and fit the written config to it


@dataclass(frozen=True)
class PreparedStage:
    argv: list[str]
    weights: Path | None
    flat_config: dict[str, Any]
    trainer: TrainerCheck | None = None


@dataclass(frozen=True)
class FittedStage:
    """A rendered stage fitted to the Python that runs it, and the accelerate options it launches with."""

    rendered: RenderedStage
    accelerate: dict[str, Any]
    trainer: TrainerCheck | None  # None: not to be launched here, so not probed

    def python(self, project: Project) -> str:
        return (self.trainer.python if self.trainer else choose_python(project.python, project.sd_scripts)).path

    def command(self, project: Project, config_file: Path, dataset_file: Path, extra: Sequence[str]) -> list[str]:
        return command(project.train_script, config_file, dataset_file, self.accelerate, extra, self.python(project))


def accelerate_settings(project: Project, items: Sequence[str]) -> dict[str, Any]:
    return {**project.accelerate, **dict(parse_assignment(item, "--accelerate") for item in items)}


def say_render_notes(rendered: RenderedStage) -> None:
    for note in rendered.notices:
        info(f"{rendered.stage}: {note}")
    for message in rendered.warnings:
        warn(f"{rendered.stage}: {message}")


def fit_stage(project: Project, stage: str, scans: Sequence[CharacterImages], templates: Templates,
              request: StageRequest, weights: Path | None = None, record: dict[str, str] | None = None) -> FittedStage:
    """Render a stage; to be launched here, fit it to the trainer's Python: probe it, and where it cannot run
    xformers switch the config to sdpa and say so. `onetwo train` and `onetwo matrix` both launch through this."""
    accelerate = accelerate_settings(project, request.accelerate)
    rendered = render_stage(project, stage, scans, templates, parse_set(request.sets), weights, record)
    say_render_notes(rendered)
    if not request.launch:
        return FittedStage(rendered, accelerate, None)
    trainer = trainer_for(project, [rendered.flat_config()], accelerate)
    for note in trainer.notes:
        info(note)
    if trainer.use_sdpa:
        switch_to_sdpa(rendered.config)
    return FittedStage(rendered, accelerate, trainer)


def prepare_stage(project: Project, request: StageRequest) -> PreparedStage:
    """Scan, make the stage's images, render its TOMLs; return the trainer's argv and stage 2's input."""
    stage = request.stage
    if stage not in stages_of(project):
        raise OnetwoError(f"{project.file}: project.mode is {project.mode!r}, which trains "
                          f"{' then '.join(stages_of(project))}; run `onetwo train {stages_of(project)[0]}` or "
                          "change project.mode")
    require_valid_sets(request.sets, project.model)  # before any file is written
    templates = load_templates(project, stage)
    scans = scan(project, request.workers, request.progress)
    weights = None
    jobs: list[CompositeJob] = []
    originals = stage1_decks(project, scans) if stage == "stage1" else scans
    if stage in ("stage1", "joint"):
        prepare_originals(project, originals, weighted=stage == "stage1" and project.stage1_loss_mask == "figures",
                          progress=request.progress)
    if stage in ("stage2", "joint"):  # the stage that trains on the composites: role_buckets may use its templates
        jobs, _ = make_composites(project, scans, request.workers, request.progress, request.sets, templates)
    regularization = prepare_regularization(project, stage, request.workers, request.progress)
    if stage == "stage2":
        if project.replay:  # the replayed share of each deck: drawings kept by `onetwo synth` too
            prepare_originals(project, synthetic_decks(project, scans), replay=True)
        weights = stage1_weights(project, request.from_file, request.epoch)
    record = provenance(stage, project.name, trigger_tokens(project, stage), project.sd_scripts, weights,
                        project.manifest_file if stage != "stage1" else None)
    fitted = fit_stage(project, stage, scans, templates, request, weights, record)
    rendered = fitted.rendered
    config_file, dataset_file, prompts_file = write_stage(project, rendered)
    info(f"{stage}: wrote {config_file}, {dataset_file}, {prompts_file}")
    if FAMILIES[project.model].gui:
        gui = gui_config(rendered, dataset_file, project.model, fitted.accelerate, weights)
        gui_note = f"; the GUI has no way to set {', '.join(gui.not_expressible)}" if gui.not_expressible else ""
        info(f"{stage}: kohya_ss GUI config → {write_gui_config(project.stage_dir(stage), gui)}{gui_note}")
    else:
        info(f"{stage}: no kohya_ss GUI config: onetwo does not map {FAMILIES[project.model].label} onto the GUI's "
             "fields yet")
    info(format_plan(plan_stage(project, rendered, originals, jobs, fitted.accelerate, regularization)))
    argv = fitted.command(project, config_file, dataset_file, request.extra)
    return PreparedStage(argv, weights, rendered.flat_config(), fitted.trainer)


def check_project(project: Project, workers: int | None = None, progress: bool = True) -> None:
    """Everything `onetwo check` looks at; raises one OnetwoError listing every problem."""
    stages = stages_of(project)
    templates = {stage: load_templates(project, stage) for stage in stages}
    accelerate = accelerate_settings(project, ())
    # The first stage trains on the originals, the last on the composites (joint: one stage, both).
    scans = scan(project, workers, progress, tables=role_buckets(project, "originals", None, templates[stages[0]]))
    jobs = composite_plan(project, scans, (), role_buckets(project, "composites", None, templates[stages[-1]]),
                          progress=progress)
    counter = caption_counter(project)
    long_captions = over_budget(jobs, counter)
    if masks_needed(project):
        lines, doubts = mask_report(scans, project_masks(project, scans, progress))
        for line in lines:
            print(line)
        for message in doubts:
            warn(message)
    for message in thin_data(scans, project.composite):
        warn(message)
    problems = []
    flats = []
    for stage in stages:
        weights = project.lora_file("stage1") if stage == "stage2" else None
        try:
            rendered = render_stage(project, stage, scans, templates[stage], Overrides(), weights)
            flats.append(rendered.flat_config())
            say_render_notes(rendered)
            if stage != "stage2":  # the stage that trains on the originals' own captions
                for message in caption_warnings(scans, project.single_caption, rendered.flat_config(),
                                                counter):
                    warn(message)
            regularization, notes = check_regularization(project, stage, workers or project.composite.workers,
                                                         progress)
            for message in notes:
                warn(message)
            print(format_plan(plan_stage(project, rendered, stage1_decks(project, scans) if stage == "stage1" else
                                         scans, jobs if stage != "stage1" else [], accelerate, regularization)))
        except OnetwoError as exc:
            problems.append(str(exc))
    problems += preflight(project.base_model, project.train_script, None)
    model_problems, model_notes = base_model_problems(project.base_model, project.model, flats[0] if flats else None)
    file_problems, file_notes = model_file_problems(project.model, project.model_files)
    model_problems, model_notes = model_problems + file_problems, model_notes + file_notes
    trainer = trainer_for(project, flats, accelerate) if flats else None
    for note in [*model_notes, *(trainer.notes if trainer else ())]:
        info(note)
    problems += model_problems + (trainer.problems if trainer else [])
    if long_captions:
        warn(f"{len(long_captions)} composite caption(s) may exceed {counter.limit} {counter.name}; see "
             "composite.trim_captions")
    if project.mode == "sequential" and not project.lora_file("stage1").is_file():
        info(f"stage 2 will continue from {project.lora_file('stage1')}, which stage 1 has not written yet")
    if problems:
        raise OnetwoError(f"{project.file}: {len(problems)} problem(s) to fix before training:", problems)


def launch_problems(project: Project, prepared: PreparedStage) -> list[str]:
    """What stops a prepared stage from training: missing inputs, a base model that is not what the project says, a
    trainer's Python without what the config needs, and a stage-1 network stage 2 cannot continue."""
    problems = preflight(project.base_model, project.train_script, prepared.weights)
    problems += base_model_problems(project.base_model, project.model, prepared.flat_config)[0]
    problems += model_file_problems(project.model, project.model_files)[0]
    problems += prepared.trainer.problems if prepared.trainer else []
    weights = prepared.weights
    if weights is not None and weights.is_file():
        mismatch = handoff_problems(weights, prepared.flat_config)
        if mismatch:
            problems.append(f"{weights}: stage 2's network settings differ from stage 1's, and LyCORIS would "
                            "silently drop the stage-1 weights; make them equal (or train stage 1 again):\n    "
                            + "\n    ".join(mismatch) + "\n  to continue from it, add to the command line (or set "
                            "the same under [stage2]):\n    " + " ".join(handoff_fix(weights, prepared.flat_config)))
    return problems


def train_stage(project: Project, stage: str, prepared: PreparedStage) -> int:
    """Run the trainer on a prepared stage, its output streamed and logged; return its exit code."""
    require(launch_problems(project, prepared), f"train {stage}")
    log = project.stage_dir(stage) / "train.log"
    info(f"{stage}: {shlex.join(prepared.argv)}")
    code = run(prepared.argv, log)
    if code == 0:
        info(f"{stage}: done → {project.lora_file(stage)}")
        for line in rehash_trained(prepared.flat_config):
            info(f"{stage}: {line}")
    else:
        info(f"{stage}: {project.train_script.name} exited with code {code}; its log: {log}")
    return code
