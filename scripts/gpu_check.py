"""`make gpu-check`: both stages of the method on a CUDA GPU with the reference settings that the CPU tests replace,
on the tiny random SD1 model and on the tiny Anima set (full-size DiT), through the real onetwo CLI; then the
outputs are checked as the CPU tests check them, and seconds per step and peak GPU memory are printed per stage.

    python scripts/gpu_check.py [--work DIR] [--family sd1|anima|all]   # default DIR: build/gpu-check; all

Settings: the shipped templates' own values (fp16 mixed precision, AdamW8bit through bitsandbytes, xformers,
640 px batch 4 for stage 1, 768 px batch 2 for stage 2), except where the machine cannot: sdpa instead of xformers
when xformers is not importable. One epoch a stage, no sample images. Data: the shipped example's three characters
(examples/trio). The model is built once into $ONETWO_TEST_MODEL_DIR (default .cache/tiny-sd), as the tests do.
Anima: templates/anima/'s own values (bf16, AdamW8bit, gradient checkpointing, latents and text encoder outputs
cached, 768 px batch 2 for stage 1, 1024 px batch 1 for stage 2), on tests/tiny_anima.py's set, built once into
$ONETWO_TEST_ANIMA_DIR (default .cache/tiny-anima); its runs go under DIR/anima.

How it measures: scripts/gpu_probe/sitecustomize.py, put on the training process's PYTHONPATH, records the end of
every optimizer step and torch's peak CUDA memory (allocated and reserved) at exit. Seconds per step is the median
time between consecutive step ends, the first step (CUDA warm-up) left out.
Without a CUDA GPU (or without torch or bitsandbytes) it exits with code 2 and says why, before writing anything.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

EXAMPLE = REPO / "examples" / "trio"
PROBE = Path(__file__).resolve().parent / "gpu_probe"
STAGES = ("stage1", "stage2")
LOHA = {"alpha", "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"}
UNET_MODULES = 230  # SD1's UNet, as LyCORIS's kohya network wraps it (conv_dim 0)
MODULES_PER_TEXT_LAYER = 6  # q, k, v, out_proj, fc1, fc2
ANIMA_MODULES = 280  # networks.lora_anima on the DiT: 28 blocks x 10 Linear layers (tests/test_anima_lora.py)
LORA = {"alpha", "lora_down.weight", "lora_up.weight"}
FAMILIES = ("sd1", "anima")


@dataclass(frozen=True)
class StageResult:
    stage: str
    returncode: int
    wall_s: float
    steps: int
    seconds_per_step: float | None
    peak_allocated_gib: float | None
    peak_reserved_gib: float | None


def cuda_problem() -> str | None:
    """Why the reference settings cannot run here, or None."""
    if importlib.util.find_spec("torch") is None:
        return f"torch is not installed for {sys.executable}: run `make setup` on the GPU machine"
    import torch

    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        return (f"no CUDA GPU is available to torch {torch.__version__} ({build}): the reference settings "
                "(fp16, AdamW8bit, xformers) need one. On a CPU, `make test` runs the end-to-end tests instead")
    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes (AdamW8bit) is not installed: run `make setup` on this machine"
    return None


def attention_settings() -> dict[str, bool]:
    """The template's xformers where it imports, else PyTorch's scaled-dot-product attention."""
    if importlib.util.find_spec("xformers") is not None:
        return {}
    return {"xformers": False, "sdpa": True}


def step_seconds(step_ends: list[float]) -> float | None:
    """Median time between consecutive step ends, the first step (warm-up) excluded."""
    gaps = [later - earlier for earlier, later in itertools.pairwise(step_ends)]
    return round(statistics.median(gaps), 3) if gaps else None


def write_project(work: Path, model_dir: Path, tokenizer_cache_dir: Path) -> Path:
    import tomli_w

    project = {
        "project": {"name": "gpucheck", "base_model": str(model_dir), "work_dir": "build", "output_dir": "output"},
        "characters": [{"name": folder.name.split("_", 1)[-1], "images": str(folder)}
                       for folder in sorted((EXAMPLE / "data").iterdir()) if folder.is_dir()],
        "composite": {"per_pair": 8, "seed": 0},
        "accelerate": {"num_processes": 1, "num_machines": 1, "mixed_precision": "fp16", "dynamo_backend": "no"},
        "training": {"max_train_epochs": 1, "sample_every_n_epochs": 2, "seed": 1,
                     "tokenizer_cache_dir": str(tokenizer_cache_dir), **attention_settings()},
        "stage2": {"seed": 2},
    }
    file = work / "onetwo.toml"
    file.write_text(tomli_w.dumps(project), encoding="utf-8")
    return file


def write_anima_project(work: Path, dit: Path, text_encoder: Path, vae: Path) -> Path:
    """The Anima run: the templates' own GPU values but for one epoch and no samples."""
    import tomli_w

    project = {
        "project": {"name": "gpucheck-anima", "model": "anima", "base_model": str(dit),
                    "text_encoder": str(text_encoder), "vae": str(vae), "work_dir": "build", "output_dir": "output"},
        "characters": [{"name": folder.name.split("_", 1)[-1], "images": str(folder)}
                       for folder in sorted((EXAMPLE / "data").iterdir()) if folder.is_dir()],
        "composite": {"per_pair": 8, "seed": 0},
        "accelerate": {"num_processes": 1, "num_machines": 1, "mixed_precision": "bf16", "dynamo_backend": "no"},
        "training": {"max_train_epochs": 1, "sample_every_n_epochs": 2, "seed": 1},
        "stage2": {"seed": 2},
    }
    work.mkdir(parents=True, exist_ok=True)
    file = work / "onetwo.toml"
    file.write_text(tomli_w.dumps(project), encoding="utf-8")
    return file


def run_stage(project_file: Path, stage: str, probe_dir: Path) -> StageResult:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ONETWO_GPU_PROBE_DIR": str(probe_dir),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROBE), str(REPO), os.environ.get("PYTHONPATH")]))}
    print(f"\n==> onetwo train {stage}", flush=True)
    start = time.monotonic()
    code = subprocess.call([sys.executable, "-m", "onetwo", "--project", str(project_file), "train", stage], env=env)
    wall = round(time.monotonic() - start, 1)
    records = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(probe_dir.glob("*.json"))]
    if not records:
        return StageResult(stage, code, wall, 0, None, None, None)
    record = records[-1]
    gib = {key: None if record[f"peak_{key}_bytes"] is None else round(record[f"peak_{key}_bytes"] / 2**30, 2)
           for key in ("allocated", "reserved")}
    return StageResult(stage, code, wall, len(record["step_ends"]), step_seconds(record["step_ends"]),
                       gib["allocated"], gib["reserved"])


def read_lora(file: Path) -> tuple[dict[str, Any], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(file), framework="np") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata()  # noqa: SIM118


def metadata_problems(stage: str, meta: dict[str, str], expected: dict[str, str]) -> list[str]:
    """A trained file's metadata against the template's settings; AdamW8bit by name inside ss_optimizer."""
    problems = [f"{stage}: metadata {key} is {meta.get(key)!r}, expected {value!r}"
                for key, value in expected.items() if meta.get(key) != value]
    if "AdamW8bit" not in meta.get("ss_optimizer", ""):
        problems.append(f"{stage}: ss_optimizer is {meta.get('ss_optimizer')!r}, expected AdamW8bit")
    return problems


def check_outputs(project: Any, text_layers: int) -> list[str]:
    """What the CPU end-to-end test checks, for the GPU run: module set, fp16, metadata, the stage-2 hand-off."""
    problems: list[str] = []
    loras = {stage: read_lora(project.lora_file(stage)) for stage in STAGES}
    for stage, (tensors, meta) in loras.items():
        modules: dict[str, set[str]] = {}
        for key in tensors:
            module, _, name = key.rpartition(".")
            modules.setdefault(module, set()).add(name)
        text = sum(module.startswith("lora_te_") for module in modules)
        unet = sum(module.startswith("lora_unet_") for module in modules)
        if (text, unet, len(modules)) != (MODULES_PER_TEXT_LAYER * text_layers, UNET_MODULES, text + unet):
            problems.append(f"{stage}: {text} text-encoder and {unet} UNet modules of {len(modules)}, expected "
                            f"{MODULES_PER_TEXT_LAYER * text_layers} and {UNET_MODULES}")
        if any(names != LOHA for names in modules.values()):
            problems.append(f"{stage}: a module without exactly {sorted(LOHA)}")
        if {str(tensor.dtype) for tensor in tensors.values()} != {"float16"}:
            problems.append(f"{stage}: tensors are not all fp16")
        expected = {"ss_network_module": "lycoris.kohya", "ss_network_dim": "8", "ss_network_alpha": "1",
                    "ss_mixed_precision": "fp16"}
        problems += metadata_problems(stage, meta, expected)
    first = project.lora_file("stage1")
    log = re.sub(r"\s+", "", (project.stage_dir("stage2") / "train.log").read_text(encoding="utf-8"))
    if re.sub(r"\s+", "", f"load network weights from {first}: {{}}") not in log:
        problems.append(f"stage2: its log does not say it loaded {first} with no key missing")
    one, two = loras["stage1"][0], loras["stage2"][0]
    hada = [key for key in one if ".hada_" in key and key in two]
    moved = max((float(abs(two[key].astype("float32") - one[key].astype("float32")).max()) for key in hada),
                default=0.0)
    if not 0 < moved < 0.1:  # a fresh start differs by ~1 (hada_w1_b starts at std 1)
        problems.append(f"stage2: its tensors moved by {moved} from stage 1's, expected a small change")
    return problems


def check_anima_outputs(project: Any) -> list[str]:
    """The Anima end-to-end test's checks, for the GPU run: module set, bf16, metadata, the stage-2 hand-off."""
    import torch
    from safetensors import safe_open

    problems: list[str] = []
    loras = {}
    for stage in STAGES:
        with safe_open(str(project.lora_file(stage)), framework="pt") as handle:
            loras[stage] = {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata()  # noqa: SIM118
    for stage, (tensors, meta) in loras.items():
        modules: dict[str, set[str]] = {}
        for key in tensors:
            module, name = key.split(".", 1)
            modules.setdefault(module, set()).add(name)
        if len(modules) != ANIMA_MODULES or any(not module.startswith("lora_unet_blocks_") for module in modules):
            problems.append(f"{stage}: {len(modules)} modules, expected {ANIMA_MODULES} lora_unet_blocks_* ones")
        if any(names != LORA for names in modules.values()):
            problems.append(f"{stage}: a module without exactly {sorted(LORA)}")
        if {tensor.dtype for tensor in tensors.values()} != {torch.bfloat16}:
            problems.append(f"{stage}: tensors are not all bf16")
        expected = {"ss_network_module": "networks.lora_anima", "ss_network_dim": "8", "ss_network_alpha": "1",
                    "ss_mixed_precision": "bf16", "ss_base_model_version": "anima"}
        problems += metadata_problems(stage, meta, expected)
    first = project.lora_file("stage1")
    log = re.sub(r"\s+", "", (project.stage_dir("stage2") / "train.log").read_text(encoding="utf-8"))
    if re.sub(r"\s+", "", f"load network weights from {first}: <All keys matched successfully>") not in log:
        problems.append(f"stage2: its log does not say it loaded {first} with every key matched")
    one, two = loras["stage1"][0], loras["stage2"][0]
    down = [key for key in one if key.endswith("lora_down.weight") and key in two]
    moved = max((float((two[key].float() - one[key].float()).abs().max()) for key in down), default=0.0)
    if not 0 < moved < 5e-3:  # a fresh start differs by about 1/sqrt(fan_in), 0.01-0.02
        problems.append(f"stage2: its lora_down tensors moved by {moved} from stage 1's, expected a small change")
    return problems


def run_family(family: str, work: Path) -> tuple[list[StageResult], Any, list[str]]:
    """Train both stages of one family's check; its results, project file and, once trained, its problems."""
    from onetwo.project.file import load_project

    if family == "anima":
        from tests.sdscripts import SD_SCRIPTS
        from tests.tiny_anima import build_tiny_anima

        tiny = build_tiny_anima(Path(os.environ.get("ONETWO_TEST_ANIMA_DIR") or REPO / ".cache" / "tiny-anima"),
                                SD_SCRIPTS)
        project_file = write_anima_project(work / "anima", tiny.dit, tiny.text_encoder, tiny.vae)
    else:
        from tests.tiny_model import build_tiny_sd

        tiny_sd = build_tiny_sd(Path(os.environ.get("ONETWO_TEST_MODEL_DIR") or REPO / ".cache" / "tiny-sd"))
        project_file = write_project(work, tiny_sd.model_dir, tiny_sd.tokenizer_cache_dir)
    results = []
    for stage in STAGES:
        result = run_stage(project_file, stage, project_file.parent / "probe" / stage)
        results.append(result)
        if result.returncode != 0:
            return results, project_file, []
    project = load_project(project_file)
    if family == "anima":
        return results, project_file, check_anima_outputs(project)
    text_layers = json.loads((tiny_sd.model_dir / "text_encoder" / "config.json").read_text())["num_hidden_layers"]
    return results, project_file, check_outputs(project, text_layers)


def main(argv: list[str]) -> int:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("--work", type=Path, default=REPO / "build" / "gpu-check", help="where the run's files go")
    options.add_argument("--family", choices=(*FAMILIES, "all"), default="all", help="which model family to check")
    args = options.parse_args(argv)
    why = cuda_problem()
    if why:
        print(f"gpu-check: {why}", file=sys.stderr)
        return 2

    import torch

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    families = FAMILIES if args.family == "all" else (args.family,)
    runs = {family: run_family(family, work) for family in families}
    print(f"\ngpu-check on {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"attention: {'sdpa' if attention_settings() else 'xformers'}")
    print(f"{'family':<8}{'stage':<8}{'steps':>7}{'s/step':>9}{'peak alloc GiB':>16}{'peak reserved GiB':>19}"
          f"{'wall s':>9}")
    for family, (results, _, _) in runs.items():
        for result in results:
            print(f"{family:<8}{result.stage:<8}{result.steps:>7}{result.seconds_per_step or '-':>9}"
                  f"{result.peak_allocated_gib or '-':>16}{result.peak_reserved_gib or '-':>19}{result.wall_s:>9}")
    (work / "gpu-check.json").write_text(json.dumps(
        {family: [result.__dict__ for result in results] for family, (results, _, _) in runs.items()}, indent=1),
        encoding="utf-8")
    code = 0
    for family, (results, project_file, problems) in runs.items():
        failed = [result.stage for result in results if result.returncode != 0]
        if failed or len(results) < len(STAGES):
            print(f"gpu-check: {family}: {', '.join(failed)} failed; see {project_file.parent / 'build'}/<stage>/"
                  "train.log", file=sys.stderr)
            code = 1
            continue
        for problem in problems:
            print(f"gpu-check: {family}: {problem}", file=sys.stderr)
        print(f"gpu-check: {family}: outputs " + ("FAILED the checks" if problems else "pass the checks"))
        code = code or (1 if problems else 0)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
