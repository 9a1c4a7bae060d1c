"""The pair matrix: every character alone (diagonal) and every pair in both orders, drawn with one LoRA and fixed
seeds by sd-scripts' own sampler, assembled into one PNG grid to judge identity and left/right order at a glance.
The sampling run is the first stage's config, fitted to the trainer's Python as `onetwo train` fits it."""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from onetwo.data.captions import sample_prompt_line
from onetwo.data.composite import PORTRAIT
from onetwo.data.pixels import save_image
from onetwo.data.scan import CharacterImages
from onetwo.errors import OnetwoError
from onetwo.fsutil import write_text_atomic
from onetwo.kohya.buckets import fit_size
from onetwo.kohya.provenance import handoff_problems, read_metadata
from onetwo.kohya.render import character_prompt, load_templates, parse_set, prompt_tags, role_buckets, write_toml
from onetwo.kohya.set_options import require_valid_sets
from onetwo.messages import info
from onetwo.project.config import Project
from onetwo.stages import PreparedStage, StageRequest, fit_stage, launch_problems, prepare_originals, scan, stages_of
from onetwo.trainer.launch import require, run

LABEL = 20
# Keys that turn a training config into a sampling-only run: load the LoRA, sample before the first step, train
# zero epochs. sd-scripts' gen_img.py with LyCORIS as its network module cannot draw these: its wrapped UNet loads
# fine (230 modules), but it passes the text encoders as a list, so LyCORIS 3.x looks for `lora_te1_` keys (0 of the
# 72 `lora_te_` modules load), then calls `apply_to` without the apply_text_encoder / apply_unet flags LyCORIS
# asserts. onetwo/gen_img_network.py fixes both for gen_img.py users.
SAMPLING_ONLY = {"sample_at_first": True, "max_train_epochs": 0, "cache_latents": False,
                 "cache_latents_to_disk": False, "save_every_n_epochs": None, "sample_every_n_epochs": None}


@dataclass(frozen=True)
class Cell:
    row: int
    column: int
    label: str
    prompt_line: str


def cells(project: Project, scans: Sequence[CharacterImages], width: int, height: int, steps: int,
          seed: int) -> list[Cell]:
    """Row = the left character, column = the right one; the diagonal is each character alone. One seed for all,
    so a difference between cells comes from the prompt, not the noise."""
    samples = project.samples
    names = [scan.character.name for scan in scans]
    tags = prompt_tags(project, scans)
    found = []
    for (row, left), (column, right) in itertools.product(enumerate(names), repeat=2):
        if row == column:
            prompt, label, size = character_prompt(project, tags, [left]), left, (height, height)
        else:
            prompt = character_prompt(project, tags, [left, right])
            label, size = f"{left} | {right}", (width, height)
        line = sample_prompt_line(prompt, samples.negative, *size, steps, samples.scale, seed)
        found.append(Cell(row, column, label, line))
    return found


def sampling_config(flat_config: dict[str, Any], lora: Path, out_dir: Path, prompts_file: Path) -> dict[str, Any]:
    """A stage's rendered training config turned into a sampling-only run of `lora`."""
    config = {**flat_config, **SAMPLING_ONLY, "network_weights": str(lora), "output_dir": str(out_dir),
              "output_name": "matrix", "sample_prompts": str(prompts_file)}
    return {key: value for key, value in config.items() if value is not None}


def sampling_dataset(dataset_doc: dict[str, Any]) -> dict[str, Any]:
    """The smallest dataset train_network.py accepts: the first subset of the first dataset, batch 1."""
    first = dataset_doc["datasets"][0]
    return {**dataset_doc, "datasets": [{**first, "batch_size": 1, "subsets": first["subsets"][:1]}]}


def sample_files(out_dir: Path, count: int) -> list[Path]:
    """kohya names samples <output_name>_e000000_<index>_<time>_<seed>.png; the index is the prompt's line."""
    found = sorted((out_dir / "sample").glob("matrix_e000000_*.png"))
    by_index = {int(path.name.split("_")[2]): path for path in found}
    return [by_index[index] for index in range(count) if index in by_index]


def assemble(grid: Sequence[Cell], images: Sequence[Path], target: Path) -> Path:
    """One PNG: a row per left character, a column per right character, each cell labelled."""
    size = max(len({cell.row for cell in grid}), 1)
    opened = [Image.open(path).convert("RGB") for path in images]
    cell_w = max(image.width for image in opened)
    cell_h = max(image.height for image in opened) + LABEL
    sheet = Image.new("RGB", (cell_w * size, cell_h * size), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for cell, image in zip(grid, opened, strict=True):
        left, top = cell.column * cell_w, cell.row * cell_h
        sheet.paste(image, (left + (cell_w - image.width) // 2, top))
        draw.text((left + 3, top + cell_h - LABEL + 3), cell.label, fill=(235, 235, 235), font=font)
    save_image(sheet, target, "png")
    return target


@dataclass(frozen=True)
class MatrixRun:
    """A sampling run written and fitted to the trainer's Python, ready to launch."""

    grid: list[Cell]
    out_dir: Path
    target: Path
    prepared: PreparedStage


def prepare(project: Project, lora: Path, request: StageRequest, steps: int | None, seed: int,
            out: Path | None) -> MatrixRun:
    """Write the sampling run of every cell with `lora`: the first stage's config, fitted to the trainer's Python as
    `onetwo train` fits it, turned into a sampling-only run."""
    read_metadata(lora)
    require_valid_sets(request.sets, project.model)  # before any file is written
    scans = scan(project, request.workers, request.progress)
    width, height = fit_size(PORTRAIT * 2, role_buckets(project, "composites", parse_set(request.sets)))
    grid = cells(project, scans, width, height, steps or project.samples.steps, seed)
    out_dir = project.work_dir / "matrix" / lora.stem
    stage = stages_of(project)[0]
    prepare_originals(project, scans)
    fitted = fit_stage(project, stage, scans, load_templates(project, stage), replace(request, launch=True))
    prompts_file = out_dir / "prompts.txt"
    config = sampling_config(fitted.rendered.flat_config(), lora, out_dir, prompts_file)
    mismatch = handoff_problems(lora, config)
    if mismatch:
        raise OnetwoError(f"{lora}: its network differs from the project's, so LyCORIS would load none of it:",
                          mismatch)
    write_text_atomic(prompts_file, "".join(cell.prompt_line + "\n" for cell in grid))
    config_file, dataset_file = out_dir / "config.toml", out_dir / "dataset.toml"
    write_toml(config_file, config, f"the pair matrix of {lora.name}")
    write_toml(dataset_file, sampling_dataset(fitted.rendered.dataset), f"the pair matrix of {lora.name}")
    argv = fitted.command(project, config_file, dataset_file, request.extra)
    target = out or project.work_dir / "matrix" / f"{lora.stem}.png"
    return MatrixRun(grid, out_dir, target, PreparedStage(argv, None, config, fitted.trainer))


def draw(project: Project, matrix: MatrixRun) -> Path:
    """Sample every cell through sd-scripts and assemble the grid; return its path."""
    require(launch_problems(project, matrix.prepared), "draw the pair matrix")
    for old in (matrix.out_dir / "sample").glob("matrix_*.png"):
        old.unlink()  # a stale sample would fill the cell of a prompt that failed this time
    info(f"matrix: {shlex.join(matrix.prepared.argv)}")
    log = matrix.out_dir / "sample.log"
    code = run(matrix.prepared.argv, log)
    (matrix.out_dir / "matrix.safetensors").unlink(missing_ok=True)  # the zero-epoch run re-saves the LoRA unchanged
    images = sample_files(matrix.out_dir, len(matrix.grid))
    if code or len(images) != len(matrix.grid):
        raise OnetwoError(f"sampling exited with {code} and drew {len(images)} of {len(matrix.grid)} images; its "
                          f"log: {log}")
    info(f"matrix: {len(matrix.grid)} images → {assemble(matrix.grid, images, matrix.target)}")
    return matrix.target
