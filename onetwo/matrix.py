"""The pair matrix: every character alone (diagonal) and every pair in both orders, drawn with one LoRA and fixed
seeds by sd-scripts' own sampler, assembled into one PNG grid to judge identity and left/right order at a glance."""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
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
from onetwo.kohya.render import (
    character_prompt,
    load_templates,
    parse_set,
    prompt_tags,
    render_stage,
    role_buckets,
    write_toml,
)
from onetwo.kohya.set_options import require_valid_sets
from onetwo.messages import info
from onetwo.project.config import Project
from onetwo.stages import StageRequest, accelerate_settings, prepare_originals, scan, stages_of
from onetwo.trainer.launch import command, preflight, require, run
from onetwo.trainer.python import choose_python

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



def draw(project: Project, lora: Path, request: StageRequest, steps: int | None, seed: int,
         out: Path | None) -> Path:
    """Sample every cell of the matrix with `lora` through sd-scripts and assemble the grid; return its path."""
    read_metadata(lora)
    require_valid_sets(request.sets, project.model)  # before any file is written
    scans = scan(project, request.workers, request.progress)
    sets = parse_set(request.sets)
    width, height = fit_size(PORTRAIT * 2, role_buckets(project, "composites", sets))
    grid = cells(project, scans, width, height, steps or project.samples.steps, seed)
    out_dir = project.work_dir / "matrix" / lora.stem
    for old in (out_dir / "sample").glob("matrix_*.png"):
        old.unlink()  # a stale sample would fill the cell of a prompt that failed this time
    stage = stages_of(project)[0]
    prepare_originals(project, scans)
    rendered = render_stage(project, stage, scans, load_templates(project, stage), sets)
    prompts_file = out_dir / "prompts.txt"
    config = sampling_config(rendered.flat_config(), lora, out_dir, prompts_file)
    mismatch = handoff_problems(lora, config)
    if mismatch:
        raise OnetwoError(f"{lora}: its network differs from the project's, so LyCORIS would load none of it:",
                          mismatch)
    write_text_atomic(prompts_file, "".join(cell.prompt_line + "\n" for cell in grid))
    config_file, dataset_file = out_dir / "config.toml", out_dir / "dataset.toml"
    write_toml(config_file, config, f"the pair matrix of {lora.name}")
    write_toml(dataset_file, sampling_dataset(rendered.dataset), f"the pair matrix of {lora.name}")
    argv = command(project.train_script, config_file, dataset_file, accelerate_settings(project, request.accelerate),
                   request.extra, choose_python(project.python, project.sd_scripts).path)
    require(preflight(project.base_model, project.train_script, None), "draw the pair matrix")
    info(f"matrix: {shlex.join(argv)}")
    code = run(argv, out_dir / "sample.log")
    (out_dir / "matrix.safetensors").unlink(missing_ok=True)  # the zero-epoch run re-saves the LoRA unchanged
    images = sample_files(out_dir, len(grid))
    if code or len(images) != len(grid):
        raise OnetwoError(f"sampling exited with {code} and drew {len(images)} of {len(grid)} images; its log: "
                          f"{out_dir / 'sample.log'}")
    target = out or project.work_dir / "matrix" / f"{lora.stem}.png"
    info(f"matrix: {len(grid)} images → {assemble(grid, images, target)}")
    return target
