"""What the pinned sd-scripts accepts, checked before any file is written (kohya itself ignores a misspelt key):
each training key and the kind of its value, the dataset keys of each level, and both spellings of a resolution.
Pure; every problem names where the setting came from."""

from __future__ import annotations

from typing import Any

from onetwo.kohya.args import DATASET_KEYS
from onetwo.kohya.buckets import parse_resolution
from onetwo.kohya.families import FAMILIES
from onetwo.project.strict import did_you_mean

# The subset keys onetwo writes for every subset, which a project file or --set may not set.
WRITTEN_SUBSET_KEYS = ("image_dir", "class_tokens", "is_reg")


def _value_problem(kind: str, value: Any) -> str | None:
    if kind == "flag":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "int":
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "must be a number"
    if kind == "list":
        # A single number passes: train_network.py reads e.g. a scalar text_encoder_lr (the reference's form).
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if isinstance(value, list) or number else "must be a list"
    if kind.startswith("choice:"):
        choices = kind.split(":", 1)[1].split(",")
        return None if str(value) in choices else f"must be one of {', '.join(choices)}"
    return None if isinstance(value, str) else "must be a string (quote it)"


def validate_train_keys(flat: dict[str, Any], origin: dict[str, str], model: str = "sd1") -> list[str]:
    """Every key must be one the trainer knows: kohya itself silently ignores misspelt ones."""
    known = FAMILIES[model].arguments
    script = FAMILIES[model].train_script
    problems = []
    for key, value in flat.items():
        where = origin.get(key, "template")
        if key.startswith("metadata_") and isinstance(value, str):
            continue  # train_network.py writes any metadata_<x> string from the config file as modelspec.<x>
        if key not in known:
            problems.append(f"{where}: {key!r} is not an option of {script}{did_you_mean(key, known)}")
        elif why := _value_problem(known[key], value):
            problems.append(f"{where}: {key} {why}, got {value!r}")
    return problems


def resolution_problem(value: Any, level: str, where: str) -> str | None:
    """A resolution kohya would not read, at `level` "dataset" (a dataset TOML) or "training" (the config)."""
    try:
        parse_resolution(value, level)
    except ValueError as exc:
        return f"{where}: resolution = {value!r}: {exc}"
    return None


def validate_dataset_keys(table: dict[str, Any], level: str, where: str) -> list[str]:
    allowed = DATASET_KEYS[level]
    return [f"{where}: {key!r} is not a kohya {level} setting{did_you_mean(key, allowed)}"
            for key in table if key not in allowed and key not in ("datasets", "subsets")]
