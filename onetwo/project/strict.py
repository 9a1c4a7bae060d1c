"""Reading TOML strictly: the one `tomllib` import (tomli before Python 3.11), the one "did you mean" hint, and a
reader of parsed tables that collects every problem with its key path, unknown keys included, so a user sees all of
them at once."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["TableReader", "did_you_mean", "kind_names", "tomllib"]


def did_you_mean(typed: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    """` (did you mean 'x'?)` for the closest known word, or "" when none is close enough."""
    close = difflib.get_close_matches(typed, sorted(known), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


class TableReader:
    """Reads one table strictly: every problem is collected with its key path, unknown keys included."""

    def __init__(self, problems: list[str]):
        self.problems = problems

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def table(self, data: Any, path: str) -> dict[str, Any]:
        if isinstance(data, dict):
            return data
        self.problem(path, f"must be a table ([{path}]), got {type(data).__name__}")
        return {}

    def unknown(self, data: dict[str, Any], path: str, known: set[str]) -> None:
        for key in sorted(set(data) - known):
            prefix = f"{path}.{key}" if path else key
            self.problem(prefix, f"unknown key{did_you_mean(key, known)}; known keys here: {', '.join(sorted(known))}")

    def get(self, data: dict[str, Any], path: str, key: str, kind: type | tuple[type, ...], default: Any = None,
            required: bool = False) -> Any:
        full = f"{path}.{key}" if path else key
        if key not in data:
            if required:
                self.problem(full, "missing; add it")
            return default
        value = data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            self.problem(full, f"must be {kind_names(kinds)}, got a boolean")
            return default
        if not isinstance(value, kinds):
            self.problem(full, f"must be {kind_names(kinds)}, got {type(value).__name__} {value!r}")
            return default
        return value

    def positive_int(self, data: dict[str, Any], path: str, key: str, default: int, minimum: int = 1) -> int:
        value = self.get(data, path, key, int, default)
        if value < minimum:
            self.problem(f"{path}.{key}", f"must be at least {minimum}, got {value}")
            return default
        return value


def kind_names(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
             dict: "a table"}
    return " or ".join(names.get(kind, kind.__name__) for kind in kinds)
