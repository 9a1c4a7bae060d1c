"""`onetwo sample STAGE` and the sampling run `onetwo matrix` shares: the stage fitted to the trainer's Python as
`onetwo train` fits it, the epoch files hashed, what is not drawn yet written as one job, and the worker launched
once with `accelerate launch` (the base model loaded once, the LoRA swapped per file)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from onetwo.data.scan import CharacterImages
from onetwo.errors import OnetwoError
from onetwo.eval.samples import characters_of_prompt
from onetwo.fsutil import write_text_atomic
from onetwo.kohya.families import FAMILIES, Family
from onetwo.kohya.hashes import compute, epoch_files
from onetwo.kohya.render import load_templates, sample_prompt_groups, write_toml
from onetwo.kohya.set_options import require_valid_sets
from onetwo.messages import info
from onetwo.project.config import Project
from onetwo.sample.plan import (
    EpochFile,
    Options,
    Planned,
    distinct_prompts,
    epoch_number,
    parse_prompt_lines,
    pending,
    plan_images,
    select_epochs,
)
from onetwo.stages import FittedStage, PreparedStage, StageRequest, fit_stage, launch_problems, scan, stages_of
from onetwo.trainer.launch import accelerate_options, require, run

WORKER = Path(__file__).with_name("worker.py")
KOHYA_DEFAULT_SAMPLER = "ddim"  # train_network.py's --sample_sampler default


@dataclass(frozen=True)
class SamplingRun:
    """What to draw and how, ready to launch: every planned image, the ones not drawn yet, the fitted stage."""

    out_dir: Path
    job_dir: Path
    planned: list[Planned]
    todo: list[Planned]
    fitted: FittedStage
    strength: float
    progress: bool

    def prepared(self, project: Project) -> PreparedStage:
        return PreparedStage(self.argv(project), None, self.fitted.rendered.flat_config(), self.fitted.trainer)

    def argv(self, project: Project) -> list[str]:
        return [self.fitted.python(project), "-m", "accelerate.commands.launch",
                *accelerate_options(self.fitted.accelerate), str(WORKER), str(self.job_dir / "job.json")]


def fitted_stage(project: Project, stage: str, request: StageRequest,
                 scans: Sequence[CharacterImages]) -> FittedStage:
    """The stage's training config fitted to the trainer's Python: what the worker loads the base model with."""
    require_valid_sets(request.sets, project.model)
    weights = project.lora_file("stage1") if stage == "stage2" else None
    return fit_stage(project, stage, scans, load_templates(project, stage), replace(request, launch=True), weights)


def hashed(files: Sequence[Path], output_name: str, last_epoch: int) -> list[EpochFile]:
    return [EpochFile(path, epoch_number(path, output_name, last_epoch), compute(path)[0]) for path in files]


def sampling_run(project: Project, fitted: FittedStage, planned: list[Planned], out_dir: Path, job_dir: Path,
                 options: Options, progress: bool) -> SamplingRun:
    if not FAMILIES[project.model].sampled:
        drawn = [family.label for family in FAMILIES.values() if family.sampled]
        raise OnetwoError(f"{project.file}: project.model is {project.model!r}; onetwo sample (and matrix) draw "
                          f"{' and '.join(drawn)} models only so far. Draw {project.model} samples during "
                          "training (sample_every_n_epochs) or in ComfyUI, and score them with `onetwo eval`")
    return SamplingRun(out_dir, job_dir, planned, pending(planned, out_dir), fitted, options.strength, progress)


def prepare(project: Project, request: StageRequest, epochs: str, options: Options) -> SamplingRun:
    """Plan `onetwo sample STAGE`: every epoch file asked for x every prompt of the stage x `options.seeds` seeds."""
    stage = request.stage
    if stage not in stages_of(project):
        raise OnetwoError(f"{project.file}: project.mode is {project.mode!r}, which trains "
                          f"{' then '.join(stages_of(project))}; sample one of those")
    if options.seeds < 1:
        raise OnetwoError(f"--seeds {options.seeds}: draw at least one seed a prompt")
    require_valid_sets(request.sets, project.model)  # before any file is written
    prompts_file = project.stage_dir(stage) / "sample_prompts.txt"
    if not prompts_file.is_file():
        raise OnetwoError(f"{prompts_file}: the stage's sample prompts are not there; run `onetwo render {stage}` "
                          f"(or train it) first")
    scans = scan(project, request.workers, request.progress)
    fitted = fitted_stage(project, stage, request, scans)
    flat = fitted.rendered.flat_config()
    output_name = project.output_name(stage)
    last_epoch = int(flat.get("max_train_epochs") or 1)
    files = select_epochs(hashed(epoch_files(project.output_dir, output_name), output_name, last_epoch), epochs,
                          f"{project.output_dir} ({output_name}*.safetensors)")
    lines = distinct_prompts(parse_prompt_lines(prompts_file.read_text(encoding="utf-8")))
    names = [item.character.name for item in scans]
    groups = sample_prompt_groups(project, scans)
    characters = {line.index: found for line in lines
                  if (found := characters_of_prompt(line.prompt, groups, names)) is not None}
    planned = plan_images(files, lines, characters, options, flat.get("sample_sampler") or KOHYA_DEFAULT_SAMPLER,
                          flat.get("clip_skip"), project.base_model.name, project.samples.seed)
    return sampling_run(project, fitted, planned, project.samples_dir(stage),
                        project.stage_dir(stage) / "sampling", options, request.progress)


def family_job(family: Family) -> dict[str, Any]:
    """What the worker, which cannot import onetwo, needs of the family declaration."""
    return {"trainer_class": family.trainer_class, "sample_pipeline": family.sample_pipeline,
            "pipeline_lists": family.pipeline_lists, "lora_prefixes": list(family.lora_prefixes),
            "sample_function": family.sample_function, "skip_random_init": family.skip_random_init}


def job_document(project: Project, sampling: SamplingRun, config_file: Path) -> dict[str, Any]:
    by_file: dict[Path, list[dict[str, Any]]] = {}
    for item in sampling.todo:
        settings = item.record["settings"]
        by_file.setdefault(item.file.path, []).append({
            "png": str(item.png(sampling.out_dir)), "sidecar_file": str(item.sidecar(sampling.out_dir)),
            "sidecar": item.record, "prompt": item.record["prompt"], "negative_prompt": item.record["negative_prompt"],
            "prompt_index": item.record["prompt_index"], "epoch": item.record["epoch"], "seed": item.record["seed"],
            **{key: settings[key] for key in ("sampler", "steps", "scale", "width", "height")}})
    return {"sd_scripts": str(project.sd_scripts), "train_script": str(project.train_script), "model": project.model,
            "config_file": str(config_file), "strength": sampling.strength, "progress": sampling.progress,
            "out_dir": str(sampling.out_dir), **family_job(FAMILIES[project.model]),
            "files": [{"path": str(path), "images": images} for path, images in by_file.items()]}


def draw(project: Project, sampling: SamplingRun, what: str) -> int:
    """Launch the worker on what is not drawn yet; return how many images it drew. Nothing to draw: no launch."""
    done = len(sampling.planned) - len(sampling.todo)
    if not sampling.todo:
        info(f"{what}: all {len(sampling.planned)} images already drawn with the same file, prompt, seed and "
             f"settings → {sampling.out_dir}")
        return 0
    files = len({item.file.path for item in sampling.todo})
    info(f"{what}: {len(sampling.todo)} images to draw from {files} LoRA file(s)"
         + (f" ({done} already drawn)" if done else ""))
    prepared = sampling.prepared(project)
    require(launch_problems(project, prepared), f"draw {what}")
    sampling.out_dir.mkdir(parents=True, exist_ok=True)
    config_file = sampling.job_dir / "config.toml"
    write_toml(config_file, sampling.fitted.rendered.config, f"{what}: the config the base model is loaded with")
    write_text_atomic(sampling.job_dir / "job.json",
                      json.dumps(job_document(project, sampling, config_file), indent=1, ensure_ascii=False) + "\n")
    info(f"{what}: {shlex.join(prepared.argv)}")
    log = sampling.job_dir / "sample.log"
    code = run(prepared.argv, log)
    missing = pending(sampling.todo, sampling.out_dir)
    if code or missing:
        raise OnetwoError(f"sampling exited with {code} and drew {len(sampling.todo) - len(missing)} of "
                          f"{len(sampling.todo)} images (rerun to draw the rest); its log: {log}")
    info(f"{what}: drew {len(sampling.todo)} images → {sampling.out_dir}")
    return len(sampling.todo)
