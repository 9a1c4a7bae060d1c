"""The Python that launches the trainer: which one (said aloud, with why), and what it can do, probed in a subprocess
that imports what the rendered config needs and loads no model."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onetwo.fsutil import write_text_atomic
from onetwo.project.config import Project
from onetwo.project.file import python_setting
from onetwo.trainer.needs import LaunchPython, Probe, needs, problems_for, sdpa_switch
from onetwo.trainer.probe import RESULT_MARKER

PROBE_SCRIPT = Path(__file__).with_name("probe.py")
PROBE_TIMEOUT = 300  # seconds; importing torch and a network module takes 5-20 s
OWN_TRAINER_MODULES = ("accelerate", "torch")
VENV_FOLDERS = ("venv", ".venv")  # kohya_ss's setup.sh makes venv/, its uv scripts .venv/
INTERPRETERS = ("bin/python", "Scripts/python.exe")
CACHE_VERSION = 1
CACHE_ENV = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "PYTHONPATH", "PYTHONHOME")


@dataclass(frozen=True)
class TrainerCheck:
    python: LaunchPython
    probe: Probe
    problems: list[str]
    notes: list[str]
    use_sdpa: bool  # xformers asked for and unusable here: the rendered config switches to sdpa, a note says so


def venv_candidates(sd_scripts: Path) -> list[Path]:
    """Venvs that belong to the checkout: its own, and the kohya_ss layout (venv/ at the root, sd-scripts/ inside)."""
    return [root / folder / interpreter for root in (sd_scripts, sd_scripts.parent) for folder in VENV_FOLDERS
            for interpreter in INTERPRETERS]


def own_python_has_trainer() -> bool:
    """Cheap: finds the packages without importing them."""
    return all(importlib.util.find_spec(name) is not None for name in OWN_TRAINER_MODULES)


def _located(command: str) -> str:
    return command if os.sep in command or "/" in command else shutil.which(command) or command


def choose_python(setting: str | None, sd_scripts: Path, environ: Mapping[str, str] = os.environ,
                  own: str = sys.executable, own_has_trainer: bool | None = None) -> LaunchPython:
    """project.python, else $ONETWO_PYTHON, else onetwo's own Python when it has the trainer's packages, else a venv
    of the sd-scripts checkout."""
    if setting:
        return LaunchPython(_located(setting), "project.python")
    if environ.get("ONETWO_PYTHON"):
        return LaunchPython(_located(python_setting(environ["ONETWO_PYTHON"], Path.cwd())), "$ONETWO_PYTHON")
    if own_has_trainer is None:
        own_has_trainer = own_python_has_trainer()
    if own_has_trainer:
        return LaunchPython(own, "onetwo's own Python, which has accelerate and torch")
    candidates = venv_candidates(sd_scripts)
    for candidate in candidates:
        if candidate.is_file():
            return LaunchPython(str(candidate), "the venv that belongs to the sd-scripts checkout; onetwo's own "
                                "Python lacks accelerate or torch")
    return LaunchPython(own, "onetwo's own Python, though it lacks accelerate or torch: no venv found for the "
                        f"sd-scripts checkout ({', '.join(str(path) for path in candidates[:4])}, …)")


def run_probe(python: str, sd_scripts: Path, modules: Sequence[str], timeout: float = PROBE_TIMEOUT) -> Probe:
    """Run probe.py's text in `python` (`-c`: nothing of onetwo's on its path), from the checkout's folder."""
    request = json.dumps({"sd_scripts": str(sd_scripts), "modules": list(modules)})
    cwd = sd_scripts if sd_scripts.is_dir() else Path(tempfile.gettempdir())
    try:
        done = subprocess.run([python, "-c", PROBE_SCRIPT.read_text(encoding="utf-8"), request], cwd=cwd,
                              capture_output=True, text=True, timeout=timeout, errors="replace")
    except subprocess.TimeoutExpired:
        return Probe(failure=f"it did not answer within {timeout:.0f} s")
    except OSError as exc:
        return Probe(failure=f"it cannot be run ({exc.strerror or exc})")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            with contextlib.suppress(ValueError):
                return Probe(json.loads(line[len(RESULT_MARKER):]))
    output = (done.stdout + done.stderr).strip().splitlines()[-3:]
    return Probe(failure=f"it exited with code {done.returncode}: {' | '.join(output) or 'no output'}")


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def fingerprint(python: str, paths: Sequence[str], sd_scripts: Path) -> dict[str, Any]:
    """What a probe's answer depends on: the interpreter, the folders it imports from (installing or removing a
    package changes its folder's mtime; the checkout's own folder is left out, as a work_dir may live in it), and the
    variables that change what torch sees."""
    return {"python": python, "python_mtime": _mtime(python),
            "paths": {path: _mtime(path) for path in paths if path != str(sd_scripts)},
            "env": {name: os.environ.get(name) for name in CACHE_ENV}}


def probe_cache_dir() -> Path:
    """$XDG_CACHE_HOME/onetwo/trainer-probe, else ~/.cache/onetwo/trainer-probe: one file per Python."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "onetwo" / "trainer-probe"


def cache_file_for(cache_dir: Path, python: str) -> Path:
    return cache_dir / f"{hashlib.sha256(python.encode()).hexdigest()[:20]}.json"


def _from_checkout(module: str) -> bool:
    return module.split(".")[0] in ("networks", "library")


def _kept_answer(entry: Any, python: str, sd_scripts: Path, modules: Sequence[str]) -> tuple[Probe | None, list[str]]:
    """(the kept probe if it answers `modules`, the modules a fresh probe should ask about)."""
    data = entry["data"]
    if entry["version"] != CACHE_VERSION or entry["fingerprint"] != fingerprint(python, data["path"],
                                                                                Path(entry["sd_scripts"])):
        return None, list(modules)
    same_checkout = entry["sd_scripts"] == str(sd_scripts)
    if set(modules) <= set(data["modules"]) and (same_checkout or not any(map(_from_checkout, modules))):
        return Probe(data), []
    before = [module for module in data["modules"] if same_checkout or not _from_checkout(module)]
    return None, list(dict.fromkeys([*before, *modules]))


def _prune(cache_dir: Path) -> None:
    """Forget the answers of Pythons that are gone (a deleted venv)."""
    for file in cache_dir.glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if not os.path.exists(json.loads(file.read_text(encoding="utf-8"))["fingerprint"]["python"]):
                file.unlink()


def cached_probe(python: str, sd_scripts: Path, modules: Sequence[str], cache_file: Path | None) -> Probe:
    """The probe's answer from `cache_file` while its fingerprint holds and it covers `modules` (those of the
    checkout only for the same checkout); else a fresh probe of these and the modules asked before, kept there."""
    asked = list(modules)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if cache_file:
            kept, asked = _kept_answer(json.loads(cache_file.read_text(encoding="utf-8")), python, sd_scripts,
                                       modules)
            if kept:
                return kept
    probe = run_probe(python, sd_scripts, asked)
    if cache_file and not probe.failure:
        entry = {"version": CACHE_VERSION, "sd_scripts": str(sd_scripts),
                 "fingerprint": fingerprint(python, probe.data.get("path", []), sd_scripts), "data": probe.data}
        with contextlib.suppress(OSError):  # an unwritable cache costs the next command a probe, nothing else
            write_text_atomic(cache_file, json.dumps(entry, indent=1) + "\n")
            _prune(cache_file.parent)
    return probe


def describe(launch: LaunchPython, probe: Probe) -> str:
    if probe.failure or probe.data.get("torch") is None:
        return f"trainer Python: {launch.path} ({launch.why})"
    devices = ", ".join(probe.data.get("devices") or []) or "no CUDA GPU"
    return (f"trainer Python: {launch.path} ({launch.why}); Python {probe.data.get('version')}, "
            f"torch {probe.data.get('torch')}, {devices}")


def inspect_trainer(python_setting_value: str | None, sd_scripts: Path, flats: Sequence[Mapping[str, Any]],
                    accelerate: Mapping[str, Any], fallback: bool = True, cache_dir: Path | None = None
                    ) -> TrainerCheck:
    """Choose the Python, probe it once for everything `flats` (one rendered config per stage) need."""
    launch = choose_python(python_setting_value, sd_scripts)
    modules = list(dict.fromkeys(need.module for flat in flats for need in needs(flat, sd_scripts.is_dir())))
    cache_file = cache_file_for(cache_dir, launch.path) if cache_dir else None
    probe = cached_probe(launch.path, sd_scripts, modules, cache_file)
    problems: list[str] = []
    notes: list[str] = [describe(launch, probe)]
    for flat in flats:
        problems += [item for item in problems_for(probe, launch, flat, accelerate, sd_scripts, fallback)
                     if item not in problems]
    switches = [note for flat in flats if (note := sdpa_switch(probe, flat, launch.path, fallback))]
    notes += dict.fromkeys(switches)
    return TrainerCheck(launch, probe, problems, notes, use_sdpa=bool(switches))


def trainer_for(project: Project, flats: Sequence[Mapping[str, Any]], accelerate: Mapping[str, Any]) -> TrainerCheck:
    """One probe per command, for every rendered config it trains or checks."""
    return inspect_trainer(project.python, project.sd_scripts, flats, accelerate, project.attention_fallback,
                           probe_cache_dir())
