"""Stage 1 trains on the pixels stage 2 trains on: every stage-1 image, loaded the way sd-scripts loads it, equals
onetwo's decoding of its source (upright, transparency flattened onto `composite.background`, RGB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w
from PIL import Image, ImageChops, ImageDraw

from onetwo.data.check import inspect_image
from onetwo.data.originals import MANIFEST_NAME, LinkedImage, write_folder
from onetwo.data.pixels import kohya_difference, load_upright
from tests.conftest import line_naming, make_character, missing_facts, project_data
from tests.sdscripts import SD_SCRIPTS, child_env, needs_sdscripts, tail

BACKGROUND = (0, 255, 0)  # neither black nor white: whatever kohya would put under the alpha shows
ORIENTATION = 0x0112


def marked(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Blue with a red block in the top-left corner: where that block lands tells the orientation."""
    image = Image.new("RGB", size, (30, 60, 200))
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 3, size[1] // 3), fill=(220, 30, 30))
    return image.convert(mode)


def with_orientation(image: Image.Image, orientation: int) -> Image.Image.Exif:
    exif = image.getexif()
    exif[ORIENTATION] = orientation
    return exif


def half_transparent(mode: str) -> Image.Image:
    """Left half fully transparent over black (what kohya would train on), a column at half alpha, the rest opaque."""
    image = Image.new("RGBA", (48, 64), (200, 120, 40, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 23, 63), fill=(0, 0, 0, 0))
    draw.rectangle((24, 0, 25, 63), fill=(200, 120, 40, 128))
    return image if mode == "RGBA" else image.convert(mode)


def write_sources(folder: Path) -> dict[str, str]:
    """Every kind of file kohya reads differently from onetwo, and kinds it reads the same; name → expected stage-1
    file kind ("copy": a normalised PNG, "link": the source itself)."""
    folder.mkdir(parents=True)
    base = marked((40, 80))
    base.save(folder / "rot6.jpg", quality=95, exif=with_orientation(base, 6))
    base.save(folder / "mirror2.png", exif=with_orientation(base, 2))
    base.save(folder / "rot8.webp", lossless=True, exif=with_orientation(base, 8))
    half_transparent("RGBA").save(folder / "rgba.png")
    half_transparent("LA").save(folder / "la.png")
    palette = Image.new("P", (32, 48), 0)
    palette.putpalette([0, 0, 0, 250, 200, 20] + [0] * 762)
    ImageDraw.Draw(palette).rectangle((16, 0, 31, 47), fill=1)
    palette.save(folder / "palette.png", transparency=0)
    Image.new("RGB", (32, 48), (10, 20, 30)).save(folder / "colourkey.png", transparency=(10, 20, 30))
    grey16 = Image.new("I;16", (32, 48), 32768)
    ImageDraw.Draw(grey16).rectangle((0, 0, 15, 47), fill=65535)
    grey16.save(folder / "grey16.png")
    marked((40, 60), "CMYK").save(folder / "cmyk.jpg", quality=95)
    marked((40, 60)).save(folder / "plain.png")
    marked((40, 60)).save(folder / "photo.jpg", quality=90)
    marked((40, 60), "L").save(folder / "grey.png")
    marked((40, 60), "RGBA").save(folder / "opaque.png")
    marked((40, 60), "P").save(folder / "indexed.png")
    (folder / "rot6.txt").write_text("1girl, smile", encoding="utf-8")
    copies = ["rot6.jpg", "mirror2.png", "rot8.webp", "rgba.png", "la.png", "palette.png", "colourkey.png",
              "grey16.png", "cmyk.jpg"]
    links = ["plain.png", "photo.jpg", "grey.png", "opaque.png", "indexed.png"]
    return {**dict.fromkeys(copies, "copy"), **dict.fromkeys(links, "link")}


def kohya_load_twin(path: Path) -> Image.Image:
    """sd-scripts' library/train_util.py `load_image(path)` (alpha=False) step by step: open, convert to RGB unless
    already RGB, no EXIF transpose (it returns the array of this image)."""
    with Image.open(path) as image:
        if image.mode != "RGB":
            image = image.convert("RGB")
        image.load()
        return image.copy()


def largest_difference(first: Image.Image, second: Image.Image) -> int:
    assert first.size == second.size, f"{first.size} != {second.size}"
    return max(high for _, high in ImageChops.difference(first, second).getextrema())


@pytest.fixture
def pixels_project(tmp_path: Path) -> Callable[..., tuple[Path, dict[str, str]]]:
    def make(**project: object) -> tuple[Path, dict[str, str]]:
        expected = write_sources(tmp_path / "data" / "alice")
        make_character(tmp_path / "data" / "bob", 1, 2)
        data = project_data(["alice", "bob"], composite={"background": "#00ff00"}, project=project)
        file = tmp_path / "onetwo.toml"
        file.write_text(tomli_w.dumps(data), encoding="utf-8")
        return tmp_path / "work" / "originals" / "alice", expected

    return make


def stage1_file(folder: Path, source_name: str) -> Path:
    (found,) = [path for path in folder.iterdir() if path.stem == Path(source_name).stem and path.suffix != ".txt"]
    return found


def test_stage1_images_read_by_kohya_equal_onetwos_decoding(cli, pixels_project, tmp_path: Path) -> None:
    folder, expected = pixels_project()
    code, _, err = cli("render", "stage1", "--no-progress", "--workers", "1")
    assert code == 0, err
    assert "16 images with captions: 7 linked, 9 normalised copies" in err
    sources = tmp_path / "data" / "alice"
    for name, kind in expected.items():
        trained = stage1_file(folder, name)
        if kind == "link":
            assert trained.is_symlink() and trained.resolve() == (sources / name).resolve(), name
        else:
            assert trained.name == f"{Path(name).stem}.png" and not trained.is_symlink(), name
            with Image.open(trained) as image:
                assert (image.format, image.mode) == ("PNG", "RGB")
        assert trained.with_suffix(".txt").is_file(), f"{name}: the caption pairs with the file by stem"
        onetwo = load_upright(sources / name, BACKGROUND)
        assert largest_difference(kohya_load_twin(trained), onetwo) <= 1, name
        if kind == "copy" and name != "cmyk.jpg":  # kohya reading the source itself would train something else
            raw = kohya_load_twin(sources / name)
            assert raw.size != onetwo.size or largest_difference(raw, onetwo) > 1, name
    assert (folder / "rot6.txt").read_text(encoding="utf-8") == "alice, 1girl, smile"
    assert sources.joinpath("rot6.jpg").is_file() and not list(sources.glob("*.npz"))  # sources untouched


def test_normalised_pixels_are_upright_and_flattened(cli, pixels_project) -> None:
    """What the copies hold, checked against the sources' design rather than against onetwo's decoder."""
    folder, _ = pixels_project()
    assert cli("render", "stage1", "--no-progress", "--workers", "1")[0] == 0
    rot6 = kohya_load_twin(folder / "rot6.png")
    assert rot6.size == (80, 40)  # raw 40x80, rotated a quarter turn clockwise: the red corner is now top-right
    assert rot6.getpixel((75, 3))[0] > 180 and rot6.getpixel((3, 3))[0] < 80
    mirror = kohya_load_twin(folder / "mirror2.png")
    assert mirror.size == (40, 80) and mirror.getpixel((38, 2)) == (220, 30, 30)
    rot8 = kohya_load_twin(folder / "rot8.png")
    assert rot8.size == (80, 40) and rot8.getpixel((3, 37)) == (220, 30, 30)  # a quarter turn counter-clockwise
    for name in ("rgba", "la"):
        image = kohya_load_twin(folder / f"{name}.png")
        assert image.getpixel((5, 5)) == BACKGROUND, name  # kohya alone would read black here
        blend = [round(c * 128 / 255 + d * 127 / 255) for c, d in zip(image.getpixel((40, 5)), BACKGROUND, strict=True)]
        assert all(abs(a - b) <= 1 for a, b in zip(image.getpixel((24, 5)), blend, strict=True)), name
    palette = kohya_load_twin(folder / "palette.png")
    assert palette.getpixel((2, 2)) == BACKGROUND and palette.getpixel((20, 2)) == (250, 200, 20)
    assert kohya_load_twin(folder / "colourkey.png").getpixel((2, 2)) == BACKGROUND
    grey16 = kohya_load_twin(folder / "grey16.png")
    assert grey16.getpixel((2, 2)) == (255, 255, 255)
    assert all(abs(value - 128) <= 1 for value in grey16.getpixel((20, 2)))  # kohya alone would read 255 (clipped)


def test_copies_are_rebuilt_only_when_their_source_changes(cli, pixels_project, tmp_path: Path) -> None:
    folder, _ = pixels_project()
    argv = ("render", "stage1", "--no-progress", "--workers", "1")
    assert cli(*argv)[0] == 0
    copy = folder / "rgba.png"
    first = copy.stat()
    foreign = folder / "notes.md"
    foreign.write_text("mine", encoding="utf-8")
    code, _, err = cli(*argv)
    assert code == 0 and "(0 files updated)" in err
    assert (copy.stat().st_ino, copy.stat().st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    source = tmp_path / "data" / "alice" / "rgba.png"
    Image.new("RGBA", (48, 64), (0, 0, 0, 0)).save(source)
    os.utime(source, ns=(first.st_mtime_ns + 10**9, first.st_mtime_ns + 10**9))
    assert cli(*argv)[0] == 0
    assert copy.stat().st_ino != first.st_ino
    assert kohya_load_twin(copy).getpixel((40, 5)) == BACKGROUND
    (tmp_path / "data" / "alice" / "rot6.jpg").unlink()
    assert cli(*argv)[0] == 0
    assert not (folder / "rot6.png").exists() and not (folder / "rot6.txt").exists()  # onetwo's own, now stale
    assert foreign.read_text(encoding="utf-8") == "mine"  # never made by onetwo: left alone
    manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert "notes.md" not in manifest["files"] and "rgba.png" in manifest["copies"]


def test_a_new_background_rebuilds_the_flattened_copies(tmp_path: Path) -> None:
    source = tmp_path / "rgba.png"
    half_transparent("RGBA").save(source)
    stat = source.stat()
    entry = LinkedImage("rgba.png", source, "alice", "alpha", f"{stat.st_size}:{stat.st_mtime_ns}")
    folder = tmp_path / "out"
    assert write_folder(folder, [entry], background=(255, 255, 255)).changed == 2  # the copy and its caption
    assert write_folder(folder, [entry], background=(255, 255, 255)).changed == 0
    assert write_folder(folder, [entry], background=(0, 0, 255)).changed == 1
    assert kohya_load_twin(folder / "rgba.png").getpixel((2, 2)) == (0, 0, 255)


def test_an_old_manifest_list_is_still_honoured(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "gone.png").write_bytes(b"x")
    (folder / MANIFEST_NAME).write_text(json.dumps(["gone.png"]), encoding="utf-8")
    write_folder(folder, [])
    assert not (folder / "gone.png").exists()


def test_originals_copy_copies_everything(cli, pixels_project, tmp_path: Path) -> None:
    folder, expected = pixels_project(originals="copy")
    code, _, err = cli("render", "stage1", "--no-progress", "--workers", "1")
    assert code == 0, err
    assert "7 copied, 9 normalised copies" in err
    assert not [path for path in folder.parent.rglob("*") if path.is_symlink()]
    for name, kind in expected.items():
        trained = stage1_file(folder, name)
        if kind == "link":  # a plain copy under its own name, byte for byte
            assert trained.name == name
            assert trained.read_bytes() == (tmp_path / "data" / "alice" / name).read_bytes()
        else:
            assert trained.suffix == ".png"
    assert cli("render", "stage1", "--no-progress", "--workers", "1")[2].count("(0 files updated)") == 1


def test_originals_must_be_link_or_copy(cli, pixels_project) -> None:
    pixels_project(originals="hardlink")
    code, _, err = cli("check", "--no-progress")
    assert code == 2 and "project.originals: must be one of link, copy, got 'hardlink'" in err


def test_check_reports_upright_sizes_and_which_images_are_normalised(cli, pixels_project) -> None:
    pixels_project()
    _, out, _ = cli("check", "--no-progress", "--workers", "1")  # exit code 2: the project's base model is missing
    table = out.split("bob:")[0]
    assert "9 trained from an upright, flattened RGB copy" in table, out
    assert not missing_facts(line_naming(table, "rot6.jpg: "), "EXIF orientation 6", "sideways")
    assert "rgba.png: alpha transparency: kohya drops it" in table
    assert "palette.png: palette transparency" in table
    assert "colourkey.png: colour-key (tRNS) transparency" in table
    assert "grey16.png: I;16 (16-bit): kohya clips it to 8 bits" in table
    for linked in ("plain.png", "opaque.png", "indexed.png", "grey.png"):
        assert f"{linked}:" not in table
    assert "32x48 .. 80x40" in table  # sizes are upright: rot6.jpg is 40x80 on disk


def test_inspect_image_reports_the_upright_size(tmp_path: Path) -> None:
    image = marked((40, 80))
    image.save(tmp_path / "a.jpg", exif=with_orientation(image, 6))
    facts = inspect_image(str(tmp_path / "a.jpg"))
    assert (facts.width, facts.height) == (80, 40) and facts.kohya_differs.startswith("EXIF orientation 6")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: Image.new("RGB", (4, 4)), ""),
        (lambda: Image.new("L", (4, 4)), ""),
        (lambda: Image.new("1", (4, 4)), ""),
        (lambda: Image.new("P", (4, 4)), ""),
        (lambda: Image.new("RGBA", (4, 4), (1, 2, 3, 255)), ""),
        (lambda: Image.new("RGBA", (4, 4), (1, 2, 3, 254)), "alpha transparency"),
        (lambda: Image.new("LA", (4, 4), (1, 0)), "alpha transparency"),
        (lambda: Image.new("I;16", (4, 4)), "I;16 (16-bit)"),
        (lambda: Image.new("I", (4, 4)), "I (32-bit)"),
        (lambda: Image.new("CMYK", (4, 4)), "CMYK"),
    ],
)
def test_kohya_difference(make, reason: str) -> None:
    found = kohya_difference(make())
    assert found.startswith(reason) and bool(found) == bool(reason), found


SDSCRIPTS_LOADER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from PIL import Image
from library.train_util import load_image
for source, target in json.loads(sys.argv[2]):
    Image.fromarray(load_image(source)).save(target)
"""


@pytest.mark.sdscripts
@needs_sdscripts
def test_sdscripts_own_loader_sees_onetwos_pixels_and_upright_sizes(cli, pixels_project, tmp_path: Path) -> None:
    """sd-scripts' own `load_image`, in a subprocess as it runs under train_network.py."""
    folder, expected = pixels_project()
    assert cli("render", "stage1", "--no-progress", "--workers", "1")[0] == 0
    out = tmp_path / "kohya"
    out.mkdir()
    pairs = [(str(stage1_file(folder, name)), str(out / f"{Path(name).stem}.png")) for name in expected]
    done = subprocess.run([sys.executable, "-c", SDSCRIPTS_LOADER, str(SD_SCRIPTS), json.dumps(pairs)],
                          cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, tail(done.stdout + done.stderr)
    for name in expected:
        with Image.open(out / f"{Path(name).stem}.png") as kohya:
            onetwo = load_upright(tmp_path / "data" / "alice" / name, BACKGROUND)
            assert largest_difference(kohya.convert("RGB"), onetwo) <= 1, name
