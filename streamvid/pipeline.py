"""The straight data path: Source → Encoder → DeltaMem, with the event detector beside the memory.

``Watcher.ingest(frames)`` feeds every frame through the encoder (in batches) and the detector,
updates the memory and pins the detector's entries and exits in it with a description, an
embedding and a thumbnail. Nothing here grows with the length of the video.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from streamvid.events import EventDetector
from streamvid.memory import DeltaMem, MemoryLayout
from streamvid.models.base import Encoder
from streamvid.types import Detection, Frame

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    frames: int = 0
    seconds: float = 0.0  # wall-clock time spent
    first_t: float | None = None
    last_t: float | None = None
    entered: int = 0
    left: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def new_memory(encoder: Encoder, budget_bytes: int, *, device: str = "cpu") -> DeltaMem:
    """A memory sized by ``budget_bytes`` for ``encoder``'s tokens (raises ValueError if too small)."""
    layout = MemoryLayout.from_budget(budget_bytes, encoder.dim)
    kwargs = {}
    if getattr(encoder, "novelty_threshold", None) is not None:
        kwargs["novelty_threshold"] = encoder.novelty_threshold
    return DeltaMem(layout, device=device, **kwargs)


def encode_jpeg(rgb: np.ndarray, *, height: int, max_bytes: int) -> bytes | None:
    """A small JPEG of ``rgb`` (``[H, W, 3]`` uint8) that fits in ``max_bytes``, or None."""
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        return None
    scale = min(1.0, height / h)
    img = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    for quality in (85, 70, 55, 40, 25):
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and buf.size <= max_bytes:
            return buf.tobytes()
    if img.shape[0] > 24:  # still too big: halve the size and try again
        return encode_jpeg(img, height=img.shape[0] // 2, max_bytes=max_bytes)
    return None


def _batches(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for f in frames:
        batch.append(f)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Watcher:
    """Wires an encoder, a memory and an event detector (see the module docstring)."""

    def __init__(self, encoder: Encoder, memory: DeltaMem, detector: EventDetector | None = None, *,
                 batch_size: int = 8, thumb_height: int = 96) -> None:
        self.encoder = encoder
        self.memory = memory
        self.detector = detector or EventDetector()
        self.batch_size = batch_size
        self.thumb_height = thumb_height
        self._descriptions: OrderedDict[int, str] = OrderedDict()  # track id → description (bounded)

    def ingest(self, frames: Iterable[Frame], on_frame: Callable[[Frame], None] | None = None) -> IngestStats:
        stats = IngestStats()
        t0 = time.perf_counter()
        for batch in _batches(frames, self.batch_size):
            encoded = self.encoder.encode_frames([f.rgb for f in batch])
            for frame, enc in zip(batch, encoded):
                self._step(frame, enc, stats)
                if on_frame is not None:
                    on_frame(frame)
        for det in self.detector.finish():
            self._pin(det, stats)
        stats.seconds = time.perf_counter() - t0
        return stats

    def _step(self, frame: Frame, enc, stats: IngestStats) -> None:
        out = self.detector.update(frame)
        max_bytes = self.memory.layout.thumb_bytes
        self.memory.update(frame.t, enc, out.signals.as_list(),
                           thumb=lambda: encode_jpeg(frame.rgb, height=self.thumb_height, max_bytes=max_bytes),
                           boundary=out.boundary or out.activity_changed)
        stats.frames += 1
        stats.first_t = frame.t if stats.first_t is None else stats.first_t
        stats.last_t = frame.t
        for det in out.detections:
            self._pin(det, stats)

    def _describe(self, det: Detection) -> str:
        desc = self._descriptions.get(det.track_id)
        if desc is None:
            desc = self.encoder.describe(det.crop, det.mask) if det.crop is not None and det.crop.size else "person"
            self._descriptions[det.track_id] = desc
            while len(self._descriptions) > 1024:
                self._descriptions.popitem(last=False)
        return desc

    def _pin(self, det: Detection, stats: IngestStats) -> None:
        det.description = self._describe(det)
        has_crop = det.crop is not None and det.crop.size > 0
        emb = self.encoder.encode_image(det.crop) if has_crop else torch.zeros(self.encoder.dim)
        view = det.context if det.context is not None and det.context.size else det.crop
        thumb = encode_jpeg(view, height=self.thumb_height, max_bytes=self.memory.layout.thumb_bytes) \
            if has_crop else None
        self.memory.pin(det.t, det.event, emb, det.description, thumb, score=det.confidence,
                        track_id=det.track_id, bbox=det.bbox)
        if det.event == "entered":
            stats.entered += 1
        elif det.event == "left":
            stats.left += 1
        log.info("%s at %.1f s: %s", det.event, det.t, det.description)
