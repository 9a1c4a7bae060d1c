"""`onetwo train stage2 --epoch best`: the stage-1 epoch file with the highest single-character accuracy in stage 1's
eval report (`onetwo sample stage1`, then `onetwo eval stage1`); ties go to the earlier epoch. Stage 2 teaches the
pairs on top of what stage 1 learnt of each character alone, so the stage-1 epoch that draws each character best
is the one to continue from; pair success is stage 2's own measure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onetwo.errors import OnetwoError
from onetwo.kohya.provenance import read_metadata
from onetwo.project.config import Project

BEST = "best"


def epoch_option(text: str) -> int | str:
    """--epoch: an epoch number or `best`."""
    if text == BEST:
        return BEST
    try:
        return int(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is neither an epoch number nor 'best'") from exc


@dataclass(frozen=True)
class Pick:
    epoch: int
    hits: int
    total: int
    ties: tuple[int, ...]  # later epochs with the same accuracy

    @property
    def rate(self) -> float:
        return self.hits / self.total


def pick(report: dict[str, Any], where: Path) -> Pick:
    """The epoch of highest single-character accuracy; ties to the earlier epoch. Pure."""
    scored = []
    for entry in report.get("epochs", []) if isinstance(report, dict) else []:
        rate = (entry.get("rates") or {}).get("single_accuracy") or {}
        if isinstance(entry.get("epoch"), int) and rate.get("total"):
            scored.append((entry["epoch"], int(rate["hits"]), int(rate["total"])))
    if not scored:
        raise OnetwoError(f"{where}: no epoch with single-character samples to compare; draw them with `onetwo "
                          "sample stage1`, then run `onetwo eval stage1`")
    # compare hits/total exactly (cross-multiplied), so 2/4 and 4/8 tie
    best = scored[0]
    for item in scored[1:]:
        if item[1] * best[2] > best[1] * item[2] or (item[1] * best[2] == best[1] * item[2] and item[0] < best[0]):
            best = item
    ties = tuple(sorted(epoch for epoch, hits, total in scored
                        if epoch != best[0] and hits * best[2] == best[1] * total))
    return Pick(best[0], best[1], best[2], ties)


def report_file(project: Project) -> Path:
    return project.work_dir / "eval" / "stage1" / "report.json"


def epoch_file(project: Project, epoch: int) -> Path | None:
    """kohya's save of that epoch: `<name>-<epoch:06d>.safetensors`, or the final file when it was that epoch."""
    saved = project.output_dir / f"{project.output_name('stage1')}-{epoch:06d}.safetensors"
    if saved.is_file():
        return saved
    final = project.lora_file("stage1")
    if final.is_file() and read_metadata(final).get("ss_epoch") == str(epoch):
        return final
    return None


def best_stage1(project: Project) -> tuple[Path, str]:
    """The stage-1 file stage 2 continues from, and the sentence that says which and why."""
    report = report_file(project)
    try:
        document = json.loads(report.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise OnetwoError(f"{report}: no eval report of stage 1, which --epoch best reads; make one with:\n"
                          "    onetwo sample stage1\n    onetwo eval stage1") from exc
    except ValueError as exc:
        raise OnetwoError(f"{report}: not a readable eval report ({exc}); run `onetwo eval stage1` again") from exc
    chosen = pick(document, report)
    file = epoch_file(project, chosen.epoch)
    if file is None:
        raise OnetwoError(f"{report}: the best stage-1 epoch is {chosen.epoch}, but {project.output_dir} holds no "
                          f"file of that epoch; pass --epoch N or --from FILE")
    ties = (f"; epoch(s) {', '.join(map(str, chosen.ties))} tie with it, and ties go to the earlier epoch"
            if chosen.ties else "")
    return file, (f"--epoch best: continuing from {file.name} (epoch {chosen.epoch}): the highest single-character "
                  f"accuracy in {report}, {chosen.rate:.0%} ({chosen.hits}/{chosen.total}){ties}")
