"""Write onetwo/kohya/gui_fields.py: the fields of the kohya_ss GUI's LoRA configuration JSON and the values its
dropdowns list, read from a bmaltais/kohya_ss checkout's source (no import: the GUI needs gradio).

    python scripts/dump_kohya_gui_fields.py /path/to/kohya_ss [onetwo/kohya/gui_fields.py]

The fields are the parameters of kohya_gui/lora_gui.py's save_configuration (what "Save" writes and "Load" reads);
the choices are the literal `choices` of each gr.Dropdown / gr.Radio of that name in lora_gui.py and kohya_gui/
class_*.py, with the LoRA tab's own overrides (e.g. SourceModel(save_model_as_choices=[...])). Re-run it, and the
tests, to follow a newer GUI.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "onetwo" / "kohya" / "gui_fields.py"
SKIPPED_PARAMETERS = ("save_as_bool", "file_path")
COMPONENTS = ("Dropdown", "Radio")


def save_configuration_fields(tree: ast.Module) -> list[str]:
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef)
                    and node.name == "save_configuration")
    return [arg.arg for arg in function.args.args if arg.arg not in SKIPPED_PARAMETERS]


def module_constants(tree: ast.Module) -> dict[str, Any]:
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return constants


def parameter_defaults(tree: ast.Module) -> dict[str, dict[str, Any]]:
    """{class name: {__init__ parameter: literal default}}: where a component's choices come from a parameter."""
    found: dict[str, dict[str, Any]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    args = item.args.args[len(item.args.args) - len(item.args.defaults):]
                    for arg, default in zip(args, item.args.defaults, strict=True):
                        try:
                            found.setdefault(node.name, {})[arg.arg] = ast.literal_eval(default)
                        except ValueError:
                            continue
    return found


def call_overrides(tree: ast.Module) -> dict[str, dict[str, Any]]:
    """{class name: {keyword: literal}} of the LoRA tab's calls, e.g. SourceModel(save_model_as_choices=[...])."""
    found: dict[str, dict[str, Any]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            for keyword in node.keywords:
                try:
                    found.setdefault(node.func.id, {})[keyword.arg or ""] = ast.literal_eval(keyword.value)
                except ValueError:
                    continue
    return found


def components(tree: ast.Module, constants: dict[str, Any], defaults: dict[str, dict[str, Any]],
               overrides: dict[str, dict[str, Any]]) -> dict[str, tuple[list[Any], bool]]:
    """{component name: (choices, allow_custom_value)} of every gr.Dropdown/gr.Radio with choices we can read."""
    found: dict[str, tuple[list[Any], bool]] = {}
    classes = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)] or [tree]
    for owner in classes:
        owner_name = getattr(owner, "name", "")
        scope = {**constants, **defaults.get(owner_name, {}), **overrides.get(owner_name, {})}
        for node in ast.walk(owner):
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.value, ast.Call)):
                continue
            func = node.value.func
            if not (isinstance(func, ast.Attribute) and func.attr in COMPONENTS):
                continue
            target = node.targets[0]
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
            keywords = {keyword.arg: keyword.value for keyword in node.value.keywords}
            source = keywords.get("choices") or (node.value.args[0] if node.value.args else None)
            if name is None or source is None:
                continue
            try:
                choices = ast.literal_eval(source)
            except ValueError:
                choices = scope.get(source.id) if isinstance(source, ast.Name) else None
            if isinstance(choices, list) and name not in found:
                custom = keywords.get("allow_custom_value")
                found[name] = (choices, isinstance(custom, ast.Constant) and custom.value is True)
    return found


def render(commit: str, fields: list[str], choices: dict[str, tuple[list[Any], bool]]) -> str:
    lines = [
        f'"""Generated from bmaltais/kohya_ss commit {commit}',
        "(https://github.com/bmaltais/kohya_ss, the kohya_ss GUI).",
        "",
        "The kohya_ss GUI's LoRA configuration JSON, written by scripts/dump_kohya_gui_fields.py: do not edit by hand.",
        "GUI_FIELDS: the keys of a LoRA config (kohya_gui/lora_gui.py save_configuration / open_configuration).",
        "GUI_CHOICES: the values each dropdown or radio of that name lists; OPEN_CHOICES: the dropdowns that also",
        "take a typed value (allow_custom_value).",
        '"""',
        "",
        f'KOHYA_SS_COMMIT = "{commit}"',
        "",
        "GUI_FIELDS: tuple[str, ...] = (",
        *(f'    "{field}",' for field in fields),
        ")",
        "",
        "GUI_CHOICES: dict[str, tuple[str | int, ...]] = {",
    ]
    for name in sorted(choices):
        values = ", ".join(repr(value).replace("'", '"') for value in choices[name][0])
        line = f'    "{name}": ({values}{"," if len(choices[name][0]) == 1 else ""}),'
        if len(line) <= 120:
            lines.append(line)
        else:
            lines.append(f'    "{name}": (')
            lines += [f"        {repr(value).replace(chr(39), chr(34))}," for value in choices[name][0]]
            lines.append("    ),")
    lines += ["}", "", "OPEN_CHOICES: frozenset[str] = frozenset({"]
    lines += [f'    "{name}",' for name in sorted(name for name, (_, custom) in choices.items() if custom)]
    lines += ["})", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    lora = ast.parse((root / "kohya_gui" / "lora_gui.py").read_text(encoding="utf-8"))
    fields = save_configuration_fields(lora)
    overrides = call_overrides(lora)
    found: dict[str, tuple[list[Any], bool]] = {}
    for path in [root / "kohya_gui" / "lora_gui.py", *sorted((root / "kohya_gui").glob("class_*.py"))]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name, value in components(tree, module_constants(tree), parameter_defaults(tree), overrides).items():
            found.setdefault(name, value)
    choices = {name: value for name, value in found.items() if name in fields}
    out.write_text(render(commit, fields, choices), encoding="utf-8")
    print(f"{out}: {len(fields)} fields, {len(choices)} with choices (kohya_ss {commit})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
