"""The test tiers: `make test-fast` runs `-m "not sdscripts"`, so tests/conftest.py refuses a test that needs torch or
sd-scripts without the sdscripts marker, and leaves files marked as a whole unimported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from tests.conftest import module_marks, why_trainer_test
from tests.sdscripts import REPO, needs_sdscripts


def item(*marks: pytest.Mark, module: ModuleType | None = None) -> SimpleNamespace:
    """The three things the check reads of a collected test."""
    return SimpleNamespace(module=module, iter_markers=lambda name: [mark for mark in marks if mark.name == name],
                           get_closest_marker=lambda name: next((mark for mark in marks if mark.name == name), None))


def test_each_way_a_test_needs_the_trainer_is_recognised() -> None:
    torch_module = ModuleType("torch")
    assert "needs_sdscripts" in why_trainer_test(item(needs_sdscripts.mark))
    assert "skips" in why_trainer_test(item(pytest.mark.skipif(True, reason="torch is not installed").mark))
    assert "torch" in why_trainer_test(item(module=SimpleNamespace(torch=torch_module, __name__="m")))
    assert "slow" in why_trainer_test(item(pytest.mark.slow.mark))
    assert why_trainer_test(item(pytest.mark.skipif(True, reason="onnxruntime is missing").mark)) is None
    assert why_trainer_test(item(module=SimpleNamespace(os=os))) is None


def test_module_marks_are_read_without_importing_the_file(tmp_path: Path) -> None:
    file = tmp_path / "test_marked.py"
    file.write_text("import no_such_module\npytestmark = [pytest.mark.slow, pytest.mark.sdscripts, needs_sdscripts]\n")
    assert module_marks(file) == {"slow", "sdscripts"}
    (tmp_path / "test_plain.py").write_text("import pytest\n\n\ndef test_it():\n    pass\n")
    assert module_marks(tmp_path / "test_plain.py") == set()


def test_a_test_without_the_marker_stops_the_run_and_is_named(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    (tmp_path / "test_unmarked.py").write_text("from tests.sdscripts import needs_sdscripts\n\n\n@needs_sdscripts\n"
                                               "def test_uses_sd_scripts():\n    pass\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not sdscripts",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "test_unmarked.py::test_uses_sd_scripts" in done.stderr and "@pytest.mark.sdscripts" in done.stderr
