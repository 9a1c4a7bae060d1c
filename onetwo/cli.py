"""The command line: parses arguments, calls the stages (onetwo.stages) and the other commands' modules, prints;
`Error: …` and exit code 2 for what users fix."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from onetwo import __version__, matrix
from onetwo.best_epoch import epoch_option
from onetwo.data.preview import contact_sheet, sheet_items
from onetwo.errors import OnetwoError
from onetwo.eval import command as eval_command
from onetwo.kohya.families import FAMILIES
from onetwo.kohya.provenance import describe
from onetwo.messages import info, warn
from onetwo.project.config import STAGES, Project
from onetwo.project.file import load_project
from onetwo.project.init_file import init_project
from onetwo.project.lookup import find_project, unknown_command
from onetwo.sample import command as sample_command
from onetwo.stages import (
    PreparedStage,
    StageRequest,
    check_project,
    launch_problems,
    make_composites,
    prepare_stage,
    scan,
    train_stage,
)
from onetwo.synth import command as synth_command

WORKERS_HELP = "image worker processes (default: the cores this process may use)"
PROJECT_HELP = ("the project file, or a folder holding onetwo.toml (default: $ONETWO_PROJECT, else the nearest "
                "onetwo.toml here or in a folder above)")


def request(args: argparse.Namespace) -> StageRequest:
    return StageRequest(stage=getattr(args, "stage", ""), sets=tuple(getattr(args, "set", ())),
                        accelerate=tuple(getattr(args, "accelerate", ())), extra=tuple(args.extra),
                        from_file=getattr(args, "from_file", None), epoch=getattr(args, "epoch", None),
                        workers=args.workers, progress=not args.no_progress)


def cmd_check(args: argparse.Namespace, project: Project) -> int:
    check_project(project, args.workers, not args.no_progress)
    info("check: no problems found")
    return 0


def cmd_composite(args: argparse.Namespace, project: Project) -> int:
    make_composites(project, scan(project, args.workers, not args.no_progress), args.workers, not args.no_progress)
    return 0


def cmd_preview(args: argparse.Namespace, project: Project) -> int:
    scans = scan(project, args.workers, not args.no_progress)
    jobs, _ = make_composites(project, scans, args.workers, not args.no_progress)
    items = sheet_items(jobs, project.composite_dir, project.composite.format, args.count, project.composite.seed)
    target = Path(args.out).resolve() if args.out else project.work_dir / "preview.png"
    info(f"preview: {len(items)} composites, labelled left | right as captioned → {contact_sheet(items, target)}")
    return 0


def cmd_render(args: argparse.Namespace, project: Project) -> int:
    prepare_stage(project, request(args))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    for file in args.files:
        print(describe(Path(file)))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    target, characters = init_project(Path(args.folder), Path(args.out), args.folder, args.model)
    for character in characters:
        repeats = f", repeats {character.repeats}" if character.repeats else ""
        kind = f" ({character.class_token})" if character.class_token else ""
        info(f"{character.name}{kind}: {character.images} images{repeats} ({character.folder})")
    slots = "".join(f", project.{slot.key}" for slot in FAMILIES[args.model].files if slot.required)
    info(f"init: wrote {target}; set project.base_model{slots} in it, then run `onetwo check`")
    return 0


def dry_run(project: Project, prepared: PreparedStage) -> int:
    """What --dry-run prints: the problems that would stop the launch, as warnings, and the command."""
    for problem in launch_problems(project, prepared):
        warn(problem)
    print(shlex.join(prepared.argv))
    return 0


def cmd_matrix(args: argparse.Namespace, project: Project) -> int:
    sampling = matrix.prepare(project, Path(args.lora).resolve(), request(args), args.steps, args.seed,
                              Path(args.out).resolve() if args.out else None)
    if args.dry_run:
        return dry_run(project, sampling.sampling.prepared(project))
    matrix.draw(project, sampling)
    return 0


def cmd_train(args: argparse.Namespace, project: Project) -> int:
    prepared = prepare_stage(project, dataclasses.replace(request(args), launch=True))
    if args.dry_run:
        return dry_run(project, prepared)
    return train_stage(project, args.stage, prepared)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="onetwo", description="Two-character LoRAs from single-character images "
                                   "(the 1to2 method) on kohya-ss sd-scripts.")
    root.add_argument("--version", action="version", version=f"onetwo {__version__}")
    root.add_argument("--project", "-p", default=None, help=PROJECT_HELP)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
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
        sub.add_argument("--epoch", type=epoch_option, metavar="N|best", help="stage 2: continue from stage 1's "
                         "save of this epoch; best: the one of highest single-character accuracy in stage 1's eval "
                         "report")
        if name == "train":
            sub.add_argument("--dry-run", action="store_true", help="write the files, print the command, run nothing")
        sub.set_defaults(extra=[])
    inspect_parser(commands)
    init_parser(commands)
    eval_command.add_parser(add)
    sample_command.add_parser(add, request)
    synth_command.add_parser(add, request)
    grid = add("matrix", cmd_matrix, "draw every character alone and every pair in both orders with a LoRA "
               "(onetwo sample's sampler: the LoRA merged as the UIs merge it), as one PNG grid; reruns reuse the "
               "cells already drawn")
    grid.add_argument("lora", help="the LoRA file (.safetensors)")
    grid.add_argument("--steps", type=int, help="sampling steps (default: samples.steps)")
    grid.add_argument("--seed", type=int, default=1, help="the one seed every cell uses (default 1)")
    grid.add_argument("--out", help="PNG to write (default: <work_dir>/matrix/<lora>.png)")
    grid.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as for train")
    grid.add_argument("--accelerate", action="append", default=[], metavar="KEY=VALUE", help="as for train")
    grid.add_argument("--dry-run", action="store_true", help="print the sampling command, draw nothing")
    grid.set_defaults(extra=[])
    every_command_options(commands)
    offline_options(commands)
    return root


OFFLINE_HELP = ("read the models onetwo downloads (the segmentation model for figure masks) from the huggingface "
                "cache only, naming any file missing there; the same as HF_HUB_OFFLINE=1, which it also passes on")


def offline_options(commands: argparse._SubParsersAction) -> None:
    """--offline wherever a command may build figure masks (eval has its own, for its models)."""
    for name in ("check", "composite", "preview", "render", "train", "sample", "matrix"):
        sub = commands.choices[name]
        if "--offline" not in sub._option_string_actions:
            sub.add_argument("--offline", action="store_true", help=OFFLINE_HELP)


def every_command_options(commands: argparse._SubParsersAction) -> None:
    """What the README promises on every command: -p before or after it, --workers and --no-progress."""
    for sub in commands.choices.values():
        known = sub._option_string_actions
        if "--project" not in known:
            sub.add_argument("--project", "-p", default=argparse.SUPPRESS, help=PROJECT_HELP)
        if "--workers" not in known:
            sub.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
        if "--no-progress" not in known:
            sub.add_argument("--no-progress", action="store_true", help="no progress bars")


def inspect_parser(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("inspect", help="print a LoRA file's provenance and network settings",
                              description="print a LoRA file's provenance and network settings")
    sub.add_argument("files", nargs="+", metavar="FILE")
    sub.set_defaults(handler=None)


def init_parser(commands: argparse._SubParsersAction) -> None:
    text = "write a commented onetwo.toml from a folder of character folders (kohya's `10_alice girl` or plain)"
    sub = commands.add_parser("init", help=text, description=text)
    sub.add_argument("folder", nargs="?", default=".", metavar="FOLDER",
                     help="the folder holding one folder per character (default: the current folder)")
    sub.add_argument("-o", "--out", default="onetwo.toml", metavar="FILE",
                     help="the project file to write (default: onetwo.toml here); never overwritten")
    sub.add_argument("--model", choices=list(FAMILIES), default="sd1",
                     help="the base model's family (project.model; default: sd1); anima also writes placeholders "
                          "for its text encoder and VAE")
    sub.set_defaults(handler=None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1:]
    root = parser()
    commands = next(action for action in root._actions if isinstance(action, argparse._SubParsersAction))
    if problem := unknown_command(argv, list(commands.choices)):
        print(f"Error: {problem}", file=sys.stderr)
        return 2
    args = root.parse_args(argv)
    if extra and args.command != "train":
        print("Error: arguments after -- go to sd-scripts; only `onetwo train` takes them",
              file=sys.stderr)
        return 2
    args.extra = extra
    if getattr(args, "offline", False):
        os.environ["HF_HUB_OFFLINE"] = "1"  # huggingface_hub's own switch, read where a model is fetched
    try:
        if args.command == "inspect":
            return cmd_inspect(args)
        if args.command == "init":
            return cmd_init(args)
        project = load_project(find_project(args.project, os.environ, Path.cwd()))
        return args.handler(args, project)
    except OnetwoError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted; rerun the same command to pick up where it stopped.", file=sys.stderr)
        return 130
