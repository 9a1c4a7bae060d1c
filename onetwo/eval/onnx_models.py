"""Thin onnxruntime wrappers for deepghs' anime person detector (YOLOv8) and CCIP character embedder.

Contracts, as deepghs/imgutils (MIT) runs these models (`imgutils/generic/yolo.py`, `imgutils/metrics/ccip.py`):

- detector `model.onnx`: input `images`, float32 (1, 3, H, W), RGB in [0, 1], the picture stretched (not
  letterboxed) to the input's fixed H and W, else the `imgsz` of the model's metadata ([H, W], 640x640 when
  absent); a dynamic batch axis takes several pictures a call; output `output0`, (1, 4 + classes,
  anchors): per anchor a centre-x, centre-y, width, height box in input pixels and one score per class. Kept: the
  anchors whose best class score passes `conf` (0.3), then greedy non-maximum suppression at IoU `iou` (0.5), boxes
  scaled back to the picture.
- CCIP `model_feat.onnx`: input `input`, float32 (N, 3, 384, 384), RGB resized bilinearly to 384x384, scaled to
  [0, 1] then normalised with CLIP's mean and std; output `output`, (N, 768). `model_metrics.onnx`: input `input`,
  (N, 768) stacked features, output `output`, (N, N) differences (about 0.17 for one character, 0.4 for two).
  `metrics.json` holds the published `threshold`: same character at or below it.
- wd tagger (`imgutils/tagging/wd14.py`, SmilingWolf's v3 models as deepghs re-exports them with embeddings):
  `model.onnx` input float32 (N, S, S, 3), the picture centred on a white square of its longer side, resized
  bicubically to S (the input's own size, 448), BGR in [0, 255], not normalised; outputs (predictions (N, tags),
  already sigmoid probabilities; embeddings). `selected_tags.csv` (from SmilingWolf's own repository): one row per
  prediction, `name` (booru spelling, underscores) and `category` (0 general, 4 character, 9 rating). A general tag
  is kept above 0.35, imgutils' default.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from onetwo.eval.backends import Box

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)[:, None, None]
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)[:, None, None]
CCIP_SIZE = 384
EMBED_BATCH = 16


def open_session(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=onnxruntime.get_available_providers())


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression, highest score first (the +1 pixel areas follow imgutils)."""
    x0, y0, x1, y1 = boxes.T
    areas = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = scores.argsort(kind="stable")[::-1]
    keep = []
    while order.size:
        first, rest = order[0], order[1:]
        keep.append(int(first))
        width = np.maximum(0.0, np.minimum(x1[first], x1[rest]) - np.maximum(x0[first], x0[rest]) + 1)
        height = np.maximum(0.0, np.minimum(y1[first], y1[rest]) - np.maximum(y0[first], y0[rest]) + 1)
        overlap = width * height / (areas[first] + areas[rest] - width * height)
        order = rest[overlap <= iou]
    return keep


def yolo_boxes(output: np.ndarray, conf: float, iou: float, image_size: tuple[int, int],
               input_size: tuple[int, int]) -> list[Box]:
    """One image's (4 + classes, anchors) output → boxes in the image's pixels, left to right."""
    scores = output[4:].max(axis=0)
    kept = output[:, scores > conf].T
    if not kept.size:
        return []
    centre_x, centre_y, width, height = kept[:, 0], kept[:, 1], kept[:, 2], kept[:, 3]
    corners = np.stack([centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2], 1)
    best = kept[:, 4:].max(axis=1)
    scale_x, scale_y = image_size[0] / input_size[0], image_size[1] / input_size[1]
    boxes = []
    for index in nms(corners, best, iou):
        x0, y0, x1, y1 = corners[index]
        boxes.append(Box(float(np.clip(x0 * scale_x, 0, image_size[0])), float(np.clip(y0 * scale_y, 0, image_size[1])),
                         float(np.clip(x1 * scale_x, 0, image_size[0])), float(np.clip(y1 * scale_y, 0, image_size[1])),
                         float(best[index])))
    return sorted(boxes, key=lambda box: box.centre_x)


def input_size(shape: Sequence, metadata: dict[str, str]) -> tuple[int, int]:
    """The (width, height) to stretch pictures to: the input's own height and width where the export fixed them
    (nothing else runs), else the `imgsz` metadata read as ultralytics' exporter writes it, [height, width] (imgutils
    unpacks it as width, height; the two agree on the square models deepghs publishes), else 640x640."""
    height, width = (shape[2], shape[3]) if len(shape) == 4 else (None, None)
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return width, height
    size = json.loads(metadata["imgsz"]) if "imgsz" in metadata else [640, 640]
    if isinstance(size, int):
        size = [size, size]
    return int(size[1]), int(size[0])


class YoloPersonDetector:
    def __init__(self, model_file: Path, name: str, conf: float = 0.3, iou: float = 0.5):
        self.session = open_session(model_file)
        self.name = f"{name}@conf{conf:g},iou{iou:g}"
        self.conf, self.iou = conf, iou
        shape = self.session.get_inputs()[0].shape
        self.input_size = input_size(shape, self.session.get_modelmeta().custom_metadata_map)
        batch = shape[0]
        self.batch = 8 if not isinstance(batch, int) or batch < 1 else batch  # a static export takes one at a time

    def encode(self, image: Image.Image) -> np.ndarray:
        resized = image.convert("RGB").resize(self.input_size, Image.BICUBIC)
        return np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / 255.0

    def detect(self, images: Sequence[Image.Image]) -> list[list[Box]]:
        found: list[list[Box]] = []
        for start in range(0, len(images), self.batch):
            chunk = images[start:start + self.batch]
            (output,) = self.session.run(["output0"], {"images": np.stack([self.encode(image) for image in chunk])})
            found += [yolo_boxes(item, self.conf, self.iou, image.size, self.input_size)
                      for item, image in zip(output, chunk, strict=True)]
        return found


class CcipEmbedder:
    def __init__(self, feature_file: Path, metrics_file: Path, threshold_file: Path, name: str):
        self.features = open_session(feature_file)
        self.metrics = open_session(metrics_file)
        self.threshold = float(json.loads(threshold_file.read_text(encoding="utf-8"))["threshold"])
        self.name = name

    @staticmethod
    def encode(image: Image.Image) -> np.ndarray:
        resized = image.convert("RGB").resize((CCIP_SIZE, CCIP_SIZE), Image.BILINEAR)
        data = np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return (data - CLIP_MEAN) / CLIP_STD

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        chunks = [self.features.run(["output"], {"input": np.stack([self.encode(image) for image in
                                                                     images[start:start + EMBED_BATCH]])})[0]
                  for start in range(0, len(images), EMBED_BATCH)]
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, 0), np.float32)

    def differences(self, queries: np.ndarray, references: np.ndarray) -> np.ndarray:
        """The metric head runs on the stacked vectors and answers every pair; keep the query-by-reference block."""
        (matrix,) = self.metrics.run(["output"], {"input": np.concatenate([queries, references]).astype(np.float32)})
        return matrix[:len(queries), len(queries):]


class WdTagger:
    GENERAL = "0"

    def __init__(self, model_file: Path, tags_file: Path, name: str, threshold: float = 0.35):
        self.session = open_session(model_file)
        self.name = f"{name}@general{threshold:g}"
        self.threshold = threshold
        with tags_file.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        self.names = [row["name"] for row in rows]
        self.general = np.array([row["category"].strip() == self.GENERAL for row in rows])
        shape = self.session.get_inputs()[0].shape
        self.size = int(shape[1]) if isinstance(shape[1], int) else 448
        self.batch = 8 if not isinstance(shape[0], int) or shape[0] < 1 else shape[0]

    def encode(self, image: Image.Image) -> np.ndarray:
        side = max(image.size)
        square = Image.new("RGB", (side, side), (255, 255, 255))
        rgba = image.convert("RGBA")
        square.paste(rgba, ((side - image.width) // 2, (side - image.height) // 2), mask=rgba)
        if side != self.size:
            square = square.resize((self.size, self.size), Image.BICUBIC)
        return np.asarray(square, dtype=np.float32)[:, :, ::-1]

    def tag(self, images: Sequence[Image.Image]) -> list[tuple[str, ...]]:
        """Each picture's general tags above the threshold, most probable first."""
        inputs, outputs = self.session.get_inputs()[0].name, self.session.get_outputs()[0].name
        found: list[tuple[str, ...]] = []
        for start in range(0, len(images), self.batch):
            chunk = np.stack([self.encode(image) for image in images[start:start + self.batch]])
            (predictions,) = self.session.run([outputs], {inputs: chunk})
            for row in predictions:
                kept = np.flatnonzero(self.general & (row > self.threshold))
                found.append(tuple(self.names[index] for index in kept[np.argsort(-row[kept], kind="stable")]))
        return found
