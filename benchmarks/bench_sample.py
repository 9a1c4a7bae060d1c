"""`make bench` (third part): `onetwo sample` against one sd-scripts sampling run per epoch file, for the same images,
side by side in one run, on the tiny SD1 model (tests/tiny_model.py) on the CPU.

Both draw FILES epoch files x 9 prompts (three characters: each alone, each ordered pair) x SEEDS seeds at 64 px and
1 step. Ten files: a quarter of what the shipped templates' 40 epochs with save_every_n_epochs = 1 leave. `onetwo
sample` loads the base model once and merges each LoRA in turn; the baseline is what a user without onetwo does:
per file, `train_network.py` with that file as `network_weights`, `sample_at_first` and zero epochs (a launch,
imports, a model load and the network built each time). The epoch files are LoHa files of the real SD1 module set
with random factors (no training needed); the report gives both wall times, each sd-scripts run's, the ratio, and
how far apart the two runs' images are.

Needs torch and the sd-scripts checkout (`make setup`); without them it says so and exits.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from tests.sdscripts import (  # noqa: E402
    ACCELERATE_CPU,
    CHARACTERS,
    SD_SCRIPTS,
    SKIP_REASON,
    TINY_DATASET,
    child_env,
    cpu_project,
)

RESULTS = ROOT / "benchmarks" / "results"
FILES = 10
SEEDS = 1
NAME = "e2e-stage1"
# The zero-epoch run: load the LoRA, sample before the first step, train nothing.
SAMPLING_ONLY = {"sample_at_first": True, "max_train_epochs": 0, "cache_latents": False,
                 "cache_latents_to_disk": False, "save_every_n_epochs": None, "sample_every_n_epochs": None}


def write_epoch_files(folder: Path) -> list[Path]:
    """FILES LoHa files of SD1's 302 modules, dim 8, alpha 1, random factors (std 0.15: each merged weight moves by
    about 5e-4, estimated from that spread; at std 0.3 some images came out different each way)."""
    import torch
    from safetensors.torch import save_file

    from tests.sd1_lora import expected_shapes

    folder.mkdir(parents=True, exist_ok=True)
    shapes = expected_shapes(dim=8)
    names = [f"{NAME}-{epoch:06d}" for epoch in range(1, FILES)] + [NAME]
    files = []
    for index, name in enumerate(names):
        generator = torch.Generator().manual_seed(index)
        tensors = {key: (torch.tensor(1.0) if key.endswith(".alpha") else
                         torch.randn(shape, generator=generator) * 0.15).half() for key, shape in shapes.items()}
        files.append(folder / f"{name}.safetensors")
        save_file(tensors, str(files[-1]), {"ss_network_module": "lycoris.kohya", "ss_network_dim": "8",
                                            "ss_network_alpha": "1", "ss_epoch": str(index + 1)})
    return files


def onetwo(root: Path, *argv: str) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "onetwo", "--project", str(root / "onetwo.toml"), *argv],
                          cwd=root, env=child_env(), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"onetwo {' '.join(argv)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return time.monotonic() - started, done.stdout + done.stderr


def baseline(root: Path, files: list[Path], prompt_lines: list[str]) -> tuple[float, list[float], Path]:
    """One sd-scripts sampling run per epoch file, the images in one folder per file; the total and each run's
    wall time."""
    from onetwo.kohya.render import read_toml, set_train_key, write_toml
    from onetwo.trainer.launch import command

    config = read_toml(root / "build" / "stage1" / "config.toml")
    dataset = read_toml(root / "build" / "stage1" / "dataset.toml")
    first = dataset["datasets"][0]
    dataset = {**dataset, "datasets": [{**first, "batch_size": 1, "subsets": first["subsets"][:1]}]}
    out = root / "baseline"
    out.mkdir()
    (out / "prompts.txt").write_text("".join(line + "\n" for line in prompt_lines), encoding="utf-8")
    write_toml(out / "dataset.toml", dataset, "bench")
    started, runs = time.monotonic(), []
    for file in files:
        run_started = time.monotonic()
        run_config = json.loads(json.dumps(config))
        for key, value in {**SAMPLING_ONLY, "network_weights": str(file), "output_dir": str(out / file.stem),
                           "output_name": "bench", "sample_prompts": str(out / "prompts.txt")}.items():
            if value is None:
                for section in run_config.values():
                    if isinstance(section, dict):
                        section.pop(key, None)
            else:
                set_train_key(run_config, key, value)
        write_toml(out / f"{file.stem}.toml", run_config, "bench")
        argv = command(SD_SCRIPTS / "train_network.py", out / f"{file.stem}.toml", out / "dataset.toml",
                       ACCELERATE_CPU, (), sys.executable)
        done = subprocess.run(argv, cwd=root, env=child_env(), capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"the sd-scripts sampling run of {file.name} failed:\n{done.stdout[-3000:]}"
                             f"{done.stderr[-3000:]}")
        runs.append(round(time.monotonic() - run_started, 1))
    return time.monotonic() - started, runs, out


def compare(root: Path, out: Path, files: list[Path], prompts: int) -> dict[str, object]:
    """Mean absolute difference (0-255) between the two runs' images of each (file, prompt, seed). An image drawn
    all one colour (the tiny random model's NaN, from either sampler) is counted apart, not compared."""
    import numpy as np
    from PIL import Image

    differences, blank, apart = [], {"baseline": [], "onetwo": []}, []
    for file in files:
        for index in range(prompts):
            for seed in range(1, 1 + SEEDS):
                line = index * SEEDS + (seed - 1)
                (theirs,) = (out / file.stem / "sample").glob(f"bench_e000000_{line:02d}_*_{seed}.png")
                ours = root / "build" / "samples" / "stage1" / f"{file.stem}__p{index:02d}__s{seed}.png"
                with Image.open(theirs) as a, Image.open(ours) as b:
                    pixels = {"baseline": np.asarray(a, dtype=np.float32), "onetwo": np.asarray(b, dtype=np.float32)}
                where = f"{file.stem} prompt {index} seed {seed}"
                flat = [name for name, image in pixels.items() if image.std() == 0]
                for name in flat:
                    blank[name].append(where)
                if flat:
                    continue
                differences.append(float(np.abs(pixels["baseline"] - pixels["onetwo"]).mean()))
                if differences[-1] > 1:
                    apart.append(f"{where}: {differences[-1]:.1f}")
    return {"compared": len(differences), "blank_in_baseline": blank["baseline"], "blank_in_onetwo": blank["onetwo"],
            "more_than_a_level_apart": apart, "mean": round(sum(differences) / len(differences), 4),
            "max": round(max(differences), 4)}


def main() -> None:
    if SKIP_REASON:
        print(f"bench_sample: skipped: {SKIP_REASON}")
        return
    from onetwo.sample.plan import parse_prompt_lines
    from tests.tiny_model import build_tiny_sd

    tiny = build_tiny_sd(Path(os.environ.get("ONETWO_TEST_MODEL_DIR") or ROOT / ".cache" / "tiny-sd"))
    root = Path(tempfile.mkdtemp(prefix="onetwo-bench-sample-"))
    try:
        cpu_project(root, tiny.model_dir, tiny.tokenizer_cache_dir, stage1={"dataset": TINY_DATASET})
        onetwo(root, "render", "stage1", "--no-progress")
        files = write_epoch_files(root / "output")
        lines = parse_prompt_lines((root / "build" / "stage1" / "sample_prompts.txt").read_text(encoding="utf-8"))
        prompt_lines = [f"{line.prompt} --n {line.negative} --w 64 --h 64 --s 1 --l {line.scale:g} --d {seed}"
                        for line in lines for seed in range(1, 1 + SEEDS)]
        load = os.getloadavg()[0]
        ours, output = onetwo(root, "sample", "stage1", "--seeds", str(SEEDS), "--steps", "1", "--width", "64",
                              "--height", "64", "--no-progress")
        theirs, runs, out = baseline(root, files, prompt_lines)
        again, _ = onetwo(root, "sample", "stage1", "--seeds", str(SEEDS), "--steps", "1", "--width", "64",
                          "--height", "64", "--no-progress")
        loaded = [line for line in output.splitlines() if "base model loaded in" in line]
        result = {
            "files": FILES, "prompts": len(lines), "seeds": SEEDS, "images": FILES * len(lines) * SEEDS,
            "onetwo_sample_s": round(ours, 1), "sd_scripts_runs_s": round(theirs, 1),
            "speedup": round(theirs / ours, 2), "sd_scripts_run_s": runs, "rerun_s": round(again, 1),
            "model_load": loaded,
            "image_difference": compare(root, out, files, len(lines)),
            "load_average_at_start": round(load, 2), "load_average_at_end": round(os.getloadavg()[0], 2),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "characters": len(CHARACTERS)},
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sample.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"bench_sample: {result['images']} images ({FILES} epoch files x {result['prompts']} prompts x {SEEDS} "
          f"seed), 64 px, 1 step, CPU fp32")
    note = f"  ({loaded[0].strip()})" if loaded else ""
    print(f"  onetwo sample                      {result['onetwo_sample_s']:7.1f} s{note}")
    print(f"  one sd-scripts run per epoch file  {result['sd_scripts_runs_s']:7.1f} s  (runs of {min(runs)} to "
          f"{max(runs)} s)")
    difference = result["image_difference"]
    print(f"  speed-up {result['speedup']}x; rerun {result['rerun_s']} s; of {difference['compared']} images compared "
          f"the mean difference is {difference['mean']} of 255 (max {difference['max']}); blank (NaN) in the "
          f"baseline {len(difference['blank_in_baseline'])}, in onetwo's {len(difference['blank_in_onetwo'])}")
    print(f"  → {RESULTS / 'sample.json'}")


if __name__ == "__main__":
    main()
