"""The straight data path: Source → Encoder → DeltaMem, with the event detector beside the memory.

``Watcher.ingest(frames)`` feeds every frame through the encoder (in batches) and the detector,
updates the memory and pins the detector's entries and exits in it with a description, an
embedding and a thumbnail. Nothing here grows with the length of the video.

A memory can hold several stream *sources* one after the other (``watch --resume``): each source's
frames go on the memory's timeline at ``source time + offset``. :class:`StreamLog` is the list of
sources with their offsets that a snapshot keeps in its metadata, :func:`fingerprint` identifies a
video file, and :class:`~streamvid.sources.SamplingGrid` follows the ``--fps`` grid so a resumed run continues it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from streamvid.events import DetectorOutput, EventDetector, PreparedFrame
from streamvid.memory import DeltaMem, MemoryLayout
from streamvid.memory.bank import FrameUpdate
from streamvid.models.base import Encoder
from streamvid.sources import SamplingGrid
from streamvid.timefmt import fmt_time
from streamvid.types import Detection, Encoded, Frame, VideoInfo

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    """What one :meth:`Watcher.ingest` did. Times are on the memory's timeline (source time + offset)."""

    frames: int = 0
    seconds: float = 0.0  # wall-clock time spent
    first_t: float | None = None
    last_t: float | None = None
    entered: int = 0
    left: int = 0
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False  # stopped early by ``stop`` (or a KeyboardInterrupt from the frames)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def memory_kwargs(encoder: Encoder) -> dict:
    """The :class:`DeltaMem` settings tuned to ``encoder``'s vectors (thresholds it declares)."""
    return {name: getattr(encoder, name) for name in ("novelty_threshold", "scene_threshold")
            if getattr(encoder, name, None) is not None}


def new_memory(encoder: Encoder, budget_bytes: int, *, device: str = "cpu") -> DeltaMem:
    """A memory sized by ``budget_bytes`` for ``encoder``'s tokens (raises ValueError if too small)."""
    return DeltaMem(MemoryLayout.from_budget(budget_bytes, encoder.dim), device=device, **memory_kwargs(encoder))


GPU_ENCODER_TORCH_THREADS = 4


def configure_threads(encoder: Encoder) -> None:
    """Set the process's thread pools for ingesting with ``encoder`` (the CLI calls this once).

    The pipeline already runs decoding, the encoder and the detector on threads of their own, so
    OpenCV's own pool only adds contention: one thread (measured on 2 cores, the detector took
    6.6 ms of CPU per frame with one OpenCV thread, 8.2 ms with two, for 0.8 ms less wall time
    when alone). torch keeps its default threads for a CLIP on the CPU, whose matrix products use
    them. Otherwise torch's CPU pool only runs the memory's small tensor updates, where more
    threads contend with decoding and the detector: with ``classic``, one (on 2 cores the update
    took 4.1 ms per frame with torch's 2 threads, 1.8 with one); with an encoder on a GPU, at most
    :data:`GPU_ENCODER_TORCH_THREADS` (on a 16-core H100 machine, CLIP ViT-B-32 on the GPU, 720p
    at 10 fps: the update took 14.3 ms per frame with torch's 16 threads, 2.7 with 4, 2.9 with 1,
    and ingest ran at 40, 95 and 86 frames/s).
    """
    cv2.setNumThreads(1)
    if encoder.name == "classic":
        torch.set_num_threads(1)
    elif getattr(encoder, "device", torch.device("cpu")).type != "cpu":
        torch.set_num_threads(max(1, min(GPU_ENCODER_TORCH_THREADS, torch.get_num_threads())))


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
                 batch_size: int = 8, thumb_height: int = 96,
                 on_event: Callable[[Detection, int], None] | None = None,
                 on_signals: Callable[..., None] | None = None) -> None:
        self.encoder = encoder
        self.on_event = on_event  # (detection, memory row) after each entry/exit is pinned
        self.on_signals = on_signals  # (frame, DetectorOutput, Encoded) after each frame
        self.memory = memory
        self.detector = detector or EventDetector()
        self.batch_size = batch_size
        self.thumb_height = thumb_height
        self._descriptions: OrderedDict[int, str] = OrderedDict()  # track id → description (bounded)
        # A resumed memory already holds events of earlier runs, whose detectors numbered their
        # tracks from 1 too: this run's track ids start after theirs, so visits never mix runs.
        used = memory.ev_used
        self._track_base = max(0, int(memory.ev_track_id[used].max())) if bool(used.any()) else 0

    def ingest(self, frames: Iterable[Frame], on_frame: Callable[[Frame], None] | None = None, *,
               offset: float = 0.0, new_segment: bool = False,
               stop: Callable[[], bool] | None = None) -> IngestStats:
        """Feed ``frames`` through the encoder, the detector and the memory; flush the detector.

        ``offset`` is added to every frame's time (a source appended to a memory that already holds
        earlier content); ``new_segment`` makes the first frame open a new timeline segment (the
        join between two sources). With ``stop`` (a callable), ingest ends cleanly before the next
        frame once ``stop()`` is true, and a ``KeyboardInterrupt`` raised by ``frames`` also ends
        it: the frames taken so far are all ingested, the detector is flushed as at the end of a
        stream, and ``stats.interrupted`` is set. Without ``stop`` a KeyboardInterrupt propagates.
        """
        stats = IngestStats()
        t0 = time.perf_counter()
        first = new_segment
        # Three stages, each on its own thread, each taking the frames strictly in order:
        # - the encoder works one batch ahead, and the detector's stateless part
        #   (:meth:`EventDetector.prepare`) runs there too, after it;
        # - this thread runs the detector's tracking on the batch before;
        # - the memory's update and the pins of the detector's entries and exits run one batch
        #   behind, on a third thread (``on_frame`` is called there, after the frame is written).
        # OpenCV, NumPy's array loops and torch release the GIL, so the stages overlap on a
        # multi-core machine (and a GPU encoder runs while the CPU detects); what each computes is
        # what the serial loop (:meth:`_step`) computes.
        encode = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamvid-encode")
        write = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamvid-memory")
        writes: deque[Future] = deque()
        failed: list[BaseException] = []  # the memory stage's first error: later writes are dropped
        try:
            pending: tuple[list[Frame], Future] | None = None
            for batch in _batches(self._frames(frames, offset, stop, stats), self.batch_size):
                ahead = (batch, encode.submit(self._encode, batch))
                if pending is not None:
                    first = self._detect(*pending, first, writes, write, failed, stats, on_frame)
                pending = ahead
            if pending is not None:
                self._detect(*pending, first, writes, write, failed, stats, on_frame)
            while writes:
                writes.popleft().result()
        finally:
            encode.shutdown(wait=True, cancel_futures=True)
            write.shutdown(wait=True, cancel_futures=True)
        self.finish(stats)
        stats.seconds = time.perf_counter() - t0
        return stats

    def _encode(self, batch: list[Frame]) -> list[tuple[Encoded, PreparedFrame | None]]:
        """The encoder thread's work on a batch → ``(encoded, prepared)`` per frame; ``prepared``
        is the detector's :meth:`~streamvid.events.EventDetector.prepare` result, or None for a
        detector without one."""
        encoded = self.encoder.encode_frames([f.rgb for f in batch])
        prepare = getattr(self.detector, "prepare", None)
        return list(zip(encoded, [prepare(f) for f in batch] if prepare else [None] * len(batch)))

    def _detect(self, batch: list[Frame], encoded: Future, first: bool, writes: deque[Future],
                write: ThreadPoolExecutor, failed: list[BaseException], stats: IngestStats,
                on_frame: Callable[[Frame], None] | None) -> bool:
        """Run the detector on an encoded batch here and queue its memory writes on ``write``
        → whether the next frame is still the first. At most two batches wait to be written (a
        bounded lag; a write's error is raised here)."""
        steps = []
        for frame, (enc, prepared) in zip(batch, encoded.result()):
            update, out = self.observe(frame, enc, boundary=first, prepared=prepared)
            steps.append((frame, update, out))
            first = False
        writes.append(write.submit(self._write, steps, failed, stats, on_frame))
        while len(writes) > 2:
            writes.popleft().result()
        return first

    def _write(self, steps: list[tuple[Frame, FrameUpdate, DetectorOutput]], failed: list[BaseException],
               stats: IngestStats, on_frame: Callable[[Frame], None] | None) -> None:
        """The memory stage of a batch: update the memory with each frame, pin its entries and
        exits. After an error (``failed``), nothing more is written: frames enter in order or not at all."""
        if failed:
            return
        try:
            for frame, update, out in steps:
                self._write_frame(frame, update, out, stats)
                if on_frame is not None:
                    on_frame(frame)
        except BaseException as e:
            failed.append(e)
            raise

    @staticmethod
    def _frames(frames: Iterable[Frame], offset: float, stop: Callable[[], bool] | None,
                stats: IngestStats) -> Iterator[Frame]:
        it = iter(frames)
        while True:
            if stop is not None and stop():
                stats.interrupted = True
                return
            try:
                frame = next(it)
            except StopIteration:
                return
            except KeyboardInterrupt:
                if stop is None or stop():  # not interruptible, or a second Ctrl-C: stop at once
                    raise
                stats.interrupted = True
                return
            yield dataclasses.replace(frame, t=frame.t + offset) if offset else frame

    def _step(self, frame: Frame, enc, stats: IngestStats, boundary: bool = False,
              prepared: PreparedFrame | None = None) -> None:
        """One frame in line: observe it, then write it (what the three ingest threads do in turn)."""
        self._write_frame(frame, *self.observe(frame, enc, boundary=boundary, prepared=prepared), stats)

    def _write_frame(self, frame: Frame, update: FrameUpdate, out: DetectorOutput, stats: IngestStats) -> None:
        """Write one observed frame into the memory, then pin the detector's entries and exits."""
        self.memory.update(update.t, update.enc, update.channels, thumb=update.thumb, boundary=update.boundary)
        self.commit(frame, out, stats)

    def observe(self, frame: Frame, enc, *, boundary: bool = False,
                prepared: PreparedFrame | None = None) -> tuple[FrameUpdate, DetectorOutput]:
        """Run the detector on ``frame`` → what to write into the memory, and the detector's output
        for :meth:`commit` once it is written (a MemoryBank writes several streams' frames at once).
        ``prepared``: the detector's ``prepare(frame)``, when it was run ahead (see :meth:`ingest`)."""
        out = self.detector.update(frame) if prepared is None else self.detector.update(frame, prepared)
        if self.on_signals is not None:
            self.on_signals(frame, out, enc)
        max_bytes = self.memory.layout.thumb_bytes
        update = FrameUpdate(frame.t, enc, out.signals.as_list(),
                             thumb=lambda: encode_jpeg(frame.rgb, height=self.thumb_height, max_bytes=max_bytes),
                             boundary=boundary or out.boundary or out.activity_changed)
        return update, out

    def commit(self, frame: Frame, out: DetectorOutput, stats: IngestStats) -> None:
        """After ``frame`` is in the memory: count it, pin the detector's entries and exits."""
        stats.frames += 1
        stats.first_t = frame.t if stats.first_t is None else stats.first_t
        stats.last_t = frame.t
        for det in out.detections:
            self._pin(det, stats)

    def finish(self, stats: IngestStats) -> None:
        """The stream ended: pin what the detector still holds (exits of people still tracked)."""
        for det in self.detector.finish():
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
        track_id = det.track_id + self._track_base if det.track_id >= 0 else det.track_id
        row = self.memory.pin(det.t, det.event, emb, det.description, thumb, score=det.confidence,
                              track_id=track_id, bbox=det.bbox)
        if self.on_event is not None:
            self.on_event(det, row)
        if det.event == "entered":
            stats.entered += 1
        elif det.event == "left":
            stats.left += 1
        log.info("%s at %.1f s: %s", det.event, det.t, det.description)


def ingest_file(source: Iterable[Frame], grid: SamplingGrid, encoder: Encoder, memory: DeltaMem, *,
                on_frame: Callable[[Frame], None] | None = None, offset: float = 0.0, new_segment: bool = False,
                stop: Callable[[], bool] | None = None) -> IngestStats:
    """Ingest a video file's frames (a :class:`~streamvid.sources.FileSource`) into ``memory``, with a
    fresh event detector, ``grid`` observing the ``--fps`` grid: what ``watch`` and ``index`` both do
    with a file (see :meth:`Watcher.ingest` for the keyword arguments)."""
    watcher = Watcher(encoder, memory, EventDetector())
    return watcher.ingest(grid.track(source), on_frame=on_frame, offset=offset, new_segment=new_segment, stop=stop)


def truncation_warning(info: VideoInfo, grid: SamplingGrid, end: float | None, fps: float) -> str | None:
    """A warning when the frames stopped well before the end the container states (a truncated or
    damaged file): the answers then cover only what could be read."""
    if info.duration is None or grid.last_t is None:
        return None
    stop = min(info.duration, end) if end is not None else info.duration
    if grid.last_t < stop - max(1.0, 2.0 / fps):
        return (f"the video stops at {fmt_time(grid.last_t)}, before the {fmt_time(stop)} its container "
                "states (truncated or damaged?): the answers cover what could be read")
    return None


def file_warnings(skipped: int, info: VideoInfo, grid: SamplingGrid, end: float | None, fps: float,
                  stats: IngestStats) -> list[str]:
    """The warnings that make the ingest of a file partial: corrupt packets skipped (``skipped``, a
    FileSource's count), and a video that stops before the end its container states."""
    out = [f"skipped {skipped} corrupt packet(s)/frame(s)"] if skipped else []
    short = truncation_warning(info, grid, end, fps)
    if short and not stats.interrupted:
        out.append(short)
    return out


def snapshot_metadata(memory: DeltaMem, encoder_cfg: dict, stream: StreamLog) -> dict:
    """The metadata saved with a memory (``--save``), which ``watch --resume``, ``ask`` and the
    catalog read back: the encoder's config, the budget, the last source and the stream's sources."""
    cur = stream.sources[-1] if stream.sources else None
    return {
        "encoder": encoder_cfg,
        "budget_bytes": memory.layout.budget_bytes,
        "source": {"path": cur.path, "duration": cur.duration, "fps": cur.fps,
                   "sampled_fps": cur.sampled_fps} if cur is not None else {},
        "position": cur.end if cur is not None else None,
        "stream": {**stream.to_json(), "detector": "not saved: a resumed run starts a fresh event detector"},
    }


# ---------------------------------------------------------------------- stream sources (--resume)
FINGERPRINT_BYTES = 1 << 20
"""A video file is identified by the SHA-256 of its first ``min(size, FINGERPRINT_BYTES)`` bytes."""

MAX_SOURCES = 64  # source records a snapshot keeps; older ones are merged into one (see StreamLog)
SOURCES_BYTES = 16 * 1024  # most bytes the source records take in a snapshot's JSON metadata


def fingerprint(path: str, nbytes: int = FINGERPRINT_BYTES) -> str:
    """``"sha256:<hex>"`` of the first ``nbytes`` bytes of the file at ``path`` (all of it when shorter)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = nbytes
        while left > 0:
            chunk = f.read(min(left, 1 << 16))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return "sha256:" + h.hexdigest()


@dataclass
class SourceRecord:
    """One source of a memory's stream, as its snapshot keeps it.

    ``offset`` maps times: memory time = source time + offset. ``start``/``end`` are the source
    times of the first and last frames ingested from it, ``t_start``/``t_end`` the same on the
    memory's timeline; ``next_t`` is where a resumed run continues (the next ``--fps`` grid point).
    ``merged > 1``: a record standing for that many older sources, compacted to keep the snapshot's
    size fixed (no path, offset or source times; ``t_start``/``t_end`` still bound them).
    """

    path: str | None
    size: int | None = None  # bytes when it was last read
    fingerprint: str | None = None  # see FINGERPRINT_BYTES
    duration: float | None = None
    fps: float | None = None  # native frame rate
    sampled_fps: float | None = None  # --fps
    max_side: int | None = None
    offset: float | None = 0.0
    start: float | None = None
    end: float | None = None
    next_t: float | None = None
    frames: int = 0
    t_start: float | None = None
    t_end: float | None = None
    merged: int = 1

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def for_file(cls, path: str, info: VideoInfo, *, sampled_fps: float, max_side: int | None,
                 offset: float = 0.0, size: int | None = None, file_fingerprint: str | None = None) -> SourceRecord:
        """A new record for the video file at ``path`` (probed as ``info``), not yet ingested:
        its absolute path, size and :func:`fingerprint` (read now unless given)."""
        size = os.path.getsize(path) if size is None else size
        fp = file_fingerprint or fingerprint(path, min(size, FINGERPRINT_BYTES))
        return cls(path=os.path.abspath(path), size=size, fingerprint=fp, duration=info.duration, fps=info.fps,
                   sampled_fps=sampled_fps, max_side=max_side, offset=offset)

    @classmethod
    def from_json(cls, d: dict) -> SourceRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def same_video(self, path: str, size: int, duration: float | None) -> bool:
        """Whether the file at ``path`` is this source.

        With a fingerprint: the file starts with the same bytes (the first ``min(size, 1 MiB)`` of
        it when recorded) and is at least as large (a recording that grew since is the same
        video), wherever it is now. Snapshots without one (older streamvid): the same absolute
        path and duration.
        """
        if self.merged > 1:
            return False
        if self.fingerprint and self.size is not None:
            if size < self.size:
                return False
            return fingerprint(path, min(self.size, FINGERPRINT_BYTES)) == self.fingerprint
        if self.path is None or os.path.abspath(path) != self.path:
            return False
        if self.duration is None or duration is None:
            return self.duration is None and duration is None
        return abs(self.duration - duration) < 1e-3

    def resume_time(self, fps: float) -> float:
        """Source time where a run continuing this source starts."""
        if self.next_t is not None:
            return self.next_t
        step = 1.0 / (self.sampled_fps or fps)  # older snapshots: the grid from the first frame
        start = self.start or 0.0
        end = self.end if self.end is not None else start - step
        return start + (math.floor((end - start + 1e-6) / step) + 1) * step

    def add(self, grid: SamplingGrid) -> None:
        """Account for the frames a run ingested from this source (``grid`` observed them)."""
        if not grid.frames:
            return
        if self.start is None:
            self.start = grid.first_t
            self.t_start = grid.first_t + (self.offset or 0.0)
        self.end = grid.last_t
        self.t_end = grid.last_t + (self.offset or 0.0)
        self.next_t = grid.next_t
        self.frames += grid.frames


def _merge(a: SourceRecord, b: SourceRecord) -> SourceRecord:
    return SourceRecord(path=None, offset=None, frames=a.frames + b.frames, t_start=a.t_start,
                        t_end=b.t_end, merged=a.merged + b.merged)


def _json_bytes(obj) -> int:
    """Bytes ``obj`` takes as JSON inside a snapshot's header (where it is itself a JSON string)."""
    return len(json.dumps(json.dumps(obj)))


@dataclass
class StreamLog:
    """The sources a memory holds, in time order (what ``watch --resume`` continues or appends to)."""

    sources: list[SourceRecord] = field(default_factory=list)

    @classmethod
    def from_metadata(cls, meta: dict, mem_stats: dict) -> StreamLog:
        """The log of a snapshot's metadata; older snapshots (one source, no ``"stream"``) too."""
        stream = meta.get("stream")
        if isinstance(stream, dict) and isinstance(stream.get("sources"), list):
            return cls([SourceRecord.from_json(d) for d in stream["sources"] if isinstance(d, dict)])
        if not mem_stats.get("frames_seen"):
            return cls([])
        src = meta.get("source") if isinstance(meta.get("source"), dict) else {}
        first, last = mem_stats["first_t"], mem_stats["last_t"]
        position = meta.get("position")
        end = float(position) if isinstance(position, (int, float)) else last
        return cls([SourceRecord(path=src.get("path"), duration=src.get("duration"), fps=src.get("fps"),
                                 sampled_fps=src.get("sampled_fps"), offset=0.0, start=first, end=end,
                                 frames=int(mem_stats["frames_seen"]), t_start=first, t_end=last)])

    def source_of(self, t: float) -> int | None:
        """Index of the source whose span on the memory's timeline holds time ``t``."""
        found = None
        for i, rec in enumerate(self.sources):
            if rec.t_start is not None and rec.t_start <= t + 1e-6:
                found = i
        return 0 if found is None and self.sources else found

    def to_json(self, max_bytes: int = SOURCES_BYTES) -> dict:
        """``{"sources": [...]}``, the oldest records merged while there are more than
        :data:`MAX_SOURCES` or they take more than ``max_bytes``; the last is never merged (a
        resumed run continues it) but loses its path's folders if it alone is too large."""
        recs = list(self.sources)

        def size() -> int:
            return _json_bytes([r.to_json() for r in recs])

        while len(recs) > 2 and (len(recs) > MAX_SOURCES or size() > max_bytes):
            recs[:2] = [_merge(recs[0], recs[1])]
        if len(recs) == 2 and size() > max_bytes:
            recs[:2] = [dataclasses.replace(recs[0], path=None), recs[1]]
        if size() > max_bytes and recs[-1].path:
            recs[-1] = dataclasses.replace(recs[-1], path=os.path.basename(recs[-1].path)[:255])
        return {"sources": [r.to_json() for r in recs]}
