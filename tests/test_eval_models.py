"""The real onnxruntime wrappers on tiny stand-in models with the real models' input and output names and shapes,
and the huggingface cache layout that `--offline` reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import ImageDraw

np = pytest.importorskip("numpy", reason="onetwo eval needs numpy: pip install 'onetwo[eval]'")
pytest.importorskip("onnxruntime", reason="onetwo eval needs onnxruntime: pip install 'onetwo[eval]'")
pytest.importorskip("onnx", reason="building the stand-in models needs onnx (in the dev extra)")
pytest.importorskip("huggingface_hub", reason="onetwo eval needs huggingface_hub: pip install 'onetwo[eval]'")

from onetwo.errors import OnetwoError  # noqa: E402
from onetwo.eval import hub  # noqa: E402
from onetwo.eval.backends import crop  # noqa: E402
from onetwo.eval.onnx_models import CcipEmbedder, WdTagger, YoloPersonDetector, nms, open_session  # noqa: E402
from tests import evalkit  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return evalkit.write_models(tmp_path_factory.mktemp("models"))


def test_stand_ins_have_the_real_input_and_output_contracts(models: dict[str, Path]) -> None:
    detector = open_session(models["model"])
    assert [(i.name, i.shape) for i in detector.get_inputs()] == [("images", [1, 3, 640, 640])]
    assert [(o.name, o.shape) for o in detector.get_outputs()] == [("output0", [1, 5, 8400])]
    assert detector.get_modelmeta().custom_metadata_map["imgsz"] == "[640, 640]"
    features = open_session(models["features"])
    assert [(i.name, i.shape[1:]) for i in features.get_inputs()] == [("input", [3, 384, 384])]
    assert [(o.name, o.shape[1:]) for o in features.get_outputs()] == [("output", [768])]
    metrics = open_session(models["metrics"])
    assert [i.name for i in metrics.get_inputs()] == ["input"] and [o.name for o in metrics.get_outputs()] == ["output"]


def test_detector_finds_each_figure_once_left_to_right(models: dict[str, Path]) -> None:
    detector = YoloPersonDetector(models["model"], "stand-in")
    assert detector.batch == 1 and detector.input_size == (640, 640)
    pair, trio, empty = detector.detect([evalkit.scene(["aoi", "midori"]), evalkit.scene(["aoi", "midori", "aoi"]),
                                         evalkit.scene([])])
    assert [(round(box.x0), round(box.x1)) for box in pair] == [(64, 192), (320, 448)]  # 512 px: quarters
    assert len(trio) == 3 and trio[0].centre_x < trio[1].centre_x < trio[2].centre_x
    assert empty == []
    assert all(box.y0 > 0 and box.y1 < 512 for box in pair)  # the figures' own top and bottom, not the frame


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5) == [0, 2]


def test_embedder_differences_are_at_the_real_ccip_scale(models: dict[str, Path]) -> None:
    embedder = CcipEmbedder(models["features"], models["metrics"], models["threshold"], "stand-in")
    assert embedder.threshold == evalkit.THRESHOLD == 0.178  # the real metrics.json
    detector = YoloPersonDetector(models["model"], "stand-in")
    image = evalkit.scene(["aoi", ("aoi", "midori")])
    blend_crops = [crop(image, box) for box in detector.detect([image])[0]]
    references = embedder.embed([evalkit.scene(["aoi"]), evalkit.scene(["midori"])])
    assert references.shape == (2, 768) and references.dtype == np.float32
    differences = embedder.differences(embedder.embed(blend_crops), references)
    assert differences.shape == (2, 2)
    # one character about 0.16-0.17, two about 0.40, as the real CCIP gives them
    assert 0.15 < differences[0, 0] < evalkit.THRESHOLD and 0.38 < differences[0, 1] < 0.42
    # the half-and-half blend: under the threshold for both, closer together than the default blend margin
    assert differences[1].max() < evalkit.THRESHOLD and np.ptp(differences[1]) < evalkit.THRESHOLD / 4
    mostly_aoi = evalkit.scene([("aoi", "aoi")])
    ImageDraw.Draw(mostly_aoi).rectangle((288, 0, 320, 512), fill=evalkit.CHARACTERS["midori"][0])
    (leaning,) = embedder.differences(embedder.embed([mostly_aoi]), references)
    assert leaning[0] < evalkit.THRESHOLD < leaning[1]  # a figure mostly one character is that character


def test_a_dynamic_batch_axis_takes_several_pictures_a_call(models: dict[str, Path], tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    onnx.save(evalkit.detector_model(batch="batch"), tmp_path / "dynamic.onnx")
    dynamic = YoloPersonDetector(tmp_path / "dynamic.onnx", "dynamic")
    assert dynamic.batch > 1
    fed: list[int] = []
    run = dynamic.session.run
    dynamic.session = type("Counting", (), {"run": lambda self, names, feed: fed.append(len(feed["images"]))
                                            or run(names, feed)})()
    images = [evalkit.scene(figures) for figures in (["aoi", "midori"], ["aoi", "midori", "aoi"], [], ["aoi"])]
    found = dynamic.detect(images)
    assert fed == [4]  # one call for all four
    assert found == YoloPersonDetector(models["model"], "static").detect(images)  # the same boxes as one by one
    assert [len(boxes) for boxes in found] == [2, 3, 0, 1]


@pytest.mark.parametrize(("height", "width", "imgsz"), [
    (384, 640, None),  # a fixed non-square input: its own height and width, whatever the metadata
    ("height", "width", (384, 640)),  # dynamic: imgsz, read as [height, width]
])
def test_a_non_square_detector_input(tmp_path: Path, height, width, imgsz) -> None:
    onnx = pytest.importorskip("onnx")
    onnx.save(evalkit.detector_model(height=height, width=width, imgsz=imgsz), tmp_path / "wide.onnx")
    detector = YoloPersonDetector(tmp_path / "wide.onnx", "wide")
    assert detector.input_size == (640, 384)  # PIL order: width, height
    (pair,) = detector.detect([evalkit.scene(["aoi", "midori"], size=512)])
    assert [(round(box.x0), round(box.x1)) for box in pair] == [(64, 192), (320, 448)]
    assert all(100 < box.y1 - box.y0 < 512 for box in pair)


def test_offline_reads_the_hub_cache_layout(models: dict[str, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(evalkit.fake_hub_cache(tmp_path / "hub", models)))
    found = hub.resolve({**hub.detector_files(), **hub.embedder_files()}, offline=True)
    assert found["model"].read_bytes() == models["model"].read_bytes()
    assert found["threshold"].name == "metrics.json"
    assert "models--deepghs--ccip_onnx" in str(found["features"])


def test_offline_names_every_missing_file(models: dict[str, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cache = evalkit.fake_hub_cache(tmp_path / "hub", models, leave_out=("metrics", "threshold"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with pytest.raises(OnetwoError) as raised:
        hub.resolve({**hub.detector_files(), **hub.embedder_files()}, offline=True)
    message = str(raised.value)
    assert str(cache) in message and "without --offline" in message
    assert f"deepghs/ccip_onnx: {hub.EMBEDDER_MODEL}/model_metrics.onnx" in message
    assert f"deepghs/ccip_onnx: {hub.EMBEDDER_MODEL}/metrics.json" in message
    assert "model_feat.onnx" not in message and "anime_person_detection" not in message


@pytest.mark.parametrize("legacy", [True, False])
def test_offline_finds_the_cache_where_huggingface_hub_does(models: dict[str, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, legacy: bool) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    if legacy:  # the legacy variable wins over HF_HOME, as in huggingface_hub.constants
        monkeypatch.setenv("HF_HOME", str(tmp_path / "elsewhere"))
        monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(evalkit.fake_hub_cache(tmp_path / "legacy", models)))
    else:
        monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
        evalkit.fake_hub_cache(tmp_path / "home" / "hub", models)
    found = hub.resolve({**hub.detector_files(), **hub.embedder_files()}, offline=True)
    assert found["model"].read_bytes() == models["model"].read_bytes()
    assert str(found["model"]).startswith(str(tmp_path / ("legacy" if legacy else "home")))


def test_the_default_cache_is_under_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == str(tmp_path / "xdg" / "huggingface" / "hub")


def test_the_tagger_wrapper_feeds_bgr_on_white_and_keeps_general_tags(models: dict[str, Path]) -> None:
    session = open_session(models["tagger"])
    assert [(i.name, i.shape[1:]) for i in session.get_inputs()] == [("input", [448, 448, 3])]
    assert len(session.get_outputs()) == 2  # predictions, then embeddings, as imgutils reads them
    tagger = WdTagger(models["tagger"], models["tags"], "stand-in")
    assert tagger.size == 448 and tagger.batch > 1
    image = evalkit.scene(["aoi", "midori"])
    aoi, midori = (crop(image, box) for box in YoloPersonDetector(models["model"], "d").detect([image])[0])
    # a narrow crop padded on white (black padding would read as aoi's dark blue hair), colours read as BGR (read as
    # RGB, aoi's red dress would be blue); the rating and character rows never come back
    assert tagger.tag([aoi, midori]) == [("1girl", "red_dress", "blue_hair", "hat"),
                                         ("1girl", "green_dress", "orange_hair", "ponytail")]
    assert tagger.tag([]) == []
