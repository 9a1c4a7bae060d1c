"""The training plan of a stage before any GPU time: what kohya will count from the rendered files, and the table
`check`, `render` and `train --dry-run` print. Pure.

Mirrors sd-scripts (the pinned commit): config_util's fallbacks (subset → dataset → general → training config),
DreamBoothDataset's repeats and regularization fill, `len(dataset)` = the sum over buckets (onetwo.kohya.buckets)
of ceil(images in bucket x repeats / batch_size), and train_network.py's steps, saves and samples.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from onetwo.kohya.buckets import dataset_levels, setting, settings_from_dataset

COMPOSITES = "composites"  # the label of the composite subset's row
DEFAULT_MAX_TRAIN_STEPS = 1600  # train_network.py's default when neither epochs nor steps are given


@dataclass(frozen=True)
class SubsetImages:
    """What onetwo knows of one image folder before kohya reads it: a label, each image's size, and how many of
    its images show each character (a composite shows two)."""

    label: str
    sizes: tuple[tuple[int, int], ...]
    appearances: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class SubsetRow:
    label: str
    images: int
    repeats: int
    trained: int  # images x repeats as kohya registers them (regularization: filled up to the training images)
    is_reg: bool


@dataclass(frozen=True)
class StagePlan:
    stage: str
    rows: tuple[SubsetRow, ...]
    characters: tuple[tuple[str, int], ...]  # per character: images showing it x repeats, in one epoch
    batches: int  # len(dataset): kohya's batches per epoch, summed over the [[datasets]]
    accumulation: int
    processes: int
    steps_per_epoch: int
    epochs: int
    total_steps: int
    checkpoints: int
    sample_rounds: int
    prompts: int
    seconds_per_step: float | None = None
    rate_source: str = ""
    share_asked: float | None = None  # composite.share, where set
    # per character with `onetwo synth` drawings in its deck: (name, drawings, deck images, its composites, those
    # showing a drawing), and [synthetic] max_share
    synthetic: tuple[tuple[str, int, int, int, int], ...] = ()
    synthetic_cap: float | None = None

    @property
    def sample_images(self) -> int:
        return self.sample_rounds * self.prompts


def dataset_batches(general: Mapping[str, Any], dataset: Mapping[str, Any], flat_config: Mapping[str, Any],
                    images: Mapping[str, SubsetImages]) -> tuple[int, list[SubsetRow], Counter[str]]:
    """One [[datasets]]: (kohya's len(dataset), a row per subset, per-character images x repeats)."""
    settings = settings_from_dataset(general, dataset, flat_config)
    fallback = {"num_repeats": flat_config.get("dataset_repeats")}
    buckets: Counter[tuple[int, int]] = Counter()
    rows: list[SubsetRow] = []
    characters: Counter[str] = Counter()
    regularization: list[tuple[tuple[int, int], int]] = []
    reg_rows: list[tuple[str, int, int]] = []
    train_images = 0
    seen: set[str] = set()
    for subset in dataset.get("subsets", []):
        folder = str(subset.get("image_dir", ""))
        repeats = int(setting("num_repeats", [subset, dataset, general, fallback], 1))
        known = images.get(folder, SubsetImages(folder, ()))
        if repeats < 1 or folder in seen or not known.sizes:
            continue  # kohya ignores these subsets with a warning
        seen.add(folder)
        if subset.get("is_reg"):
            regularization += [(size, repeats) for size in known.sizes]
            reg_rows.append((known.label, len(known.sizes), repeats))
            continue
        train_images += repeats * len(known.sizes)
        for width, height in known.sizes:
            buckets[settings.select(width, height)] += repeats
        characters.update({name: count * repeats for name, count in known.appearances})
        rows.append(SubsetRow(known.label, len(known.sizes), repeats, repeats * len(known.sizes), False))
    # DreamBoothDataset: regularization images are registered in turn, then one more repeat each, until they
    # match the training images.
    if regularization:
        registered = [0] * len(regularization)
        total, first = 0, True
        while total < train_images:
            for index, (_, repeats) in enumerate(regularization):
                step = repeats if first else 1
                registered[index] += step
                total += step
                if total >= train_images:
                    break
            first = False
        for ((width, height), _), count in zip(regularization, registered, strict=True):
            if count:
                buckets[settings.select(width, height)] += count
        start = 0
        for label, count, repeats in reg_rows:
            rows.append(SubsetRow(label, count, repeats, sum(registered[start:start + count]), True))
            start += count
    batch_size = int(setting("batch_size", dataset_levels(general, dataset, flat_config), 1))
    return sum(math.ceil(count / batch_size) for count in buckets.values()), rows, characters


def count_prompts(sample_prompts: str) -> int:
    """Lines kohya's sampler reads from a .txt prompts file: not empty, not a '#' comment."""
    return sum(1 for line in sample_prompts.splitlines() if line.strip() and not line.startswith("#"))


def stage_plan(stage: str, dataset_doc: Mapping[str, Any], flat_config: Mapping[str, Any],
               images: Mapping[str, SubsetImages], sample_prompts: str, processes: int = 1,
               seconds_per_step: float | None = None, rate_source: str = "",
               share_asked: float | None = None) -> StagePlan:
    general = dataset_doc.get("general", {})
    batches = 0
    rows: list[SubsetRow] = []
    characters: Counter[str] = Counter()
    for dataset in dataset_doc.get("datasets", []):
        count, dataset_rows, dataset_characters = dataset_batches(general, dataset, flat_config, images)
        batches += count
        rows += dataset_rows
        characters.update(dataset_characters)
    accumulation = max(1, int(flat_config.get("gradient_accumulation_steps") or 1))
    processes = max(1, processes)
    epochs_asked = flat_config.get("max_train_epochs")
    if epochs_asked is not None:
        total = int(epochs_asked) * math.ceil(batches / processes / accumulation)
    else:
        total = int(flat_config.get("max_train_steps") or DEFAULT_MAX_TRAIN_STEPS)
    per_epoch = math.ceil(math.ceil(batches / processes) / accumulation)  # after accelerate shards the loader
    epochs = math.ceil(total / per_epoch) if per_epoch else 0
    return StagePlan(stage, tuple(rows), tuple(sorted(characters.items())), batches, accumulation, processes,
                     per_epoch, epochs, total, checkpoints(flat_config, epochs, total),
                     sample_rounds(flat_config, epochs, total), count_prompts(sample_prompts) if
                     flat_config.get("sample_prompts") else 0, seconds_per_step, rate_source, share_asked)


def checkpoints(flat_config: Mapping[str, Any], epochs: int, total_steps: int) -> int:
    """Every save_every_n_epochs (not the last epoch), every save_every_n_steps, and the final file."""
    every = flat_config.get("save_every_n_epochs")
    ratio = flat_config.get("save_n_epoch_ratio")
    if ratio:
        every = math.floor(epochs / ratio) or 1
    saves = sum(1 for epoch in range(1, epochs) if epoch % every == 0) if every else 0
    if flat_config.get("save_every_n_steps"):
        saves += total_steps // int(flat_config["save_every_n_steps"])
    return saves + 1


def sample_rounds(flat_config: Mapping[str, Any], epochs: int, total_steps: int) -> int:
    """sample_images_common: at step 0 with sample_at_first, then per epoch (which wins) or per step."""
    rounds = 1 if flat_config.get("sample_at_first") else 0
    if flat_config.get("sample_every_n_epochs"):
        rounds += epochs // int(flat_config["sample_every_n_epochs"])
    elif flat_config.get("sample_every_n_steps"):
        rounds += total_steps // int(flat_config["sample_every_n_steps"])
    return rounds


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def format_plan(plan: StagePlan) -> str:
    """The table `check`, `render` and `train --dry-run` print."""
    lines = [f"{plan.stage} plan (as kohya will count it):"]
    for row in plan.rows:
        kind = "  regularization" if row.is_reg else ""
        lines.append(f"  {row.label:<24} {row.images:>6} images x {row.repeats:>3} repeats = {row.trained:>7}{kind}")
    total = sum(count for _, count in plan.characters)
    if plan.characters:
        shares = ", ".join(f"{name} {count} ({count / total:.0%})" for name, count in plan.characters)
        low, high = min(count for _, count in plan.characters), max(count for _, count in plan.characters)
        ratio = f"; most/least {high / low:.2f}" if low else ""
        lines.append(f"  balance                  {shares}{ratio}")
    composites = sum(row.trained for row in plan.rows if row.label == COMPOSITES and not row.is_reg)
    views = sum(row.trained for row in plan.rows if not row.is_reg)
    if composites and views > composites:  # composites beside other images: how much of an epoch they are
        asked = f" (composite.share {plan.share_asked:g})" if plan.share_asked is not None else ""
        lines.append(f"  composite share          {composites / views:.1%} of {views} image views{asked}")
    if plan.synthetic:
        shares = "; ".join(f"{name} {drawn} of {deck} deck images, in {used} of {shown} composites "
                           f"({used / shown if shown else 0:.0%})" for name, drawn, deck, shown, used in plan.synthetic)
        lines.append(f"  synthetic                {shares}; max_share {plan.synthetic_cap:g}")
    accumulation = f" / {plan.accumulation} accumulated" if plan.accumulation > 1 else ""
    processes = f" / {plan.processes} processes" if plan.processes > 1 else ""
    lines += [
        f"  steps per epoch          {plan.steps_per_epoch} ({plan.batches} batches{accumulation}{processes})",
        f"  total steps              {plan.total_steps} ({_count(plan.epochs, 'epoch')})",
        f"  checkpoints written      {plan.checkpoints}",
        f"  sample images            {plan.sample_images} ({_count(plan.sample_rounds, 'round')} x "
        f"{_count(plan.prompts, 'prompt')})",
    ]
    if plan.seconds_per_step:
        lines.append(f"  time estimate            {_duration(plan.total_steps * plan.seconds_per_step)} at "
                     f"{plan.seconds_per_step:.2f} s/step ({plan.rate_source}; sampling not included)")
    else:
        lines.append("  time estimate            unknown until a run of this stage has logged its speed")
    return "\n".join(lines)
