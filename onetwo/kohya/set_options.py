"""`--set` on the command line: checked before anything is written, and written for the user where a fix is one.

Each problem names the `--set` item it comes from; the stage-2 hand-off refusal gets the `--set` items that make
stage 2 build stage 1's network.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onetwo.errors import OnetwoError
from onetwo.kohya.provenance import (
    HANDOFF_KEYS,
    metadata_value,
    network_settings,
    read_metadata,
    settings_from_metadata,
)
from onetwo.kohya.render import parse_assignment
from onetwo.kohya.validate import WRITTEN_SUBSET_KEYS, resolution_problem, validate_dataset_keys, validate_train_keys


def set_problems(items: Sequence[str], model: str) -> list[str]:
    """Every --set item whose key kohya does not know or whose value has the wrong type, each named."""
    problems = []
    for item in items:
        where = f"--set {item}"
        try:
            key, value = parse_assignment(item)
        except OnetwoError as exc:
            problems.append(str(exc))
            continue
        scope, dot, name = key.partition(".")
        if dot and scope in ("dataset", "subset"):
            level = "datasets" if scope == "dataset" else "subsets"
            problems += validate_dataset_keys({name: value}, level, where)
            if scope == "subset" and name in WRITTEN_SUBSET_KEYS:
                problems.append(f"{where}: onetwo writes {name} for each subset; leave it out")
            elif scope == "dataset" and name == "resolution" and (why := resolution_problem(value, "dataset", where)):
                problems.append(why)
        else:
            problems += validate_train_keys({key: value}, {key: where}, model)
            if key == "resolution" and isinstance(value, str) and (
                    why := resolution_problem(value, "training", where)):
                problems.append(why)
    return problems


def require_valid_sets(items: Sequence[str], model: str) -> None:
    if problems := set_problems(items, model):
        raise OnetwoError(f"--set: {len(problems)} problem(s); nothing was written:", problems)


def _toml_value(value: Any) -> str:
    """One-line TOML for a number, a string or a list of strings (JSON's forms of these are TOML too)."""
    return json.dumps(value, ensure_ascii=False)


def handoff_fix(stage1_file: Path, flat_config: dict[str, Any]) -> list[str]:
    """The --set items that give stage 2 the network stage 1's file was trained with (empty when they agree)."""
    metadata = read_metadata(stage1_file)
    theirs, ours = settings_from_metadata(metadata), network_settings(flat_config)
    items = [f"{key}={_toml_value(metadata_value(metadata[f'ss_{key}']))}" for key in HANDOFF_KEYS
             if theirs.get(key) != ours.get(key) and metadata.get(f"ss_{key}") is not None]
    arg_keys = {key for key in set(theirs) | set(ours) if key.startswith("network_args.")}
    if any(theirs.get(key) != ours.get(key) for key in arg_keys):
        try:
            args = json.loads(metadata.get("ss_network_args") or "{}")
        except ValueError:
            args = {}
        listed = [f"{key}={value}" for key, value in args.items() if value is not None]
        items.append(f"network_args={_toml_value(listed)}")
    return [f"--set {shlex.quote(item)}" for item in items]
