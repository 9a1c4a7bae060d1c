"""Which project file a command means: `-p FILE` or `-p FOLDER`, else $ONETWO_PROJECT, else the nearest onetwo.toml
in the current folder or a folder above it (as git finds its repository)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from onetwo.errors import OnetwoError
from onetwo.project.strict import did_you_mean

PROJECT_FILE = "onetwo.toml"


def _named(path: Path, source: str) -> Path:
    if path.is_dir():
        inside = path / PROJECT_FILE
        if not inside.is_file():
            raise OnetwoError(f"{path.resolve()}: a folder with no {PROJECT_FILE} ({source}); pass the project file "
                              f"itself, or write one with `onetwo init {path}`")
        return inside
    return path


def find_project(given: str | None, env: Mapping[str, str], cwd: Path) -> Path:
    if given:
        return _named(Path(given).expanduser(), "from -p/--project")
    if env.get("ONETWO_PROJECT"):
        return _named(Path(env["ONETWO_PROJECT"]).expanduser(), "from $ONETWO_PROJECT")
    for folder in (cwd, *cwd.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder / PROJECT_FILE
    raise OnetwoError(f"no {PROJECT_FILE} in {cwd} or any folder above it; pass -p FILE (or a folder holding one), "
                      "set ONETWO_PROJECT, or write one with `onetwo init FOLDER`")


def command_of(argv: Sequence[str], options_with_value: Sequence[str] = ("-p", "--project")) -> str | None:
    """The first argument that is not an option of the root parser (or its value): the subcommand as typed."""
    skip = False
    for item in argv:
        if skip:
            skip = False
        elif item in options_with_value:
            skip = True
        elif not item.startswith("-"):
            return item
    return None


def unknown_command(argv: Sequence[str], commands: Sequence[str]) -> str | None:
    """The error for a subcommand argparse would refuse, with the nearest command (argparse before 3.14 has none)."""
    typed = command_of(argv)
    if typed is None or typed in commands:
        return None
    hint = did_you_mean(typed, commands, cutoff=0.5)
    return f"unknown command {typed!r}{hint}; the commands are {', '.join(commands)}"
