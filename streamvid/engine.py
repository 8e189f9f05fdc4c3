"""Several live streams in one process: one ingest loop, one encoder, one memory each, batched.

:class:`Engine` runs the straight data path for ``B`` streams at once:

    sources (a decoding thread each) → one ``encode_frames`` call for the frames of all streams
    → each stream's event detector → one :meth:`MemoryBank.update` (``B > 1`` kernel launches)
    → each stream's pins, alerts and callbacks

Decoding never waits for the loop: every source decodes on its own thread into its bounded,
drop-oldest buffer (:class:`~streamvid.sources.live.LiveSource`), and the loop takes what is there.
When a camera stalls the others go on; when one fails it is marked ``failed`` and the others go on.

Readers (the server's queries) take :attr:`Engine.lock` while they read a memory; the loop holds it
only while it writes the memories and pins events, never while it decodes, encodes or detects.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from streamvid.memory import DeltaMem
from streamvid.memory.bank import MemoryBank
from streamvid.models.base import Encoder
from streamvid.pipeline import IngestStats, Watcher
from streamvid.sources import SamplingGrid
from streamvid.sources.file import SourceError
from streamvid.sources.live import LiveSource
from streamvid.types import Detection, Frame

log = logging.getLogger(__name__)

STATES = ("starting", "running", "ended", "failed", "stopped", "memory")


@dataclass
class Stream:
    """One stream: its memory and, when live, its source, detector (in ``watcher``) and counters.

    ``kind``: ``"live"`` (a camera or URL), ``"file"`` (a file played at its own pace) or
    ``"memory"`` (a saved memory, nothing ingested). ``duration``: stop after this many seconds
    of stream time. ``latest``: the newest frame ingested (None before the first).
    """

    id: int
    name: str
    kind: str
    memory: DeltaMem
    source: LiveSource | None = None
    watcher: Watcher | None = None
    duration: float | None = None
    state: str = "starting"
    error: str | None = None
    stopped_by: str | None = None  # "end" | "duration" | "stop" | "error"
    stats: IngestStats = field(default_factory=IngestStats)
    grid: SamplingGrid = field(default_factory=lambda: SamplingGrid(0.0, None))
    latest: Frame | None = None
    started: float = field(default_factory=time.monotonic)
    source_kind: str | None = None  # what ``resolve`` says of the SOURCE: webcam, device, url, mjpeg, file
    sampled_fps: float | None = None
    max_side: int | None = None
    alerts: object | None = None  # the stream's AlertEngine, if any
    query_encoder: object | None = None  # encodes questions for this memory (its own encoder)
    sources: list = field(default_factory=list)  # a saved memory's source records (JSON)

    @property
    def position(self) -> float | None:
        """Stream time of the newest frame ingested (for a saved memory: its last time)."""
        if self.stats.last_t is not None:
            return self.stats.last_t
        st = self.memory.stats()
        return st["last_t"] if st.get("frames_seen") else None

    @property
    def fps(self) -> float | None:
        """Frames ingested per second of wall time since the stream started."""
        if self.source is None:
            return None
        dt = time.monotonic() - self.started
        return round(self.stats.frames / dt, 2) if dt > 0 else None

    def health(self) -> dict:
        src = self.source.stats() if self.source is not None else {}
        return {"id": self.id, "name": self.name, "kind": self.kind, "state": self.state,
                "frames": self.stats.frames if self.source is not None else int(self.memory.stats()["frames_seen"]),
                "dropped": src.get("dropped", 0), "reconnects": src.get("reconnects", 0),
                "gaps": len(src.get("gaps", ())), "position": self.position, "fps": self.fps,
                "error": self.error}


class Engine:
    """The ingest loop of several live streams (see the module docstring).

    Args:
        encoder: one encoder for every stream (frames of all streams go in one batch).
        streams: the streams; those with a ``source`` are ingested, the others only held.
        bank: the :class:`MemoryBank` whose memories the live streams write (``stream.memory`` is
            ``bank[i]`` for the i-th live stream); None: each memory is updated on its own.
        batch_size: most frames encoded in one call (shared among the streams with frames).
        on_frame: called after each frame is written, with ``(stream, frame)``, under :attr:`lock`.
        on_state: called with the stream when its state changes.
    """

    def __init__(self, encoder: Encoder, streams: Sequence[Stream], *, bank: MemoryBank | None = None,
                 batch_size: int = 8, on_frame: Callable[[Stream, Frame], None] | None = None,
                 on_state: Callable[[Stream], None] | None = None) -> None:
        self.encoder = encoder
        self.streams = list(streams)
        self.live = [s for s in self.streams if s.source is not None]
        self.bank = bank
        self._row = {}
        if bank is not None:
            for s in self.live:
                rows = [i for i, m in enumerate(bank.memories) if m is s.memory]
                if not rows:
                    raise ValueError(f"stream {s.name}: its memory is not in the bank")
                self._row[s.id] = rows[0]
        self.batch_size = max(1, batch_size)
        self.on_frame = on_frame
        self.on_state = on_state
        self.lock = threading.RLock()
        self.rounds = 0  # loop rounds that ingested frames
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for s in self.live:
            s.source.waker = self._wake

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> threading.Thread:
        """Run :meth:`run` on a background thread."""
        self._thread = threading.Thread(target=self.run, name="streamvid-engine", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        """Ask the loop to end after the current round (sources are stopped, detectors flushed)."""
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _set_state(self, s: Stream, state: str, *, why: str | None = None, error: str | None = None) -> None:
        if s.state == state:
            return
        s.state = state
        if why is not None:
            s.stopped_by = why
        if error is not None:
            s.error = error
        log.info("stream %d (%s): %s%s", s.id, s.name, state, f" ({error})" if error else "")
        if self.on_state is not None:
            try:
                self.on_state(s)
            except Exception:  # a listener's bug must not stop ingestion
                log.exception("on_state callback failed")

    # -- the loop --------------------------------------------------------------------------------
    def run(self, stop: Callable[[], bool] | None = None) -> None:
        """Ingest until every live stream has ended, or :meth:`stop` / ``stop()`` asks for the end."""
        for s in self.live:
            s.started = time.monotonic()
            s.source.start()
        try:
            while True:
                if self._stop.is_set() or (stop is not None and stop()):
                    break
                active = [s for s in self.live if s.state in ("starting", "running")]
                if not active:
                    break
                picked = self._take(active)
                if not picked:
                    self._wake.wait(0.05)
                    self._wake.clear()
                    continue
                self._ingest(picked)
        finally:
            for s in self.live:
                s.source.stop()
            with self.lock:
                for s in self.live:
                    s.watcher.finish(s.stats)
                    if s.state in ("starting", "running"):
                        ended = s.source.error is None and s.source.finished and not self._stop.is_set()
                        self._set_state(s, "ended" if ended else "stopped", why="end" if ended else "stop")

    def _take(self, active: list[Stream]) -> list[tuple[Stream, Frame]]:
        """Up to ``batch_size`` frames, shared fairly among the streams that have some.

        A stream that ended (or reached its ``duration``) with frames taken in this round is marked
        ended only in a later round, once those frames are in its memory: a client that sees
        "ended" sees every frame counted."""
        per = max(1, self.batch_size // len(active))
        picked: list[tuple[Stream, Frame]] = []
        for s in active:
            took = 0
            for _ in range(per):
                try:
                    f = s.source.read(timeout=0)
                except SourceError as e:
                    self._set_state(s, "failed", why="error", error=str(e))
                    break
                if f is None:
                    if s.source.finished and not took:
                        self._set_state(s, "ended", why=s.stopped_by or "end")
                    break
                if s.duration is not None and f.t > s.duration + 1e-6:
                    s.source.stop()  # no frame after this one: the next round finds it finished
                    s.stopped_by = "duration"
                    break
                picked.append((s, f))
                took += 1
        return picked

    def _ingest(self, picked: list[tuple[Stream, Frame]]) -> None:
        encoded = self.encoder.encode_frames([f.rgb for _, f in picked])
        # the k-th frame of every stream goes in the k-th bank update
        layers: list[list[tuple[Stream, Frame, object]]] = []
        depth: dict[int, int] = {}
        for (s, f), enc in zip(picked, encoded):
            k = depth.get(s.id, 0)
            depth[s.id] = k + 1
            if k == len(layers):
                layers.append([])
            layers[k].append((s, f, enc))
        for layer in layers:
            observed = []
            for s, f, enc in layer:
                if s.alerts is not None:  # its hits carry the latency from this frame's arrival
                    s.alerts.frame = f
                boundary = s.stats.frames == 0 and s.memory.stats()["frames_seen"] > 0
                update, out = s.watcher.observe(f, enc, boundary=boundary)
                observed.append((s, f, update, out))
            with self.lock:
                if self.bank is not None:
                    self.bank.update({self._row[s.id]: u for s, _, u, _ in observed})
                else:
                    for s, _, u, _ in observed:
                        s.memory.update(u.t, u.enc, u.channels, thumb=u.thumb, boundary=u.boundary)
                for s, f, _, out in observed:
                    s.grid.observe(f.t)
                    s.watcher.commit(f, out, s.stats)
                    s.latest = f
                    if s.state == "starting":
                        self._set_state(s, "running")
                    if self.on_frame is not None:
                        self.on_frame(s, f)
        self.rounds += 1


def pin_callback(stream: Stream, fn: Callable[[Stream, Detection, int], None]) -> Callable[[Detection, int], None]:
    """A Watcher ``on_event`` that passes its stream on to ``fn``."""
    return lambda det, row: fn(stream, det, row)
