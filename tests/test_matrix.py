from __future__ import annotations

from pathlib import Path

from onetwo import matrix
from onetwo.data.scan import scan_project
from onetwo.project.file import load_project


def test_cells_put_singles_on_the_diagonal_and_pairs_in_both_orders(make_project) -> None:
    project = load_project(make_project(["a", "b", "c"]))
    grid = matrix.cells(project, scan_project(project), 768, 768, 20, 5)
    assert len(grid) == 9
    diagonal = {cell.row: cell for cell in grid if cell.row == cell.column}
    assert [diagonal[i].label for i in range(3)] == ["a", "b", "c"]
    pair = next(cell for cell in grid if (cell.row, cell.column) == (2, 0))
    assert pair.label == "c | a" and pair.prompt_line.startswith("c/a/COMPOSITE, ")
    assert all(" --s 20 " in cell.prompt_line and cell.prompt_line.endswith("--d 5") for cell in grid)


def test_sampling_config_loads_the_lora_and_trains_nothing(tmp_path: Path) -> None:
    flat = {"network_dim": 8, "save_every_n_epochs": 1, "sample_every_n_epochs": 1, "cache_latents": True,
            "max_train_epochs": 40}
    config = matrix.sampling_config(flat, tmp_path / "x.safetensors", tmp_path / "out", tmp_path / "p.txt")
    assert config["network_weights"] == str(tmp_path / "x.safetensors")
    assert config["sample_at_first"] is True and config["max_train_epochs"] == 0
    assert config["cache_latents"] is False
    assert "save_every_n_epochs" not in config and "sample_every_n_epochs" not in config
    dataset = {"general": {}, "datasets": [{"batch_size": 4, "subsets": [{"image_dir": "a"}, {"image_dir": "b"}]},
                                           {"batch_size": 2, "subsets": [{"image_dir": "c"}]}]}
    small = matrix.sampling_dataset(dataset)
    assert small["datasets"] == [{"batch_size": 1, "subsets": [{"image_dir": "a"}]}]


def test_sample_files_follow_prompt_order(tmp_path: Path) -> None:
    sample = tmp_path / "sample"
    sample.mkdir()
    for index, stamp in [(1, "20260101000002"), (0, "20260101000009"), (2, "20260101000001")]:
        (sample / f"matrix_e000000_{index:02d}_{stamp}_1.png").write_bytes(b"")
    names = [path.name.split("_")[2] for path in matrix.sample_files(tmp_path, 3)]
    assert names == ["00", "01", "02"]
