"""Which samples are the current run's: epoch files read for their run start and hash, `onetwo sample`'s sidecars
read and checked, and the selection between them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("numpy", reason="onetwo eval needs numpy: pip install 'onetwo[eval]'")

from onetwo.eval.runs import EpochFile, current_run, read_epoch_file, select
from onetwo.eval.samples import Sample, sampled_images
from onetwo.kohya import hashes
from onetwo.kohya.hashes import rewrite_metadata
from tests import evalkit


def test_an_epoch_file_gives_its_epoch_run_start_and_sd_scripts_hash(tmp_path: Path) -> None:
    file = tmp_path / "demo-stage2-000003.safetensors"
    expected = evalkit.write_epoch_file(file, 3, 1700000000.25, salt=5)
    read = read_epoch_file(file)
    assert (read.epoch, read.started_at, read.model_hash) == (3, 1700000000.25, expected)
    rewrite_metadata(file, {hashes.MODEL_HASH_KEY: "a" * 64, "ss_epoch": "x"})  # sd-scripts' own value is trusted
    read = read_epoch_file(file)
    assert read.model_hash == "a" * 64 and read.epoch == 3  # the epoch from the name where ss_epoch is not one
    rewrite_metadata(file, {hashes.MODEL_HASH_KEY: "0x1234"})  # LyCORIS' own value: computed instead
    assert read_epoch_file(file).model_hash == expected


def test_the_current_run_is_the_latest_start() -> None:
    files = [EpochFile(Path(f"{n}.safetensors"), n, f"h{n}", start) for n, start in ((1, 20.0), (2, 20.0), (3, 10.0))]
    run = current_run(files)
    assert run.started_at == 20.0 and run.hashes == {"h1", "h2"} and [item.epoch for item in run.others] == [3]
    assert run.owns_training_sample(19.0) and not run.owns_training_sample(17.0)  # 2 s of timestamp slack
    unknown = current_run([EpochFile(Path("a.safetensors"), 1, "h", None)])
    assert unknown.started_at is None and unknown.owns_training_sample(0.0)


def test_select_keeps_the_current_runs_samples_unless_all_runs() -> None:
    run = current_run([EpochFile(Path("a.safetensors"), 1, "mine", 100.0)])
    samples = [Sample(Path("old.png"), 1, 0, ("aoi",), 1), Sample(Path("new.png"), 1, 0, ("aoi",), 1),
               Sample(Path("s1.png"), 1, 0, ("aoi",), 1, "sample", "mine"),
               Sample(Path("s2.png"), 1, 0, ("aoi",), 1, "sample", "theirs")]
    mtimes = {Path("old.png"): 50.0, Path("new.png"): 150.0}
    chosen = select(samples, run, mtimes, all_runs=False)
    assert [item.path.name for item in chosen.samples] == ["new.png", "s1.png"]
    assert (chosen.earlier_training, chosen.earlier_sampled) == (1, 1)
    assert len(select(samples, run, mtimes, all_runs=True).samples) == 4


def test_sidecars_that_cannot_be_placed_are_skipped_with_a_reason(tmp_path: Path) -> None:
    epoch_file = tmp_path / "out" / "demo-stage2-000001.safetensors"
    model_hash = evalkit.write_epoch_file(epoch_file, 1, 100.0)
    folder = tmp_path / "samples"
    good = evalkit.write_sampled(folder, epoch_file, 1, 2, ("aoi", "midori"), 9)
    (folder / "broken.json").write_text("{", encoding="utf-8")
    (folder / "partial.json").write_text(json.dumps({"lora_file": "x", "epoch": "1"}), encoding="utf-8")
    stranger = evalkit.write_sampled(folder, epoch_file, 1, 0, ("aoi",), 3)
    sidecar = json.loads(stranger.with_suffix(".json").read_text(encoding="utf-8"))
    stranger.with_suffix(".json").write_text(json.dumps({**sidecar, "characters": ["nobody"]}), encoding="utf-8")
    lost = evalkit.write_sampled(folder, epoch_file, 1, 1, ("midori",), 3)
    lost.unlink()
    samples, warnings = sampled_images(folder, ["aoi", "midori"])
    assert samples == [Sample(good, 1, 2, ("aoi", "midori"), 9, "sample", model_hash)]
    text = "\n".join(warnings)
    assert len(warnings) == 4 and "broken.json: unreadable" in text
    assert "partial.json: missing or mistyped sshs_model_hash, epoch, prompt_index, characters" in text
    assert "['nobody'] are not the project's" in text and f"its image {lost.name} is missing" in text
