from __future__ import annotations

import sys
from pathlib import Path

from onetwo.trainer.launch import accelerate_options, command, preflight, run


def test_argv_puts_accelerate_options_before_the_script() -> None:
    argv = command(Path("/sd/train_network.py"), Path("/w/config.toml"), Path("/w/dataset.toml"),
                   {"num_processes": 1, "cpu": True, "mixed_precision": "no", "debug": False},
                   ["--max_train_steps", "2"], python="/py")
    assert argv == ["/py", "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu", "--mixed_precision",
                    "no", "/sd/train_network.py", "--config_file", "/w/config.toml", "--dataset_config",
                    "/w/dataset.toml", "--max_train_steps", "2"]


def test_accelerate_options_keep_file_order() -> None:
    assert accelerate_options({"b": 2, "a": "x y"}) == ["--b", "2", "--a", "x y"]


def test_preflight_names_each_missing_piece(tmp_path: Path) -> None:
    problems = preflight(tmp_path / "model.ckpt", tmp_path / "sd" / "train_network.py", tmp_path / "stage1.safetensors")
    assert len(problems) == 3
    assert "base model not found" in problems[0]
    assert "make setup" in problems[1] and "ONETWO_SD_SCRIPTS" in problems[1]
    assert "run `onetwo train stage1` first" in problems[2]


def test_run_streams_tees_and_passes_the_exit_code(tmp_path: Path, capfd) -> None:
    code = run([sys.executable, "-c", "import sys; print('hello'); sys.exit(3)"], tmp_path / "log" / "train.log")
    assert code == 3
    assert "hello" in capfd.readouterr().out
    assert (tmp_path / "log" / "train.log").read_text() == "hello\n"
