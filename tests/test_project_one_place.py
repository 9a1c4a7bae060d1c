"""What the package does in one place only: the tomllib import, the "did you mean" hint, the name+class token, the
worker rule; and no dead `if …: pass / else: pass` branches."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import onetwo
from onetwo.data.scan import kohya_folder
from onetwo.project.config import Character
from onetwo.project.lookup import unknown_command

PACKAGE = Path(onetwo.__file__).parent
SOURCES = {path.relative_to(PACKAGE).as_posix(): path.read_text(encoding="utf-8")
           for path in sorted(PACKAGE.rglob("*.py"))}


def modules_matching(pattern: str) -> list[str]:
    return [name for name, text in SOURCES.items() if re.search(pattern, text, re.M)]


@pytest.mark.parametrize(("pattern", "home"), [
    (r"^\s*import tomli as tomllib", "project/strict.py"),
    (r"difflib\.get_close_matches", "project/strict.py"),
    (r"\{[\w.]*name\} \{[\w.]*class_token\}", "project/config.py"),
    (r"os\.cpu_count\(|sched_getaffinity", "data/workers.py"),
])
def test_done_in_one_module(pattern: str, home: str) -> None:
    assert modules_matching(pattern) == [home]


def test_no_branch_is_only_pass() -> None:
    dead = []
    for name, text in SOURCES.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.If) and node.orelse and all(
                    isinstance(statement, ast.Pass) for statement in [*node.body, *node.orelse]):
                dead.append(f"{name}:{node.lineno}")
    assert dead == []


def test_the_hint_reads_the_same_everywhere() -> None:
    from onetwo.project.strict import TableReader, did_you_mean

    problems: list[str] = []
    TableReader(problems).unknown({"nmae": 1}, "project", {"name", "mode"})
    assert "(did you mean 'name'?)" in problems[0] and "project.nmae" in problems[0]
    assert "(did you mean 'check'?)" in (unknown_command(["chek"], ["check", "train"]) or "")
    assert did_you_mean("zzz", ["name"]) == ""


def test_the_token_is_the_name_then_its_class() -> None:
    from onetwo.project.config import kohya_token

    assert kohya_token("alice", "girl") == "alice girl" and kohya_token("alice") == "alice"
    folder = kohya_folder("10_alice girl")
    assert folder is not None and folder.caption == "alice girl"
    assert Character("alice", Path("x"), None, False, "alice", "girl").token == "alice girl"
