from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w
from PIL import Image

# One distinct solid colour per (character, image index): a composite's halves then name their sources.
PALETTE = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (200, 30, 200), (30, 200, 200),
           (120, 60, 10), (10, 120, 60), (60, 10, 120), (250, 150, 150), (150, 250, 150), (150, 150, 250)]


def colour_of(character_index: int, image_index: int) -> tuple[int, int, int]:
    return PALETTE[(character_index * 4 + image_index) % len(PALETTE)]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ONETWO_PROJECT", raising=False)
    monkeypatch.delenv("ONETWO_SD_SCRIPTS", raising=False)
    monkeypatch.delenv("ONETWO_PYTHON", raising=False)


def make_character(folder: Path, character_index: int, count: int = 3, size: tuple[int, int] = (200, 300),
                   tags: str | None = "1girl, smile") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"img{index}.png"
        Image.new("RGB", size, colour_of(character_index, index)).save(path)
        if tags is not None:
            path.with_suffix(".txt").write_text(f"{tags}, pose{index}", encoding="utf-8")
        paths.append(path)
    return paths


def project_data(names: list[str], **sections: dict) -> dict:
    data = {
        "project": {"name": "demo", "base_model": "model.safetensors", "work_dir": "work", "output_dir": "out"},
        "characters": [{"name": name, "images": f"data/{name}"} for name in names],
        "composite": {"per_pair": 4, "width": 128, "height": 128, "workers": 1},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return data


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    def make(names: list[str] | None = None, images: int = 3, **sections: dict) -> Path:
        names = names or ["alice", "bob"]
        for index, name in enumerate(names):
            if not (tmp_path / "data" / name).exists():
                make_character(tmp_path / "data" / name, index, images)
        file = tmp_path / "onetwo.toml"
        file.write_text(tomli_w.dumps(project_data(names, **sections)), encoding="utf-8")
        return file

    return make


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    from onetwo.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["--project", "onetwo.toml", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run
