"""Command-line habits, through the real CLI: where -p goes, finding the project file as git finds its repository,
"did you mean" for commands, the options every command takes, --set checked before anything is written, and the
stage-2 hand-off refusal that says which --set fixes it."""

from __future__ import annotations

import json
import re
import shlex
import struct
from pathlib import Path

import pytest

from onetwo.cli import main, parser


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_project_before_or_after_the_command_and_a_folder_for_it(make_project, capsys, tmp_path: Path) -> None:
    make_project()
    for argv in (["-p", "onetwo.toml", "composite"], ["composite", "-p", "onetwo.toml"],
                 ["composite", "--project", str(tmp_path)], ["-p", ".", "composite", "--no-progress"]):
        code, _, err = run(capsys, *argv)
        assert code == 0, (argv, err)
        assert "composites: 4 planned" in err


def test_a_folder_without_a_project_file_is_an_error_naming_it(capsys, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "check", "-p", "empty")
    assert code == 2
    assert f"{tmp_path / 'empty'}: a folder with no onetwo.toml (from -p/--project)" in err


def test_the_project_file_is_found_in_a_parent_folder(make_project, capsys, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    make_project()
    (tmp_path / "data" / "deeper" / "still").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "data" / "deeper" / "still")
    code, _, err = run(capsys, "composite")
    assert code == 0, err
    assert (tmp_path / "work" / "composites").is_dir()  # the project's own work_dir, relative to the file


def test_onetwo_project_still_works_and_wins_over_the_lookup(make_project, capsys, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    make_project()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "onetwo.toml").write_text("[project]\nname = 1\n", encoding="utf-8")  # broken: must not be read
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("ONETWO_PROJECT", str(tmp_path))
    code, _, err = run(capsys, "composite")
    assert code == 0, err


def test_no_project_anywhere_says_how_to_get_one(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "nothing").mkdir()
    monkeypatch.chdir(tmp_path / "nothing")
    code, _, err = run(capsys, "check")
    assert code == 2
    assert "no onetwo.toml in" in err and "onetwo init" in err and "Traceback" not in err


@pytest.mark.parametrize(("typed", "meant"), [("chek", "check"), ("rendr", "render"), ("trian", "train"),
                                              ("composites", "composite")])
def test_unknown_commands_get_a_suggestion(capsys, typed: str, meant: str) -> None:
    code, _, err = run(capsys, "-p", "x.toml", typed, "stage1")
    assert code == 2
    assert f"unknown command {typed!r} (did you mean {meant!r}?)" in err


def commands() -> list[str]:
    root = parser()
    action = next(action for action in root._actions if hasattr(action, "choices") and action.choices
                  and "check" in action.choices)
    return list(action.choices)


@pytest.mark.parametrize("command", commands())
def test_every_command_takes_the_options_the_readme_promises(command: str) -> None:
    positional = {"render": ["stage1"], "train": ["stage1"], "inspect": ["a.safetensors"], "matrix": ["a.safetensors"],
                  "sample": ["stage1"]}
    args = parser().parse_args([command, *positional.get(command, []), "--workers", "3", "--no-progress",
                                "-p", "there.toml"])
    assert (args.workers, args.no_progress, args.project) == (3, True, "there.toml")


def test_inspect_runs_with_the_common_options(capsys, tmp_path: Path) -> None:
    lora = write_lora(tmp_path / "a.safetensors", {"ss_network_dim": "8"})
    code, out, _ = run(capsys, "inspect", "--workers", "1", "--no-progress", str(lora))
    assert code == 0 and "network dim" in out


@pytest.mark.parametrize(("item", "expected"), [
    ("xformer=false", "--set xformer=false: 'xformer' is not an option of train_network.py (did you mean "
                      "'xformers'?)"),
    ("max_train_epochs=ten", "--set max_train_epochs=ten: max_train_epochs must be an integer, got 'ten'"),
    ("dataset.resolutoin=512", "--set dataset.resolutoin=512: 'resolutoin' is not a kohya datasets setting (did you "
                               "mean 'resolution'?)"),
    ("subset.image_dir=x", "--set subset.image_dir=x: onetwo writes image_dir for each subset"),
    ("=3", "--set '=3': write it as key=value"),
])
def test_set_errors_name_set_and_come_before_any_file_is_written(make_project, capsys, tmp_path: Path,
                                                                 item: str, expected: str) -> None:
    make_project()
    lora = str(write_lora(tmp_path / "a.safetensors", {"ss_network_dim": "8"}))
    for command, target in (("render", "stage2"), ("train", "stage2"), ("matrix", lora), ("sample", "stage1")):
        code, _, err = run(capsys, command, target, "--set", "learning_rate=0.001", "--set", item)
        assert code == 2
        assert expected in err
        assert "nothing was written" in err
        assert not (tmp_path / "work").exists()


def write_lora(path: Path, metadata: dict[str, str]) -> Path:
    header = json.dumps({"__metadata__": metadata}).encode("utf-8")
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


def test_stage2_mismatch_refusal_prints_the_set_that_fixes_it(make_project, capsys, tmp_path: Path) -> None:
    make_project()
    (tmp_path / "out").mkdir()
    write_lora(tmp_path / "out" / "demo-stage1.safetensors", {
        "ss_network_module": "lycoris.kohya", "ss_network_dim": "16", "ss_network_alpha": "1",
        "ss_network_args": json.dumps({"conv_dim": "4", "conv_alpha": "16", "algo": "loha"})})
    code, _, err = run(capsys, "train", "stage2", "--dry-run", "--no-progress")
    assert code == 0
    assert "stage 2's network settings differ from stage 1's" in err
    fix_line = re.search(r"add to the command line \(or set the same under \[stage2\]\):\n +(.+)", err)
    assert fix_line, err
    fix = shlex.split(fix_line.group(1))
    assert fix == ["--set", "network_dim=16", "--set", 'network_args=["conv_dim=4", "conv_alpha=16", "algo=loha"]']
    code, _, err = run(capsys, "train", "stage2", "--dry-run", "--no-progress", *fix)
    assert code == 0
    assert "network settings differ" not in err
