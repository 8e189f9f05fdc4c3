"""The small typed objects that travel along the data path.

Source ──Frame──▶ Encoder ──Encoded──▶ DeltaMem.update ──▶ Event
Question ──query[D]──▶ DeltaMem.read ──Moment──▶ Answer
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

CHANNELS = ("motion", "person", "face", "brightness", "scene_change")
"""Per-frame scalar signals the event detector gives the memory's timeline, in this order."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    ``rgb`` is ``[H, W, 3]`` uint8 in RGB order; ``t`` is the presentation time in seconds from the
    start of the video (or of the stream); ``index`` counts the frames this source has emitted.
    ``arrived`` (live sources): ``time.monotonic()`` when the frame was decoded and queued, from
    which latencies are measured.
    """

    t: float
    rgb: np.ndarray
    index: int
    arrived: float | None = None


@dataclass(frozen=True)
class VideoInfo:
    """What probing a source tells before decoding."""

    path: str
    duration: float | None  # seconds, None when the container does not say
    fps: float | None  # native frame rate
    width: int
    height: int
    codec: str


@dataclass
class Encoded:
    """An encoder's output for one frame.

    ``tokens`` ``[N, D]`` and ``global_`` ``[D]`` are float32 and L2-normalised rows.
    """

    tokens: torch.Tensor
    global_: torch.Tensor


@dataclass
class Detection:
    """An entry or exit found by the event detector (image coordinates of the processed frame)."""

    t: float  # when it happened (first seen for "entered", last seen for "left")
    event: str  # "entered" | "left"
    track_id: int
    bbox: tuple[int, int, int, int]  # x, y, w, h in the frame the crop comes from
    confidence: float
    description: str = ""
    crop: np.ndarray | None = None  # RGB crop of the subject, for the thumbnail and the embedding
    mask: np.ndarray | None = None  # bool mask of the subject inside ``crop``
    context: np.ndarray | None = None  # RGB view around the subject, for the thumbnail


@dataclass
class Moment:
    """One grounded piece of an answer. Times are seconds from the video start."""

    t: float
    start: float
    end: float
    score: float
    event: str
    description: str = ""
    thumbnail: str | None = None  # a path once written under --out, else None
    thumb_id: int = -1  # index into the memory's thumbnail pool (-1: none); not serialised

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("thumb_id")
        for k in ("t", "start", "end"):
            d[k] = round(float(d[k]), 3)
        d["score"] = round(float(d["score"]), 4)
        return d


@dataclass
class Answer:
    question: str
    kind: str  # "text" | "image"
    answer: str
    moments: list[Moment] = field(default_factory=list)
    intent: str = "retrieval"
    confidence: float | None = None  # yes/no answers (intent "presence"): confidence in [0, 1]

    def to_json(self) -> dict:
        d = {
            "question": self.question,
            "kind": self.kind,
            "answer": self.answer,
            "intent": self.intent,
            "moments": [m.to_json() for m in self.moments],
        }
        if self.confidence is not None:
            d["confidence"] = round(float(self.confidence), 3)
        return d
