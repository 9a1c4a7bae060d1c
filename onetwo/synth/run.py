"""`onetwo synth`, in order: choose the characters and the stage-1 epoch file, build their prompts, draw what is not
drawn yet with `onetwo sample`'s sampling run (one model load for every character), then judge each character's
drawings with eval's models and the keep rule, caption the kept ones and write report.json and the contact sheet.

A character's earlier decisions stand while its decision key is the same: the epoch file's hash, its prompts, seeds
and drawing settings, the keep rule, the models (with the tagger, where one captions), its training images and its
drawings' files. Then neither the base model nor eval's models run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from onetwo.best_epoch import BEST, best_stage1, epoch_file
from onetwo.data.captions import sample_prompt_line
from onetwo.data.scan import CharacterImages
from onetwo.errors import OnetwoError
from onetwo.eval.traits import distinctive_tags
from onetwo.fsutil import write_text_atomic
from onetwo.kohya.buckets import fit_size
from onetwo.kohya.hashes import compute, epoch_files
from onetwo.kohya.render import parse_set, role_buckets
from onetwo.kohya.set_options import require_valid_sets
from onetwo.messages import info
from onetwo.project.config import Project
from onetwo.sample import run as sampling
from onetwo.sample.plan import KEY_FIELDS, EpochFile, Options, Planned, epoch_number, parse_prompt_lines, plan_images
from onetwo.stages import StageRequest, scan
from onetwo.synth.prompts import SynthPrompt, build_prompts

LAST = "last"
REPORT = "report.json"
CONTACT_SHEET = "contact_sheet.png"


def choose(scans: Sequence[CharacterImages], names: Sequence[str], below: int) -> list[CharacterImages]:
    """The characters named (all must exist), else those with fewer than `below` images (0: every one)."""
    known = {item.character.name: item for item in scans}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise OnetwoError(f"synth {' '.join(names)}: no character {', '.join(map(repr, unknown))}; the project has "
                          f"{', '.join(known)}")
    if names:
        return [known[name] for name in dict.fromkeys(names)]
    return [item for item in scans if not below or len(item.images) < below]


def stage1_file(project: Project, epoch: str) -> Path:
    """--epoch last (the final file, else the latest save), best (stage 1's eval report) or a number."""
    if epoch == BEST:
        file, why = best_stage1(project)
        info(f"synth: {why.replace('continuing from', 'drawing with')}")
        return file
    if epoch == LAST:
        files = epoch_files(project.output_dir, project.output_name("stage1"))
        if not files:
            raise OnetwoError(f"{project.output_dir}: no stage-1 LoRA file ({project.output_name('stage1')}"
                              "*.safetensors); train stage 1 first")
        return files[-1]
    try:
        number = int(epoch)
    except ValueError as exc:
        raise OnetwoError(f"--epoch {epoch!r}: give last, best or an epoch number") from exc
    found = epoch_file(project, number)
    if found is None:
        raise OnetwoError(f"--epoch {number}: {project.output_dir} holds no stage-1 file of epoch {number}")
    return found


@dataclass(frozen=True)
class SynthRun:
    characters: list[CharacterImages]
    everyone: list[CharacterImages]  # every character: the references of eval's identity check
    prompts: dict[str, list[SynthPrompt]]
    planned: dict[str, list[Planned]]
    file: EpochFile
    sampling: sampling.SamplingRun
    distinctive: dict[str, frozenset[str]]  # each character's distinctive tags: kept out of prompts and captions


def folder(project: Project, item: CharacterImages) -> Path:
    return project.synthetic_dir / item.character.slug


def prepare(project: Project, request: StageRequest, names: Sequence[str], epoch: str,
            options: Options) -> SynthRun:
    if project.mode == "joint":
        raise OnetwoError(f"{project.file}: project.mode is 'joint', which has no stage 1 to draw with; synth "
                          "needs sequential mode")
    require_valid_sets(request.sets, project.model)
    settings = project.synthetic
    scans = scan(project, request.workers, request.progress)
    chosen = choose(scans, names, settings.below)
    lora = stage1_file(project, epoch)
    fitted = sampling.fitted_stage(project, "stage1", request, scans)
    flat = fitted.rendered.flat_config()
    last_epoch = int(flat.get("max_train_epochs") or 1)  # the final file's epoch, as onetwo sample numbers it
    file = EpochFile(lora, epoch_number(lora, project.output_name("stage1"), last_epoch), compute(lora)[0])
    width, height = fit_size(1.0, role_buckets(project, "originals", parse_set(request.sets)))
    samples = project.samples
    distinctive = distinctive_tags({item.character.name: [image.tags for image in item.images] for item in scans})
    prompts: dict[str, list[SynthPrompt]] = {}
    planned: dict[str, list[Planned]] = {}
    for item in chosen:
        character = item.character
        built = build_prompts(character.name, character.class_token, project.single_caption,
                              [image.tags for image in item.images], distinctive, settings.per_character,
                              settings.seed)
        lines = parse_prompt_lines("\n".join(
            sample_prompt_line(prompt.text, samples.negative, width, height, samples.steps, samples.scale,
                               settings.seed + prompt.index) for prompt in built))
        found = plan_images([file], lines, {line.index: (character.name,) for line in lines},
                            replace(options, seeds=1), flat.get("sample_sampler") or sampling.KOHYA_DEFAULT_SAMPLER,
                            flat.get("clip_skip"), project.base_model.name, settings.seed)
        prompts[character.name] = built
        planned[character.name] = [replace(entry, stem=f"{character.slug}/{entry.stem}") for entry in found]
    every = [entry for entries in planned.values() for entry in entries]
    run = sampling.sampling_run(project, fitted, every, project.synthetic_dir, project.synthetic_dir / "sampling",
                                replace(options, seeds=1), request.progress)
    return SynthRun(chosen, scans, prompts, planned, file, run, distinctive)


def draw(project: Project, run: SynthRun) -> int:
    for item in run.characters:
        folder(project, item).mkdir(parents=True, exist_ok=True)
    return sampling.draw(project, run.sampling, "synth")


def decision_key(run: SynthRun, item: CharacterImages, project: Project, models: str, threshold: float) -> str:
    synthetic = project.synthetic
    drawn = []
    for entry in run.planned[item.character.name]:
        png = entry.png(project.synthetic_dir)
        stat = png.stat()
        drawn.append([entry.stem, {key: entry.record[key] for key in KEY_FIELDS}, stat.st_size,
                      stat.st_mtime_ns])
    payload = {"file": run.file.model_hash, "drawn": drawn, "models": models, "threshold": threshold,
               "margin": synthetic.margin, "duplicate_bits": synthetic.duplicate_bits,
               "training": [image.fingerprint for image in item.images],
               "references": sorted(image.fingerprint for other in run.everyone for image in other.images)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def read_report(project: Project) -> dict[str, Any]:
    try:
        document = json.loads((project.synthetic_dir / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def write_captions(project: Project, images: Sequence[dict[str, Any]]) -> None:
    """A kept drawing's caption beside it, in the character's caption style; a rejected one has none."""
    for image in images:
        caption = (project.synthetic_dir / image["file"]).with_suffix(".txt")
        if image["kept"]:
            if not caption.is_file() or caption.read_text(encoding="utf-8") != image["caption"]:
                write_text_atomic(caption, image["caption"])
        else:
            caption.unlink(missing_ok=True)
