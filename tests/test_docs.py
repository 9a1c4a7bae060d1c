"""The documentation cannot drift: docs/commands.md is what scripts/dump_commands_doc.py makes of the real `--help`,
every relative link of the README, docs/ and benchmarks/README.md resolves to a file and heading, the README stays
the short front door that names every command and page, and the module layout in docs/development.md lists the
package's modules."""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from onetwo.cli import parser

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = sorted([REPO / "README.md", REPO / "benchmarks" / "README.md", *DOCS.glob("*.md")])
README_LINES = 200
HISTORY = ("previously", "no longer", "so far", "for now", "(now)", "(before)", "at the moment", "the switch waits")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def load_generator() -> ModuleType:
    path = REPO / "scripts" / "dump_commands_doc.py"
    spec = importlib.util.spec_from_file_location("dump_commands_doc", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prose_lines(text: str, keep_code: bool = False) -> list[str]:
    """The lines outside fenced code blocks, with inline code removed (a link inside code is not a link) unless
    `keep_code`."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line if keep_code else re.sub(r"``.*?``|`[^`]*`", "", line))
    return lines


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for line in prose_lines(page.read_text(encoding="utf-8"), keep_code=True) if page.suffix == ".md" else []:
        if match := re.match(r"#{1,6} (.+)", line):
            base = anchor(match.group(1))
            name, number = base, 1
            while name in found:  # GitHub numbers repeated headings
                name, number = f"{base}-{number}", number + 1
            found.add(name)
    return found


def normalised_help(text: str) -> str:
    """The help without what argparse versions lay out differently: `-p X, --project X` (3.13: `-p, --project X`),
    the recorded Python version, and all wrapping."""
    text = re.sub(rf"\({re.escape('COLUMNS=')}\d+, argparse of Python [\d.]+\)", "", text)
    text = re.sub(r"(-[-\w]+) ([A-Z][\w:=|.-]*), (-[-\w]+) \2\b", r"\1, \3 \2", text)
    return re.sub(r"\s+", "", text)


def test_the_commands_page_is_generated_from_the_real_help() -> None:
    generator = load_generator()
    fresh = generator.render()
    page = DOCS / "commands.md"
    assert page.is_file(), "docs/commands.md is missing: run scripts/dump_commands_doc.py"
    committed = page.read_text(encoding="utf-8")
    mark = f"{generator.VERSION_MARK}{generator.python_version()})"
    if mark in committed:
        assert committed == fresh, "docs/commands.md differs from the CLI's --help: run scripts/dump_commands_doc.py"
    else:  # written by another Python, whose argparse wraps and lists options its own way
        assert normalised_help(committed) == normalised_help(fresh), (
            "docs/commands.md differs from the CLI's --help: run scripts/dump_commands_doc.py")


def test_the_commands_page_has_every_command_and_does_not_depend_on_the_terminal(monkeypatch) -> None:
    generator = load_generator()
    first = generator.render()
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setattr(sys, "argv", ["some/other/name"])
    assert generator.render() == first
    commands = next(action for action in parser()._actions if isinstance(action, argparse._SubParsersAction))
    for name in commands.choices:
        assert f"## onetwo {name}\n" in first, name
        assert f"usage: onetwo {name} " in first, name


def test_the_normalised_help_ignores_layout_only() -> None:
    old = "  --project PROJECT, -p PROJECT\n                        the project file"
    new = "  --project, -p PROJECT  the project file"
    assert normalised_help(old) == normalised_help(new)
    assert normalised_help(old) != normalised_help(old.replace("project file", "project folder"))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_points_at_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for line in prose_lines(page.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, fragment = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{target}: no file {file}")
            elif fragment and fragment not in anchors(file):
                broken.append(f"{target}: no heading #{fragment} in {file.name}")
    assert not broken, broken


def test_the_readme_is_the_front_door() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_LINES, "README.md grew: move the detail into docs/"
    for page in DOCS.glob("*.md"):
        assert f"(docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"
    assert "(benchmarks/README.md)" in readme
    for command in ("init", "check", "composite", "preview", "render", "train", "eval", "matrix", "inspect"):
        assert f"| `onetwo {command}" in readme, command
    for target in ("make demo", "make test", "make test-fast"):
        assert target in readme, target


def test_no_page_tells_the_history_of_the_code() -> None:
    told = [f"{page.relative_to(REPO)}: {phrase!r}" for page in PAGES
            for phrase in HISTORY if phrase in page.read_text(encoding="utf-8").lower()]
    assert not told, told


def layout_modules(text: str) -> set[str]:
    """The module paths of the tree in docs/development.md's "The module layout" block."""
    block = text[text.index("## The module layout"):]
    block = block[block.index("```\n") + 4:]
    block = block[:block.index("```")]
    stack: list[str] = []
    found = set()
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        name = line.split()[0]
        stack = [*stack[:depth], name.rstrip("/")]
        if name.endswith(".py"):
            found.add("/".join(stack))
    return found


def test_the_module_layout_lists_every_module() -> None:
    listed = layout_modules((DOCS / "development.md").read_text(encoding="utf-8"))
    modules = {path.relative_to(REPO).as_posix() for path in (REPO / "onetwo").rglob("*.py")
               if path.name not in ("__init__.py", "__main__.py") and "__pycache__" not in path.parts}
    assert listed, "no module tree found in docs/development.md"
    assert sorted(modules - listed) == [], "modules missing from docs/development.md's layout"
    assert sorted(listed - modules) == [], "docs/development.md lists modules that do not exist"
