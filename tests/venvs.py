"""Real Pythons for the tests of the trainer's Python: a bare venv (as a fresh kohya_ss/venv before its setup), and a
venv that sees this test run's packages but some (a kohya venv without accelerate, a Python without xformers)."""

from __future__ import annotations

import os
import re
import site
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def venv_python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def bare_venv(folder: Path) -> Path:
    """`python -m venv --without-pip`: a real Python with nothing installed; returns its interpreter."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True)
    return venv_python(folder)


def _distribution(entry: str) -> str:
    """`torch`, `torch-2.14.1.dist-info`, `__editable__.onetwo-0.1.0.pth` → the lower-case project name."""
    return re.split(r"-\d|\.dist-info|\.egg-info|\.pth$", entry.removeprefix("__editable__."))[0].lower()


def venv_without(folder: Path, missing: Iterable[str]) -> Path:
    """A venv whose site-packages links every entry of this run's site-packages except the `missing` packages."""
    python = bare_venv(folder)
    missing = {name.lower() for name in missing}
    target = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip())
    for source_dir in site.getsitepackages():
        for entry in sorted(os.listdir(source_dir)):
            if _distribution(entry) in missing or (target / entry).exists():
                continue
            (target / entry).symlink_to(Path(source_dir) / entry)
    return python
