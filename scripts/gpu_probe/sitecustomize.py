"""Measures a training process for `make gpu-check` from the inside, without touching sd-scripts.

scripts/gpu_check.py puts this folder on PYTHONPATH and sets ONETWO_GPU_PROBE_DIR; Python imports `sitecustomize`
at start-up in every process of the run, and only the one running a training script (`*train_network.py`) arms
the probe: a global optimizer-step hook records when each step ends, and at exit it writes
`<ONETWO_GPU_PROBE_DIR>/<pid>.json` with those times and torch's peak CUDA memory (allocated and reserved; null
where the process never used CUDA).
sd-scripts reads the loss back every step (`loss.item()`), which waits for the GPU, so the time between two
consecutive step ends is the time of a step.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path


def _arm(folder: Path) -> None:
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    step_ends: list[float] = []

    def after_step(optimizer: object, args: object, kwargs: object) -> None:
        step_ends.append(time.perf_counter())

    register_optimizer_step_post_hook(after_step)

    def report() -> None:
        cuda = torch.cuda.is_initialized()
        folder.mkdir(parents=True, exist_ok=True)
        record = {"script": Path(sys.argv[0]).name, "step_ends": step_ends,
                  "peak_allocated_bytes": torch.cuda.max_memory_allocated() if cuda else None,
                  "peak_reserved_bytes": torch.cuda.max_memory_reserved() if cuda else None,
                  "device": torch.cuda.get_device_name() if cuda else None}
        (folder / f"{os.getpid()}.json").write_text(json.dumps(record), encoding="utf-8")

    atexit.register(report)


if os.environ.get("ONETWO_GPU_PROBE_DIR") and sys.argv and sys.argv[0].endswith("train_network.py"):
    _arm(Path(os.environ["ONETWO_GPU_PROBE_DIR"]))
