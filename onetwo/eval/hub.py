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
TAGGER_REPO = "deepghs/wd14_tagger_with_embeddings"  # where imgutils' tagging.wd14 fetches the model
TAGGER_MODEL = "SmilingWolf/wd-swinv2-tagger-v3"  # imgutils' default, SwinV2_v3; its tag list is in its own repo


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


def tagger_files(model: str = TAGGER_MODEL) -> dict[str, HubFile]:
    return {"tagger": HubFile(TAGGER_REPO, f"{model}/model.onnx"), "tags": HubFile(model, "selected_tags.csv")}


def cache_dir() -> str:
    """Where huggingface_hub keeps its files, found as it finds them (its `constants`): $HF_HUB_CACHE, then the
    legacy $HUGGINGFACE_HUB_CACHE, then $HF_HOME/hub, then $XDG_CACHE_HOME/huggingface/hub, then
    ~/.cache/huggingface/hub. Read at call time, so a changed environment counts (huggingface_hub reads it once, at
    import)."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return _expand(os.environ[variable])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME")
                                                     or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return os.path.join(_expand(home), "hub")


def _expand(path: str) -> str:
    return os.path.expandvars(os.path.expanduser(path))


def resolve(files: dict[str, HubFile], offline: bool, also: str = "") -> dict[str, Path]:
    """`also`: more of a fix, said after the usual one."""
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
        where = cache_dir()
        fix = ("fetch them once with network access (run without --offline, or `hf download <repo> <file>`)"
               if offline else "check the network, or copy the files into the cache and use --offline")
        raise OnetwoError(f"model file(s) not in {where}; {fix}{also}:", missing)
    return found
