from __future__ import annotations

import ast
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import tomli_w
from PIL import Image

from tests.sdscripts import SKIP_REASON, TRAINER_MODULES, needs_sdscripts

# Variables that point a library's cache or settings somewhere of their own; unset, each falls back under HOME or
# XDG_CACHE_HOME, which the fixtures below redirect.
OWN_CACHE_VARIABLES = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HF_DATASETS_CACHE",
                       "TRANSFORMERS_CACHE", "TORCH_HOME", "TRITON_CACHE_DIR", "MPLCONFIGDIR", "ONETWO_GPU_PROBE_DIR")
ONETWO_VARIABLES = ("ONETWO_PROJECT", "ONETWO_SD_SCRIPTS", "ONETWO_PYTHON")

# One distinct solid colour per (character, image index): a composite's halves then name their sources.
PALETTE = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (200, 30, 200), (30, 200, 200),
           (120, 60, 10), (10, 120, 60), (60, 10, 120), (250, 150, 150), (150, 250, 150), (150, 150, 250)]


def colour_of(character_index: int, image_index: int) -> tuple[int, int, int]:
    return PALETTE[(character_index * 4 + image_index) % len(PALETTE)]


def missing_facts(text: str, *facts: str) -> list[str]:
    """The facts (a file, a key, a value, a command) that `text` does not name: tests assert these, not sentences."""
    return [fact for fact in facts if fact not in text]


def line_naming(text: str, fact: str) -> str:
    """The one line of `text` that names `fact` (an assertion fails unless exactly one does)."""
    lines = [line for line in text.splitlines() if fact in line]
    assert len(lines) == 1, (fact, text)
    return lines[0]


def user_folders(home: Path) -> dict[str, str]:
    """HOME and the XDG folders under it: where every library puts its per-user settings and data."""
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"), "XDG_STATE_HOME": str(home / ".local" / "state")}


@pytest.fixture(scope="session", autouse=True)
def run_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home and a cache for the whole run, inside its temp dir, set before any other fixture: the module-scoped
    end-to-end fixtures and every subprocess see them too. The cache is shared by the run's tests (and goes with
    the run) because the trainer probe imports torch: seconds for each Python probed, once a run, not once a test."""
    home = tmp_path_factory.mktemp("home")
    cache = home / ".cache"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**user_folders(home), "XDG_CACHE_HOME": str(cache), "HF_HOME": str(cache / "huggingface"),
                            "TORCHINDUCTOR_CACHE_DIR": str(cache / "torchinductor")}.items():
            patch.setenv(name, value)
        for name in OWN_CACHE_VARIABLES:
            patch.delenv(name, raising=False)
        yield home


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test in its own folder with a HOME of its own (outside tmp_path, whose listing tests compare), and none
    of the user's onetwo settings."""
    monkeypatch.chdir(tmp_path)
    for name, value in user_folders(tmp_path_factory.mktemp("home")).items():
        monkeypatch.setenv(name, value)
    for name in ONETWO_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def make_character(folder: Path, character_index: int, count: int = 3, size: tuple[int, int] = (200, 300),
                   tags: str | None = "1girl, smile") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"img{index}.png"
        Image.new("RGB", size, colour_of(character_index, index)).save(path)
        if tags is not None:
            path.with_suffix(".txt").write_text(f"{tags}, pose{index}", encoding="utf-8")
        paths.append(path)
    return paths


def project_data(names: list[str], **sections: dict) -> dict:
    data = {
        "project": {"name": "demo", "base_model": "model.safetensors", "work_dir": "work", "output_dir": "out"},
        "characters": [{"name": name, "images": f"data/{name}"} for name in names],
        "composite": {"per_pair": 4, "width": 128, "height": 128, "workers": 1},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return data


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    def make(names: list[str] | None = None, images: int = 3, **sections: dict) -> Path:
        names = names or ["alice", "bob"]
        for index, name in enumerate(names):
            if not (tmp_path / "data" / name).exists():
                make_character(tmp_path / "data" / name, index, images)
        file = tmp_path / "onetwo.toml"
        file.write_text(tomli_w.dumps(project_data(names, **sections)), encoding="utf-8")
        return file

    return make


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    from onetwo.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["--project", "onetwo.toml", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


# ---- the sdscripts marker: what `make test-fast` leaves out, so it must be on every test that needs the trainer ---

TRAINER_SKIP = re.compile(r"\btorch\b|sd-scripts|lycoris|accelerate")


def trainer_modules_held(module: ModuleType | None) -> list[str]:
    """The torch-family and sd-scripts modules a test module imported at its top (import or importorskip)."""
    held = vars(module).values() if module else ()
    return sorted({value.__name__ for value in held if isinstance(value, ModuleType)
                   and value.__name__.split(".")[0] in TRAINER_MODULES})


def why_trainer_test(item: pytest.Item) -> str | None:
    if item.get_closest_marker("slow"):
        return "it is marked slow (it trains)"
    if any(mark == needs_sdscripts.mark for mark in item.iter_markers("skipif")):
        return "it carries tests.sdscripts.needs_sdscripts"
    reasons = [str(mark.kwargs.get("reason", "")) for mark in item.iter_markers("skipif")]
    if any(TRAINER_SKIP.search(reason) for reason in reasons):
        return "it skips without torch or sd-scripts"
    held = trainer_modules_held(getattr(item, "module", None))
    return f"its module imports {', '.join(held)}" if held else None


@pytest.hookimpl(tryfirst=True)  # before -m deselects anything
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [f"  {item.nodeid}: {why}" for item in items
                if item.get_closest_marker("sdscripts") is None and (why := why_trainer_test(item))]
    if unmarked:
        raise pytest.UsageError("these tests need torch or sd-scripts but lack @pytest.mark.sdscripts (make "
                                "test-fast would run them): add the marker\n" + "\n".join(unmarked))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A test without the marker that skips for want of torch or sd-scripts (an importorskip inside it) fails
    instead: on a machine without them, `make test-fast` must run all it selects."""
    report = yield
    if report.skipped and item.get_closest_marker("sdscripts") is None and isinstance(report.longrepr, tuple):
        reason = report.longrepr[2]
        if TRAINER_SKIP.search(reason):
            report.outcome = "failed"
            report.longrepr = (f"{item.nodeid} skipped ({reason}) but lacks @pytest.mark.sdscripts: it needs torch or "
                               "sd-scripts, add the marker")
    return report


def module_marks(path: Path) -> set[str]:
    """The marker names of a test file's top-level `pytestmark`, read without importing the file."""
    for node in ast.parse(path.read_bytes()).body:
        if isinstance(node, ast.Assign) and any(getattr(target, "id", "") == "pytestmark" for target in node.targets):
            return {sub.attr for sub in ast.walk(node.value) if isinstance(sub, ast.Attribute)
                    and isinstance(sub.value, ast.Attribute) and sub.value.attr == "mark"}
    return set()


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With -m leaving out every test of a file marked as a whole (`make test-fast` and the sdscripts modules), do
    not import it: importing torch and lycoris costs seconds."""
    expression = config.getoption("markexpr")
    if not expression or not (collection_path.name.startswith("test_") and collection_path.suffix == ".py"):
        return None
    try:
        from _pytest.mark.expression import Expression  # pytest's own -m parser
    except ImportError:
        return None
    marks = module_marks(collection_path)

    def matcher(others: bool) -> Callable[..., bool]:  # the file's marks, and every other mark absent or present
        return lambda name, /, **kwargs: name in marks or others

    compiled = Expression.compile(expression)
    if marks and not any(compiled.evaluate(matcher(others)) for others in (False, True)):
        return True
    return None


def pytest_configure(config: pytest.Config) -> None:
    """ONETWO_TEST_REQUIRE_SDSCRIPTS=1 (.ci/run, after `make setup`): the sdscripts tests must run, not skip."""
    if os.environ.get("ONETWO_TEST_REQUIRE_SDSCRIPTS") == "1" and SKIP_REASON:
        raise pytest.UsageError(f"ONETWO_TEST_REQUIRE_SDSCRIPTS=1, but the sdscripts tests would skip: {SKIP_REASON}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        terminalreporter.write_line(f"error: no test ran (pytest exit code 5) from {' '.join(config.args)}: check "
                                    "the paths and the -m/-k selection", red=True, bold=True)
