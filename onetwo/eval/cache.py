"""What eval computed per image (figure boxes, identity vectors, seam score), kept by file, size, mtime and role, so
a rerun after another epoch scores only the new images. One cache file per pair of models.

The role keeps apart the two ways an image is analysed: a reference is embedded whole (one box, no seam score), a
sample has its figures detected and its seam scored; the same file can be both."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onetwo.fsutil import write_bytes_atomic

VERSION = 3  # 2: keys name the role; 3: references flattened onto the background, keyed by it; figures' tags
ROLES = ("reference", "sample")


@dataclass(frozen=True)
class Entry:
    boxes: tuple[tuple[float, float, float, float, float], ...]  # x0, y0, x1, y1, score
    features: np.ndarray  # one row per box (or one row for a whole reference image)
    seam: float | None
    tags: tuple[tuple[str, ...], ...] = ()  # one per box where a tagger ran


def file_key(path: Path, role: str, variant: str = "") -> str:
    """`variant`: what else the entry depends on (a reference's flattening background)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    stat = path.stat()
    return f"{role}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{variant}"


class FeatureCache:
    def __init__(self, folder: Path, models: str):
        self.file = folder / f"{hashlib.sha256(f'{VERSION}|{models}'.encode()).hexdigest()[:16]}.npz"
        self.models = models
        self.entries: dict[str, Entry] = {}
        self.hits = 0
        self.changed = False
        if self.file.is_file():
            self._load()

    def _load(self) -> None:
        try:
            with np.load(self.file, allow_pickle=False) as data:
                index = json.loads(bytes(data["index"]).decode("utf-8"))
                features = data["features"]
        except (OSError, ValueError, KeyError):
            return  # unreadable: start over, the next save replaces it
        for key, item in index.items():
            start, count = item["row"], item["count"]
            self.entries[key] = Entry(tuple(tuple(box) for box in item["boxes"]), features[start:start + count],
                                      item["seam"], tuple(tuple(tags) for tags in item.get("tags", ())))

    def get(self, key: str) -> Entry | None:
        entry = self.entries.get(key)
        self.hits += entry is not None
        return entry

    def put(self, key: str, entry: Entry) -> None:
        self.entries[key] = entry
        self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        index, rows, start = {}, [], 0
        for key, entry in self.entries.items():
            count = len(entry.features)
            index[key] = {"boxes": [list(box) for box in entry.boxes], "seam": entry.seam, "row": start, "count": count,
                          "tags": [list(tags) for tags in entry.tags]}
            if count:
                rows.append(entry.features.astype(np.float32))
            start += count
        width = max((row.shape[1] for row in rows), default=0)
        features = np.concatenate(rows) if rows else np.zeros((0, width), np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, index=np.frombuffer(json.dumps(index).encode("utf-8"), dtype=np.uint8), features=features)
        write_bytes_atomic(self.file, buffer.getvalue())
        self.changed = False
