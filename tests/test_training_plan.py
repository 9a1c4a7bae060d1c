"""The training plan: counting as kohya counts (tests/test_plan_contract.py checks it against kohya's own dataset),
the speed read from a run's log, and the table that check, render and train --dry-run print."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from onetwo.kohya.buckets import BucketSettings
from onetwo.kohya.plan_table import SubsetImages, checkpoints, count_prompts, sample_rounds, stage_plan
from onetwo.kohya.training_plan import measured_rate, seconds_per_step

# What sd-scripts' tqdm bar leaves in train.log: redraws separated by carriage returns.
LOG = ("steps:   0%|          | 0/6 [00:00<?, ?it/s]\r"
       "steps:  17%|█▋        | 1/6 [00:09<00:45,  9.10s/it]\r"
       "steps:  33%|███▎      | 2/6 [00:16<00:33,  8.25s/it, avr_loss=0.131]\r\n"
       "epoch 2/3\n")


def dataset(subsets: list[dict], **settings: object) -> dict:
    return {"general": {"enable_bucket": True}, "datasets": [{"resolution": 512, "batch_size": 2, **settings,
                                                               "subsets": subsets}]}


def test_rate_is_the_last_average_of_the_steps_bar(tmp_path: Path) -> None:
    assert seconds_per_step(LOG) == pytest.approx(8.25)
    assert seconds_per_step("steps:  50%|█| 5/10 [00:02<00:02,  2.50it/s]") == pytest.approx(0.4)
    assert seconds_per_step("steps:   0%|          | 0/6 [00:00<?, ?it/s]") is None
    log = tmp_path / "train.log"
    assert measured_rate(log) is None
    log.write_bytes(LOG.encode("utf-8"))
    assert measured_rate(log) == pytest.approx(8.25)


def test_rate_reads_what_tqdm_itself_writes() -> None:
    from tqdm import tqdm  # sd-scripts' bar: tqdm(..., smoothing=0, desc="steps") with an avr_loss postfix

    meter = tqdm.format_meter
    assert seconds_per_step(meter(120, 1000, 7200.0, prefix="steps", postfix="avr_loss=0.1")) == pytest.approx(60)
    assert seconds_per_step(meter(5, 10, 2.0, prefix="steps")) == pytest.approx(0.4)
    assert seconds_per_step(meter(3, 10, 2.0, prefix="epoch validation steps") + "\n") is None


def test_buckets_count_per_bucket_not_per_image() -> None:
    # 3 portraits and 1 square at batch 2: kohya makes 2 + 1 batches, not ceil(4 / 2) = 2.
    images = {"a": SubsetImages("alice", ((512, 768),) * 3 + ((512, 512),), (("alice", 4),))}
    plan = stage_plan("stage1", dataset([{"image_dir": "a", "num_repeats": 1}]), {"max_train_epochs": 2}, images, "")
    assert (plan.batches, plan.steps_per_epoch, plan.total_steps, plan.epochs) == (3, 3, 6, 2)


def test_regularization_fills_up_to_the_training_images() -> None:
    images = {"a": SubsetImages("alice", ((512, 512),) * 3, (("alice", 3),)),
              "r": SubsetImages("regularization", ((512, 512),) * 10)}
    subsets = [{"image_dir": "a", "num_repeats": 2}, {"image_dir": "r", "num_repeats": 1, "is_reg": True}]
    plan = stage_plan("stage1", dataset(subsets, batch_size=4), {"max_train_epochs": 1}, images, "")
    assert [(row.label, row.trained, row.is_reg) for row in plan.rows] == [("alice", 6, False),
                                                                          ("regularization", 6, True)]
    assert plan.batches == 3  # 12 images in one bucket at batch 4


def test_repeats_fall_back_and_subsets_kohya_ignores_are_left_out() -> None:
    images = {"a": SubsetImages("alice", ((512, 512),) * 2, (("alice", 2),)),
              "b": SubsetImages("bob", ((512, 512),) * 2, (("bob", 2),))}
    subsets = [{"image_dir": "a"}, {"image_dir": "b", "num_repeats": 0}, {"image_dir": "missing"}]
    plan = stage_plan("stage1", dataset(subsets, num_repeats=3), {"max_train_epochs": 1,
                                                                  "gradient_accumulation_steps": 2}, images, "")
    assert [(row.label, row.repeats) for row in plan.rows] == [("alice", 3)]
    assert (plan.batches, plan.steps_per_epoch) == (3, 2)
    assert plan.characters == (("alice", 6),)


def test_max_train_steps_when_no_epochs_and_kohya_default() -> None:
    images = {"a": SubsetImages("alice", ((512, 512),) * 4)}
    subsets = [{"image_dir": "a"}]
    assert stage_plan("s", dataset(subsets), {"max_train_steps": 7}, images, "").epochs == 4
    assert stage_plan("s", dataset(subsets), {}, images, "").total_steps == 1600


def test_no_upscale_buckets_are_the_image_cut_to_steps() -> None:
    settings = BucketSettings((512, 512), step=64, enabled=True, no_upscale=True)
    assert settings.select(300, 200) == (256, 192)
    assert settings.select(2000, 1000) == (640, 320)  # 2:1 kept exactly


def test_checkpoints_and_samples() -> None:
    assert checkpoints({"save_every_n_epochs": 1}, 40, 400) == 40
    assert checkpoints({"save_every_n_epochs": 5}, 12, 120) == 3  # epochs 5, 10 and the final file
    assert checkpoints({"save_every_n_steps": 50}, 2, 120) == 3
    assert checkpoints({}, 3, 30) == 1
    assert sample_rounds({"sample_every_n_epochs": 2, "sample_at_first": True}, 5, 50) == 3
    assert sample_rounds({"sample_every_n_epochs": 1, "sample_every_n_steps": 3}, 2, 20) == 2  # epochs win
    assert sample_rounds({"sample_every_n_steps": 3}, 2, 20) == 6
    assert count_prompts("# comment\n\na --n b\nc\n") == 2


def test_check_prints_a_plan_per_stage(make_project, cli) -> None:
    make_project()
    Path("model.safetensors").write_bytes(b"")
    _, out, _ = cli("check", "--no-progress")
    assert "stage1 plan" in out and "stage2 plan" in out
    assert re.search(r"alice +3 images x +1 repeats = +3", out)
    assert re.search(r"balance +alice 4 \(50%\), bob 4 \(50%\)", out)  # 4 composites, each shows both


def test_dry_run_prints_the_plan_with_a_time_estimate_from_the_last_log(make_project, cli) -> None:
    make_project()
    code, _, err = cli("render", "stage1", "--no-progress", "--set", "max_train_epochs=2")
    assert code == 0
    assert "total steps              4 (2 epochs)" in err  # 6 images of one size at batch 4: 2 batches
    assert "time estimate            unknown" in err
    Path("work/stage1/train.log").write_text(LOG, encoding="utf-8")
    _, _, err = cli("train", "stage1", "--dry-run", "--no-progress", "--set", "max_train_epochs=2")
    assert re.search(r"time estimate +33 s at 8\.25 s/step \(measured in .*train\.log", err)
