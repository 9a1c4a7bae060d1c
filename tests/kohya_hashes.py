"""sd-scripts' own `sshs_model_hash` / `sshs_legacy_hash` of .safetensors files, computed by its
`train_util.precalculate_safetensors_hashes` (as its LoRA networks do when they save) in a subprocess, so that
importing sd-scripts stays out of the pytest process:

    python tests/kohya_hashes.py RESULT.json FILE...
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

THIS_FILE = Path(__file__).resolve()


def kohya_hashes(files: list[Path], folder: Path) -> dict[str, list[str]]:
    """{file: [model_hash, legacy_hash]} as sd-scripts computes them; fails the test with its output on a crash."""
    from tests.sdscripts import SD_SCRIPTS, child_env, tail

    result = folder / "kohya-hashes.json"
    done = subprocess.run([sys.executable, str(THIS_FILE), str(result), *map(str, files)], cwd=SD_SCRIPTS,
                          env=child_env(), capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not result.is_file():
        pytest.fail(f"sd-scripts' hash function failed (exit code {done.returncode}):\n"
                    f"{tail(done.stdout + done.stderr)}")
    return json.loads(result.read_text(encoding="utf-8"))


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path.cwd()))  # run from inside the sd-scripts checkout
    from library import train_util
    from safetensors.torch import load_file, safe_open

    hashes = {}
    for file in argv[1:]:
        with safe_open(file, framework="pt") as handle:
            metadata = handle.metadata() or {}
        hashes[file] = list(train_util.precalculate_safetensors_hashes(load_file(file), metadata))
    Path(argv[0]).write_text(json.dumps(hashes, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
