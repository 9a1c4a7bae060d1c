"""`onetwo eval`: did a training run learn both characters, and which epoch is best? Needs `pip install
'onetwo[eval]'`; nothing here is imported by `check` or training."""

from __future__ import annotations

from typing import Any

__all__ = ["seam_score"]


def __getattr__(name: str) -> Any:
    # numpy is an extra: import it only when the score is asked for, not when the CLI registers the command
    if name == "seam_score":
        from onetwo.eval.seam import seam_score

        return seam_score
    raise AttributeError(name)
