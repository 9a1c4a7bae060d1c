"""The command line: the one place that decides the order of steps."""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from onetwo import __version__, matrix
from onetwo.buckets import crop_fraction, fit_size, nearest_bucket
from onetwo.build import BuildReport, build
from onetwo.captions import MAX_TOKEN_LENGTH
from onetwo.check import check_images, summary_table
from onetwo.composite import PORTRAIT, CompositeJob, over_budget, plan
from onetwo.config import STAGES, Character, Overrides, Project, load_project
from onetwo.dataset import CharacterImages, scan_character, scan_project
from onetwo.errors import OnetwoError
from onetwo.fsutil import write_text_atomic
from onetwo.launch import command, preflight, require, run
from onetwo.originals import plan_folder, plan_regularization, replay_selection, write_folder
from onetwo.preview import contact_sheet, pick
from onetwo.provenance import describe, handoff_problems, provenance, read_metadata
from onetwo.render import (
    load_templates,
    parse_assignment,
    parse_set,
    render_stage,
    role_buckets,
    write_stage,
    write_toml,
)

CROP_WARNING = 0.02  # a share of the picture kohya may cut before onetwo warns


def warn(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr)


def info(message: str) -> None:
    print(message, file=sys.stderr)


def scan(project: Project, workers: int | None = None, progress: bool = True,
         tables: bool = False) -> list[CharacterImages]:
    """Scan the folders and decode-check every image; undecodable ones are skipped with the reason."""
    found = scan_project(project)
    usable, reports, notes = check_images(project, found, workers or project.composite.workers, progress)
    buckets = role_buckets(project, "originals") if tables else None
    for item, report in zip(usable, reports, strict=True):
        if buckets:
            print(summary_table(report, buckets, CROP_WARNING))
        else:
            missing = len(item.uncaptioned)
            note = f", {missing} without a caption (the token alone is used)" if missing else ""
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


def composite_plan(project: Project, scans: Sequence[CharacterImages], sets: Sequence[str] = ()) -> list[CompositeJob]:
    buckets = role_buckets(project, "composites", parse_set(sets))
    return plan(scans, project.composite, lambda aspect: fit_size(aspect, buckets))


def make_composites(project: Project, scans: Sequence[CharacterImages], workers: int | None,
                    progress: bool, sets: Sequence[str] = ()) -> tuple[list[CompositeJob], BuildReport]:
    settings = project.composite
    jobs = composite_plan(project, scans, sets)
    long_captions = over_budget(jobs)
    if long_captions:
        worst, tokens = max(long_captions, key=lambda item: item[1])
        warn(f"{len(long_captions)} of {len(jobs)} composite captions may exceed {MAX_TOKEN_LENGTH} CLIP tokens "
             f"and be cut by kohya (longest: {worst.stem}, about {tokens}); shorten the tag files or set "
             "composite.trim_captions = true")
    if settings.width and settings.height and jobs:
        buckets = role_buckets(project, "composites", parse_set(sets)).buckets()
        bucket = nearest_bucket(settings.width, settings.height, buckets)
        lost = crop_fraction(settings.width, settings.height, bucket)
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


def prepare_originals(project: Project, scans: Sequence[CharacterImages], replay: bool = False) -> None:
    """Link the originals (or stage 2's replayed share of them) into the work dir, with onetwo's captions."""
    folder = project.replay_dir if replay else project.originals_dir
    changed = linked = 0
    for item in scans:
        entries = plan_folder(item, project.single_caption)
        if replay:
            entries = replay_selection(entries, project.replay, project.composite.seed)
        changed += write_folder(folder / item.character.slug, entries)
        linked += len(entries)
    what = "replayed originals" if replay else "originals"
    info(f"{what}: {linked} images linked with captions ({changed} files updated) → {folder}")


def prepare_regularization(project: Project, stage: str) -> None:
    regularization = project.regularization
    folder = regularization.folders.get(stage)
    if folder is None:
        return
    character = Character(regularization.class_tokens, folder, regularization.repeats, False, "regularization")
    images = scan_character(character).images
    changed = write_folder(project.regularization_dir(stage), plan_regularization(images, regularization.class_tokens))
    info(f"regularization: {len(images)} images linked ({changed} files updated) → "
         f"{project.regularization_dir(stage)}")


def stage1_weights(args: argparse.Namespace, project: Project) -> Path:
    if args.from_file:
        return Path(args.from_file).resolve()
    if args.epoch is not None:
        # kohya names per-epoch saves <output_name>-<epoch:06d>.safetensors
        return project.output_dir / f"{project.output_name('stage1')}-{args.epoch:06d}.safetensors"
    return project.lora_file("stage1")


def trigger_tokens(project: Project, stage: str) -> list[str]:
    names = [character.name for character in project.characters]
    if stage == "stage1":
        return names
    groups = itertools.permutations(names, project.composite.group_size)
    return names + ["/".join(group) + "/COMPOSITE" for group in groups]


def stages_of(project: Project) -> tuple[str, ...]:
    return ("joint",) if project.mode == "joint" else ("stage1", "stage2")


def prepare_stage(args: argparse.Namespace, project: Project) -> tuple[list[str], Path | None, dict]:
    """Scan, make the stage's images, render its TOMLs; return the trainer's argv and stage 2's input."""
    if args.stage not in stages_of(project):
        raise OnetwoError(f"{project.file}: project.mode is {project.mode!r}, which trains "
                          f"{' then '.join(stages_of(project))}; run `onetwo train {stages_of(project)[0]}` or "
                          "change project.mode")
    scans = scan(project, args.workers, not args.no_progress)
    weights = None
    if args.stage in ("stage1", "joint"):
        prepare_originals(project, scans)
    if args.stage in ("stage2", "joint"):
        make_composites(project, scans, args.workers, not args.no_progress, args.set)
    prepare_regularization(project, args.stage)
    if args.stage == "stage2":
        if project.replay:
            prepare_originals(project, scans, replay=True)
        weights = stage1_weights(args, project)
    record = provenance(args.stage, project.name, trigger_tokens(project, args.stage), project.sd_scripts, weights,
                        project.manifest_file if args.stage != "stage1" else None)
    rendered = render_stage(project, args.stage, scans, load_templates(project, args.stage), parse_set(args.set),
                            weights, record)
    config_file, dataset_file, prompts_file = write_stage(project, rendered)
    info(f"{args.stage}: wrote {config_file}, {dataset_file}, {prompts_file}")
    accelerate = {**project.accelerate, **dict(parse_assignment(item, "--accelerate") for item in args.accelerate)}
    argv = command(project.train_script, config_file, dataset_file, accelerate, args.extra)
    return argv, weights, rendered.flat_config()


def cmd_check(args: argparse.Namespace, project: Project) -> int:
    scans = scan(project, args.workers, not args.no_progress, tables=True)
    long_captions = over_budget(composite_plan(project, scans))
    problems = []
    for stage in stages_of(project):
        weights = project.lora_file("stage1") if stage == "stage2" else None
        try:
            render_stage(project, stage, scans, load_templates(project, stage), Overrides(), weights)
        except OnetwoError as exc:
            problems.append(str(exc))
    problems += preflight(project.base_model, project.train_script, None)
    if long_captions:
        warn(f"{len(long_captions)} composite caption(s) may exceed {MAX_TOKEN_LENGTH} CLIP tokens; see "
             "composite.trim_captions")
    if project.mode == "sequential" and not project.lora_file("stage1").is_file():
        info(f"stage 2 will continue from {project.lora_file('stage1')}, which stage 1 has not written yet")
    if problems:
        raise OnetwoError(f"{project.file}: {len(problems)} problem(s) to fix before training:", problems)
    info("check: no problems found")
    return 0


def cmd_composite(args: argparse.Namespace, project: Project) -> int:
    make_composites(project, scan(project, args.workers, not args.no_progress), args.workers, not args.no_progress)
    return 0


def cmd_preview(args: argparse.Namespace, project: Project) -> int:
    scans = scan(project, args.workers, not args.no_progress)
    jobs, _ = make_composites(project, scans, args.workers, not args.no_progress)
    chosen = set(pick([job.stem for job in jobs], args.count, project.composite.seed))
    images = [(job.stem, project.composite_dir / f"{job.stem}.{project.composite.format}") for job in jobs
              if job.stem in chosen]
    target = Path(args.out).resolve() if args.out else project.work_dir / "preview.png"
    info(f"preview: {len(images)} composites → {contact_sheet(images, target)}")
    return 0


def cmd_render(args: argparse.Namespace, project: Project) -> int:
    prepare_stage(args, project)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    for file in args.files:
        print(describe(Path(file)))
    return 0


def cmd_matrix(args: argparse.Namespace, project: Project) -> int:
    lora = Path(args.lora).resolve()
    read_metadata(lora)
    scans = scan(project, args.workers, not args.no_progress)
    sets = parse_set(args.set)
    width, height = fit_size(PORTRAIT * 2, role_buckets(project, "composites", sets))
    grid = matrix.cells(project, scans, width, height, args.steps or project.samples.steps, args.seed)
    out_dir = project.work_dir / "matrix" / lora.stem
    for old in (out_dir / "sample").glob("matrix_*.png"):
        old.unlink()  # a stale sample would fill the cell of a prompt that failed this time
    stage = stages_of(project)[0]
    prepare_originals(project, scans)
    rendered = render_stage(project, stage, scans, load_templates(project, stage), sets)
    prompts_file = out_dir / "prompts.txt"
    config = matrix.sampling_config(rendered.flat_config(), lora, out_dir, prompts_file)
    mismatch = handoff_problems(lora, config)
    if mismatch:
        raise OnetwoError(f"{lora}: its network differs from the project's, so LyCORIS would load none of it:",
                          mismatch)
    write_text_atomic(prompts_file, "".join(cell.prompt_line + "\n" for cell in grid))
    config_file, dataset_file = out_dir / "config.toml", out_dir / "dataset.toml"
    write_toml(config_file, config, f"the pair matrix of {lora.name}")
    write_toml(dataset_file, matrix.sampling_dataset(rendered.dataset), f"the pair matrix of {lora.name}")
    accelerate = {**project.accelerate, **dict(parse_assignment(item, "--accelerate") for item in args.accelerate)}
    argv = command(project.train_script, config_file, dataset_file, accelerate, args.extra)
    require(preflight(project.base_model, project.train_script, None), "draw the pair matrix")
    info(f"matrix: {shlex.join(argv)}")
    code = run(argv, out_dir / "sample.log")
    (out_dir / "matrix.safetensors").unlink(missing_ok=True)  # the zero-epoch run re-saves the LoRA unchanged
    images = matrix.sample_files(out_dir, len(grid))
    if code or len(images) != len(grid):
        raise OnetwoError(f"sampling exited with {code} and drew {len(images)} of {len(grid)} images; its log: "
                          f"{out_dir / 'sample.log'}")
    target = Path(args.out).resolve() if args.out else project.work_dir / "matrix" / f"{lora.stem}.png"
    info(f"matrix: {len(grid)} images → {matrix.assemble(grid, images, target)}")
    return 0


def cmd_train(args: argparse.Namespace, project: Project) -> int:
    argv, weights, flat = prepare_stage(args, project)
    problems = preflight(project.base_model, project.train_script, weights)
    if weights is not None and weights.is_file():
        mismatch = handoff_problems(weights, flat)
        if mismatch:
            problems.append(f"{weights}: stage 2's network settings differ from stage 1's, and LyCORIS would "
                            "silently drop the stage-1 weights; make them equal (or train stage 1 again):\n    "
                            + "\n    ".join(mismatch))
    if args.dry_run:
        for problem in problems:
            warn(problem)
        print(shlex.join(argv))
        return 0
    require(problems, f"train {args.stage}")
    info(f"{args.stage}: {shlex.join(argv)}")
    code = run(argv, project.stage_dir(args.stage) / "train.log")
    if code == 0:
        info(f"{args.stage}: done → {project.lora_file(args.stage)}")
    else:
        info(f"{args.stage}: train_network.py exited with code {code}; its log: "
             f"{project.stage_dir(args.stage) / 'train.log'}")
    return code


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="onetwo", description="Two-character LoRAs from single-character images "
                                   "(the 1to2 method) on kohya-ss sd-scripts.")
    root.add_argument("--version", action="version", version=f"onetwo {__version__}")
    root.add_argument("--project", "-p", default=os.environ.get("ONETWO_PROJECT", "onetwo.toml"),
                      help="project file (default: onetwo.toml, or $ONETWO_PROJECT)")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument("--workers", type=int, default=None, help="image worker processes (default: all cores)")
        sub.add_argument("--no-progress", action="store_true", help="no progress bars")
        return sub

    add("check", cmd_check, "check the project, every image and caption, the templates, the model and sd-scripts")
    add("composite", cmd_composite, "build the composite images and captions (reruns skip finished work)")
    preview = add("preview", cmd_preview, "build composites and write a contact sheet PNG of a sample")
    preview.add_argument("--count", type=int, default=12, help="composites on the sheet (default 12)")
    preview.add_argument("--out", help="PNG to write (default: <work_dir>/preview.png)")
    for name, handler, help_text in (
        ("render", cmd_render, "write a stage's kohya dataset and config TOMLs and sample prompts"),
        ("train", cmd_train, "render a stage, then run accelerate launch train_network.py on it"),
    ):
        sub = add(name, handler, help_text)
        sub.add_argument("stage", choices=STAGES)
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a training key (dataset.KEY / subset.KEY for dataset keys); repeatable")
        sub.add_argument("--accelerate", action="append", default=[], metavar="KEY=VALUE",
                         help="an `accelerate launch` option on top of the project's [accelerate] (cpu=true); "
                         "repeatable")
        sub.add_argument("--from", dest="from_file", help="stage 2: continue from this LoRA instead of stage 1's")
        sub.add_argument("--epoch", type=int, help="stage 2: continue from stage 1's save of this epoch")
        if name == "train":
            sub.add_argument("--dry-run", action="store_true", help="write the files, print the command, run nothing")
        sub.set_defaults(extra=[])
    inspect_parser(commands)
    grid = add("matrix", cmd_matrix, "draw every character alone and every pair in both orders with a LoRA "
               "(sd-scripts' own sampler), as one PNG grid; arguments after -- go to train_network.py")
    grid.add_argument("lora", help="the LoRA file (.safetensors)")
    grid.add_argument("--steps", type=int, help="sampling steps (default: samples.steps)")
    grid.add_argument("--seed", type=int, default=1, help="the one seed every cell uses (default 1)")
    grid.add_argument("--out", help="PNG to write (default: <work_dir>/matrix/<lora>.png)")
    grid.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as for train")
    grid.add_argument("--accelerate", action="append", default=[], metavar="KEY=VALUE", help="as for train")
    grid.set_defaults(extra=[])
    return root


def inspect_parser(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("inspect", help="print a LoRA file's provenance and network settings",
                              description="print a LoRA file's provenance and network settings")
    sub.add_argument("files", nargs="+", metavar="FILE")
    sub.set_defaults(handler=None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1:]
    args = parser().parse_args(argv)
    if extra and args.command not in ("train", "matrix"):
        print("Error: arguments after -- go to sd-scripts; only `onetwo train` and `onetwo matrix` take them",
              file=sys.stderr)
        return 2
    args.extra = extra
    try:
        if args.command == "inspect":
            return cmd_inspect(args)
        project = load_project(Path(args.project))
        return args.handler(args, project)
    except OnetwoError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted; rerun the same command to pick up where it stopped.", file=sys.stderr)
        return 130
