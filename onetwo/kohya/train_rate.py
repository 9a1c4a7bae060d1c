"""The training speed of the last run of a stage, read from its train.log (sd-scripts' tqdm "steps" bar)."""

from __future__ import annotations

import re
from pathlib import Path

# `steps:  40%|████      | 4/10 [00:12<00:18,  3.05s/it, avr_loss=0.11]` (or `1.52it/s`); tqdm redraws with \r.
# Not "epoch validation steps:", the bar of validation.
STEPS_BAR = re.compile(r"(?<![\w ])steps:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[[^\],]*,\s*([\d.]+)(s/it|it/s)")
TAIL_BYTES = 1 << 20


def seconds_per_step(log_text: str) -> float | None:
    """The last rate the bar showed (sd-scripts runs tqdm with smoothing=0: the average since the first step)."""
    rate = None
    for match in STEPS_BAR.finditer(log_text):
        if int(match.group(1)) < 1:
            continue
        value = float(match.group(3))
        if value > 0:
            rate = value if match.group(4) == "s/it" else 1 / value
    return rate


def measured_rate(log_file: Path) -> float | None:
    """seconds_per_step of the log's last megabyte; None when there is no log or no step was logged."""
    try:
        with log_file.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - TAIL_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    return seconds_per_step(text)
