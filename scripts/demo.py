"""`make demo`: the whole 1to2 method on the CPU, with a tiny random SD1 model, through the real onetwo CLI.

    python scripts/demo.py [examples/trio/onetwo.toml]

Builds the model into <project folder>/models/tiny-sd (once, ~35 s), then runs `onetwo preview`,
`onetwo train stage1` and `onetwo train stage2`, with the CPU settings given the way a user gives them
(`--accelerate KEY=VALUE`, `--set KEY=VALUE`), and prints where every output is. The LoRAs are noise: this shows
the pipeline working, not a result. A few minutes on 2 cores, ~9 GB of memory.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from onetwo.errors import OnetwoError  # noqa: E402
from onetwo.project.file import load_project  # noqa: E402 - after the sys.path entry, so a plain checkout works

NEEDED = ("torch", "torchvision", "diffusers", "transformers", "accelerate", "lycoris", "safetensors")
FIX = "make setup"
# The CPU has no CUDA: no xformers, fp16 or 8-bit optimizer. Sampling is off (the prompts ask for 28 steps each).
ACCELERATE = {"cpu": "true", "num_processes": "1", "num_machines": "1", "mixed_precision": "no",
              "dynamo_backend": "no", "num_cpu_threads_per_process": str(os.cpu_count() or 1)}
TRAINING = ["xformers=false", "sdpa=true", "optimizer_type=AdamW", "mixed_precision=no", "max_train_epochs=1",
            "max_data_loader_n_workers=0", "persistent_data_loader_workers=false", "cache_latents=true",
            "sample_every_n_epochs=2",  # beyond the single epoch: no sample images
            "dataset.resolution=64", "dataset.min_bucket_reso=64", "dataset.max_bucket_reso=128",
            "subset.num_repeats=1"]  # one pass over each image, whatever the folder's "5_" prefix says
BATCH = {"stage1": 16, "stage2": 12}


def missing_trainer(project_file: Path) -> str | None:
    """Why training cannot run here, or None."""
    project = load_project(project_file)
    if not project.train_script.is_file():
        return f"sd-scripts is not at {project.sd_scripts} ({project.train_script.name} is missing)"
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed for {sys.executable}"
    return None


def onetwo(project_file: Path, *argv: str) -> None:
    command = [sys.executable, "-m", "onetwo", "--project", str(project_file), *argv]
    print(f"\n==> onetwo {shlex.join(argv)}", flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.monotonic()
    code = subprocess.call(command, env=env)
    if code != 0:
        print(f"\ndemo: `{shlex.join(command)}` failed with exit code {code}", file=sys.stderr)
        sys.exit(code)
    print(f"==> done in {time.monotonic() - start:.0f} s", flush=True)


def main(argv: list[str]) -> int:
    project_file = Path(argv[0] if argv else "examples/trio/onetwo.toml").resolve()
    try:
        why = missing_trainer(project_file)
    except OnetwoError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    if why:
        print(f"demo: {why}. Install the training side with:\n\n    {FIX}\n", file=sys.stderr)
        return 2

    from tests.tiny_model import build_tiny_sd

    start = time.monotonic()
    print("==> building the tiny random SD1 model (once)", flush=True)
    tiny = build_tiny_sd(project_file.parent / "models" / "tiny-sd")
    project = load_project(project_file)
    sets = [f"tokenizer_cache_dir={tiny.tokenizer_cache_dir}"]
    if project.base_model != tiny.model_dir:  # base_model may name the build folder rather than its model/
        sets.append(f"pretrained_model_name_or_path={tiny.model_dir}")
    options = [part for key, value in ACCELERATE.items() for part in ("--accelerate", f"{key}={value}")]
    onetwo(project_file, "preview")
    for stage in ("stage1", "stage2"):
        items = [*TRAINING, *sets, f"dataset.batch_size={BATCH[stage]}"]
        onetwo(project_file, "train", stage, *options, *(part for item in items for part in ("--set", item)))

    samples = sorted((project.output_dir / "sample").glob("*.png"))
    rows = [("composites", project.composite_dir), ("contact sheet", project.work_dir / "preview.png")]
    for stage in ("stage1", "stage2"):
        folder = project.stage_dir(stage)
        rows += [(f"{stage} LoRA", project.lora_file(stage)), (f"{stage} kohya config", folder / "config.toml"),
                 (f"{stage} kohya dataset", folder / "dataset.toml"),
                 (f"{stage} sample prompts", folder / "sample_prompts.txt"), (f"{stage} log", folder / "train.log")]
    if samples:
        rows.append((f"sample images ({len(samples)})", project.output_dir / "sample"))
    print(f"\nDemo finished in {time.monotonic() - start:.0f} s. Outputs:")
    for label, path in rows:
        print(f"  {label:<22} {os.path.relpath(path)}{'' if path.exists() else '  (missing!)'}")
    print(f"\nNext: `onetwo inspect {os.path.relpath(project.lora_file('stage2'))}` shows where the stage-2 LoRA "
          "came from; train on your own characters with a real SD1.x model (README, 'Your own characters').")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
