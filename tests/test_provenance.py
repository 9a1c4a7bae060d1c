from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import tomli_w

from onetwo.errors import OnetwoError
from onetwo.kohya.provenance import handoff_problems, read_metadata
from onetwo.kohya.render import read_toml
from tests.conftest import line_naming, missing_facts, project_data

LOHA = {"ss_network_module": "lycoris.kohya", "ss_network_dim": "8", "ss_network_alpha": "1",
        "ss_network_args": json.dumps({"conv_dim": "0", "conv_alpha": "16", "algo": "loha", "dropout": None})}
CONFIG = {"network_module": "lycoris.kohya", "network_dim": 8, "network_alpha": 1,
          "network_args": ["conv_dim=0", "conv_alpha=16", "algo=loha"]}


def fake_lora(path: Path, metadata: dict[str, str]) -> Path:
    header = json.dumps({"__metadata__": metadata, "w": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}})
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\x00\x00")
    return path


def test_read_metadata_without_torch(tmp_path: Path) -> None:
    assert read_metadata(fake_lora(tmp_path / "a.safetensors", LOHA))["ss_network_dim"] == "8"
    (tmp_path / "bad.safetensors").write_bytes(b"nonsense")
    with pytest.raises(OnetwoError, match=r"not a readable \.safetensors file"):
        read_metadata(tmp_path / "bad.safetensors")


def test_matching_settings_pass(tmp_path: Path) -> None:
    assert handoff_problems(fake_lora(tmp_path / "a.safetensors", LOHA), CONFIG) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"network_dim": 16}, "network_dim: stage 1 (a.safetensors) has 8.0, stage 2 would use 16.0"),
        ({"network_alpha": 4}, "network_alpha"),
        ({"network_args": ["conv_dim=0", "conv_alpha=16", "algo=locon"]}, "network_args.algo: stage 1"),
        ({"network_module": "networks.lora"}, "network_module"),
    ],
)
def test_differences_are_named(tmp_path: Path, change: dict, named: str) -> None:
    problems = handoff_problems(fake_lora(tmp_path / "a.safetensors", LOHA), {**CONFIG, **change})
    assert len(problems) == 1 and named in problems[0]


def ready_project(tmp_path: Path, make_project, **sections) -> None:
    make_project()
    (tmp_path / "model.safetensors").write_bytes(b"x")
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "train_network.py").write_text("")
    data = project_data(["alice", "bob"], **sections)
    data["project"]["sd_scripts"] = "sd"
    (tmp_path / "onetwo.toml").write_text(tomli_w.dumps(data), encoding="utf-8")


def test_stage2_refuses_a_mismatched_stage1(make_project, cli, tmp_path: Path) -> None:
    ready_project(tmp_path, make_project, stage2={"network_dim": 16})
    (tmp_path / "out").mkdir()
    fake_lora(tmp_path / "out" / "demo-stage1.safetensors", LOHA)
    code, _, err = cli("train", "stage2")
    assert code == 2
    mismatch = line_naming(err, "network_dim: ")
    assert not missing_facts(mismatch, "demo-stage1.safetensors", "8.0", "16.0"), mismatch
    assert "silently drop" in err


def test_epoch_files_and_provenance_reach_the_config(make_project, cli, tmp_path: Path) -> None:
    ready_project(tmp_path, make_project)
    (tmp_path / "out").mkdir()
    fake_lora(tmp_path / "out" / "demo-stage1-000003.safetensors", LOHA)
    code, _, err = cli("train", "stage2", "--epoch", "3", "--dry-run")
    assert code == 0, err
    config = read_toml(tmp_path / "work" / "stage2" / "config.toml")
    flat = {key: value for section in config.values() for key, value in section.items()}
    assert flat["network_weights"].endswith("demo-stage1-000003.safetensors")
    record = json.loads(flat["metadata_onetwo"])
    assert record["stage"] == "stage2" and record["source"] == "demo-stage1-000003.safetensors"
    assert len(record["source_sha256"]) == 64 and len(record["composite_manifest_sha256"]) == 64
    assert "alice/bob/COMPOSITE" in flat["metadata_trigger_phrase"]
    assert "onetwo" in flat["training_comment"] and "stage2" in flat["training_comment"]


def test_inspect_prints_provenance(capsys, tmp_path: Path) -> None:
    record = {"onetwo": "0.1.0", "stage": "stage2", "source": "x-stage1.safetensors"}
    fake_lora(tmp_path / "x.safetensors", {**LOHA, "modelspec.onetwo": json.dumps(record),
                                            "modelspec.trigger_phrase": "a, b, a/b/COMPOSITE"})
    from onetwo.cli import main

    assert main(["inspect", str(tmp_path / "x.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "stage                      stage2" in out
    assert "trigger phrase             a, b, a/b/COMPOSITE" in out
    assert "network dim                8" in out
