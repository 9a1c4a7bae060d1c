"""What a rendered training config needs of the trainer's Python (accelerate, the network module, the optimizer's
library, xformers, a GPU for mixed precision); every thing the probe did not find, each as one problem with its fix;
and whether sdpa stands in for an xformers this Python cannot run."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Import name → the name pip installs it by, where they differ.
PIP_NAMES = {"lycoris": "lycoris-lora", "lion_pytorch": "lion-pytorch", "PIL": "pillow", "cv2": "opencv-python",
             "yaml": "pyyaml", "sklearn": "scikit-learn"}
MIXED_PRECISION_GPU = ("fp16", "bf16")
TORCH_PACKAGES = ("torch", "torchvision")
XFORMERS = "xformers.ops"


@dataclass(frozen=True)
class LaunchPython:
    path: str
    why: str


@dataclass(frozen=True)
class Need:
    """A module the trainer imports, the package that provides it, and the setting that asks for it."""

    module: str
    package: str | None  # None: part of the sd-scripts checkout
    why: str


@dataclass(frozen=True)
class Probe:
    """What the trainer's Python reported; `failure` when it could not be run at all."""

    data: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None

    @property
    def cuda(self) -> bool:
        return bool(self.data.get("cuda"))

    def module_error(self, module: str) -> dict[str, Any] | None:
        return self.data.get("modules", {}).get(module)


def pip_name(module: str) -> str | None:
    top = module.split(".")[0]
    return None if top in ("networks", "library") else PIP_NAMES.get(top, top)


def optimizer_module(flat: Mapping[str, Any]) -> tuple[str, str] | None:
    """(module, the setting that asks for it) of the optimizer, as sd-scripts' train_util.get_optimizer picks it."""
    name = str(flat.get("optimizer_type") or "")
    if not name:
        name = "AdamW8bit" if flat.get("use_8bit_adam") else "Lion" if flat.get("use_lion_optimizer") else "AdamW"
    setting = f"optimizer_type = {json.dumps(name)}"
    lower = name.lower()
    if lower == "lion":
        return "lion_pytorch", setting
    if lower.endswith("8bit") or lower.startswith("paged"):
        return "bitsandbytes", setting
    if lower.startswith("dadapt"):
        return "dadaptation", setting
    if lower == "prodigy":
        return "prodigyopt", setting
    if lower.endswith("schedulefree"):
        return "schedulefree", setting
    if lower in ("adamw", "sgdnesterov", "adafactor") or "." not in name:
        return None  # torch.optim, or transformers' Adafactor (a requirement of sd-scripts)
    return name.rsplit(".", 1)[0], setting


def needs(flat: Mapping[str, Any], sd_scripts_present: bool = True) -> list[Need]:
    """What train_network.py imports because of these settings, beyond its own requirements."""
    found = [Need("accelerate", "accelerate", "`accelerate launch`")]
    network = str(flat.get("network_module") or "networks.lora")
    if sd_scripts_present or pip_name(network):
        found.append(Need(network, pip_name(network), f"network_module = {json.dumps(network)}"))
    if optimizer := optimizer_module(flat):
        found.append(Need(optimizer[0], pip_name(optimizer[0]), optimizer[1]))
    if flat.get("optimizer_schedulefree_wrapper"):
        found.append(Need("schedulefree", "schedulefree", "optimizer_schedulefree_wrapper = true"))
    if flat.get("xformers"):
        found.append(Need(XFORMERS, "xformers", "xformers = true"))
    return found


def _pip(python: str, *packages: str) -> str:
    return shlex.join([python, "-m", "pip", "install", *packages])


def _module_problem(need: Need, error: dict[str, Any], python: str, sd_scripts: Path) -> str:
    message = error.get("error", "")
    missing = error.get("missing")
    elsewhere = "or point onetwo at the Python that has the trainer with project.python or ONETWO_PYTHON"
    if need.package is None:
        if missing and need.module.startswith(missing):
            return (f"{need.why}: {sd_scripts} has no {need.module} ({message}); update the sd-scripts checkout or "
                    "fix network_module")
        fix = f"`{_pip(python, pip_name(missing) or missing)}`" if missing else "sd-scripts' requirements"
        return f"{python}: {need.module} ({need.why}) fails to import: {message}; install {fix}"
    if missing and need.module.split(".")[0] == missing.split(".")[0]:
        nothing_ran = " (nothing was launched: this is the Python that runs it)" if need.module == "accelerate" else ""
        return (f"{python}: {need.why} needs {need.module}, which this Python cannot import{nothing_ran}; install it: "
                f"`{_pip(python, need.package)}`, {elsewhere}")
    if missing:
        return (f"{python}: {need.module} ({need.why}) fails to import, missing {missing}; install it: "
                f"`{_pip(python, pip_name(missing) or missing)}`")
    return (f"{python}: {need.module} ({need.why}) fails to import: {message}; reinstall it: "
            f"`{_pip(python, '--force-reinstall', need.package)}`")


def mixed_precision(flat: Mapping[str, Any], accelerate: Mapping[str, Any]) -> str:
    """The training config's value wins over accelerate's (train_network.py passes its own to the Accelerator)."""
    return str(flat.get("mixed_precision") or accelerate.get("mixed_precision") or "no")


def has_torch(probe: Probe) -> bool:
    """Without torch the probe cannot tell what the GPU runs, nor whether a package that imports torch works."""
    return probe.data.get("torch") is not None


def _gpu_problem(probe: Probe, flat: Mapping[str, Any], accelerate: Mapping[str, Any], python: str) -> str | None:
    precision = mixed_precision(flat, accelerate)
    forced_cpu = accelerate.get("cpu") is True
    if precision not in MIXED_PRECISION_GPU or (probe.cuda and not forced_cpu):
        return None
    if precision == "fp16" and probe.data.get("mps") and not forced_cpu:
        return None  # Apple's GPU: accelerate runs fp16 there
    why = "[accelerate] cpu = true" if forced_cpu else f"torch {probe.data.get('torch')} in {python} sees no CUDA GPU"
    fix = "to train on the CPU set mixed_precision = \"no\" in [training] and cpu = true in [accelerate]"
    optimizer = optimizer_module(flat)
    if optimizer and optimizer[0] == "bitsandbytes":
        fix += f", and optimizer_type = \"AdamW\" in [training] ({optimizer[1]} needs bitsandbytes on a CUDA GPU)"
    return f"mixed_precision = {json.dumps(precision)} needs a CUDA GPU, but {why}; {fix}"


def xformers_unusable(probe: Probe, flat: Mapping[str, Any], python: str) -> str | None:
    """Why `xformers = true` cannot work in this Python (not importable, or no CUDA for its kernels); None if it can,
    and None where the probe cannot tell (no torch: xformers imports it, and only torch knows the GPU)."""
    if not flat.get("xformers") or probe.failure or not has_torch(probe):
        return None
    error = probe.module_error("xformers.ops")
    if error is None and probe.cuda:
        return None
    return f"{python} cannot import xformers ({error.get('error')})" if error else "xformers needs a CUDA GPU"


def sdpa_switch(probe: Probe, flat: Mapping[str, Any], python: str, fallback: bool) -> str | None:
    """The note that `xformers = true` trains with sdpa in this Python; None where the config keeps xformers."""
    why = xformers_unusable(probe, flat, python) if fallback else None
    if why is None:
        return None
    return (f"xformers = true, but {why}: training with sdpa = true instead (PyTorch's own scaled-dot-product "
            "attention, no extra package); set project.attention_fallback = false to make this an error")


def _xformers_refused(probe: Probe, flat: Mapping[str, Any], python: str) -> str:
    """The problem of `xformers = true` where it cannot work and project.attention_fallback = false."""
    why = xformers_unusable(probe, flat, python)
    install = f"install it (`{_pip(python, 'xformers')}`), or " if probe.module_error("xformers.ops") else ""
    return (f"xformers = true, but {why}; {install}set xformers = false and sdpa = true in [training] "
            "(project.attention_fallback = false makes this an error)")


def _waits_for_torch(error: Mapping[str, Any]) -> bool:
    """A module that failed only because torch is missing or broken: installed, and to be asked again after torch."""
    missing = error.get("missing")
    return missing is None or missing.split(".")[0] in TORCH_PACKAGES


def problems_for(probe: Probe, launch: LaunchPython, flat: Mapping[str, Any], accelerate: Mapping[str, Any],
                 sd_scripts: Path, fallback: bool) -> list[str]:
    """Every problem of one rendered config against what the trainer's Python reported, at once: without torch too,
    each package that is not there is named with its install command beside torch's."""
    python = launch.path
    if probe.failure:
        return [f"{python} (the trainer's Python, from {launch.why.split(',')[0]}): {probe.failure}; fix the path or "
                "set project.python / ONETWO_PYTHON to a Python with the trainer's packages"]
    torch = has_torch(probe)
    problems = []
    if not torch:
        error = (probe.data.get("torch_error") or {}).get("error", "not importable")
        problems.append(f"{python}: torch cannot be imported ({error}); install it into that Python: "
                        f"`{_pip(python, 'torch', 'torchvision')}` (the CUDA build for your GPU: see pytorch.org), or "
                        "point onetwo at the Python that has the trainer with project.python or ONETWO_PYTHON")
    for need in needs(flat, sd_scripts.is_dir()):
        error = probe.module_error(need.module)
        if error is None or (not torch and _waits_for_torch(error)):
            continue
        if need.module == XFORMERS and (torch or fallback):
            continue  # with torch the attention check below decides; without, whether sdpa stands in waits for it
        problems.append(_module_problem(need, error, python, sd_scripts))
    if torch and (gpu := _gpu_problem(probe, flat, accelerate, python)):
        problems.append(gpu)
    if not fallback and xformers_unusable(probe, flat, python):
        problems.append(_xformers_refused(probe, flat, python))
    return problems
