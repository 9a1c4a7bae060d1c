"""The real onnxruntime wrappers on tiny stand-in models with the real models' input and output names and shapes,
and the huggingface cache layout that `--offline` reads."""

from __future__ import annotations

from pathlib import Path

import pytest

np = pytest.importorskip("numpy", reason="onetwo eval needs numpy: pip install 'onetwo[eval]'")
pytest.importorskip("onnxruntime", reason="onetwo eval needs onnxruntime: pip install 'onetwo[eval]'")
pytest.importorskip("onnx", reason="building the stand-in models needs onnx (in the dev extra)")
pytest.importorskip("huggingface_hub", reason="onetwo eval needs huggingface_hub: pip install 'onetwo[eval]'")

from onetwo.errors import OnetwoError  # noqa: E402
from onetwo.eval import hub  # noqa: E402
from onetwo.eval.backends import crop  # noqa: E402
from onetwo.eval.onnx_models import CcipEmbedder, YoloPersonDetector, nms, open_session  # noqa: E402
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


def test_embedder_differences_and_published_threshold(models: dict[str, Path]) -> None:
    embedder = CcipEmbedder(models["features"], models["metrics"], models["threshold"], "stand-in")
    assert embedder.threshold == evalkit.THRESHOLD
    detector = YoloPersonDetector(models["model"], "stand-in")
    image = evalkit.scene(["aoi", ("aoi", "midori")])
    blend_crops = [crop(image, box) for box in detector.detect([image])[0]]
    references = embedder.embed([evalkit.scene(["aoi"]), evalkit.scene(["midori"])])
    assert references.shape == (2, 768) and references.dtype == np.float32
    differences = embedder.differences(embedder.embed(blend_crops), references)
    assert differences.shape == (2, 2)
    assert differences[0, 0] < 0.01 and differences[0, 1] > 0.9  # aoi is aoi, not midori
    assert abs(differences[1, 0] - differences[1, 1]) < 0.01 < differences[1, 0] < evalkit.THRESHOLD  # the blend


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
