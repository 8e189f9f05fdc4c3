"""What ``streamvid serve`` serves: its streams, their events, and the live feed to the clients.

:class:`Hub` sits between the ingest loop (:class:`~streamvid.engine.Engine`, on its own thread)
and the web app (:mod:`streamvid.server.app`, on uvicorn's event loop):

- the loop calls :meth:`Hub.on_pin`, :meth:`Hub.on_alert`, :meth:`Hub.on_frame` and
  :meth:`Hub.on_state`; the hub keeps the last :attr:`Hub.capacity` events (each with an
  increasing ``id``) and pushes them to every subscriber's bounded queue (a slow client loses its
  oldest messages, never slows ingestion down);
- the app reads memories under :attr:`Hub.lock` (the engine's lock), so a question never sees a
  frame half written.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from streamvid import __version__
from streamvid.engine import Engine, Stream
from streamvid.types import Answer

log = logging.getLogger(__name__)

FRAME_EVENT_INTERVAL = 0.5  # seconds: at most two "frame" messages a second per stream
QUEUE_SIZE = 256  # messages a subscriber may fall behind before its oldest are dropped
ALERT_FILE = re.compile(r"^alert_\d{4,}\.jpg$")


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    stream: int | None  # only this stream's messages (None: all)
    dropped: int = 0


class Hub:
    """Streams, events and subscribers of one server (see the module docstring)."""

    def __init__(self, streams: list[Stream], engine: Engine | None = None, *, capacity: int = 2000,
                 max_subscribers: int = 32) -> None:
        self.streams = {s.id: s for s in streams}
        self.engine = engine
        self.lock = engine.lock if engine is not None else threading.RLock()
        self.capacity = capacity
        self.max_subscribers = max_subscribers
        self.events: deque[dict] = deque(maxlen=capacity)
        self.last_id = 0
        self._elock = threading.Lock()  # events and subscribers
        self._subs: set[_Subscriber] = set()
        self._frame_sent: dict[int, float] = {}
        self._jpeg: dict[int, tuple[int, bytes]] = {}  # stream → (frame index, JPEG) of the latest frame
        self.started = time.time()
        for s in streams:  # a saved memory's pinned events are its first events
            if s.source is None:
                for ev in s.memory.events():
                    self._add({"stream": s.id, "t": round(ev.t, 3), "event": ev.kind,
                               "description": ev.description, "thumbnail": self.thumb_url(s.id, ev.thumb),
                               "alert": None, "score": round(ev.score, 3), "track_id": ev.track_id},
                              publish=False)

    # -- lookups ---------------------------------------------------------------------------------
    def stream(self, sid: int | None) -> list[Stream]:
        """The stream ``sid`` (KeyError when there is none), or all of them for ``None``."""
        if sid is None:
            return list(self.streams.values())
        return [self.streams[sid]]

    @staticmethod
    def thumb_url(sid: int, tid: int) -> str | None:
        return f"/thumb/{sid}/{tid}.jpg" if tid is not None and tid >= 0 else None

    # -- from the ingest loop --------------------------------------------------------------------
    def on_pin(self, s: Stream, det, row: int, alert: str | None = None) -> None:
        """An entry or exit was pinned in stream ``s``'s memory at ``row``."""
        tid = int(s.memory.ev_thumb[row]) if row is not None and row >= 0 else -1
        self._add({"stream": s.id, "t": round(float(det.t), 3), "event": det.event,
                   "description": det.description or "person", "thumbnail": self.thumb_url(s.id, tid),
                   "alert": alert, "score": round(float(det.confidence), 3), "track_id": det.track_id})

    def on_alert(self, s: Stream, doc: dict) -> None:
        """An alert hit that is not an entry/exit (those are flagged on their pinned event)."""
        thumb = doc.get("thumbnail")
        url = f"/alerts/{s.id}/{os.path.basename(thumb)}" if thumb else None
        self._add({"stream": s.id, "t": doc["t"], "event": doc["event"], "description": doc["description"],
                   "thumbnail": url, "alert": doc["alert"], "score": doc.get("score")})

    def on_frame(self, s: Stream, frame) -> None:
        now = time.monotonic()
        if now - self._frame_sent.get(s.id, 0.0) >= FRAME_EVENT_INTERVAL:
            self._frame_sent[s.id] = now
            self.publish("frame", {"stream": s.id, "t": round(frame.t, 3), "frames": s.stats.frames}, s.id)

    def on_state(self, s: Stream) -> None:
        self.publish("status", self.health(), None)

    # -- events and subscribers ------------------------------------------------------------------
    def _add(self, doc: dict, publish: bool = True) -> None:
        with self._elock:
            self.last_id += 1
            doc = {"id": self.last_id, **doc}
            self.events.append(doc)
        if publish:
            self.publish("event", doc, doc["stream"])

    def events_since(self, since: int = 0, sid: int | None = None, limit: int = 500) -> tuple[list[dict], bool]:
        """The oldest ``limit`` events after id ``since`` (of stream ``sid``), and whether more follow:
        a client pages forward with ``since`` = the last id it got."""
        with self._elock:
            out = [e for e in self.events if e["id"] > since and (sid is None or e["stream"] == sid)]
        return out[:limit], len(out) > limit

    def subscribe(self, loop: asyncio.AbstractEventLoop, sid: int | None) -> _Subscriber | None:
        """A queue of ``(kind, data)`` messages for one client; None when there are too many."""
        with self._elock:
            if len(self._subs) >= self.max_subscribers:
                return None
            sub = _Subscriber(loop, asyncio.Queue(maxsize=QUEUE_SIZE), sid)
            self._subs.add(sub)
            return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._elock:
            self._subs.discard(sub)

    def publish(self, kind: str, data, sid: int | None) -> None:
        """Send ``(kind, data)`` to every subscriber (of stream ``sid``); thread-safe, never blocks."""
        with self._elock:
            subs = [s for s in self._subs if s.stream is None or sid is None or s.stream == sid]
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(_put, sub, (kind, data))
            except RuntimeError:  # its loop is closed: the server is going down
                self.unsubscribe(sub)

    def close_subscribers(self) -> None:
        """End every live feed (the server is shutting down)."""
        with self._elock:
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(_put, sub, None)
            except RuntimeError:
                pass

    # -- documents -------------------------------------------------------------------------------
    def health(self) -> dict:
        return {"status": "ok", "version": __version__, "uptime": round(time.time() - self.started, 1),
                "streams": [s.health() for s in self.streams.values()]}

    def memory_doc(self, s: Stream) -> dict:
        with self.lock:
            st = s.memory.stats()
            return {"id": s.id, "name": s.name, "kind": s.kind,
                    "encoder": getattr(s.query_encoder, "name", None),
                    "budget_bytes": s.memory.layout.budget_bytes, "bytes": s.memory.nbytes,
                    "position": s.position, "first_t": st["first_t"] if st["frames_seen"] else None,
                    "last_t": st["last_t"] if st["frames_seen"] else None, "frames": int(st["frames_seen"]),
                    "segments": st.get("segments_used"), "events": st.get("events_used"),
                    "slots_used": st.get("slots_used"), "slots": s.memory.layout.slots,
                    "sources": s.sources if s.source is None else [self._live_source(s)]}

    @staticmethod
    def _live_source(s: Stream) -> dict:
        st = s.source.stats()
        return {"index": 0, "path": s.name, "kind": s.source_kind, "sampled_fps": s.sampled_fps,
                "first_t": s.grid.first_t, "last_t": s.grid.last_t, "frames": s.grid.frames,
                "received": st["received"], "dropped": st["dropped"], "reconnects": st["reconnects"],
                "gaps": st["gaps"][-20:]}

    def frame_jpeg(self, s: Stream) -> bytes | None:
        """The newest frame of stream ``s`` as JPEG (a saved memory: its newest thumbnail)."""
        f = s.latest
        if f is None:
            with self.lock:
                segs = s.memory.segments()
                for seg in reversed(segs):
                    data = s.memory.thumbnail(seg.thumb) if seg.thumb >= 0 else None
                    if data:
                        return data
            return None
        cached = self._jpeg.get(s.id)
        if cached is not None and cached[0] == f.index:
            return cached[1]
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(f.rgb), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            return None
        data = buf.tobytes()
        self._jpeg[s.id] = (f.index, data)
        return data

    def thumbnail(self, s: Stream, tid: int) -> bytes | None:
        with self.lock:
            if not 0 <= tid < s.memory.layout.thumbs:
                return None
            return s.memory.thumbnail(tid)

    def answer_doc(self, s: Stream, answer: Answer) -> dict:
        for m in answer.moments:
            m.thumbnail = self.thumb_url(s.id, m.thumb_id)
        return {"stream": s.id, "stream_name": s.name, **answer.to_json()}


def _put(sub: _Subscriber, item) -> None:
    """On the subscriber's loop: enqueue, dropping its oldest message when it is full."""
    q = sub.queue
    if q.full():
        try:
            q.get_nowait()
            sub.dropped += 1
        except asyncio.QueueEmpty:
            pass
    q.put_nowait(item)
