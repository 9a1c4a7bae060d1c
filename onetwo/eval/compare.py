"""`onetwo eval --compare A B …`: several runs' reports side by side, each at its best epoch, with the 95 % intervals,
and a plain sentence where the intervals overlap (the runs are not told apart by that many samples). Reads
report.json files only: nothing is scored again."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from onetwo.errors import OnetwoError
from onetwo.eval.stats import Rate

MEASURES = (("pair_success", "pair success"), ("clone", "clone"), ("blend", "blend"), ("leak", "leak"),
            ("single_accuracy", "single accuracy"))


@dataclass(frozen=True)
class RunReport:
    label: str
    file: Path
    best_epoch: int | None
    images: int  # at the best epoch
    rates: dict[str, Rate]  # at the best epoch


def report_file(given: str, target: str) -> Path:
    """A report.json; or a folder holding one (an eval output folder); or a work dir (its eval/<target>/)."""
    path = Path(given).resolve()
    for candidate in (path, path / "report.json", path / "eval" / target / "report.json"):
        if candidate.is_file():
            return candidate
    raise OnetwoError(f"{given}: no eval report there (looked for {path}, {path / 'report.json'} and "
                      f"{path / 'eval' / target / 'report.json'}); run `onetwo eval {target}` for that run first")


def read_report(file: Path, label: str) -> RunReport:
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
        best = document["best_epoch"]["epoch"]
        epochs = {entry["epoch"]: entry for entry in document["epochs"]}
        chosen = epochs.get(best, {"images": 0, "rates": {}})
        rates = {name: Rate(int(chosen["rates"][name]["hits"]), int(chosen["rates"][name]["total"]))
                 if name in chosen["rates"] else Rate(0, 0) for name, _ in MEASURES}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise OnetwoError(f"{file}: not an onetwo eval report ({type(exc).__name__}: {exc}); run `onetwo eval` "
                          "again to rewrite it") from exc
    return RunReport(label, file, best, int(chosen["images"]), rates)


def _cell(rate: Rate) -> str:
    if rate.value is None:
        return "-"
    low, high = rate.interval or (0.0, 0.0)
    return f"{rate.value:4.0%} [{low:.0%}-{high:.0%}]"


def table(runs: Sequence[RunReport]) -> str:
    width = max(3, *(len(run.label) for run in runs))
    header = f"{'run':<{width}} {'best':>5} {'imgs':>5} " + " ".join(f"{title:>17}" for _, title in MEASURES)
    lines = [header, "-" * len(header)]
    for run in runs:
        epoch = "-" if run.best_epoch is None else str(run.best_epoch)
        lines.append(f"{run.label:<{width}} {epoch:>5} {run.images:>5} "
                     + " ".join(f"{_cell(run.rates[name]):>17}" for name, _ in MEASURES))
    return "\n".join(lines)


def overlap(first: Rate, second: Rate) -> bool | None:
    """Whether the two 95 % intervals overlap; None where a rate has no samples."""
    if first.interval is None or second.interval is None:
        return None
    return first.interval[0] <= second.interval[1] and second.interval[0] <= first.interval[1]


def sentences(runs: Sequence[RunReport], stage: str) -> list[str]:
    """One sentence per pair of runs: on which measures their intervals overlap, and what to do about it."""
    lines = []
    for first, second in combinations(runs, 2):
        verdicts = {title: overlap(first.rates[name], second.rates[name]) for name, title in MEASURES}
        same = [title for title, value in verdicts.items() if value]
        apart = [title for title, value in verdicts.items() if value is False]
        pair = f"{first.label} and {second.label}"
        if not same and not apart:
            lines.append(f"{pair}: nothing to compare (no samples at a best epoch).")
        elif not apart:
            lines.append(f"{pair}: every 95 % interval overlaps, so the runs are not told apart by this many "
                         f"samples: draw more seeds (`onetwo sample {stage} --seeds N`, then `onetwo eval {stage}`).")
        elif same:
            lines.append(f"{pair}: the 95 % intervals of {', '.join(same)} overlap (not told apart by this many "
                         f"samples: draw more seeds); {', '.join(apart)} {'differs' if len(apart) == 1 else 'differ'} "
                         "beyond them.")
        else:
            lines.append(f"{pair}: every measure differs beyond the 95 % intervals.")
    return lines


def compare(given: Sequence[str], stage: str) -> str:
    if len(given) < 2:
        raise OnetwoError("--compare needs two or more runs (report files or work dirs)")
    labels = [chr(ord("A") + index) if index < 26 else f"run{index + 1}" for index in range(len(given))]
    runs = [read_report(report_file(item, stage), label) for item, label in zip(given, labels, strict=True)]
    listing = "\n".join(f"  {run.label}: {run.file}" for run in runs)
    return (f"{table(runs)}\n\nat each run's best epoch; [low-high]: 95 % Wilson intervals\n{listing}\n\n"
            + "\n".join(sentences(runs, stage)))
