"""Live frame sources: webcams, V4L2 devices, RTSP/RTMP/HTTP streams, HTTP MJPEG, paced files.

Every live source decodes on its own producer thread and hands frames to the consumer through a
small buffer that never blocks the producer:

* **Drop policy** -- the buffer keeps the newest ``maxsize`` frames. When the consumer is slower
  than the source, the *oldest* buffered frame is dropped to make room and counted in
  :attr:`LiveSource.dropped`. The buffer never holds more than ``maxsize`` frames.
* **Sampling** -- ``sample_fps`` keeps at most that many frames per second of stream time (before
  the buffer; frames skipped by sampling are not "dropped").
* **Stream time** -- ``Frame.t`` is in seconds since the source started: the wall clock
  (monotonic) for cameras and network streams, the video's own times for a paced file (plus the
  duration of earlier loops). It never goes backwards and runs on across reconnects.
* **Reconnects** -- when the stream is lost (or cannot be opened) the producer retries after
  ``retry_delay`` seconds, doubling up to ``retry_cap`` (no jitter), at most ``max_retries``
  consecutive failed attempts; the count resets once a frame arrives. Each outage that ends in a
  reconnect is recorded in :attr:`LiveSource.gaps` as ``(t_last_frame, t_first_frame_after)`` (the
  last ``max_gaps`` of them) and logged. When the retries run out, iteration ends by raising a
  one-line :class:`SourceError` (after the frames still buffered), never a thread traceback.

Usage::

    with open_live("rtsp://cam/stream", sample_fps=2) as src:
        for frame in src:          # Frame(t, rgb [H, W, 3] uint8, index); ends on stop() or EOF
            ...
        print(src.dropped, src.reconnects, src.gaps)
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import socket
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator
from fractions import Fraction

import av
import cv2
import numpy as np

from streamvid.errors import InputError
from streamvid.sources.file import (
    SamplingGrid,
    SourceError,
    _ffmpeg_reason,
    _open,
    decoded_frames,
    probe,
    upright,
)
from streamvid.types import Frame

log = logging.getLogger(__name__)

__all__ = [
    "AVSource",
    "CaptureSource",
    "LiveSource",
    "MJPEGSource",
    "RealtimeFileSource",
    "open_live",
    "resolve",
]


class _Lost(Exception):
    """The stream ended or broke; the producer reconnects."""


def _fit(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    """``rgb`` scaled down (aspect kept, even sides) so its long side is at most ``max_side``."""
    h, w = rgb.shape[:2]
    if not max_side or max(w, h) <= max_side:
        return np.ascontiguousarray(rgb)
    s = max_side / max(w, h)
    nw, nh = max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)
    return cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)


class LiveSource:
    """Base class: a producer thread, a drop-oldest buffer, sampling, stream time and reconnects.

    Subclasses implement :meth:`_connect` (open the stream; raise on failure) and :meth:`_read`
    (yield ``(t, rgb)`` pairs from an open connection: ``t`` is the stream time in seconds, or
    ``None`` to use the wall clock since the source started; return at the natural end of the
    source, raise on loss), and may override :meth:`_close` and :meth:`_interrupt`.

    Counters (read them any time): ``received`` frames decoded, ``sampled`` frames that passed
    ``sample_fps``, ``dropped`` frames pushed out of the full buffer, ``emitted`` frames handed out,
    ``skipped`` undecodable frames, ``reconnects`` successful reconnects, ``failures`` failed
    connection attempts/losses in total.
    """

    kind = "live"

    def __init__(
        self,
        *,
        sample_fps: float | None = None,
        maxsize: int = 8,
        max_side: int | None = 640,
        max_retries: int = 5,
        retry_delay: float = 0.5,
        retry_cap: float = 8.0,
        max_gaps: int = 1000,
    ) -> None:
        if sample_fps is not None and sample_fps <= 0:
            raise InputError(f"--fps must be positive, got {sample_fps}")
        if maxsize < 1:
            raise InputError(f"buffer size must be >= 1, got {maxsize}")
        if max_retries < 0 or retry_delay < 0 or retry_cap < retry_delay:
            raise InputError("bad retry settings: need max_retries >= 0 and 0 <= retry_delay <= retry_cap")
        self.sample_fps = sample_fps
        self.maxsize = maxsize
        self.max_side = max_side
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.retry_cap = retry_cap
        self.received = 0
        self.sampled = 0
        self.dropped = 0
        self.emitted = 0
        self.skipped = 0
        self.reconnects = 0
        self.failures = 0
        self.error: SourceError | None = None  # why the source ended, when it failed
        self._gaps: deque[tuple[float, float]] = deque(maxlen=max_gaps)
        self._buf: deque[tuple[float, np.ndarray, float]] = deque()  # (t, rgb, arrival monotonic time)
        self.waker: threading.Event | None = None  # set whenever a frame is queued or the source ends
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ended = False
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._conn = None

    # -- public ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.kind

    @property
    def gaps(self) -> list[tuple[float, float]]:
        """Outages as ``(t_start, t_end)`` stream times, oldest first (the last ``max_gaps``)."""
        with self._cond:
            return list(self._gaps)

    @property
    def buffered(self) -> int:
        with self._cond:
            return len(self._buf)

    @property
    def finished(self) -> bool:
        """The source ended (or was stopped) and every queued frame has been read."""
        with self._cond:
            return (self._ended or self._stop.is_set()) and not self._buf

    def _skip(self) -> None:
        """A corrupt packet or frame was skipped (see :func:`decoded_frames`)."""
        self.skipped += 1

    def stats(self) -> dict:
        with self._cond:
            return {
                "source": self.name,
                "received": self.received,
                "sampled": self.sampled,
                "dropped": self.dropped,
                "emitted": self.emitted,
                "skipped": self.skipped,
                "reconnects": self.reconnects,
                "failures": self.failures,
                "gaps": [(round(a, 3), round(b, 3)) for a, b in self._gaps],
                "error": str(self.error) if self.error else None,
            }

    def start(self) -> LiveSource:
        """Start the producer thread (iteration starts it too). Stream time 0 is now."""
        if self._thread is None:
            self._t0 = time.monotonic()
            self._thread = threading.Thread(target=self._run, name=f"streamvid-live-{self.kind}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the producer (interrupting a blocking read where it can) and end the iteration."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        conn = self._conn
        if conn is not None:
            try:
                self._interrupt(conn)
            except Exception:  # best effort: the thread is a daemon and checks the stop flag
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> LiveSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        while True:
            with self._cond:
                while not self._buf and not self._ended and not self._stop.is_set():
                    self._cond.wait(0.1)
                if self._buf:
                    t, rgb, arrived = self._buf.popleft()
                    index = self.emitted
                    self.emitted += 1
                elif self._stop.is_set() and not self._ended:
                    return
                else:  # ended and drained
                    if self.error is not None:
                        raise self.error
                    return
            yield Frame(t=t, rgb=rgb, index=index, arrived=arrived)

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or ``None`` when none arrives within ``timeout`` or the source ended."""
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._buf and not self._ended and not self._stop.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(0.1 if left is None else min(0.1, left))
            if not self._buf:
                if self._ended and self.error is not None:
                    raise self.error
                return None
            t, rgb, arrived = self._buf.popleft()
            index = self.emitted
            self.emitted += 1
        return Frame(t=t, rgb=rgb, index=index, arrived=arrived)

    # -- for subclasses ----------------------------------------------------------------------
    def clock(self) -> float:
        """Wall-clock stream time: seconds since :meth:`start`."""
        return time.monotonic() - self._t0

    def _connect(self):
        raise NotImplementedError

    def _read(self, conn) -> Iterator[tuple[float | None, np.ndarray]]:
        raise NotImplementedError

    def _close(self, conn) -> None:
        close = getattr(conn, "close", None)
        if close is not None:
            close()

    def _interrupt(self, conn) -> None:
        """Called from :meth:`stop` on another thread to unblock a read in progress."""

    def _describe(self, e: BaseException) -> str:
        if isinstance(e, av.FFmpegError):
            return _ffmpeg_reason(e)
        return str(e) or type(e).__name__

    # -- the producer ------------------------------------------------------------------------
    def _delay(self, attempt: int) -> float:
        """Backoff before retry ``attempt`` (1-based): retry_delay * 2**(attempt-1), capped."""
        return min(self.retry_cap, self.retry_delay * 2 ** (attempt - 1))

    def _push(self, t: float, rgb: np.ndarray) -> None:
        with self._cond:
            if len(self._buf) >= self.maxsize:
                self._buf.popleft()
                self.dropped += 1
            self._buf.append((t, rgb, time.monotonic()))
            self._cond.notify()
        if self.waker is not None:
            self.waker.set()

    def _finish(self, error: SourceError | None) -> None:
        with self._cond:
            self.error = error
            self._ended = True
            self._cond.notify_all()
        if self.waker is not None:
            self.waker.set()

    def _run(self) -> None:
        grid = SamplingGrid(0.0, self.sample_fps)
        fails = 0  # consecutive failed attempts since the last frame
        last_t: float | None = None  # stream time of the newest frame
        lost_at: float | None = None  # last_t when the stream was lost (an open gap)
        connected_before = False
        error: SourceError | None = None
        try:
            while not self._stop.is_set():
                conn = None
                try:
                    conn = self._connect()
                    self._conn = conn
                    if self._stop.is_set():
                        break
                    if connected_before:
                        log.info("%s: reconnected", self.name)
                    for t, rgb in self._read(conn):
                        if self._stop.is_set():
                            break
                        t = self.clock() if t is None else float(t)
                        if last_t is not None and t <= last_t:
                            t = last_t + 1e-3  # stream time never goes backwards
                        self.received += 1
                        fails = 0
                        if lost_at is not None:
                            with self._cond:
                                self._gaps.append((lost_at, t))
                                self.reconnects += 1
                            log.warning(
                                "%s: stream back; gap %.1f s (%.3f-%.3f)", self.name, t - lost_at, lost_at, t
                            )
                            lost_at = None
                        last_t = t
                        connected_before = True
                        if self.sample_fps:
                            if not grid.wants(t):
                                continue
                            grid.observe(t)
                        self.sampled += 1
                        self._push(t, _fit(rgb, self.max_side))
                    break  # stopped, or the source ended (a file): no reconnect
                except Exception as e:  # any failure of connect/read: retry with backoff
                    if self._stop.is_set():
                        break
                    fails += 1
                    self.failures += 1
                    if last_t is not None and lost_at is None:
                        lost_at = last_t
                    reason = self._describe(e)
                    if fails > self.max_retries:
                        what = "lost" if connected_before else "cannot open"
                        error = SourceError(
                            f"{self.name}: stream {what} ({reason}); gave up after {self.max_retries} "
                            f"retr{'y' if self.max_retries == 1 else 'ies'}"
                        )
                        break
                    delay = self._delay(fails)
                    log.warning(
                        "%s: %s; retry %d/%d in %.1f s", self.name, reason, fails, self.max_retries, delay
                    )
                    if conn is not None:
                        self._safe_close(conn)
                        conn = None
                    self._stop.wait(delay)
                finally:
                    if conn is not None:
                        self._safe_close(conn)
        except BaseException as e:  # a bug: still one line for the consumer, never a thread traceback
            log.debug("live source thread failed", exc_info=True)
            error = SourceError(f"{self.name}: {type(e).__name__}: {e}")
        finally:
            if error is not None and lost_at is not None:
                with self._cond:
                    self._gaps.append((lost_at, max(lost_at, self.clock())))
            if self.skipped:
                log.warning("%s: skipped %d undecodable frame(s)", self.name, self.skipped)
            self._finish(error)

    def _safe_close(self, conn) -> None:
        self._conn = None
        try:
            self._close(conn)
        except Exception as e:
            log.debug("%s: close failed: %s", self.name, e)


class RealtimeFileSource(LiveSource):
    """A video file played as if live: frames released at the video's rate × ``speed`` (wall clock).

    ``Frame.t`` is the video's own presentation time (plus the duration of earlier passes when
    ``loop``). This is how tests and demos simulate a camera: a slow consumer sees drops.
    """

    kind = "file"

    def __init__(self, path: str, speed: float = 1.0, loop: bool = False, **kw) -> None:
        if speed <= 0:
            raise InputError(f"--speed must be positive, got {speed}")
        kw.setdefault("max_retries", 0)  # a broken file does not heal
        super().__init__(**kw)
        self.path = str(path)
        self.speed = speed
        self.loop = loop
        self.info = probe(self.path)  # SourceError (exit 2) for a missing/empty/non-video file
        self._offset = 0.0  # stream time of the current pass's video time 0
        self._resume_t = -1.0  # video time (this pass) of the last frame given out

    @property
    def name(self) -> str:
        return self.path

    def _connect(self):
        return _open(self.path)

    def _read(self, container) -> Iterator[tuple[float, np.ndarray]]:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = stream.time_base or Fraction(1, 90000)
        origin = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        step = 1.0 / (self.info.fps or 25.0)
        while True:
            anchor: tuple[float, float] | None = None  # (wall, video t) the pacing counts from
            n = 0
            last = -1.0
            for f in decoded_frames(container, stream, self._skip):
                t = float(f.pts * tb) - origin if f.pts is not None else n * step
                n += 1
                if t <= self._resume_t + 1e-6:  # after a reopen: go on where it broke
                    continue
                if anchor is None:
                    anchor = (time.monotonic(), t)
                due = anchor[0] + (t - anchor[1]) / self.speed
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                rgb = upright(f, f.to_ndarray(format="rgb24"))
                self._resume_t = last = t
                yield self._offset + t, rgb
            if not self.loop or last < 0:
                return
            self._offset += last + step
            self._resume_t = -1.0
            container.seek(0, stream=stream, backward=True)  # next pass, paced on from here


class CaptureSource(LiveSource):
    """A webcam (``index``) or a V4L2 device path read through OpenCV's ``VideoCapture``."""

    kind = "capture"

    def __init__(self, device: int | str, *, read_timeout: float = 5.0, **kw) -> None:
        super().__init__(**kw)
        self.device = device
        self.read_timeout = read_timeout

    @property
    def name(self) -> str:
        return f"camera {self.device}" if isinstance(self.device, int) else str(self.device)

    def _connect(self):
        if isinstance(self.device, str) and self.device.startswith("/dev/"):
            cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        else:
            cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            cap.release()
            raise _Lost(f"cannot open {self.name}")
        return cap

    def _read(self, cap) -> Iterator[tuple[None, np.ndarray]]:
        while not self._stop.is_set():
            ok, bgr = cap.read()
            if not ok or bgr is None:
                raise _Lost("no frame from the device")
            yield None, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _close(self, cap) -> None:
        cap.release()


class AVSource(LiveSource):
    """An RTSP/RTMP/HTTP(S)/other FFmpeg URL decoded with PyAV. Times are the wall clock.

    RTSP goes over TCP. ``timeout`` (seconds) bounds opening and each read, so a silent stream
    counts as lost. The end of the stream is a loss too (live streams do not end): reconnect.
    """

    kind = "av"

    def __init__(self, url: str, *, timeout: float = 5.0, options: dict | None = None, **kw) -> None:
        super().__init__(**kw)
        self.url = url
        self.timeout = timeout
        self.options = dict(options or {})

    @property
    def name(self) -> str:
        return _redact(self.url)

    def _connect(self):
        opts = {}
        scheme = urllib.parse.urlsplit(self.url).scheme.lower()
        if scheme in ("rtsp", "rtsps"):
            opts["rtsp_transport"] = "tcp"
        opts["timeout"] = str(int(self.timeout * 1e6))  # microseconds: rtsp socket / http rw timeout
        opts.update(self.options)
        container = av.open(self.url, mode="r", options=opts, timeout=(self.timeout, self.timeout),
                            metadata_errors="replace")
        if not container.streams.video:
            container.close()
            raise SourceError(f"no video stream in {self.name}")
        return container

    def _read(self, container) -> Iterator[tuple[None, np.ndarray]]:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for f in decoded_frames(container, stream, self._skip):
            if self._stop.is_set():
                return
            yield None, upright(f, f.to_ndarray(format="rgb24"))
        raise _Lost("end of stream")


class MJPEGSource(LiveSource):
    """An HTTP(S) ``multipart/x-mixed-replace`` stream of JPEGs (IP cameras, ``mjpg-streamer``).

    Each part is read by its ``Content-Length`` when it has one, else up to the next boundary (the
    JPEG is cut from its SOI ``FFD8`` to its last EOI ``FFD9``). Times are the wall clock.
    """

    kind = "mjpeg"

    def __init__(self, url: str, *, timeout: float = 5.0, max_part: int = 32 << 20, **kw) -> None:
        super().__init__(**kw)
        self.url = url
        self.timeout = timeout
        self.max_part = max_part

    @property
    def name(self) -> str:
        return _redact(self.url)

    def _connect(self):
        conn, resp = _http_get(self.url, self.timeout)
        ctype = resp.getheader("Content-Type", "")
        if resp.status != 200 or not ctype.lower().startswith("multipart/"):
            conn.close()
            raise _Lost(f"HTTP {resp.status} {ctype or 'no content type'}, not an MJPEG stream")
        m = re.search(r'boundary="?([^";]+)"?', ctype, re.I)
        boundary = m.group(1).strip() if m else ""
        if boundary.startswith("--"):
            boundary = boundary[2:]
        return conn, resp, boundary.encode("latin-1")

    def _interrupt(self, conn) -> None:
        sock = conn[0].sock
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)

    def _close(self, conn) -> None:
        conn[1].close()
        conn[0].close()

    def _read(self, conn) -> Iterator[tuple[None, np.ndarray]]:
        _, resp, boundary = conn
        for jpeg in _parts(resp, boundary, self.max_part):
            if self._stop.is_set():
                return
            bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                self.skipped += 1
                continue
            yield None, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        raise _Lost("stream closed by the server")


def _parts(resp, boundary: bytes, max_part: int) -> Iterator[bytes]:
    """The bodies of a multipart stream read from ``resp`` (a file-like HTTP response)."""
    delim = b"--" + boundary if boundary else None
    line = resp.readline(65536)
    while line:
        s = line.strip()
        if not s or (delim is not None and not s.startswith(delim)):
            line = resp.readline(65536)  # preamble / CRLF between parts
            if delim is None and s.startswith(b"--"):
                delim = s
            continue
        if s == (delim or b"") + b"--":
            return  # final boundary
        headers = {}
        while True:
            h = resp.readline(65536)
            if not h:
                return
            h = h.strip()
            if not h:
                break
            k, _, v = h.partition(b":")
            headers[k.strip().lower()] = v.strip()
        length = headers.get(b"content-length")
        if length is not None and length.isdigit():
            n = int(length)
            if n > max_part:
                raise _Lost(f"part of {n} bytes exceeds the {max_part}-byte limit")
            body = resp.read(n)
            if len(body) < n:
                return
            yield body
            line = resp.readline(65536)
            continue
        # no length: read lines up to the next boundary, then cut the JPEG out by SOI/EOI
        chunks: list[bytes] = []
        size = 0
        while True:
            line = resp.readline(65536)
            if not line:
                return
            if delim is not None and line.startswith(delim):
                break
            chunks.append(line)
            size += len(line)
            if size > max_part:
                raise _Lost(f"part exceeds the {max_part}-byte limit")
        data = b"".join(chunks)
        a, b = data.find(b"\xff\xd8"), data.rfind(b"\xff\xd9")
        if a >= 0 and b > a:
            yield data[a : b + 2]


def _http_get(url: str, timeout: float):
    u = urllib.parse.urlsplit(url)
    cls = http.client.HTTPSConnection if u.scheme.lower() == "https" else http.client.HTTPConnection
    conn = cls(u.hostname or "", u.port, timeout=timeout)
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    headers = {"User-Agent": "streamvid", "Accept": "*/*"}
    if u.username:
        import base64

        cred = f"{urllib.parse.unquote(u.username)}:{urllib.parse.unquote(u.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
    except BaseException:
        conn.close()
        raise
    return conn, resp


def _redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    u = urllib.parse.urlsplit(url)
    if u.password is None:
        return url
    host = u.hostname or ""
    netloc = f"{u.username}:***@{host}" + (f":{u.port}" if u.port else "")
    return urllib.parse.urlunsplit(u._replace(netloc=netloc))


_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


def resolve(spec: str) -> str:
    """Which kind of source ``spec`` names, without opening it.

    ``"webcam"`` (digits), ``"v4l2"`` (``/dev/video*``), ``"http"`` (an ``http(s)://`` URL: MJPEG or
    not is decided by its Content-Type when opened), ``"av"`` (any other URL: rtsp, rtmp, ...),
    ``"file"`` (an existing file). Raises :class:`SourceError` for anything else.
    """
    s = str(spec).strip()
    if s.isdigit():
        return "webcam"
    if s.startswith("/dev/video") or (s.startswith("/dev/") and not os.path.isfile(s)):
        return "v4l2"
    if _URL.match(s):
        return "http" if s.lower().startswith(("http://", "https://")) else "av"
    if os.path.isfile(s):
        return "file"
    if os.path.exists(s):
        raise SourceError(f"not a file, device or URL: {s}")
    raise SourceError(f"no such file, device or URL: {s}")


def _is_mjpeg(url: str, timeout: float) -> bool:
    """Whether ``url`` answers with a ``multipart/x-mixed-replace`` body (one GET, headers only)."""
    try:
        conn, resp = _http_get(url, timeout)
    except (OSError, http.client.HTTPException) as e:
        raise SourceError(f"cannot connect to {_redact(url)} ({e})") from None
    try:
        return resp.getheader("Content-Type", "").lower().startswith("multipart/x-mixed-replace")
    finally:
        conn.close()


def open_live(spec: str, *, speed: float = 1.0, loop: bool = False, timeout: float = 5.0, **kw) -> LiveSource:
    """The live source ``spec`` names (see :func:`resolve`); ``kw`` go to :class:`LiveSource`.

    ``speed``/``loop`` apply to a file (paced at its own rate × ``speed``); ``timeout`` (seconds)
    to network streams. Nothing is started until iteration or :meth:`LiveSource.start`.
    """
    kind = resolve(spec)
    s = str(spec).strip()
    if kind == "webcam":
        return CaptureSource(int(s), **kw)
    if kind == "v4l2":
        return CaptureSource(s, **kw)
    if kind == "file":
        return RealtimeFileSource(s, speed=speed, loop=loop, **kw)
    if kind == "http" and _is_mjpeg(s, timeout):
        return MJPEGSource(s, timeout=timeout, **kw)
    return AVSource(s, timeout=timeout, **kw)
