"""The anime segmentation model deepghs' imgutils uses (skytnt/anime-seg `isnetis.onnx`), as a thin onnxruntime
wrapper behind `masks.Segmenter`. Needs onetwo[masks]; only `masks.load_segmenter` imports it, on demand.

Contract, as imgutils 0.19 runs it (`imgutils/segment/isnetis.py`): the picture as RGB floats in [0, 1], resized
(bilinear) so its longer side is 1024 and letterboxed, centred, on black into a (1, 3, 1024, 1024) float32 input
named `img`; the first output is (1, 1, 1024, 1024), the figure's probability per pixel in [0, 1]; the letterbox is
cut away and the rest resized back to the picture's size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from onetwo.eval.hub import HubFile, resolve

ISNET_REPO = "skytnt/anime-seg"
ISNET_FILE = "isnetis.onnx"
ISNET_SCALE = 1024


def isnet_files() -> dict[str, HubFile]:
    return {"model": HubFile(ISNET_REPO, ISNET_FILE)}


def letterbox(width: int, height: int, scale: int = ISNET_SCALE) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the resized picture inside the square input, as imgutils computes them."""
    new_height, new_width = (scale, int(scale * width / height)) if height > width else \
        (int(scale * height / width), scale)
    return (scale - new_width) // 2, (scale - new_height) // 2, new_width, new_height


class IsnetSegmenter:
    def __init__(self, model_file: Path, name: str = "isnetis"):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(model_file), options,
                                                    providers=onnxruntime.get_available_providers())
        self.input_name = self.session.get_inputs()[0].name
        self.name = name

    def encode(self, image: Image.Image) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        left, top, width, height = box = letterbox(*image.size)
        resized = np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR), dtype=np.float32) / 255.0
        data = np.zeros((ISNET_SCALE, ISNET_SCALE, 3), dtype=np.float32)
        data[top:top + height, left:left + width] = resized
        return data.transpose(2, 0, 1)[None], box

    def segment(self, image: Image.Image) -> Image.Image:
        data, (left, top, width, height) = self.encode(image)
        output = self.session.run(None, {self.input_name: data})[0][0, 0]
        inside = np.clip(output[top:top + height, left:left + width], 0.0, 1.0)
        mask = Image.fromarray(np.round(inside * 255).astype(np.uint8), "L")
        return mask.resize(image.size, Image.BILINEAR)


def load_isnet(offline: bool) -> IsnetSegmenter:
    return IsnetSegmenter(resolve(isnet_files(), offline)["model"])
