"""The real models' files, fetched with huggingface_hub into its usual cache on first use (`--offline`: the cache
only, and an error that names every missing file)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from onetwo.errors import OnetwoError

DETECTOR_REPO = "deepghs/anime_person_detection"
DETECTOR_MODEL = "person_detect_v1.1_m"  # imgutils' default: level m, version v1.1
EMBEDDER_REPO = "deepghs/ccip_onnx"
EMBEDDER_MODEL = "ccip-caformer-24-randaug-pruned"  # imgutils' default CCIP model


@dataclass(frozen=True)
class HubFile:
    repo: str
    path: str


def detector_files(model: str = DETECTOR_MODEL) -> dict[str, HubFile]:
    return {"model": HubFile(DETECTOR_REPO, f"{model}/model.onnx")}


def embedder_files(model: str = EMBEDDER_MODEL) -> dict[str, HubFile]:
    return {"features": HubFile(EMBEDDER_REPO, f"{model}/model_feat.onnx"),
            "metrics": HubFile(EMBEDDER_REPO, f"{model}/model_metrics.onnx"),
            "threshold": HubFile(EMBEDDER_REPO, f"{model}/metrics.json")}


def cache_dir() -> str | None:
    """$HF_HUB_CACHE, then $HF_HOME/hub, else huggingface_hub's default (~/.cache/huggingface/hub); read at call
    time, so a changed environment counts."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def resolve(files: dict[str, HubFile], offline: bool) -> dict[str, Path]:
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
    except ImportError as exc:
        raise OnetwoError("onetwo eval needs huggingface_hub, onnxruntime and numpy: "
                          "pip install 'onetwo[eval]'") from exc
    found: dict[str, Path] = {}
    missing: list[str] = []
    for role, item in files.items():
        if offline:
            cached = try_to_load_from_cache(item.repo, item.path, cache_dir=cache_dir())
            if isinstance(cached, str) and Path(cached).is_file():
                found[role] = Path(cached)
            else:
                missing.append(f"{item.repo}: {item.path}")
            continue
        try:
            found[role] = Path(hf_hub_download(item.repo, item.path, cache_dir=cache_dir()))
        except Exception as exc:  # network, authentication or a missing file: all end the same way for the user
            missing.append(f"{item.repo}: {item.path} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
    if missing:
        where = cache_dir() or "the default huggingface cache (~/.cache/huggingface/hub)"
        fix = ("fetch them once with network access (run without --offline, or `hf download <repo> <file>`)"
               if offline else "check the network, or copy the files into the cache and use --offline")
        raise OnetwoError(f"model file(s) not in {where}; {fix}:", missing)
    return found
