"""Write onetwo/kohya/args.py: the TOML keys that kohya-ss sd-scripts' train_network.py accepts, for validation.

Run with a Python that can import sd-scripts (torch, diffusers, ...), e.g. the project's venv:

    .venv/bin/python scripts/dump_kohya_args.py third_party/sd-scripts [onetwo/kohya/args.py]

The output is committed, so onetwo can check rendered TOML keys and value types without torch. Re-run it whenever the
sd-scripts submodule moves.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "onetwo" / "kohya" / "args.py"
LINE_LENGTH = 120


def action_kind(action: argparse.Action) -> str:
    """flag | str | int | float | list | choice:<a,b,...> (None, which TOML cannot write, is left out of choices)."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "flag"
    if action.choices is not None:
        return "choice:" + ",".join(str(c) for c in action.choices if c is not None)
    if action.nargs in ("*", "+") or isinstance(action.nargs, int):
        return "list"
    name = getattr(action.type, "__name__", "str")
    # int_or_float (lr_warmup_steps, lr_decay_steps): a step count or a ratio; a TOML int is a valid float here.
    return {"int": "int", "float": "float", "int_or_float": "float"}.get(name, "str")


def script_args(sd_scripts: Path, module_name: str) -> dict[str, str]:
    if str(sd_scripts) not in sys.path:
        sys.path.insert(0, str(sd_scripts))
    module = importlib.import_module(module_name)  # needs the sys.path entry above
    parser = module.setup_parser()
    return {a.dest: action_kind(a) for a in parser._actions if a.dest != "help"}


def dataset_keys() -> dict[str, frozenset[str]]:
    from library.config_util import ConfigSanitizer  # sd-scripts is on sys.path by now

    sanitizer = ConfigSanitizer(
        support_dreambooth=True, support_finetuning=False, support_controlnet=False, support_dropout=True
    )

    def names(schema: dict) -> frozenset[str]:
        return frozenset(str(key) for key in schema)  # voluptuous Required("x") prints as x

    dataset_schema = sanitizer.db_dataset_schema
    return {
        "general": names(sanitizer.general_schema),
        "datasets": names(dataset_schema),
        "subsets": names(dataset_schema["subsets"][0]),
    }


def _entry(key: str, value: str) -> list[str]:
    line = f'    "{key}": "{value}",'
    if len(line) <= LINE_LENGTH:
        return [line]
    width = LINE_LENGTH - 10  # 8 spaces and two quotes
    chunks = [value[i : i + width] for i in range(0, len(value), width)]
    return [f'    "{key}": (', *(f'        "{c}"' for c in chunks), "    ),"]


def render(commit: str, args: dict[str, str], sdxl_args: dict[str, str], datasets: dict[str, frozenset[str]],
           anima_args: dict[str, str]) -> str:
    int_choices = sorted(k for k, v in args.items() if v.startswith("choice:") and v[7:].split(",")[0].isdigit())
    lines = [
        f'"""Generated from kohya-ss sd-scripts commit {commit}.',
        "",
        "train_network.py's arguments and the dataset TOML keys, written by scripts/dump_kohya_args.py: do not edit by",
        "hand, re-run it when the submodule moves.",
        "TRAIN_NETWORK_ARGS maps each argparse dest (= a --config_file TOML key) to its kind: flag, str, int, float,",
        'list (nargs) or "choice:a,b,..." (written with str(); None left out). Choices that are ints in TOML:',
        ", ".join(int_choices) + ".",
        "SDXL_ONLY_ARGS: the extra arguments of sdxl_train_network.py, same kinds.",
        "ANIMA_ONLY_ARGS: the extra arguments of anima_train_network.py, same kinds.",
        "DATASET_KEYS: the keys a DreamBooth-style (image_dir) --dataset_config TOML allows at each level.",
        '"""',
        "",
        "TRAIN_NETWORK_ARGS: dict[str, str] = {",
    ]
    for key in sorted(args):
        lines += _entry(key, args[key])
    lines += ["}", "", "# sdxl_train_network.py's arguments that train_network.py does not have.",
              "SDXL_ONLY_ARGS: dict[str, str] = {"]
    for key in sorted(set(sdxl_args) - set(args)):
        lines += _entry(key, sdxl_args[key])
    lines += ["}", "", "# anima_train_network.py's arguments that train_network.py does not have.",
              "ANIMA_ONLY_ARGS: dict[str, str] = {"]
    for key in sorted(set(anima_args) - set(args)):
        lines += _entry(key, anima_args[key])
    lines += ["}", "", "DATASET_KEYS: dict[str, frozenset[str]] = {"]
    for level in ("general", "datasets", "subsets"):
        lines += [f'    "{level}": frozenset(', "        {"]
        lines += [f'            "{key}",' for key in sorted(datasets[level])]
        lines += ["        }", "    ),"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sd_scripts", type=Path, help="the sd-scripts checkout (third_party/sd-scripts)")
    ap.add_argument("out", type=Path, nargs="?", default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    ns = ap.parse_args(argv)
    sd_scripts = ns.sd_scripts.resolve()
    commit = subprocess.run(
        ["git", "-C", str(sd_scripts), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    text = render(commit, script_args(sd_scripts, "train_network"), script_args(sd_scripts, "sdxl_train_network"),
                  dataset_keys(), script_args(sd_scripts, "anima_train_network"))
    tmp = ns.out.with_name(ns.out.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(ns.out)
    print(f"wrote {ns.out} (sd-scripts {commit[:8]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
