"""The pair matrix: every character alone (diagonal) and every pair in both orders, drawn with one LoRA and one
seed by `onetwo sample`'s sampling run (the base model loaded once, the LoRA merged as the UIs merge it, sd-scripts'
own sampler), assembled into one PNG grid to judge identity and left/right order at a glance. The base model is
loaded with the first stage's config, fitted to the trainer's Python as `onetwo train` fits it."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from onetwo.data.captions import sample_prompt_line
from onetwo.data.composite import PORTRAIT
from onetwo.data.pixels import save_image
from onetwo.data.scan import CharacterImages
from onetwo.kohya.buckets import fit_size
from onetwo.kohya.hashes import compute
from onetwo.kohya.provenance import read_metadata
from onetwo.kohya.render import character_prompt, parse_set, prompt_tags, role_buckets
from onetwo.kohya.set_options import require_valid_sets
from onetwo.messages import info
from onetwo.project.config import Project
from onetwo.sample import run as sampling
from onetwo.sample.plan import EpochFile, Options, parse_prompt_lines, plan_images, suffix_epoch
from onetwo.stages import StageRequest, scan, stages_of

LABEL = 20


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
    """The cells and their sampling run, ready to launch."""

    grid: list[Cell]
    sampling: sampling.SamplingRun
    target: Path


def prepare(project: Project, lora: Path, request: StageRequest, steps: int | None, seed: int,
            out: Path | None) -> MatrixRun:
    """Plan one image a cell with `lora`; the base model is loaded with the first stage's config."""
    read_metadata(lora)
    require_valid_sets(request.sets, project.model)  # before any file is written
    scans = scan(project, request.workers, request.progress)
    width, height = fit_size(PORTRAIT * 2, role_buckets(project, "composites", parse_set(request.sets)))
    grid = cells(project, scans, width, height, steps or project.samples.steps, seed)
    fitted = sampling.fitted_stage(project, stages_of(project)[0], request, scans)
    flat = fitted.rendered.flat_config()
    lines = parse_prompt_lines("\n".join(cell.prompt_line for cell in grid))
    names = {cell.row: cell.label for cell in grid if cell.row == cell.column}
    characters = {index: (names[cell.row],) if cell.row == cell.column else (names[cell.row], names[cell.column])
                  for index, cell in enumerate(grid)}
    file = EpochFile(lora, suffix_epoch(lora) or 0, compute(lora)[0])
    planned = plan_images([file], lines, characters, Options(seeds=1),
                          flat.get("sample_sampler") or sampling.KOHYA_DEFAULT_SAMPLER, flat.get("clip_skip"),
                          project.base_model.name, seed)
    out_dir = project.work_dir / "matrix" / lora.stem
    run = sampling.sampling_run(project, fitted, planned, out_dir, out_dir, Options(seeds=1), request.progress)
    return MatrixRun(grid, run, out or project.work_dir / "matrix" / f"{lora.stem}.png")


def draw(project: Project, matrix: MatrixRun) -> Path:
    """Draw the cells not drawn yet (a rerun draws none) and assemble the grid; return its path."""
    sampling.draw(project, matrix.sampling, "matrix")
    images = [item.png(matrix.sampling.out_dir) for item in matrix.sampling.planned]
    info(f"matrix: {len(matrix.grid)} images → {assemble(matrix.grid, images, matrix.target)}")
    return matrix.target
