"""The `onetwo eval` command line. Imports nothing heavy: the CLI registers it without numpy or onnxruntime."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from onetwo.project.config import STAGES, Project


def add_parser(add: Callable[..., argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register `eval` through the CLI's own `add(name, handler, help)`."""
    sub = add("eval", run, "score a stage's sample images (or a folder with prompts.toml) per epoch: pair success, "
              "swaps, clones, blends, composite leaks, single-character accuracy; the best epoch; "
              "needs pip install 'onetwo[eval]'")
    sub.add_argument("target", nargs="?", default=None, metavar="stage1|stage2|joint|FOLDER",
                     help="what to score (default: the project's last stage)")
    sub.add_argument("--offline", action="store_true", help="use the models in the huggingface cache only")
    sub.add_argument("--references", type=int, default=16, help="reference images per character (default 16)")
    sub.add_argument("--threshold", type=float, help="identity difference at or below which a figure is a "
                     "character (default: the embedder's published threshold)")
    sub.add_argument("--blend-margin", type=float, help="two characters closer than this: a blend (default: a "
                     "quarter of the threshold)")
    sub.add_argument("--seam-threshold", type=float, help="seam score above which a sample is a composite leak "
                     "(default: calibrated on the project's composites and originals)")
    sub.add_argument("--min-single", type=float, default=0.8, help="best-epoch rule: least single-character "
                     "accuracy (default 0.8)")
    sub.add_argument("--max-leak", type=float, default=0.1, help="best-epoch rule: most leak rate (default 0.1)")
    sub.add_argument("--backend", metavar="MODULE:FUNCTION", help="another detector and embedder: a function "
                     "returning onetwo.eval.backends.Backends")
    sub.add_argument("--no-tags", action="store_true", help="do not tag the figures (no trait-swap and merged "
                     "hints, no wd tagger download)")
    sub.add_argument("--all-runs", action="store_true", help="score a stage's samples of every training run, not "
                     "only those of the run whose epoch files are in output_dir")
    sub.add_argument("--compare", nargs="+", metavar="REPORT|WORK_DIR", help="compare runs instead of scoring: "
                     "report.json files (or folders holding one, or work dirs: their eval/<stage>/report.json), "
                     "each at its best epoch with 95%% intervals")
    sub.add_argument("--out", help="folder for report.json, curves.png, contact_sheet.png "
                     "(default: <work_dir>/eval/<stage or folder name>)")
    return sub


def run(args: argparse.Namespace, project: Project) -> int:
    from pathlib import Path

    from onetwo.errors import OnetwoError

    try:
        from onetwo.eval.run import Options, evaluate
        from onetwo.eval.stats import BestEpochRule
    except ImportError as exc:
        raise OnetwoError(f"onetwo eval needs its extra ({exc.name} is missing): pip install 'onetwo[eval]'") from exc
    target = args.target or ("joint" if project.mode == "joint" else STAGES[1])
    if args.compare:
        from onetwo.eval.compare import compare

        print(compare(args.compare, target))
        return 0
    options = Options(target, args.references, args.threshold, args.blend_margin, args.seam_threshold,
                      BestEpochRule(args.min_single, args.max_leak), args.offline, args.backend,
                      Path(args.out).resolve() if args.out else None, args.all_runs, not args.no_tags)
    outcome = evaluate(project, options)
    print(outcome.table)
    best = outcome.best
    if best.epoch is None:
        print("best epoch: none (no samples)")
    elif best.within_bounds:
        print(f"best epoch: {best.epoch} ({options.rule.describe()})")
    else:
        print(f"best epoch: {best.epoch}, but no epoch keeps single-character accuracy >= {options.rule.min_single:g} "
              f"and leak <= {options.rule.max_leak:g}: highest pair success overall")
    seam = outcome.seam
    auc = f", AUC {seam.auc:.2f}" if seam.auc is not None else ""
    print(f"seam threshold {seam.threshold:.4f} ({seam.source}{auc})")
    print(f"report: {outcome.out_dir / 'report.json'}\ncurves: {outcome.out_dir / 'curves.png'}\n"
          f"contact sheet: {outcome.out_dir / 'contact_sheet.png'}")
    return 0
