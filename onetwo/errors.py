"""The one exception type the CLI turns into `Error: …` and exit code 2."""

from __future__ import annotations


class OnetwoError(Exception):
    """A problem the user can fix; its message says where and how."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [])
        super().__init__(message)

    def __str__(self) -> str:
        text = super().__str__()
        if not self.problems:
            return text
        return text + "\n" + "\n".join(f"  - {problem}" for problem in self.problems)
