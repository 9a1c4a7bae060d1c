"""The `onetwo synth` command line, registered through the CLI's own `add(name, handler, help)`. Imports nothing
heavy: eval's models load only when there is something to judge."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from onetwo.project.config import Project

HELP = ("after stage 1: draw each character alone (those named, or those under [synthetic] below images) with a "
        "stage-1 epoch file, from prompts of its own tags, into <work_dir>/synthetic/; keep the drawings eval finds "
        "to be that character alone (one figure, within the identity threshold by [synthetic] margin, no blend, no "
        "near-duplicate), caption them, and write report.json and a contact sheet; stage 2's composites then use up "
        "to [synthetic] max_share of them; needs pip install 'onetwo[eval]'; reruns draw and judge only what changed")


def add_parser(add: Callable[..., argparse.ArgumentParser], request: Callable[[argparse.Namespace], object]
               ) -> argparse.ArgumentParser:
    def handler(args: argparse.Namespace, project: Project) -> int:
        return run(args, project, request(args))

    sub = add("synth", handler, HELP)
    sub.add_argument("names", nargs="*", metavar="CHARACTER", help="the characters to draw (default: every one, or "
                     "those with fewer images than [synthetic] below)")
    sub.add_argument("--epoch", default="last", metavar="last|best|N", help="the stage-1 file to draw with: last "
                     "(default), best (the highest single-character accuracy in stage 1's eval report) or an epoch")
    sub.add_argument("--steps", type=int, help="sampling steps (default: samples.steps)")
    sub.add_argument("--width", type=int, help="image width (default: stage 1's square bucket)")
    sub.add_argument("--height", type=int, help="image height (default: stage 1's square bucket)")
    sub.add_argument("--scale", type=float, help="CFG scale (default: samples.scale)")
    sub.add_argument("--sampler", help="sd-scripts' sampler name (default: stage 1's sample_sampler)")
    sub.add_argument("--strength", type=float, default=1.0, help="the LoRA's strength (default 1)")
    sub.add_argument("--threshold", type=float, help="identity difference at or below which a figure is a "
                     "character (default: the embedder's published threshold)")
    sub.add_argument("--backend", metavar="MODULE:FUNCTION", help="another detector and embedder, as for eval")
    sub.add_argument("--offline", action="store_true", help="use the models in the huggingface cache only")
    sub.add_argument("--no-tags", dest="tags", action="store_false", help="do not tag the figures: caption kept "
                     "drawings from their prompts, no wd tagger download (default: the tagger's tags where available)")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as for train")
    sub.add_argument("--accelerate", action="append", default=[], metavar="KEY=VALUE", help="as for train")
    sub.add_argument("--dry-run", action="store_true", help="say what would be drawn, print the command, draw "
                     "nothing")
    sub.set_defaults(extra=[])
    return sub


def judging_backends(offline: bool, tags: bool) -> tuple[Any, str]:
    """eval's models, with its tagger where it can be had; without it (not cached, or offline) captions come from
    the prompts, so the tagger never stops a run. The second value says why there is no tagger ("" with one)."""
    from onetwo.errors import OnetwoError
    from onetwo.eval.run import real_backends

    if not tags:
        return real_backends(offline, tags=False), "--no-tags"
    try:
        return real_backends(offline, tags=True), ""
    except OnetwoError as exc:
        return real_backends(offline, tags=False), f"no tagger available: {exc}"


def run(args: argparse.Namespace, project: Project, request) -> int:
    import dataclasses
    import shlex

    from onetwo.errors import OnetwoError
    from onetwo.messages import info, warn
    from onetwo.sample.plan import Options
    from onetwo.stages import launch_problems
    from onetwo.synth import run as synth
    from onetwo.synth.sheet import contact_sheet, write_report

    options = Options(1, args.strength, args.steps, args.width, args.height, args.scale, args.sampler)
    prepared = synth.prepare(project, dataclasses.replace(request, stage="stage1", epoch=None), args.names,
                             args.epoch, options)
    todo = prepared.sampling.todo
    if args.dry_run:
        info(f"synth: {len(todo)} of {len(prepared.sampling.planned)} images to draw with {prepared.file.path.name} "
             f"→ {project.synthetic_dir}")
        for problem in launch_problems(project, prepared.sampling.prepared(project)):
            warn(problem)
        print(shlex.join(prepared.sampling.argv(project)))
        return 0
    if not prepared.characters:
        info(f"synth: no character has fewer than {project.synthetic.below} images ([synthetic] below); nothing "
             "to draw")
        return 0
    try:
        from onetwo.eval.run import plugged_backends
        from onetwo.synth.judge import judge
    except ImportError as exc:
        raise OnetwoError(f"onetwo synth needs eval's extra ({exc.name} is missing): pip install 'onetwo[eval]'"
                          ) from exc
    if args.backend:
        backends, why = plugged_backends(args.backend), "" if args.tags else "--no-tags"
        if backends.tagger is None and not why:
            why = f"no tagger in {args.backend}"
    else:
        backends, why = judging_backends(args.offline, args.tags)
    if not args.tags:
        backends = dataclasses.replace(backends, tagger=None)
    info(f"synth: captions from the tagger {backends.tagger.name}" if backends.tagger else
         f"synth: captions from the prompts ({why})")
    synth.draw(project, prepared)
    judged = judge(project, prepared, backends, args.threshold)
    report = project.synthetic_dir / synth.REPORT
    sheet = project.synthetic_dir / synth.CONTACT_SHEET
    if write_report(report, judged.document) or not sheet.is_file():
        contact_sheet(judged.document, project.synthetic_dir, sheet)
    synth.write_captions(project, [image for name in judged.document["characters"]
                                   for image in judged.document["characters"][name]["images"]])
    for name, entry in judged.document["characters"].items():
        print(f"{name}: {entry['kept']} of {entry['drawn']} drawings kept")
    print(f"report: {report}\ncontact sheet: {sheet}")
    return 0
