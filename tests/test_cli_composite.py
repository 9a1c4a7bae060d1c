from __future__ import annotations

import json
import os
from pathlib import Path

import tomli_w
from PIL import Image

from onetwo.data.preview import GAP, LABEL_HEIGHT, THUMB_HEIGHT, cell_origin, sheet_items
from onetwo.data.scan import scan_project
from onetwo.project.file import load_project
from onetwo.stages import composite_plan
from tests.conftest import colour_of, make_character, project_data


def half_colours(path: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    with Image.open(path) as image:
        width, height = image.size
        return image.getpixel((width // 4, height // 2)), image.getpixel((3 * width // 4, height // 2))


def test_composites_have_the_right_size_sources_and_captions(make_project, cli, tmp_path: Path) -> None:
    make_project()
    code, _, err = cli("composite")
    assert code == 0, err
    manifest = json.loads((tmp_path / "work" / "composites.manifest.json").read_text())["composites"]
    assert len(manifest) == 4
    names = ["alice", "bob"]
    for stem, entry in manifest.items():
        image = tmp_path / "work" / "composites" / entry["file"]
        with Image.open(image) as opened:
            assert opened.size == (128, 128)
        left, right = half_colours(image)
        expected = [colour_of(names.index(name), int(Path(source).stem[3:]))
                    for name, source in zip(entry["names"], entry["sources"], strict=True)]
        assert (left, right) == tuple(expected)
        caption = (tmp_path / "work" / "composites" / f"{stem}.txt").read_text(encoding="utf-8")
        assert caption.startswith(f"{entry['names'][0]}/{entry['names'][1]}/COMPOSITE, 2girls, smile, pose")
        assert caption == entry["caption"]
    assert "4 planned, 4 built" in err


def test_rerun_rebuilds_nothing_and_a_changed_source_only_its_composites(make_project, cli, tmp_path: Path) -> None:
    make_project()
    assert cli("composite")[0] == 0
    folder = tmp_path / "work" / "composites"
    before = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    code, _, err = cli("composite")
    assert code == 0 and "0 built, 4 unchanged" in err
    assert before == {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}

    changed = tmp_path / "data" / "alice" / "img0.png"
    Image.new("RGB", (200, 300), (9, 9, 9)).save(changed)
    os.utime(changed, ns=(1, 1))
    manifest = json.loads((tmp_path / "work" / "composites.manifest.json").read_text())["composites"]
    users = {stem for stem, entry in manifest.items() if str(changed.resolve()) in entry["sources"]}
    assert users and len(users) < 4
    code, _, err = cli("composite")
    assert f"{len(users)} built, {4 - len(users)} unchanged" in err
    after = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    rebuilt = {name for name in after if after[name] != before.get(name)}
    assert rebuilt == {f"{stem}.png" for stem in users}


def test_fewer_composites_remove_only_onetwo_files(make_project, cli, tmp_path: Path) -> None:
    make_project()
    assert cli("composite")[0] == 0
    foreign = tmp_path / "work" / "composites" / "mine.png"
    Image.new("RGB", (8, 8)).save(foreign)
    make_project(composite={"per_pair": 2})
    code, _, err = cli("composite")
    assert code == 0 and "2 removed" in err
    names = sorted(path.name for path in (tmp_path / "work" / "composites").iterdir())
    assert len([name for name in names if name.endswith(".png")]) == 3
    assert foreign.exists() and "onetwo did not make" in err


def test_exif_rotation_and_transparency(make_project, cli, tmp_path: Path) -> None:
    make_project(composite={"per_pair": 2, "background": "#00ff00"})
    rotated = Image.new("RGB", (300, 200), (255, 0, 0))
    rotated.paste((0, 0, 255), (0, 0, 150, 200))  # left half blue: after a 90° turn, blue is on top
    exif = Image.Exif()
    exif[0x0112] = 6
    for path in (tmp_path / "data" / "alice").glob("img*"):
        path.unlink()
    rotated.save(tmp_path / "data" / "alice" / "rot.jpg", exif=exif, quality=95)
    for path in (tmp_path / "data" / "bob").glob("img*"):
        path.unlink()
    clear = Image.new("RGBA", (200, 300), (0, 0, 0, 0))
    clear.save(tmp_path / "data" / "bob" / "clear.png")
    assert cli("composite")[0] == 0
    built = sorted((tmp_path / "work" / "composites").glob("*.png"))
    assert len(built) == 2  # per_pair 2, one pair
    for image_path in built:
        entry_left = image_path.name
        with Image.open(image_path) as image:
            pixels = {image.getpixel((x, y)) for x in (10, 100) for y in (5, 120)}
        assert (0, 255, 0) in pixels, entry_left
    manifest = json.loads((tmp_path / "work" / "composites.manifest.json").read_text())["composites"]
    assert sorted(entry["file"] for entry in manifest.values()) == [path.name for path in built]
    for entry in manifest.values():
        side = entry["names"].index("alice")
        with Image.open(tmp_path / "work" / "composites" / entry["file"]) as image:
            x = 32 if side == 0 else 96
            top, bottom = image.getpixel((x, 4)), image.getpixel((x, 124))
        assert top[2] > 200 and top[0] < 60, top
        assert bottom[0] > 200 and bottom[2] < 60, bottom


def test_preview_writes_a_contact_sheet(make_project, cli, tmp_path: Path) -> None:
    project = load_project(make_project())
    code, _, err = cli("preview", "--count", "3")
    assert code == 0, err
    items = sheet_items(composite_plan(project, scan_project(project)), project.composite_dir,
                        project.composite.format, 3, project.composite.seed)
    assert len(items) == 3 and len({item.path for item in items}) == 3
    with Image.open(tmp_path / "work" / "preview.png") as opened:
        sheet = opened.convert("RGB")
    assert sheet.size == (GAP + 3 * (THUMB_HEIGHT + GAP), GAP + THUMB_HEIGHT + LABEL_HEIGHT + GAP)  # one row
    for index, item in enumerate(items):  # each cell is its composite, scaled, with a label under it
        left, top = cell_origin(index, 3, THUMB_HEIGHT)
        with Image.open(item.path) as composite:
            thumb = composite.convert("RGB").resize((THUMB_HEIGHT, THUMB_HEIGHT), Image.Resampling.LANCZOS)
        assert sheet.crop((left, top, left + THUMB_HEIGHT, top + THUMB_HEIGHT)).tobytes() == thumb.tobytes(), item
        label = sheet.crop((left, top + THUMB_HEIGHT, left + THUMB_HEIGHT, top + THUMB_HEIGHT + LABEL_HEIGHT))
        assert len(label.getcolors()) > 1, item  # text drawn on the background


def test_source_folders_are_never_written(make_project, cli, tmp_path: Path) -> None:
    make_project()
    data = tmp_path / "data"
    before = sorted((path.relative_to(data), path.stat().st_mtime_ns) for path in data.rglob("*"))
    for path in data.rglob("*"):
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        assert cli("composite")[0] == 0
        assert cli("train", "stage1", "--dry-run")[0] == 0
    finally:
        for path in data.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert before == sorted((path.relative_to(data), path.stat().st_mtime_ns) for path in data.rglob("*"))


def test_kohya_repeats_folders(make_project, cli, tmp_path: Path) -> None:
    make_character(tmp_path / "data" / "10_carol", 2)
    file = make_project(["alice", "bob"])
    data = project_data(["alice", "bob", "carol"])
    data["characters"][2]["images"] = "data/10_carol"
    file.write_text(tomli_w.dumps(data), encoding="utf-8")
    code, _, err = cli("composite")
    assert code == 0, err
    assert "carol: 3 images, repeats 10" in err
