"""`onetwo eval`, in order: find the samples and references, calibrate the seam threshold, score (through the
cache), summarise per epoch, pick the best epoch, write the report, the curves and the contact sheet."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from onetwo.eval.samples import IMAGE_SUFFIXES, Sample, folder_samples, stage_samples
from onetwo.eval.score import Scored, Settings, load_reference, load_rgb, reference_features, score_samples
from onetwo.eval.seam import SeamCalibration, calibrate, seam_score
from onetwo.eval.stats import BestEpoch, BestEpochRule, best_epoch
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


@dataclass(frozen=True)
class Outcome:
    out_dir: Path
    scored: list[Scored]
    best: BestEpoch
    table: str
    seam: SeamCalibration


def real_backends(offline: bool) -> Backends:
    """deepghs' person detector and CCIP, fetched into the huggingface cache on first use."""
    from onetwo.eval.onnx_models import CcipEmbedder, YoloPersonDetector

    detector = hub.resolve(hub.detector_files(), offline)
    embedder = hub.resolve(hub.embedder_files(), offline)
    return Backends(YoloPersonDetector(detector["model"], f"{hub.DETECTOR_REPO}/{hub.DETECTOR_MODEL}"),
                    CcipEmbedder(embedder["features"], embedder["metrics"], embedder["threshold"],
                                 f"{hub.EMBEDDER_REPO}/{hub.EMBEDDER_MODEL}"))


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


def find_samples(project: Project, target: str, names: Sequence[str], scans) -> tuple[list[Sample], Path, str]:
    if target in STAGES:
        groups = sample_prompt_groups(project, scans)
        prompts_file = project.stage_dir(target) / "sample_prompts.txt"
        sample_dir = project.output_dir / "sample"
        samples, warnings = stage_samples(sample_dir, project.output_name(target), prompts_file, groups, names)
        for message in warnings:
            warn(message)
        if not samples:
            raise OnetwoError(f"{sample_dir}: no sample images of {project.output_name(target)} (sd-scripts writes "
                              f"them there when sample_every_n_epochs is set); train {target} first")
        return samples, project.work_dir / "eval" / target, str(sample_dir)
    folder = Path(target).resolve()
    if not folder.is_dir():
        raise OnetwoError(f"{target}: neither a stage ({', '.join(STAGES)}) nor a folder")
    return folder_samples(folder, names), project.work_dir / "eval" / folder.name, str(folder)


def evaluate(project: Project, options: Options, progress=None) -> Outcome:
    scans = scan_project(project)
    names = [scan.character.name for scan in scans]
    samples, out_dir, source = find_samples(project, options.target, names, scans)
    out_dir = options.out_dir or out_dir
    empty = [name for scan, name in zip(scans, names, strict=True) if not scan.images]
    if empty:
        raise OnetwoError(f"{project.file}: no reference images for {', '.join(empty)}")
    references = {scan.character.name: evenly([image.path for image in scan.images], options.references)
                  for scan in scans}
    if options.seam_threshold is not None:
        seam = SeamCalibration(options.seam_threshold, None, 0, 0, "--seam-threshold")
    else:
        seam = calibrate_seam(project, [path for paths in references.values() for path in paths])
    backends = plugged_backends(options.backend) if options.backend else real_backends(options.offline)
    threshold = options.threshold if options.threshold is not None else backends.embedder.threshold
    settings = Settings(threshold, options.blend_margin if options.blend_margin is not None else threshold / 4,
                        seam.threshold)
    cache = FeatureCache(project.work_dir / "eval" / "cache",
                         f"{backends.detector.name}|{backends.embedder.name}")
    reference_vectors = reference_features(references, backends, cache, project.composite.background)
    hits_before = cache.hits
    scored = score_samples(samples, reference_vectors, backends, settings, cache, progress)
    cache.save()
    info(f"eval: {len(samples)} samples ({cache.hits - hits_before} from the cache), "
         f"{sum(len(paths) for paths in references.values())} reference images")

    summaries = epoch_summaries(scored)
    best = best_epoch(summaries, options.rule)
    printed = table(summaries, best) + "\n\n" + prompt_table(scored)
    context = {
        "target": options.target, "source": source, "project": str(project.file),
        "models": {"detector": backends.detector.name, "embedder": backends.embedder.name},
        "threshold": threshold, "blend_margin": settings.blend_margin,
        "seam": {"threshold": seam.threshold, "auc": seam.auc, "positives": seam.positives,
                 "negatives": seam.negatives, "source": seam.source},
        "references": {name: [str(path) for path in paths] for name, paths in references.items()},
    }
    write_json(out_dir / "report.json", report_document(scored, summaries, best, options.rule, context,
                                                        Path(source)))
    curves(summaries, best, out_dir / "curves.png")
    contact_sheet(scored, best, out_dir / "contact_sheet.png")
    return Outcome(out_dir, scored, best, printed, seam)
