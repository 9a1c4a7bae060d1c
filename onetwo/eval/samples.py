"""Which images to score and what each one was asked to show.

Three sources: a training stage's sample folder, whose files sd-scripts names
`<output_name>_e<epoch:06d>_<prompt index:02d>_<time>_<seed>.png` (the prompt index counts the non-empty, non-`#`
lines of the sample-prompts file onetwo wrote); `onetwo sample`'s folder `work_dir/samples/<stage>/`, each
`<epoch file stem>__p<prompt index:02d>__s<seed>.png` with a `.json` sidecar saying which epoch file (and its
hash), prompt, characters and seed; or any folder of images with a `prompts.toml` beside them (images drawn
elsewhere, e.g. in ComfyUI or AUTOMATIC1111).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from onetwo.data.captions import prompt_escape
from onetwo.errors import OnetwoError
from onetwo.project.strict import tomllib

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
PROMPTS_FILE = "prompts.toml"
KOHYA_SAMPLE = re.compile(
    r"^(?P<name>.+)_(?:e(?P<epoch>\d{6})|(?P<step>\d{6}))_(?P<index>\d{2,})_\d{14}(?:_(?P<seed>-?\d+))?$")


@dataclass(frozen=True)
class Sample:
    path: Path
    epoch: int  # the epoch (or step, or the folder's `epoch` label) the image belongs to
    prompt_index: int
    characters: tuple[str, ...]  # left to right
    seed: int | None
    source: str = "training"  # "training" (drawn by sd-scripts while training), "sample" (`onetwo sample`), "folder"
    lora_hash: str | None = None  # the epoch file's sshs_model_hash, where the image records it


def prompt_lines(prompts_file: Path) -> list[str]:
    """The prompt texts in sd-scripts' numbering: non-empty lines not starting with '#', options (` --x`) cut off."""
    try:
        lines = prompts_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise OnetwoError(f"{prompts_file}: sample prompts not found; run `onetwo render` or `onetwo train` for this "
                          "stage first") from exc
    return [line.strip().split(" --")[0].strip() for line in lines if line.strip() and not line.startswith("#")]


def characters_of_prompt(text: str, groups: Sequence[tuple[tuple[str, ...], str]],
                         names: Sequence[str]) -> tuple[str, ...] | None:
    """The characters a prompt asks for: the group whose rendered prompt it is, else read from its first token
    (`A/B/COMPOSITE` or a character name), else None."""
    for characters, prompt in groups:
        if text in (prompt, prompt_escape(prompt)):  # the prompts file holds names escaped for the sampler
            return characters
    first = re.sub(r"\\([\\()\[\]])", r"\1", text).split(",")[0].strip()
    parts = [part.strip() for part in first.split("/") if part.strip() and part.strip() != "COMPOSITE"]
    if parts and all(part in names for part in parts):
        return tuple(parts)
    return None


def stage_samples(sample_dir: Path, output_name: str, prompts_file: Path,
                  groups: Sequence[tuple[tuple[str, ...], str]],
                  names: Sequence[str]) -> tuple[list[Sample], list[str]]:
    """The stage's sample images with their prompt's characters; and warnings for files that cannot be placed."""
    texts = prompt_lines(prompts_file)
    characters = [characters_of_prompt(text, groups, names) for text in texts]
    samples, warnings = [], []
    for path in sorted(sample_dir.glob(f"{output_name}_*.png")) if sample_dir.is_dir() else []:
        match = KOHYA_SAMPLE.match(path.stem)
        if not match or match["name"] != output_name:
            continue
        index = int(match["index"])
        if index >= len(texts) or characters[index] is None:
            warnings.append(f"{path.name}: prompt {index} is not one of {prompts_file}'s character prompts; skipped")
            continue
        epoch = int(match["epoch"] if match["epoch"] is not None else match["step"])
        seed = int(match["seed"]) if match["seed"] is not None else None
        samples.append(Sample(path, epoch, index, characters[index], seed))  # type: ignore[arg-type]
    return samples, warnings


def folder_samples(folder: Path, names: Sequence[str]) -> list[Sample]:
    """A folder with `prompts.toml`: `[[prompts]]` tables with `characters` (left to right), `images` (glob
    patterns relative to the folder) and an optional integer `epoch` (default 0) to compare checkpoints."""
    file = folder / PROMPTS_FILE
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise OnetwoError(f"{file}: not found; a folder to evaluate needs a prompts.toml saying which characters "
                          "each image shows (see docs/eval.md, 'Images from other tools')") from exc
    except tomllib.TOMLDecodeError as exc:
        raise OnetwoError(f"{file}: not valid TOML: {exc}") from exc
    problems: list[str] = []
    samples: list[Sample] = []
    entries = data.get("prompts")
    if not isinstance(entries, list) or not entries:
        raise OnetwoError(f"{file}: needs [[prompts]] tables with characters = [...] and images = [...]")
    for number, entry in enumerate(entries):
        where = f"prompts[{number}]"
        unknown = set(entry) - {"characters", "images", "epoch"} if isinstance(entry, dict) else set()
        if not isinstance(entry, dict) or unknown:
            problems.append(f"{where}: unknown key(s) {sorted(unknown)}" if unknown else f"{where}: must be a table")
            continue
        characters, patterns, epoch = entry.get("characters"), entry.get("images"), entry.get("epoch", 0)
        if isinstance(patterns, str):
            patterns = [patterns]
        if not isinstance(characters, list) or not characters or not all(name in names for name in characters):
            problems.append(f"{where}.characters: must list the project's characters left to right (known: "
                            f"{', '.join(names)}), got {characters!r}")
            continue
        if not isinstance(patterns, list) or not all(isinstance(item, str) for item in patterns):
            problems.append(f"{where}.images: must be a glob pattern or a list of them, got {patterns!r}")
            continue
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            problems.append(f"{where}.epoch: must be an integer, got {epoch!r}")
            continue
        paths = sorted({path for pattern in patterns for path in folder.glob(pattern)
                        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()})
        if not paths:
            problems.append(f"{where}.images: {patterns!r} match no image in {folder}")
        samples += [Sample(path, epoch, number, tuple(characters), None, "folder") for path in paths]
    if problems:
        raise OnetwoError(f"{file}: {len(problems)} problem(s):", problems)
    return samples


SIDECAR_KEYS = {"lora_file": str, "sshs_model_hash": str, "epoch": int, "prompt_index": int, "characters": list}


def sampled_images(folder: Path, names: Sequence[str]) -> tuple[list[Sample], list[str]]:
    """`onetwo sample`'s images in `folder` with what their sidecars say; and warnings for those that cannot be
    placed (no image, unreadable or incomplete sidecar, a character the project does not have)."""
    samples, warnings = [], []
    for sidecar in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        image = sidecar.with_suffix(".png")
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            warnings.append(f"{sidecar}: unreadable ({exc}); skipped")
            continue
        fields = data if isinstance(data, dict) else {}
        wrong = [key for key, kind in SIDECAR_KEYS.items()
                 if not isinstance(fields.get(key), kind) or isinstance(fields.get(key), bool)]
        if wrong:
            warnings.append(f"{sidecar}: missing or mistyped {', '.join(wrong)}; skipped (draw it again with "
                            "`onetwo sample`)")
            continue
        characters = fields["characters"]
        if not characters or not all(name in names for name in characters):
            warnings.append(f"{sidecar}: characters {characters!r} are not the project's ({', '.join(names)}); skipped")
            continue
        if not image.is_file():
            warnings.append(f"{sidecar}: its image {image.name} is missing; skipped")
            continue
        seed = fields.get("seed")
        samples.append(Sample(image, fields["epoch"], fields["prompt_index"], tuple(characters),
                              seed if isinstance(seed, int) and not isinstance(seed, bool) else None, "sample",
                              fields["sshs_model_hash"]))
    return samples, warnings
