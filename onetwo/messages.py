"""What onetwo says while it works: notes and warnings go to stderr, so stdout stays for what a command prints."""

from __future__ import annotations

import sys


def warn(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr)


def info(message: str) -> None:
    print(message, file=sys.stderr)
