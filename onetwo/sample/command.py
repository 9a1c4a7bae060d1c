"""The `onetwo sample` command line, registered through the CLI's own `add(name, handler, help)`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from onetwo.project.config import STAGES, Project
from onetwo.sample.plan import DEFAULT_SEEDS

HELP = ("after training, draw the stage's prompts (each character alone, each ordered pair) for its saved epoch "
        "files, several seeds each, into <work_dir>/samples/<stage>/ for onetwo eval; the base model is loaded once "
        "and each LoRA merged as ComfyUI and AUTOMATIC1111 merge it; reruns draw only what is missing")


def add_parser(add: Callable[..., argparse.ArgumentParser], request: Callable[[argparse.Namespace], object]
               ) -> argparse.ArgumentParser:
    def handler(args: argparse.Namespace, project: Project) -> int:
        return run(args, project, request(args))

    sub = add("sample", handler, HELP)
    sub.add_argument("stage", choices=STAGES)
    sub.add_argument("--epochs", default="all", metavar="all|last|N,M",
                     help="which epoch files: all (default), last, or epoch numbers such as 10,20")
    sub.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                     help=f"seeds a prompt, from the prompt's own seed up (default {DEFAULT_SEEDS})")
    sub.add_argument("--strength", type=float, default=1.0, help="the LoRA's strength, as in <lora:name:1> "
                     "(default 1)")
    sub.add_argument("--steps", type=int, help="sampling steps (default: samples.steps)")
    sub.add_argument("--width", type=int, help="image width (default: the stage's sample prompts)")
    sub.add_argument("--height", type=int, help="image height (default: the stage's sample prompts)")
    sub.add_argument("--scale", type=float, help="CFG scale (default: samples.scale)")
    sub.add_argument("--sampler", help="sd-scripts' sampler name (default: the stage's sample_sampler)")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as for train")
    sub.add_argument("--accelerate", action="append", default=[], metavar="KEY=VALUE",
                     help="as for train; num_processes=K splits the epoch files between K processes")
    sub.add_argument("--dry-run", action="store_true", help="say what would be drawn, print the command, draw "
                     "nothing")
    sub.set_defaults(extra=[])
    return sub


def run(args: argparse.Namespace, project: Project, request) -> int:
    import shlex

    from onetwo.messages import info, warn
    from onetwo.sample import run as sampling
    from onetwo.sample.plan import Options
    from onetwo.stages import launch_problems

    options = Options(args.seeds, args.strength, args.steps, args.width, args.height, args.scale, args.sampler)
    prepared = sampling.prepare(project, request, args.epochs, options)
    if args.dry_run:
        info(f"sample {args.stage}: {len(prepared.todo)} of {len(prepared.planned)} images to draw → "
             f"{prepared.out_dir}")
        for problem in launch_problems(project, prepared.prepared(project)):
            warn(problem)
        print(shlex.join(prepared.argv(project)))
        return 0
    sampling.draw(project, prepared, f"sample {args.stage}")
    return 0
