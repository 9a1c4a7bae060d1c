"""issue 16 §5: `onetwo train stage2 --epoch best` continues from the stage-1 epoch of highest single-character
accuracy in stage 1's eval report, ties to the earlier epoch, says which and why; without a report it refuses and
names the two commands that make one. The reports are written here in the shape onetwo/eval/report.py writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onetwo.best_epoch import epoch_option, pick
from onetwo.errors import OnetwoError
from onetwo.kohya.render import read_toml
from tests.test_provenance import LOHA, fake_lora, ready_project


def epoch(number: int, hits: int | None, total: int, pair_hits: int = 0) -> dict:
    def rate(h: int | None, t: int) -> dict:
        value = h / t if t and h is not None else None
        return {"hits": h or 0, "total": t, "rate": value, "low": None, "high": None}

    return {"epoch": number, "images": total + 6,
            "rates": {"single_accuracy": rate(hits, total), "pair_success": rate(pair_hits, 6)}}


def report(*epochs: dict) -> dict:
    return {"target": "stage1", "best_epoch": {"epoch": epochs[-1]["epoch"]}, "epochs": list(epochs)}


def test_the_highest_single_accuracy_wins_and_ties_go_to_the_earlier_epoch(tmp_path: Path) -> None:
    where = tmp_path / "report.json"
    # epoch 3 has the best pair success (the eval's own best epoch), but stage 2 wants the best single accuracy
    chosen = pick(report(epoch(1, 5, 12), epoch(2, 10, 12), epoch(3, 9, 12, pair_hits=6)), where)
    assert (chosen.epoch, chosen.hits, chosen.total, chosen.ties) == (2, 10, 12, ())
    tied = pick(report(epoch(1, 3, 12), epoch(4, 10, 12), epoch(2, 5, 6), epoch(6, 10, 12)), where)
    assert (tied.epoch, tied.ties) == (2, (4, 6))  # 5/6 = 10/12: the earliest of the three
    assert pick(report(epoch(1, 0, 0), epoch(2, 1, 4)), where).epoch == 2  # an epoch without singles is skipped
    with pytest.raises(OnetwoError, match="no epoch with single-character samples"):
        pick(report(epoch(1, 0, 0)), where)
    assert epoch_option("best") == "best" and epoch_option("7") == 7
    with pytest.raises(ValueError):
        epoch_option("last")


def write_report(tmp_path: Path, document: dict) -> None:
    folder = tmp_path / "work" / "eval" / "stage1"
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(document), encoding="utf-8")


def network_weights(tmp_path: Path) -> str:
    config = read_toml(tmp_path / "work" / "stage2" / "config.toml")
    return {key: value for section in config.values() for key, value in section.items()}["network_weights"]


def test_stage2_continues_from_the_best_stage1_epoch_and_says_why(make_project, cli, tmp_path: Path) -> None:
    ready_project(tmp_path, make_project)
    (tmp_path / "out").mkdir()
    for number in (1, 2):
        fake_lora(tmp_path / "out" / f"demo-stage1-{number:06d}.safetensors", LOHA)
    fake_lora(tmp_path / "out" / "demo-stage1.safetensors", {**LOHA, "ss_epoch": "3"})
    write_report(tmp_path, report(epoch(1, 4, 8), epoch(2, 7, 8), epoch(3, 7, 8)))
    code, _, err = cli("train", "stage2", "--epoch", "best", "--dry-run", "--no-progress")
    assert code == 0, err
    assert network_weights(tmp_path).endswith("demo-stage1-000002.safetensors")
    said = next(line for line in err.splitlines() if "--epoch best" in line)
    for fact in ("demo-stage1-000002.safetensors", "epoch 2", "single-character accuracy", "88%", "7/8",
                 "epoch(s) 3 tie", "earlier epoch", str(tmp_path / "work" / "eval" / "stage1" / "report.json")):
        assert fact in said, (fact, said)


def test_the_final_file_stands_for_the_last_epoch(make_project, cli, tmp_path: Path) -> None:
    ready_project(tmp_path, make_project)
    (tmp_path / "out").mkdir()
    fake_lora(tmp_path / "out" / "demo-stage1-000001.safetensors", LOHA)
    fake_lora(tmp_path / "out" / "demo-stage1.safetensors", {**LOHA, "ss_epoch": "2"})
    write_report(tmp_path, report(epoch(1, 4, 8), epoch(2, 8, 8)))
    code, _, err = cli("train", "stage2", "--epoch", "best", "--dry-run", "--no-progress")
    assert code == 0, err
    assert network_weights(tmp_path).endswith("out/demo-stage1.safetensors")

    write_report_again = tmp_path / "work" / "eval" / "stage1" / "report.json"
    write_report_again.write_text(json.dumps(report(epoch(5, 8, 8))), encoding="utf-8")
    code, _, err = cli("train", "stage2", "--epoch", "best", "--dry-run", "--no-progress")
    assert code == 2 and "the best stage-1 epoch is 5" in err and "holds no file of that epoch" in err


def test_without_a_report_it_refuses_and_names_the_commands_that_make_one(make_project, cli,
                                                                         tmp_path: Path) -> None:
    ready_project(tmp_path, make_project)
    (tmp_path / "out").mkdir()
    fake_lora(tmp_path / "out" / "demo-stage1.safetensors", LOHA)
    code, _, err = cli("train", "stage2", "--epoch", "best", "--dry-run", "--no-progress")
    assert code == 2
    assert "no eval report of stage 1" in err and str(tmp_path / "work" / "eval" / "stage1" / "report.json") in err
    assert "onetwo sample stage1" in err and "onetwo eval stage1" in err
    assert "Traceback" not in err
