"""Which samples belong to the current training run of a stage, so an earlier run's images with the same
`output_name` do not mix in.

The current run is the one that saved the newest epoch files in the stage's output_dir: sd-scripts writes the same
`ss_training_started_at` (a unix time) into every file one run saves, and the files with the latest value are the
current run's (a shorter rerun can leave an earlier run's later epoch files beside them; those are not). Its LoRA
hashes are `sshs_model_hash` as sd-scripts computes it (`onetwo.kohya.hashes.compute`).

- An `onetwo sample` image names its epoch file's hash in its sidecar: it is the current run's when that hash is one
  of the current run's files.
- A training-time sample has no sidecar. sd-scripts takes `ss_training_started_at` before it draws anything (the
  epoch-0 samples included), so the current run's samples were all written at or after it: a sample is the current
  run's when its file's mtime is (within the filesystem's timestamp resolution). A resumed run counts from its
  resume; samples copied without keeping their mtimes count as new.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from onetwo.errors import OnetwoError
from onetwo.eval.samples import Sample
from onetwo.kohya import hashes
from onetwo.kohya.safetensors_header import HeaderError, read_header

STARTED_KEY = "ss_training_started_at"
EPOCH_KEY = "ss_epoch"
MTIME_SLACK = 2.0  # seconds: FAT and some network filesystems round mtimes to 2 s
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class EpochFile:
    path: Path
    epoch: int | None
    model_hash: str
    started_at: float | None


@dataclass(frozen=True)
class CurrentRun:
    files: tuple[EpochFile, ...]  # the current run's epoch files
    started_at: float | None
    others: tuple[EpochFile, ...]  # earlier runs' files still in the folder

    @property
    def hashes(self) -> frozenset[str]:
        return frozenset(item.model_hash for item in self.files)

    def owns_training_sample(self, mtime: float) -> bool:
        return self.started_at is None or mtime >= self.started_at - MTIME_SLACK


def read_epoch_file(path: Path) -> EpochFile:
    """Its epoch, hash and run start from the header; the hash is computed where the header lacks sd-scripts' own
    (a LyCORIS `0x…` value, or none)."""
    try:
        metadata = read_header(path).metadata
    except (HeaderError, OSError) as exc:
        raise OnetwoError(f"{path}: not a readable .safetensors file ({exc}); move it out of the output folder or "
                          "train again") from exc
    stored = metadata.get(hashes.MODEL_HASH_KEY, "")
    model_hash = stored if SHA256.fullmatch(stored) else hashes.compute(path)[0]
    epoch = _number(metadata.get(EPOCH_KEY))
    if epoch is None and (match := re.search(r"-(\d{6})$", path.stem)):
        epoch = int(match[1])
    started = metadata.get(STARTED_KEY)
    try:
        started_at = float(started) if started is not None else None
    except ValueError:
        started_at = None
    return EpochFile(path, epoch, model_hash, started_at)


def _number(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def current_run(files: Sequence[EpochFile]) -> CurrentRun:
    """The files with the latest start time; files without one count as the current run's only when no file has
    one (nothing tells them apart)."""
    starts = [item.started_at for item in files if item.started_at is not None]
    if not starts:
        return CurrentRun(tuple(files), None, ())
    latest = max(starts)
    return CurrentRun(tuple(item for item in files if item.started_at == latest), latest,
                      tuple(item for item in files if item.started_at != latest))


def stage_run(output_dir: Path, output_name: str) -> CurrentRun:
    return current_run([read_epoch_file(path) for path in hashes.epoch_files(output_dir, output_name)])


@dataclass(frozen=True)
class Selection:
    samples: list[Sample]
    earlier_training: int  # training-time samples of an earlier run (left out unless all_runs)
    earlier_sampled: int  # `onetwo sample` images whose epoch file is not the current run's (likewise)


def select(samples: Sequence[Sample], run: CurrentRun, mtimes: dict[Path, float], all_runs: bool) -> Selection:
    """The current run's samples (all of them with `all_runs`); `mtimes` of the training-time ones."""
    kept, training, sampled = [], 0, 0
    for sample in samples:
        if sample.source == "sample":
            mine = sample.lora_hash in run.hashes
            sampled += not mine
        else:
            mine = run.owns_training_sample(mtimes[sample.path])
            training += not mine
        if mine or all_runs:
            kept.append(sample)
    return Selection(kept, training, sampled)
