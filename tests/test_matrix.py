from __future__ import annotations

import json
from pathlib import Path

import pytest

from onetwo import matrix
from onetwo.data.scan import scan_project
from onetwo.project.file import load_project
from tests.model_files import LOHA_KEYS, SD1_KEYS, write_safetensors


def test_cells_put_singles_on_the_diagonal_and_pairs_in_both_orders(make_project) -> None:
    project = load_project(make_project(["a", "b", "c"]))
    grid = matrix.cells(project, scan_project(project), 768, 768, 20, 5)
    assert len(grid) == 9
    diagonal = {cell.row: cell for cell in grid if cell.row == cell.column}
    assert [diagonal[i].label for i in range(3)] == ["a", "b", "c"]
    pair = next(cell for cell in grid if (cell.row, cell.column) == (2, 0))
    assert pair.label == "c | a" and pair.prompt_line.startswith("c/a/COMPOSITE, ")
    assert all(" --s 20 " in cell.prompt_line and cell.prompt_line.endswith("--d 5") for cell in grid)


def stand_in_worker(launched: list[list[str]]):
    """Draws each cell of the job as a flat 64 px image, then its sidecar, as the worker leaves them."""
    from PIL import Image

    def run(argv: list[str], log: Path) -> int:
        launched.append(list(argv))
        job = json.loads(Path(argv[-1]).read_text(encoding="utf-8"))
        for entry in job["files"]:
            for image in entry["images"]:
                Image.new("RGB", (image["width"], image["height"]), (200, 0, 0)).save(image["png"])
                Path(image["sidecar_file"]).write_text(json.dumps(image["sidecar"]), encoding="utf-8")
        return 0

    return run


def test_matrix_draws_one_image_a_cell_through_the_sampling_run_and_reuses_them(
        make_project, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No zero-epoch training run any more: one sampling job, one seed, the cells named and recorded as `onetwo
    sample` names them; a rerun draws nothing and assembles the same grid."""
    from PIL import Image

    write_safetensors(tmp_path / "model.safetensors", SD1_KEYS)
    make_project(["a", "b", "c"], samples={"steps": 3})
    lora = write_safetensors(tmp_path / "pair-000004.safetensors", LOHA_KEYS)
    launched: list[list[str]] = []
    monkeypatch.setattr("onetwo.sample.run.run", stand_in_worker(launched))
    monkeypatch.setattr("onetwo.sample.run.launch_problems", lambda project, prepared: [])
    code, _, err = cli("matrix", str(lora), "--seed", "7", "--no-progress")
    assert code == 0, err
    out_dir = tmp_path / "work" / "matrix" / "pair-000004"
    job = json.loads(Path(launched[0][-1]).read_text(encoding="utf-8"))
    (entry,) = job["files"]
    assert entry["path"] == str(lora) and len(entry["images"]) == 9
    assert [Path(image["png"]).name for image in entry["images"]] == [
        f"pair-000004__p{index:02d}__s7.png" for index in range(9)]
    record = entry["images"][5]["sidecar"]  # row 1 (b), column 2 (c)
    assert record["characters"] == ["b", "c"] and record["prompt"].startswith("b/c/COMPOSITE, ")
    assert (record["epoch"], record["seed"], record["settings"]["steps"]) == (4, 7, 3)
    with Image.open(tmp_path / "work" / "matrix" / "pair-000004.png") as grid:
        cell = grid.width // 3
        assert grid.height > grid.width and grid.getpixel((cell + cell // 2, cell // 2)) == (200, 0, 0)
    assert (out_dir / "pair-000004__p08__s7.json").is_file()

    code, _, err = cli("matrix", str(lora), "--seed", "7", "--no-progress")
    assert code == 0 and len(launched) == 1, err
    assert "all 9 images already drawn" in err
    code, _, err = cli("matrix", str(lora), "--seed", "8", "--no-progress")
    assert code == 0 and len(launched) == 2, err  # another seed is another image
