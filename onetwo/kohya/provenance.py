"""LoRA file metadata: what stage 2 must match in stage 1, where each file onetwo trains came from (written as
training keys kohya copies into the file), and what `onetwo inspect` prints of a file."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from onetwo import __version__
from onetwo.data.captions import prompt_escape
from onetwo.errors import OnetwoError
from onetwo.kohya.safetensors_header import HeaderError, read_header

# LyCORIS loads network_weights with strict=False: if these differ, the stage-1 weights are silently dropped.
HANDOFF_KEYS = ("network_module", "network_dim", "network_alpha")


def read_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a .safetensors file, read from its JSON header without torch."""
    try:
        metadata = read_header(path).metadata
    except (OSError, HeaderError) as exc:
        raise OnetwoError(f"{path}: not a readable .safetensors file ({exc})") from exc
    return {str(key): str(value) for key, value in metadata.items()}


def _number(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def metadata_value(value: Any) -> Any:
    """kohya writes metadata and network args as text: '8' → 8, '0.5' → 0.5; booleans and other text stay."""
    if isinstance(value, bool):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except (TypeError, ValueError):
            continue
    return value


def network_settings(flat_config: dict[str, Any]) -> dict[str, Any]:
    """What a rendered training config asks of the network, in the form kohya writes into the metadata."""
    args = {}
    for item in flat_config.get("network_args") or []:
        key, _, value = str(item).partition("=")
        args[key.strip()] = value.strip()
    settings = {key: _number(flat_config.get(key)) for key in HANDOFF_KEYS}
    settings.update({f"network_args.{key}": _number(value) for key, value in args.items()})
    return settings


def settings_from_metadata(metadata: dict[str, str]) -> dict[str, Any]:
    settings = {key: _number(metadata.get(f"ss_{key}")) for key in HANDOFF_KEYS}
    try:
        args = json.loads(metadata.get("ss_network_args") or "{}")
    except ValueError:
        args = {}
    settings.update({f"network_args.{key}": _number(value) for key, value in args.items() if value is not None})
    return settings


def handoff_problems(stage1_file: Path, flat_config: dict[str, Any]) -> list[str]:
    """Differences between stage 1's network (from its file) and stage 2's rendered one, each named."""
    theirs = settings_from_metadata(read_metadata(stage1_file))
    ours = network_settings(flat_config)
    problems = []
    for key in sorted(set(theirs) | set(ours)):
        if theirs.get(key) != ours.get(key):
            problems.append(f"{key}: stage 1 ({stage1_file.name}) has {theirs.get(key)!r}, stage 2 would use "
                            f"{ours.get(key)!r}")
    return problems


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _git(folder: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                                check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def sd_scripts_commit(sd_scripts: Path) -> str:
    """The checkout's own HEAD; "unknown" when the folder is not the top of a repository of its own (an uninitialised
    submodule inside onetwo's repository would otherwise report onetwo's commit)."""
    top = _git(sd_scripts, "rev-parse", "--show-toplevel")
    try:
        own = top is not None and Path(top).resolve() == sd_scripts.resolve()
    except OSError:
        own = False
    return (_git(sd_scripts, "rev-parse", "HEAD") or "unknown") if own else "unknown"


def provenance(stage: str, project_name: str, tokens: list[str], sd_scripts: Path, weights: Path | None,
               manifest: Path | None) -> dict[str, str]:
    """Training keys that carry provenance into the LoRA: ss_training_comment and modelspec.* metadata."""
    record: dict[str, str] = {"onetwo": __version__, "stage": stage, "project": project_name,
                              "sd_scripts_commit": sd_scripts_commit(sd_scripts)}
    if weights is not None:
        record["source"] = weights.name
        if weights.is_file():
            record["source_sha256"] = file_sha256(weights)
    if manifest is not None and manifest.is_file():
        record["composite_manifest_sha256"] = file_sha256(manifest)
    comment = "; ".join(f"{key} {value}" for key, value in record.items())
    return {
        "training_comment": f"trained with onetwo (1to2 method): {comment}",
        "metadata_onetwo": json.dumps(record, sort_keys=True),
        # escaped as a prompt: the UIs paste the trigger phrase into one, where `(…)` would be read as a weight
        "metadata_trigger_phrase": ", ".join(prompt_escape(token) for token in tokens),
    }


def describe(path: Path) -> str:
    """What `onetwo inspect` prints: provenance first, then the network settings stage 2 must match."""
    metadata = read_metadata(path)
    lines = [f"{path}"]
    record = metadata.get("modelspec.onetwo")
    if record:
        try:
            for key, value in json.loads(record).items():
                lines.append(f"  {key:<26} {value}")
        except ValueError:
            lines.append(f"  onetwo                     {record}")
    else:
        lines.append("  (no onetwo provenance: not trained by onetwo, or trained with no_metadata)")
    for label, key in (("trigger phrase", "modelspec.trigger_phrase"), ("training comment", "ss_training_comment"),
                       ("network module", "ss_network_module"), ("network dim", "ss_network_dim"),
                       ("network alpha", "ss_network_alpha"), ("network args", "ss_network_args"),
                       ("base model", "ss_sd_model_name"), ("epoch", "ss_epoch"), ("steps", "ss_steps")):
        if key in metadata:
            lines.append(f"  {label:<26} {metadata[key]}")
    return "\n".join(lines)
