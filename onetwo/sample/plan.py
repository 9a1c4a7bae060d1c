"""What `onetwo sample` draws, pure: the stage's prompt lines read as sd-scripts reads them, which epoch files, which
seeds, each image's name and sidecar record, and which images are already drawn (their sidecar says the same file
hash, prompt, seed and settings)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onetwo.errors import OnetwoError

DEFAULT_SEEDS = 4  # 4 seeds a prompt: pair-success intervals about ±15 points per epoch for three characters
KEY_FIELDS = ("sshs_model_hash", "prompt", "negative_prompt", "seed", "settings")
_EPOCH_SUFFIX = re.compile(r"-(\d{6})")


@dataclass(frozen=True)
class PromptLine:
    """One line of a kohya sample-prompts file: the options onetwo writes (`--n --w --h --s --l --d`)."""

    index: int  # sd-scripts' numbering: non-empty lines not starting with '#'
    prompt: str
    negative: str
    width: int
    height: int
    steps: int
    scale: float
    seed: int | None


def _option(options: dict[str, str], key: str, kind: type, default: Any) -> Any:
    try:
        return kind(options[key]) if key in options else default
    except ValueError:
        return default


def parse_prompt_lines(text: str) -> list[PromptLine]:
    """As train_util.line_to_prompt_dict reads them: the prompt before the first ` --`, then `--key value` pairs;
    kohya's defaults (512 px, 30 steps, scale 7.5) where an option is missing."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    found = []
    for index, line in enumerate(lines):
        prompt, *parts = line.split(" --")
        options = {}
        for part in parts:
            key, _, value = part.partition(" ")
            options[key.lower()] = value.strip()
        found.append(PromptLine(index, prompt, options.get("n", ""), _option(options, "w", int, 512),
                                _option(options, "h", int, 512), _option(options, "s", int, 30),
                                _option(options, "l", float, 7.5), _option(options, "d", int, None)))
    return found


def distinct_prompts(lines: Sequence[PromptLine]) -> list[PromptLine]:
    """One line per prompt: `[samples] seeds` repeats each line with the next seeds, and `--seeds` replaces that."""
    seen: set[tuple[Any, ...]] = set()
    found = []
    for line in lines:
        key = (line.prompt, line.negative, line.width, line.height, line.steps, line.scale)
        if key not in seen:
            seen.add(key)
            found.append(line)
    return found


@dataclass(frozen=True)
class EpochFile:
    path: Path
    epoch: int
    model_hash: str  # sshs_model_hash, as sd-scripts computes it


def epoch_number(path: Path, output_name: str, last_epoch: int) -> int:
    """kohya's per-epoch saves end in `-<epoch:06d>`; the final file, without the suffix, is the last epoch."""
    match = _EPOCH_SUFFIX.fullmatch(path.stem[len(output_name):]) if path.stem.startswith(output_name) else None
    return int(match[1]) if match else last_epoch


def suffix_epoch(path: Path) -> int | None:
    """The epoch of any file named as kohya names per-epoch saves (`<name>-<epoch:06d>`), else None."""
    match = re.search(r"-(\d{6})$", path.stem)
    return int(match[1]) if match else None


def select_epochs(files: Sequence[EpochFile], spec: str, where: str) -> list[EpochFile]:
    """`all`, `last`, or epoch numbers `N,M,…`."""
    ordered = sorted(files, key=lambda file: file.epoch)
    if not ordered:
        raise OnetwoError(f"{where}: no LoRA files of this stage; train it first")
    if spec == "all":
        return ordered
    if spec == "last":
        return ordered[-1:]
    try:
        wanted = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        wanted = []
    if not wanted:
        raise OnetwoError(f"--epochs {spec!r}: give all, last, or epoch numbers such as 10,20")
    by_epoch = {file.epoch: file for file in ordered}
    missing = [epoch for epoch in wanted if epoch not in by_epoch]
    if missing:
        raise OnetwoError(f"--epochs {spec}: no file of epoch {', '.join(map(str, missing))} in {where}; there are "
                          f"epochs {', '.join(str(file.epoch) for file in ordered)}")
    return [by_epoch[epoch] for epoch in sorted(set(wanted))]


@dataclass(frozen=True)
class Options:
    """The command line's choices; None: the stage's own value from its sample prompts and config."""

    seeds: int = DEFAULT_SEEDS
    strength: float = 1.0
    steps: int | None = None
    width: int | None = None
    height: int | None = None
    scale: float | None = None
    sampler: str | None = None


@dataclass(frozen=True)
class Planned:
    file: EpochFile
    stem: str
    record: dict[str, Any]  # the sidecar

    def png(self, out_dir: Path) -> Path:
        return out_dir / f"{self.stem}.png"

    def sidecar(self, out_dir: Path) -> Path:
        return out_dir / f"{self.stem}.json"


def image_stem(file: Path, prompt_index: int, seed: int) -> str:
    return f"{file.stem}__p{prompt_index:02d}__s{seed}"


def plan_images(files: Sequence[EpochFile], prompts: Sequence[PromptLine],
                characters: dict[int, tuple[str, ...]], options: Options, sampler: str, clip_skip: int | None,
                base_model: str, first_seed: int) -> list[Planned]:
    """Every (file, prompt, seed): seeds start at the line's own `--d` (else `first_seed`) and count up."""
    planned = []
    for file in files:
        for line in prompts:
            # kohya rounds sizes down to multiples of 8 (minimum 64): record what is drawn
            width = max(64, (options.width or line.width) // 8 * 8)
            height = max(64, (options.height or line.height) // 8 * 8)
            settings = {"sampler": options.sampler or sampler, "steps": options.steps or line.steps,
                        "scale": options.scale if options.scale is not None else line.scale, "width": width,
                        "height": height, "clip_skip": clip_skip, "strength": options.strength,
                        "base_model": base_model}
            start = line.seed if line.seed is not None else first_seed
            for seed in range(start, start + options.seeds):
                record = {"lora_file": file.path.name, "sshs_model_hash": file.model_hash, "epoch": file.epoch,
                          "prompt_index": line.index, "prompt": line.prompt, "negative_prompt": line.negative,
                          "characters": list(characters.get(line.index, ())), "seed": seed, "settings": settings}
                planned.append(Planned(file, image_stem(file.path, line.index, seed), record))
    return planned


def is_drawn(planned: Planned, out_dir: Path) -> bool:
    """The PNG is there and its sidecar (written after it) says the same file hash, prompt, seed and settings."""
    if not planned.png(out_dir).is_file():
        return False
    try:
        recorded = json.loads(planned.sidecar(out_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and all(recorded.get(key) == planned.record[key] for key in KEY_FIELDS)


def pending(planned: Sequence[Planned], out_dir: Path) -> list[Planned]:
    return [item for item in planned if not is_drawn(item, out_dir)]
