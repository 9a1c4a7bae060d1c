"""Shared by the tests that run kohya-ss sd-scripts: where the checkout is, why those tests skip, and two small
programs that run in a subprocess, so that sd-scripts' imports (torch, ~10 s), its sys.path entry and its logging
set-up stay out of the pytest process.

    python tests/sdscripts.py probe REQUEST.json RESULT.json   # load files the way train_network.py does
    python tests/sdscripts.py measure RESULT.json -- CMD ...    # run CMD; record its exit code, wall time, peak RSS
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
THIS_FILE = Path(__file__).resolve()
# What sd-scripts' train_network.py imports (or loads as network_module) before it trains.
MODULES = ("torch", "torchvision", "diffusers", "transformers", "accelerate", "safetensors", "lycoris", "toml",
           "voluptuous")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def sd_scripts_dir() -> Path:
    """The checkout the tests use: $ONETWO_SD_SCRIPTS, else third_party/sd-scripts (as project.config decides)."""
    from_env = os.environ.get("ONETWO_SD_SCRIPTS")
    return (Path(from_env).expanduser() if from_env else REPO / "third_party" / "sd-scripts").resolve()


def skip_reason(sd_scripts: Path) -> str | None:
    if not (sd_scripts / "train_network.py").is_file():
        where = os.path.relpath(sd_scripts, REPO) if sd_scripts.is_relative_to(REPO) else str(sd_scripts)
        return (f"sd-scripts checkout not found at {where} (no train_network.py): run `make setup`, or set "
                "ONETWO_SD_SCRIPTS to a checkout")
    missing = [name for name in MODULES if importlib.util.find_spec(name) is None]
    if missing:
        return f"{', '.join(missing)} not importable by {sys.executable}: run `make setup`"
    return None


# Decided once, at collection: tests/conftest.py's autouse fixture clears ONETWO_SD_SCRIPTS inside each test.
SD_SCRIPTS = sd_scripts_dir()
SKIP_REASON = skip_reason(SD_SCRIPTS)
# A test that carries this skip must also carry @pytest.mark.sdscripts (tests/conftest.py refuses to run otherwise):
# the marker is what `make test-fast` leaves out.
needs_sdscripts = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "needs sd-scripts: `make setup`")
# torch and what is built on it, and sd-scripts' own packages: a test module holding one needs the marker too.
TRAINER_MODULES = frozenset({"torch", "torchvision", "diffusers", "transformers", "accelerate", "lycoris", "xformers",
                             "bitsandbytes", "library", "networks"})


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **OFFLINE, "PYTHONUNBUFFERED": "1", **extra}


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------------------------
# A small project that sd-scripts can train on a CPU: three characters, and the settings a user would put in the
# project file to run there (the shipped templates keep the GPU reference values).

CHARACTERS = {"aoi": (40, 90, 220), "beni": (220, 40, 60), "kiiro": (240, 210, 40)}  # name: hair colour
HAIR = {"aoi": "blue hair", "beni": "red hair", "kiiro": "yellow hair"}
ACCELERATE_CPU = {"cpu": True, "num_processes": 1, "num_machines": 1, "mixed_precision": "no", "dynamo_backend": "no",
                  "num_cpu_threads_per_process": 2}
TRAINING_CPU = {
    "xformers": False, "sdpa": True, "optimizer_type": "AdamW", "mixed_precision": "no",  # no CUDA
    "max_train_epochs": 1,  # wins over max_train_steps in kohya; 6 images at batch 2 = 3 steps
    "max_data_loader_n_workers": 0, "persistent_data_loader_workers": False,
    "cache_latents": True,  # in memory: nothing is written beside the images
    "seed": 1,
    "sample_every_n_epochs": 2,  # never reached in one epoch: no sampling unless a stage asks for it
}
TINY_DATASET = {"resolution": 64, "min_bucket_reso": 64, "max_bucket_reso": 128, "batch_size": 2}


def write_character(folder: Path, name: str, sizes: tuple[tuple[int, int], ...] = ((48, 96), (64, 128))) -> None:
    """Solid portraits in the character's colour with kohya-style .txt tag files."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for index, size in enumerate(sizes):
        image = Image.new("RGB", size, (245, 245, 245))
        ImageDraw.Draw(image).ellipse((size[0] // 6, size[1] // 8, size[0] * 5 // 6, size[1] * 7 // 8),
                                      fill=CHARACTERS[name])
        image.save(folder / f"{name}{index}.png")
        (folder / f"{name}{index}.txt").write_text(f"1girl, {HAIR[name]}, pose{index}", encoding="utf-8")


def write_project(root: Path, data: dict[str, Any], folders: dict[str, str] | None = None) -> Path:
    """Images under root/data (folder names from `folders`, default the names) and root/onetwo.toml."""
    import tomli_w

    folders = folders or {name: name for name in CHARACTERS}
    for name, folder in folders.items():
        if not (root / "data" / folder).is_dir():
            write_character(root / "data" / folder, name)
    base = {
        "project": {"name": "e2e", "base_model": "models/none", "work_dir": "build", "output_dir": "output",
                    "sd_scripts": str(SD_SCRIPTS)},
        "characters": [{"name": name, "images": f"data/{folder}"} for name, folder in folders.items()],
        "composite": {"per_pair": 2, "seed": 0, "workers": 1},
    }
    for key, value in data.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and key in base else value
    file = root / "onetwo.toml"
    file.write_text(tomli_w.dumps(base), encoding="utf-8")
    return file


def cpu_project(root: Path, model_dir: Path | str, tokenizer_cache_dir: Path | str, **sections: Any) -> Path:
    """The end-to-end project: every CPU setting through the project file, as a user without a GPU would write."""
    return write_project(root, {
        "project": {"base_model": str(model_dir)},
        "composite": {"width": 128, "height": 128},  # two 64x128 halves; at resolution 64 the bucket is 64x64
        "samples": {"steps": 2},
        "accelerate": ACCELERATE_CPU,
        "training": {**TRAINING_CPU, "tokenizer_cache_dir": str(tokenizer_cache_dir)},
        "stage1": {"dataset": TINY_DATASET},
        "stage2": {"seed": 2, "dataset": TINY_DATASET},
        **sections,
    })


def run_probe(request: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Run `probe` in a subprocess with this Python; fail the test with sd-scripts' output if it crashes."""
    folder.mkdir(parents=True, exist_ok=True)
    request_file, result_file = folder / "probe-request.json", folder / "probe-result.json"
    request_file.write_text(json.dumps({"sd_scripts": str(SD_SCRIPTS), **request}), encoding="utf-8")
    done = subprocess.run([sys.executable, str(THIS_FILE), "probe", str(request_file), str(result_file)],
                          cwd=folder, env=child_env(), capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not result_file.is_file():
        pytest.fail(f"the sd-scripts probe failed (exit code {done.returncode}):\n{tail(done.stdout + done.stderr)}")
    return json.loads(result_file.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------------
# The probe: runs inside sd-scripts (its folder on sys.path), never inside pytest.


def flatten(doc: dict[str, Any]) -> dict[str, Any]:
    """What train_util.read_config_from_file does with a --config_file TOML: section names are dropped."""
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def to_argv(action: argparse.Action, value: Any) -> list[str]:
    """The command-line form of one TOML value, for the action that owns its key."""
    option = next(name for name in action.option_strings if name.startswith("--"))
    if isinstance(action, argparse._StoreTrueAction):
        return [option] if value is True else []
    if isinstance(action, argparse._StoreFalseAction):
        return [option] if value is False else []
    if action.nargs in ("*", "+") or isinstance(action.nargs, int):
        return [option, *(str(item) for item in (value if isinstance(value, list) else [value]))]
    return [option, str(value)]


def same(parsed: Any, value: Any) -> bool:
    """Does the TOML value equal what the parser's own type functions make of its text, in type too?"""
    if isinstance(parsed, list):
        if not isinstance(value, list):
            # train_network.py takes a scalar number for text_encoder_lr; a scalar string it would iterate by letter
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return False
            value = [value]
        return len(parsed) == len(value) and all(same(p, v) for p, v in zip(parsed, value, strict=True))
    if isinstance(parsed, bool) or isinstance(value, bool):
        return type(parsed) is type(value) and parsed == value
    if isinstance(parsed, str):
        return isinstance(value, str) and parsed == value
    if isinstance(parsed, int):
        return isinstance(value, int) and parsed == value
    if isinstance(parsed, float):
        return isinstance(value, (int, float)) and parsed == float(value)
    if isinstance(parsed, os.PathLike):
        return isinstance(value, str) and os.fspath(parsed) == value
    return parsed == value


def parse_quietly(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace | None, str]:
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            return parser.parse_args(argv), ""
        except SystemExit:
            return None, errors.getvalue().strip().splitlines()[-1]


def typed_problems(parser: argparse.ArgumentParser, flat: dict[str, Any]) -> list[str]:
    """Every key must be an argument of the training script, and every value must survive the parser's type,
    choices and nargs unchanged: kohya itself never pushes --config_file values through them."""
    actions = {action.dest: action for action in parser._actions}
    problems = []
    for key, value in flat.items():
        action = actions.get(key)
        if action is None:
            # Any metadata_<x> string in the config file reaches modelspec.<x> (read_config_from_file puts every
            # key on the namespace): the one kind of key allowed that the parser does not know.
            if not (key.startswith("metadata_") and isinstance(value, str)):
                problems.append(f"{key}: not an argument of {parser.prog}")
            continue
        argv = to_argv(action, value)
        parsed, error = parse_quietly(parser, argv)
        if parsed is None:
            problems.append(f"{key} = {value!r}: {parser.prog}'s parser refuses {' '.join(argv)}: {error}")
        elif not same(getattr(parsed, key), value):
            problems.append(f"{key} = {value!r}: the parser reads {' '.join(argv)} as {getattr(parsed, key)!r}")
    # All together too, as one command line.
    together = [part for key, value in flat.items() if key in actions for part in to_argv(actions[key], value)]
    if parse_quietly(parser, together)[0] is None:
        problems.append(f"the whole file as one command line is refused: {parse_quietly(parser, together)[1]}")
    return problems


def kohya_load(script: Any, train_util: Any, config: str | None, dataset: str | None) -> argparse.Namespace:
    """The script's __main__: parse sys.argv, then read_config_from_file (which parses sys.argv again)."""
    sys.argv = [f"{script.__name__}.py"]
    if config:
        sys.argv += ["--config_file", config]
    if dataset:
        sys.argv += ["--dataset_config", dataset]
    parser = script.setup_parser()
    args = parser.parse_args()
    train_util.verify_command_line_training_args(args)
    return train_util.read_config_from_file(args, parser)


def summarise_group(group: Any, sizes: list[list[int]]) -> list[dict[str, Any]]:
    """What kohya made of a dataset TOML; `select`: the bucket its BucketManager picks for each of `sizes`."""
    datasets = []
    for dataset in group.datasets:
        subsets = [{"image_dir": subset.image_dir, "img_count": subset.img_count, "num_repeats": subset.num_repeats,
                    "class_tokens": subset.class_tokens, "keep_tokens": subset.keep_tokens,
                    "shuffle_caption": subset.shuffle_caption, "flip_aug": subset.flip_aug,
                    "caption_extension": subset.caption_extension, "is_reg": subset.is_reg}
                   for subset in dataset.subsets]
        images = {info.absolute_path: {"caption": info.caption, "size": list(info.image_size),
                                       "bucket": list(info.bucket_reso), "num_repeats": info.num_repeats}
                  for info in dataset.image_data.values()}
        datasets.append({"resolution": [dataset.width, dataset.height], "batch_size": dataset.batch_size,
                         "enable_bucket": dataset.enable_bucket, "min_bucket_reso": dataset.min_bucket_reso,
                         "max_bucket_reso": dataset.max_bucket_reso, "num_train_images": dataset.num_train_images,
                         "batches": len(dataset), "num_reg_images": dataset.num_reg_images,
                         "subsets": subsets, "images": images,
                         "select": {f"{w}x{h}": list(dataset.bucket_manager.select_bucket(w, h)[0]) for w, h in sizes}})
    return datasets


class _NoTokens:
    """A tokenizer stand-in: the items' pixels and masks do not depend on the captions' token ids."""

    def tokenize(self, caption: str) -> list[Any]:
        import torch

        return [torch.zeros((1, 77), dtype=torch.long)]


def dataset_items(group: Any, folder: Path) -> dict[str, dict[str, str]]:
    """Every training item as `__getitem__` gives it (no latent cache): per image, its `images` tensor and its
    `alpha_masks` row saved as .npy files in `folder`."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    found: dict[str, dict[str, str]] = {}
    for dataset_index, dataset in enumerate(group.datasets):
        dataset.debug_dataset = True  # so each example names its image keys
        dataset.tokenize_strategy = _NoTokens()
        for index in range(len(dataset)):
            example = dataset[index]
            for row, key in enumerate(example["image_keys"]):
                path = dataset.image_data[key].absolute_path
                stem = f"{dataset_index}-{len(found)}"
                np.save(folder / f"{stem}-image.npy", example["images"][row].numpy())
                masks = example["alpha_masks"]
                if masks is not None:
                    np.save(folder / f"{stem}-alpha.npy", masks[row].numpy())
                found[path] = {"image": str(folder / f"{stem}-image.npy"),
                               "alpha": str(folder / f"{stem}-alpha.npy") if masks is not None else ""}
    return found


def probe_job(job: dict[str, Any], modules: dict[str, Any]) -> dict[str, Any]:
    """One job: a training TOML, a dataset TOML and/or a sample-prompts file, each read by sd-scripts' own code
    (the training script is train_network, or the job's "script", e.g. sdxl_train_network)."""
    toml, train_util, config_util = modules["toml"], modules["train_util"], modules["config_util"]
    script = importlib.import_module(job.get("script", "train_network"))
    result: dict[str, Any] = {"config_problems": [], "dataset_problems": []}
    problems = result["config_problems"]
    try:
        args = kohya_load(script, train_util, job.get("config"), job.get("dataset"))
    except BaseException as exc:  # SystemExit included: report it as the problem it is
        problems.append(f"{script.__name__}.py cannot load {job.get('config')}: {exc!r}")
        return result
    if job.get("config"):
        with open(job["config"], encoding="utf-8") as handle:
            flat = flatten(toml.load(handle))  # the toml package, as read_config_from_file uses
        result["config"] = flat
        problems += typed_problems(script.setup_parser(), flat)
        for key, value in flat.items():
            if getattr(args, key, None) != value:
                problems.append(f"{key}: read_config_from_file gives {getattr(args, key, None)!r}, the file {value!r}")
    if job.get("dataset"):
        try:
            train_util.prepare_dataset_args(args, True)  # what NetworkTrainer.train does first
            user_config = config_util.load_user_config(job["dataset"])
            result["dataset"] = user_config
            sanitizers = {"dreambooth": config_util.ConfigSanitizer(True, False, False, True),
                          "train_network": config_util.ConfigSanitizer(True, True, args.masked_loss, True)}
            blueprints = {name: config_util.BlueprintGenerator(sanitizer).generate(user_config, args)
                          for name, sanitizer in sanitizers.items()}
            if job.get("images"):
                group, _ = config_util.generate_dataset_group_by_blueprint(blueprints["train_network"].dataset_group)
                result["datasets"] = summarise_group(group, job.get("select", []))
                if job.get("items"):
                    result["items"] = dataset_items(group, Path(job["items"]))
        except BaseException as exc:
            result["dataset_problems"].append(f"sd-scripts rejects {job['dataset']}: {type(exc).__name__}: {exc}")
    if job.get("prompts"):
        with open(job["prompts"], encoding="utf-8") as handle:
            result["prompt_lines"] = [line.rstrip("\n") for line in handle]
        result["prompts"] = train_util.load_prompts(job["prompts"])
    return result


def probe(request: dict[str, Any]) -> dict[str, Any]:
    sys.path[:] = [str(Path(request["sd_scripts"]).resolve())] + [p for p in sys.path if Path(p or ".").resolve()
                                                                  != THIS_FILE.parent]
    import toml
    from library import config_util, train_util

    modules = {"toml": toml, "train_util": train_util, "config_util": config_util}
    return {name: probe_job(job, modules) for name, job in request["jobs"].items()}


def measure(result_file: Path, argv: list[str]) -> int:
    """Run argv (its output goes where ours goes); RUSAGE_CHILDREN covers its whole waited-for process tree."""
    import resource

    start = time.monotonic()
    code = subprocess.call(argv)
    wall = time.monotonic() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result_file.write_text(json.dumps({"returncode": code, "wall_s": round(wall, 1),
                                       "peak_rss_gib": round(peak_kib / 2**20, 2)}), encoding="utf-8")
    return code


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "probe":
        result = probe(json.loads(Path(argv[1]).read_text(encoding="utf-8")))
        Path(argv[2]).write_text(json.dumps(result, default=str), encoding="utf-8")
        return 0
    if len(argv) > 3 and argv[0] == "measure" and argv[2] == "--":
        return measure(Path(argv[1]), argv[3:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# ---------------------------------------------------------------------------------------------------------------
# The end-to-end tests run the real CLI as a user does, each step measured.

# A stage takes 1-4 minutes on 2 idle cores; on a busy machine sampling alone has taken over 20.
STEP_TIMEOUT_S = 3600


@dataclass(frozen=True)
class Step:
    argv: tuple[str, ...]
    returncode: int
    output: str
    wall_s: float
    peak_rss_gib: float


def run_onetwo(root: Path, project_file: Path, *argv: str, env: dict[str, str] | None = None) -> Step:
    """`python -m onetwo ...` in a subprocess, its output captured, its wall time and peak RSS measured."""
    measured = root / f"measure-{hashlib.sha256(' '.join(argv).encode()).hexdigest()[:12]}.json"
    command = [sys.executable, "-m", "onetwo", "--project", str(project_file), *argv, "--no-progress"]
    env = child_env(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                    **(env or {}))
    done = subprocess.run([sys.executable, str(THIS_FILE), "measure", str(measured), "--", *command], cwd=root,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=STEP_TIMEOUT_S)
    stats = json.loads(measured.read_text(encoding="utf-8")) if measured.is_file() else {}
    return Step(tuple(argv), done.returncode, done.stdout, stats.get("wall_s", 0.0), stats.get("peak_rss_gib", 0.0))


def report_resources(request: Any, root: Path, steps: dict[str, Step], label: str) -> None:
    """Each step's wall time and peak RSS into root/e2e-resources.json and onto the terminal, past pytest's capture:
    the figures the CI log and the docs quote."""
    report = {name: {"wall_s": step.wall_s, "peak_rss_gib": step.peak_rss_gib} for name, step in steps.items()}
    (root / "e2e-resources.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for name, values in report.items():
                reporter.write_line(f"{label} {name}: {values['wall_s']} s, peak RSS {values['peak_rss_gib']} GiB")


def need(trained: Any, *names: str) -> None:
    """Fail the test when a step of the end-to-end run it needs did not run or did not succeed."""
    for name in names:
        step = trained.steps.get(name)
        if step is None:
            pytest.fail(f"{name} did not run: an earlier step failed")
        if step.returncode != 0:
            pytest.fail(f"onetwo {' '.join(step.argv)} exited with {step.returncode}:\n{tail(step.output, 80)}")


def lora(trained: Any, stage: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors and metadata of the LoRA file a stage of the end-to-end run wrote."""
    from safetensors import safe_open

    with safe_open(str(trained.project.lora_file(stage)), framework="np") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata()  # noqa: SIM118
