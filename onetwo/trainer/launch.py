"""The trainer's command line: a pure argv builder, preflight checks, and a runner that streams and tees output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from onetwo.errors import OnetwoError


def accelerate_options(options: dict[str, Any]) -> list[str]:
    """`{"num_processes": 1, "cpu": true}` → `--num_processes 1 --cpu`; false flags are left out."""
    argv: list[str] = []
    for key, value in options.items():
        if value is False:
            continue
        argv.append(f"--{key}")
        if value is not True:
            argv.append(str(value))
    return argv


def command(script: Path, config_file: Path, dataset_file: Path, accelerate: dict[str, Any],
            extra: Sequence[str] = (), python: str = sys.executable) -> list[str]:
    """accelerate's own options go before the script; everything after the script belongs to the trainer."""
    return [python, "-m", "accelerate.commands.launch", *accelerate_options(accelerate),
            str(script), "--config_file", str(config_file), "--dataset_config", str(dataset_file), *extra]


def sd_scripts_problem(script: Path) -> str | None:
    if script.is_file():
        return None
    sd_scripts = script.parent
    return (f"{sd_scripts}: no kohya-ss sd-scripts checkout here ({script.name} is missing). Run `make setup` "
            "(it fetches the pinned submodule and installs its requirements), or point onetwo at your own "
            "checkout with project.sd_scripts or the ONETWO_SD_SCRIPTS environment variable")


def preflight(base_model: Path, script: Path, network_weights: Path | None) -> list[str]:
    problems = []
    if not base_model.exists():
        problems.append(f"{base_model}: base model not found; fix project.base_model (a .ckpt/.safetensors file or "
                        "a diffusers folder)")
    if why := sd_scripts_problem(script):
        problems.append(why)
    if network_weights is not None and not network_weights.is_file():
        problems.append(f"{network_weights}: stage 1's LoRA is not there yet; run `onetwo train stage1` first, or "
                        "pass --from FILE to continue from another stage-1 file")
    return problems


def _copy_stream(source: BinaryIO, log: BinaryIO) -> None:
    out = sys.stdout.buffer
    while chunk := source.read1(65536) if hasattr(source, "read1") else source.read(65536):
        out.write(chunk)
        out.flush()
        log.write(chunk)


def run(argv: Sequence[str], log_file: Path, env: dict[str, str] | None = None) -> int:
    """Run without a shell, stream output live and into `log_file`, and return the trainer's exit code."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("wb") as log:
        process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})})
        assert process.stdout is not None
        try:
            _copy_stream(process.stdout, log)
            return process.wait()
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)
            try:
                return process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                return process.wait()


def require(problems: list[str], what: str) -> None:
    if problems:
        raise OnetwoError(f"cannot {what}:", problems)
