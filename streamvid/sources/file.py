"""Video files decoded with PyAV on a background thread, sampled at a target rate."""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction

import av
import numpy as np

from streamvid.errors import InputError
from streamvid.types import Frame, VideoInfo

log = logging.getLogger(__name__)

_END = object()


class SourceError(InputError):
    """A video that cannot be opened or decoded at all."""


def _check_path(path: str) -> None:
    if not os.path.exists(path):
        raise SourceError(f"no such file: {path}")
    if os.path.isdir(path):
        raise SourceError(f"is a directory, not a video file: {path}")
    if os.path.getsize(path) == 0:
        raise SourceError(f"file is empty: {path}")


def _open(path: str):
    _check_path(path)
    try:
        # metadata that is not UTF-8 (a damaged or odd file) is replaced, not a UnicodeDecodeError
        container = av.open(path, mode="r", metadata_errors="replace")
    except av.FFmpegError as e:
        raise SourceError(f"not a video file (or unreadable): {path} ({_ffmpeg_reason(e)})") from None
    if not container.streams.video:
        container.close()
        raise SourceError(f"no video stream in {path}")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # FFmpeg has no decoder for it (or the codec tag is damaged)
        tag = getattr(stream, "codec_tag", None) or "unknown"
        container.close()
        raise SourceError(f"unsupported video codec ({tag}) in {path}")
    return container


def _ffmpeg_reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e).splitlines()[0]


def probe(path: str) -> VideoInfo:
    """Duration, frame rate, size and codec of ``path`` without decoding it.

    Raises :class:`SourceError` (exit code 2) for a missing, empty or non-video file.
    """
    container = _open(path)
    try:
        return _info(path, container, container.streams.video[0])
    finally:
        container.close()


def _info(path: str, container, stream) -> VideoInfo:
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        duration = None  # damaged or absent: say nothing rather than something wrong
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else None
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= 1000):
        fps = None
    return VideoInfo(
        path=path,
        duration=duration,
        fps=fps,
        width=int(stream.codec_context.width),
        height=int(stream.codec_context.height),
        codec=stream.codec_context.name,
    )


def upright(frame: av.VideoFrame, rgb: np.ndarray) -> np.ndarray:
    """``rgb`` (decoded from ``frame``) turned the way its display matrix says it is shown (phone
    videos are often stored sideways with a rotation to apply)."""
    try:
        k = round(float(frame.rotation) / 90.0) % 4
    except (AttributeError, TypeError, ValueError):
        return rgb
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def decoded_frames(container, stream, on_skip: Callable[[], None],
                   unwanted: Callable[[av.Packet], bool] | None = None) -> Iterator[av.VideoFrame]:
    """Decoded frames of ``stream``. A packet that fails to decode, or a frame FFmpeg marks as
    corrupt (damage it concealed), is skipped and ``on_skip()`` is called for it.

    ``unwanted(packet)``: True when the caller will not take the packet's frame. The decoder then
    drops it if no other frame refers to it (FFmpeg's ``skip_frame = NONREF``: in H.264 with
    B-frames about half the frames), so it is not decoded at all; reference frames are always
    decoded. The frames that come out are those that would have, less dropped unwanted ones."""
    ctx = stream.codec_context
    mode = "DEFAULT"
    for packet in container.demux(stream):
        if unwanted is not None:
            want = "NONREF" if unwanted(packet) else "DEFAULT"
            if want != mode:
                ctx.skip_frame = mode = want
        try:
            frames = packet.decode()
        except av.FFmpegError as e:
            log.debug("corrupt packet at %s: %s", packet.pts, e)
            on_skip()
            continue
        for f in frames:
            if f.is_corrupt:
                on_skip()
                continue
            yield f


class SamplingGrid:
    """The ``--fps`` sampling grid: which frames :class:`FileSource` takes, and where a run stopped.

    A frame is taken when its time reaches ``next_t``; the grid then moves one step on (or, after a
    gap, restarts from that frame).     ``next_t`` is the source time of the grid point after the last frame seen: a resumed run that
    starts there samples the frames one uninterrupted run would have. ``first_t``/``last_t``/``frames``
    describe the frames seen (source times).
    """

    def __init__(self, start: float, fps: float | None) -> None:
        self.step = 1.0 / fps if fps else 0.0
        self.next_t = float(start)
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.frames = 0

    def wants(self, t: float) -> bool:
        """Whether a frame at source time ``t`` is on the grid (not before ``next_t``)."""
        return t + 1e-6 >= self.next_t

    def observe(self, t: float) -> None:
        self.first_t = t if self.first_t is None else self.first_t
        self.last_t = t
        self.frames += 1
        if not self.step:  # every frame: anything after this one
            self.next_t = t + 1e-3
            return
        self.next_t += self.step
        if self.next_t <= t:  # after a gap the grid restarts from the frame
            self.next_t = t + self.step

    def track(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        """``frames``, observed as they are taken."""
        for f in frames:
            self.observe(f.t)
            yield f


class FileSource:
    """Frames of a video file, sampled at ``fps`` frames per second of video time.

    Decoding runs on its own thread (and FFmpeg's threads) and hands frames over through a bounded
    queue, so decoding overlaps encoding. Every :class:`Frame` carries its presentation time in
    seconds from the start of the video. Corrupt packets are skipped and counted in
    :attr:`skipped`. ``max_side`` downscales frames (keeping the aspect ratio) in FFmpeg's scaler.

    Usage::

        src = FileSource("in.mp4", fps=2)
        for frame in src:        # Frame(t, rgb [H, W, 3] uint8, index)
            ...
    """

    def __init__(
        self,
        path: str,
        *,
        fps: float | None = 2.0,
        start: float = 0.0,
        end: float | None = None,
        max_side: int | None = 640,
        queue_size: int = 8,
        skip_unwanted: bool = True,
    ) -> None:
        if fps is not None and fps <= 0:
            raise InputError(f"--fps must be positive, got {fps}")
        if start < 0:
            raise InputError(f"--start must be >= 0, got {start}")
        if end is not None and end <= start:
            raise InputError(f"--end ({end}) must be after --start ({start})")
        self.path = path
        self.fps = fps
        self.start = start
        self.end = end
        self.max_side = max_side
        self.queue_size = queue_size
        self.skip_unwanted = skip_unwanted  # let the decoder drop non-reference frames sampling skips
        self.info = probe(path)
        self.skipped = 0  # corrupt packets/frames skipped
        self.decoded = 0  # frames decoded (before sampling)
        self.emitted = 0  # frames handed out

    @property
    def expected_frames(self) -> int | None:
        """How many frames sampling will emit, when the duration is known (for progress bars)."""
        if self.info.duration is None:
            return None
        end = self.info.duration if self.end is None else min(self.end, self.info.duration)
        span = max(0.0, end - self.start)
        rate = self.fps or self.info.fps
        return max(1, round(span * rate)) if rate else None

    def _out_size(self) -> tuple[int, int]:
        w, h = self.info.width, self.info.height
        if self.max_side and max(w, h) > self.max_side:
            s = self.max_side / max(w, h)
            w, h = max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)
        return w, h

    def __iter__(self) -> Iterator[Frame]:
        q: queue.Queue = queue.Queue(maxsize=self.queue_size)
        stop = threading.Event()
        worker = threading.Thread(target=self._decode, args=(q, stop), name="streamvid-decode", daemon=True)
        worker.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                self.emitted += 1
                yield item
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    worker.join(0.05)
        if self.skipped:
            log.warning("skipped %d corrupt packet(s)/frame(s) in %s", self.skipped, self.path)
        if self.emitted == 0:
            where = "" if self.start == 0 and self.end is None else " in the --start/--end range"
            raise SourceError(f"no decodable video frames{where} in {self.path}")

    def _skip(self) -> None:
        self.skipped += 1

    def _put(self, q: queue.Queue, item, stop: threading.Event) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _decode(self, q: queue.Queue, stop: threading.Event) -> None:
        try:
            for frame in self._frames(stop):
                if not self._put(q, frame, stop):
                    return
            self._put(q, _END, stop)
        except BaseException as e:  # handed to the consumer thread, which re-raises it
            self._put(q, e, stop)

    def _unwanted(self, grid: SamplingGrid, stream, tb: float, origin: float) -> Callable[[av.Packet], bool] | None:
        """A test for packets whose frames sampling will not take (see :func:`decoded_frames`), or
        None where every frame may be taken or the frame rate is not constant.

        A frame at ``t`` is not taken when ``t`` is before the grid's next point (exact: that point
        only moves on). Further on, the grid's points are ``next_t + k * step`` and sampling takes
        the first frame at or after each: with frames every ``dt`` seconds, a frame more than
        1.5 ``dt`` after the point before it is not that first frame. A frame rate that is not
        constant turns the test off (a frame missing before it would make a later one the first)."""
        rate, base = stream.average_rate, stream.base_rate
        if not (self.fps and rate and base) or abs(float(rate) / float(base) - 1.0) > 0.01:
            return None
        dt = 1.0 / float(rate)
        step = grid.step
        if not step or dt * 1.5 >= step:
            return None

        def unwanted(packet: av.Packet) -> bool:
            if packet.pts is None:
                return False
            t = packet.pts * tb - origin + 1e-6  # the tolerance of SamplingGrid.wants
            g = grid.next_t
            return t < g or (t - g) % step >= 1.5 * dt
        return unwanted

    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        container = _open(self.path)
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            tb = stream.time_base or Fraction(1, 90000)
            origin = float(stream.start_time * tb) if stream.start_time is not None else 0.0
            native = self.info.fps or 25.0
            if self.start > 0:
                container.seek(int((self.start + origin) / tb), stream=stream, backward=True)
            grid = SamplingGrid(self.start, self.fps)
            w, h = self._out_size()
            index = 0
            unwanted = self._unwanted(grid, stream, float(tb), origin) if self.skip_unwanted else None
            for f in decoded_frames(container, stream, self._skip, unwanted):
                if stop.is_set():
                    return
                self.decoded += 1
                t = float(f.pts * tb) - origin if f.pts is not None else self.decoded / native
                if t < self.start - 1e-6:
                    continue
                if self.end is not None and t > self.end + 1e-6:
                    return
                if not grid.wants(t):
                    continue
                grid.observe(t)
                try:
                    rgb = f.to_ndarray(format="rgb24", width=w, height=h)
                except (av.FFmpegError, ValueError) as e:
                    self._skip()
                    log.debug("undecodable frame at %.3f s: %s", t, e)
                    continue
                yield Frame(t=t, rgb=upright(f, np.ascontiguousarray(rgb)), index=index)
                index += 1
        finally:
            container.close()
