"""`onetwo eval`, in order: find the samples and references, calibrate the seam threshold, score (through the
cache), summarise per epoch, pick the best epoch, write the report, the curves and the contact sheet."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from onetwo.data.scan import scan_project
from onetwo.errors import OnetwoError
from onetwo.eval import hub
from onetwo.eval.backends import Backends
from onetwo.eval.cache import FeatureCache
from onetwo.eval.report import (
    contact_sheet,
    curves,
    epoch_summaries,
    prompt_table,
    report_document,
    table,
    write_json,
)
from onetwo.eval.runs import select, stage_run
from onetwo.eval.samples import IMAGE_SUFFIXES, Sample, folder_samples, sampled_images, stage_samples
from onetwo.eval.score import Scored, Settings, load_reference, load_rgb, reference_features, score_samples
from onetwo.eval.seam import SeamCalibration, calibrate, seam_score
from onetwo.eval.stats import BestEpoch, BestEpochRule, best_epoch
from onetwo.eval.traits import distinctive_tags
from onetwo.kohya.render import sample_prompt_groups
from onetwo.messages import info, warn
from onetwo.project.config import STAGES, Project

CALIBRATION_IMAGES = 40  # of each kind: enough for a stable cut, cheap to score


@dataclass(frozen=True)
class Options:
    target: str  # a stage, or a folder with prompts.toml
    references: int = 16  # per character
    threshold: float | None = None  # default: the embedder's
    blend_margin: float | None = None  # default: a quarter of the threshold
    seam_threshold: float | None = None  # default: calibrated on the project's composites and originals
    rule: BestEpochRule = field(default_factory=BestEpochRule)
    offline: bool = False
    backend: str | None = None  # module:function returning Backends
    out_dir: Path | None = None
    all_runs: bool = False  # a stage's samples of every run, not only the current one's
    tags: bool = True  # tag each figure (the trait-swap and merged hints)


@dataclass(frozen=True)
class Outcome:
    out_dir: Path
    scored: list[Scored]
    best: BestEpoch
    table: str
    seam: SeamCalibration


def real_backends(offline: bool, tags: bool = True) -> Backends:
    """deepghs' person detector and CCIP, and SmilingWolf's wd tagger (`tags`), fetched into the huggingface cache
    on first use."""
    from onetwo.eval.onnx_models import CcipEmbedder, WdTagger, YoloPersonDetector

    files = hub.resolve({**hub.detector_files(), **hub.embedder_files(), **(hub.tagger_files() if tags else {})},
                        offline, "" if not tags else "; --no-tags scores without the tagger")
    tagger = WdTagger(files["tagger"], files["tags"], hub.TAGGER_MODEL) if tags else None
    return Backends(YoloPersonDetector(files["model"], f"{hub.DETECTOR_REPO}/{hub.DETECTOR_MODEL}"),
                    CcipEmbedder(files["features"], files["metrics"], files["threshold"],
                                 f"{hub.EMBEDDER_REPO}/{hub.EMBEDDER_MODEL}"), tagger)


def plugged_backends(spec: str) -> Backends:
    module_name, _, function_name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise OnetwoError(f"--backend {spec!r}: cannot import it ({exc}); give module:function, the function "
                          "returning onetwo.eval.backends.Backends") from exc
    backends = factory()
    if not isinstance(backends, Backends):
        raise OnetwoError(f"--backend {spec!r}: returned {type(backends).__name__}, not Backends(detector, embedder)")
    return backends


def evenly(items: Sequence, count: int) -> list:
    if len(items) <= count:
        return list(items)
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)] if count > 1 else [items[0]]


def calibrate_seam(project: Project, originals: Sequence[Path]) -> SeamCalibration:
    background = project.composite.background
    composites = sorted(path for path in project.composite_dir.glob("*")
                        if path.suffix.lower() in IMAGE_SUFFIXES) if project.composite_dir.is_dir() else []
    positives = [seam_score(load_rgb(path)) for path in evenly(composites, CALIBRATION_IMAGES)]
    negatives = [seam_score(load_reference(path, background)) for path in evenly(originals, CALIBRATION_IMAGES)]
    return calibrate(positives, negatives, f"{len(positives)} composites of {project.composite_dir} vs "
                                           f"{len(negatives)} originals")


@dataclass(frozen=True)
class Found:
    samples: list[Sample]
    out_dir: Path
    source: str
    root: Path  # report.json names the images relative to it
    run: dict  # for the report: which run was scored, and what was left out


def find_samples(project: Project, target: str, names: Sequence[str], scans, all_runs: bool = False) -> Found:
    if target in STAGES:
        groups = sample_prompt_groups(project, scans)
        prompts_file = project.stage_dir(target) / "sample_prompts.txt"
        sample_dir, drawn_dir = project.output_dir / "sample", project.samples_dir(target)
        training, warnings = stage_samples(sample_dir, project.output_name(target), prompts_file, groups, names)
        drawn, more = sampled_images(drawn_dir, names)
        for message in warnings + more:
            warn(message)
        if not training and not drawn:
            raise OnetwoError(f"{sample_dir}: no sample images of {project.output_name(target)} (sd-scripts writes "
                              f"them there when sample_every_n_epochs is set), nor any in {drawn_dir}; train "
                              f"{target} first, then `onetwo sample {target}`")
        run = stage_run(project.output_dir, project.output_name(target))
        if not run.files and not all_runs:
            raise OnetwoError(f"{project.output_dir}: no epoch files of {project.output_name(target)} to tell the "
                              "current run's samples by; pass --all-runs to score every sample found")
        selection = select(training + drawn, run, {item.path: item.path.stat().st_mtime for item in training},
                           all_runs)
        earlier = selection.earlier_training + selection.earlier_sampled
        if earlier:
            verb = "included (--all-runs)" if all_runs else "left out (--all-runs includes them)"
            info(f"eval: {earlier} sample(s) of earlier runs of {target} {verb}: {selection.earlier_training} drawn "
                 f"while training, {selection.earlier_sampled} by onetwo sample")
        if not selection.samples:
            raise OnetwoError(f"{sample_dir}, {drawn_dir}: no samples of the current run of {target} (its epoch "
                              f"files in {project.output_dir}); run `onetwo sample {target}`, or pass --all-runs")
        summary = {"all_runs": all_runs, "started_at": run.started_at,
                   "epoch_files": [{"file": item.path.name, "epoch": item.epoch, "sshs_model_hash": item.model_hash}
                                   for item in run.files],
                   "earlier_runs": {"training": selection.earlier_training, "sample": selection.earlier_sampled,
                                    "included": all_runs}}
        return Found(selection.samples, project.work_dir / "eval" / target, f"{sample_dir} and {drawn_dir}",
                     project.file.parent, summary)
    folder = Path(target).resolve()
    if not folder.is_dir():
        raise OnetwoError(f"{target}: neither a stage ({', '.join(STAGES)}) nor a folder")
    return Found(folder_samples(folder, names), project.work_dir / "eval" / folder.name, str(folder), folder, {})


def evaluate(project: Project, options: Options, progress=None) -> Outcome:
    scans = scan_project(project)
    names = [scan.character.name for scan in scans]
    found = find_samples(project, options.target, names, scans, options.all_runs)
    samples, source = found.samples, found.source
    out_dir = options.out_dir or found.out_dir
    empty = [name for scan, name in zip(scans, names, strict=True) if not scan.images]
    if empty:
        raise OnetwoError(f"{project.file}: no reference images for {', '.join(empty)}")
    references = {scan.character.name: evenly([image.path for image in scan.images], options.references)
                  for scan in scans}
    if options.seam_threshold is not None:
        seam = SeamCalibration(options.seam_threshold, None, 0, 0, "--seam-threshold")
    else:
        seam = calibrate_seam(project, [path for paths in references.values() for path in paths])
    backends = plugged_backends(options.backend) if options.backend else real_backends(options.offline, options.tags)
    if not options.tags:
        backends = replace(backends, tagger=None)
    distinctive = distinctive_tags({scan.character.name: [image.tags for image in scan.images] for scan in scans})
    threshold = options.threshold if options.threshold is not None else backends.embedder.threshold
    settings = Settings(threshold, options.blend_margin if options.blend_margin is not None else threshold / 4,
                        seam.threshold)
    tagger = backends.tagger.name if backends.tagger else None
    cache = FeatureCache(project.work_dir / "eval" / "cache", f"{backends.detector.name}|{backends.embedder.name}"
                         + (f"|{tagger}" if tagger else ""))
    reference_vectors = reference_features(references, backends, cache, project.composite.background)
    hits_before = cache.hits
    scored = score_samples(samples, reference_vectors, backends, settings, cache, progress,
                           distinctive if tagger else None)
    cache.save()
    info(f"eval: {len(samples)} samples ({cache.hits - hits_before} from the cache), "
         f"{sum(len(paths) for paths in references.values())} reference images")

    summaries = epoch_summaries(scored)
    best = best_epoch(summaries, options.rule)
    printed = table(summaries, best, bool(tagger)) + "\n\n" + prompt_table(scored, bool(tagger))
    context = {
        "target": options.target, "source": source, "project": str(project.file),
        "models": {"detector": backends.detector.name, "embedder": backends.embedder.name, "tagger": tagger},
        "distinctive_tags": {name: sorted(keys) for name, keys in distinctive.items()} if tagger else None,
        "threshold": threshold, "blend_margin": settings.blend_margin,
        "seam": {"threshold": seam.threshold, "auc": seam.auc, "positives": seam.positives,
                 "negatives": seam.negatives, "source": seam.source},
        "references": {name: [str(path) for path in paths] for name, paths in references.items()},
        **({"run": found.run} if found.run else {}),
    }
    write_json(out_dir / "report.json", report_document(scored, summaries, best, options.rule, context,
                                                        found.root))
    curves(summaries, best, out_dir / "curves.png")
    contact_sheet(scored, best, out_dir / "contact_sheet.png")
    return Outcome(out_dir, scored, best, printed, seam)
