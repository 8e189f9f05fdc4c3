"""Standing questions for ``streamvid live``: alerts that fire while the stream is ingested, and a webhook.

``parse_alert(text, encoder)`` turns ``--alert TEXT`` into an :class:`Alert` with the query module's
vocabulary (:data:`streamvid.query.ENTER_RE`, :data:`~streamvid.query.LEAVE_RE`, the concept
patterns and the colour words):

- ``entered`` — "a person enters", "someone comes in", "someone in red enters" (the entry's
  description must then hold every colour word);
- ``left`` — "someone leaves", "a person in blue goes out";
- ``motion`` — "motion", "movement": when the detector's motion signal turns on (hysteresis: on
  above ``motion_on``, off again below ``motion_off``, so one hit per period of motion);
- ``scene_change`` — "scene change", "camera cut": a cut the detector reports (at most one per
  :data:`SCENE_GAP` seconds);
- ``match`` — with the clip encoder only, any other text: frames whose global embedding has a
  cosine with the text's embedding above ``threshold`` (hysteresis: it must fall below
  ``threshold - HYSTERESIS`` before the alert can fire again).

Anything else raises :class:`~streamvid.errors.InputError` naming what is understood.

:class:`AlertEngine` receives the Watcher's callbacks (``on_event`` for entries/exits,
``on_signals`` per frame), writes a thumbnail per hit under ``out_dir``, calls ``emit(doc)`` (the CLI
prints one JSON line) and hands the same document to a :class:`Webhook`, which POSTs it from a
background thread through a bounded queue and never blocks the caller.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from streamvid.errors import InputError
from streamvid.query import CONCEPTS, ENTER_RE, LEAVE_RE

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.26  # CLIP image-text cosine for a "match" alert
HYSTERESIS = 0.03
SCENE_GAP = 2.0  # seconds: scene-change alerts closer than this to the previous one are merged
MAX_ALERT = 200  # characters
UNDERSTOOD = ("entries (\"a person enters\", \"someone in red comes in\"), exits (\"someone leaves\"), "
              "\"motion\"/\"movement\", \"scene change\"")


def _colour_words() -> set[str]:
    from streamvid.models.classic import COLOUR_WORDS

    return set(COLOUR_WORDS)


@dataclass
class Alert:
    """One standing question."""

    text: str
    kind: str  # entered | left | motion | scene_change | match
    colours: list[str] = field(default_factory=list)
    vec: torch.Tensor | None = None  # the text's embedding (kind "match")
    threshold: float = DEFAULT_THRESHOLD
    active: bool = False  # hysteresis state (motion, match)
    last_t: float | None = None  # last hit (scene_change)
    hits: int = 0


def parse_alert(text: str, encoder, *, threshold: float = DEFAULT_THRESHOLD) -> Alert:
    """``text`` as an :class:`Alert`; InputError (one line) when it is not understood."""
    q = " ".join(str(text).split())
    if not q or not re.search(r"[^\W\d_]", q):
        raise InputError(f"--alert {text!r}: empty alert; it understands {UNDERSTOOD}")
    if len(q) > MAX_ALERT:
        raise InputError(f"--alert: too long ({len(q)} characters; at most {MAX_ALERT})")
    low = q.lower().replace("’", "'")
    colours = [w for w in re.findall(r"[a-z]+", low) if w in _colour_words()]
    if ENTER_RE.search(low) and not LEAVE_RE.search(low):
        return Alert(q, "entered", colours)
    if LEAVE_RE.search(low):
        return Alert(q, "left", colours)
    if CONCEPTS["scene_change"].search(low):
        return Alert(q, "scene_change")
    if CONCEPTS["motion"].search(low):
        return Alert(q, "motion")
    name = getattr(encoder, "name", "")
    if name == "clip":
        vec = encoder.encode_text(q)
        if vec is not None:
            return Alert(q, "match", colours, vec=vec.float().flatten(), threshold=threshold)
    more = "" if name == "clip" else "; with --encoder clip, any other text (a match by similarity)"
    raise InputError(f"--alert {q!r}: not understood by the {name or 'current'} encoder; it understands "
                     f"{UNDERSTOOD}{more}")


# ---------------------------------------------------------------------- webhook
def check_webhook_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host, else InputError."""
    u = urllib.parse.urlsplit(str(url).strip())
    if u.scheme.lower() not in ("http", "https"):
        raise InputError(f"--webhook {url!r}: only http:// and https:// URLs are supported")
    if not u.hostname:
        raise InputError(f"--webhook {url!r}: the URL has no host")
    try:
        u.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InputError(f"--webhook {url!r}: bad port") from None
    return str(url).strip()


class Webhook:
    """POST JSON documents to ``url`` from a background thread.

    :meth:`post` never blocks: documents wait in a queue of ``maxsize``; when it is full the new
    document is dropped (counted in ``dropped``, warned once). Each POST has a ``timeout`` and is
    retried ``retries`` times (backoff ``backoff``, doubled); after a document failed every try,
    later ones get a single try until one succeeds (an unreachable endpoint costs little).
    """

    def __init__(self, url: str, *, timeout: float = 5.0, retries: int = 2, backoff: float = 0.5,
                 maxsize: int = 100) -> None:
        self.url = check_webhook_url(url)
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.sent = self.failed = self.dropped = 0
        self._q: queue.Queue = queue.Queue(maxsize)
        self._down = False
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamvid-webhook", daemon=True)
        self._thread.start()

    def post(self, doc: dict) -> None:
        try:
            self._q.put_nowait(doc)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("webhook %s: queue full, dropping alerts", _redact(self.url))

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued within ``timeout`` seconds, then stop (what is left is dropped)."""
        deadline = time.monotonic() + timeout
        try:
            self._q.put_nowait(None)  # the end marker: the worker stops once it is reached
        except queue.Full:
            pass
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(0.05)
        self._closing.set()
        left = self._q.qsize()
        if left and self._thread.is_alive():
            self.dropped += left
            log.warning("webhook %s: %d alert(s) not delivered before exit", _redact(self.url), left)

    def _run(self) -> None:
        while not self._closing.is_set():
            try:
                doc = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            if doc is None:
                return
            tries = 1 if self._down else 1 + self.retries
            for attempt in range(tries):
                if self._closing.is_set():
                    return
                try:
                    self._send(doc)
                    self.sent += 1
                    self._down = False
                    break
                except Exception as e:  # noqa: BLE001 - any failure: retry, then warn
                    reason = getattr(e, "reason", None) or e
                    if attempt + 1 < tries:
                        self._closing.wait(self.backoff * 2 ** attempt)
                        continue
                    self.failed += 1
                    self._down = True
                    log.warning("webhook %s: alert at %.1f s not delivered (%s)", _redact(self.url),
                                doc.get("t", 0.0), reason)

    def _send(self, doc: dict) -> None:
        data = json.dumps(doc, ensure_ascii=False).encode()
        req = urllib.request.Request(self.url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "streamvid"})
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - http(s) checked
            resp.read(65536)


def _redact(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    if u.password is None:
        return url
    netloc = f"{u.username}:***@{u.hostname}" + (f":{u.port}" if u.port else "")
    return urllib.parse.urlunsplit(u._replace(netloc=netloc))


# ---------------------------------------------------------------------- engine
class AlertEngine:
    """Matches the Watcher's events and per-frame signals against ``alerts``."""

    def __init__(self, alerts: list[Alert], *, source: str, out_dir: str, emit: Callable[[dict], None],
                 webhook: Webhook | None = None, motion_on: float = 0.004, motion_off: float = 0.002,
                 thumb_height: int = 240, stream: int | None = None, keep: int = 1000) -> None:
        self.alerts = alerts
        self.source, self.out_dir, self.emit, self.webhook = source, out_dir, emit, webhook
        self.stream = stream  # the stream's id when one process watches several ("stream" in each hit)
        self.frame = None  # the frame being processed (set by the caller): hits carry its latency
        self.motion_on, self.motion_off = motion_on, motion_off
        self.thumb_height = thumb_height
        self.hits: deque[dict] = deque(maxlen=keep)  # the last ``keep`` hits (a live run is endless)
        self.total = 0  # hits in all
        self.thumb_errors = 0
        self._n = 0

    @property
    def wants_frames(self) -> bool:
        return any(a.kind in ("motion", "scene_change", "match") for a in self.alerts)

    # -- Watcher callbacks -------------------------------------------------------------------
    def on_event(self, det, memory_index: int | None = None) -> None:
        desc = (det.description or "").lower()
        for a in self.alerts:
            if a.kind != det.event:
                continue
            if a.colours and not all(re.search(rf"\b{c}\b", desc) for c in a.colours):
                continue
            view = det.context if det.context is not None and det.context.size else det.crop
            self._hit(a, det.t, det.event, det.description or "person", view,
                      extra={"track_id": det.track_id, "score": round(float(det.confidence), 3),
                             "memory_index": memory_index})

    def on_signals(self, frame, out, enc) -> None:
        sig = out.signals
        for a in self.alerts:
            if a.kind == "motion":
                was = a.active
                a.active = sig.motion > (self.motion_off if was else self.motion_on)
                if a.active and not was:
                    self._hit(a, frame.t, "motion", f"motion ({100 * sig.motion:.1f}% of the view)", frame.rgb,
                              extra={"score": round(float(sig.motion), 4)})
            elif a.kind == "scene_change":
                if sig.scene_change >= 0.5 and (a.last_t is None or frame.t - a.last_t >= SCENE_GAP):
                    a.last_t = frame.t
                    self._hit(a, frame.t, "scene_change", "scene change", frame.rgb)
            elif a.kind == "match" and enc is not None and a.vec is not None:
                g = enc.global_.float().flatten().to(a.vec.device)
                cos = float(torch.dot(g, a.vec) / (g.norm() * a.vec.norm() + 1e-8))
                was = a.active
                a.active = cos > (a.threshold - HYSTERESIS if was else a.threshold)
                if a.active and not was:
                    self._hit(a, frame.t, "match", f"matches {a.text!r} (cosine {cos:.3f})", frame.rgb,
                              extra={"score": round(cos, 4)})

    # -- a hit -------------------------------------------------------------------------------
    def _hit(self, a: Alert, t: float, event: str, description: str, rgb, *, extra: dict | None = None) -> None:
        self._n += 1
        self.total += 1
        a.hits += 1
        doc = {"t": round(float(t), 3), "event": event, "alert": a.text, "description": description,
               "thumbnail": self._thumb(rgb, self._n), "source": self.source}
        if self.stream is not None:
            doc["stream"] = self.stream
        arrived = getattr(self.frame, "arrived", None)
        if arrived is not None:  # seconds from the arrival of the frame that fired it to now
            doc["latency"] = round(time.monotonic() - arrived, 4)
        if extra:
            doc.update({k: v for k, v in extra.items() if v is not None})
        self.hits.append(doc)
        self.emit(doc)
        if self.webhook is not None:
            self.webhook.post(doc)

    def _thumb(self, rgb, n: int) -> str | None:
        if rgb is None or not getattr(rgb, "size", 0):
            return None
        h, w = rgb.shape[:2]
        s = min(1.0, self.thumb_height / h)
        img = cv2.resize(np.ascontiguousarray(rgb), (max(1, round(w * s)), max(1, round(h * s))),
                         interpolation=cv2.INTER_AREA)
        path = os.path.join(self.out_dir, f"alert_{n:04d}.jpg")
        try:
            os.makedirs(self.out_dir, exist_ok=True)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
            if not ok:
                return None
            with open(path, "wb") as f:
                f.write(buf.tobytes())
        except OSError as e:
            self.thumb_errors += 1
            if self.thumb_errors == 1:
                log.warning("alert thumbnails not written to %s: %s", self.out_dir, e.strerror or e)
            return None
        return path
