"""Retention at a fixed memory budget (issue 7): Δ-Mem against the baselines on long video.

    python scripts/bench_retention.py --markdown --plot bench_retention.png --json /tmp/retention.json
    python scripts/bench_retention.py --quick --markdown            # 0.1 h, 3 budgets, 10 needles
    python scripts/bench_retention.py --haystack vtest --markdown   # ../shared/data/vtest.avi looped
    python scripts/bench_retention.py --haystack vtest --seeds 0 1 2 3 4 --markdown   # 5 cuts, pooled

Every memory (:mod:`streamvid.memory.baselines`: ``METHODS``, ``make_memory``) is fed the same
stream of encoded frames (``update(t, enc)``), then asked ``search(query, top_k=1)``. Frames are
sampled at ``--fps`` and encoded ONCE per video (classic encoder by default) — every method and
budget replays the same tokens (``--cache DIR`` keeps them on disk between runs).

The stream: a haystack looped to ``--hours`` with ``--needles`` foreign clips inserted into it.

- Generated haystack (default): shots of 15–40 s, each a :class:`streamvid.synth.Scene` with its own
  background style (lobby/street/office) and seed (its own room layout, posters, buildings),
  horizon, half of them a wall patch repainted, a base brightness 0.7–1.15 that drifts by ±5 %
  within the shot, sensor noise, camera jitter, and a steady flow of people (one every ~4 s)
  walking across at changing depth, in clothes of ``HAYSTACK_COLOURS``. ``--unique-minutes`` of
  such shots (default 20) are generated and looped until the stream lasts ``--hours``.
- ``--haystack vtest``: ``../shared/data/vtest.avi`` (79.5 s) looped.
- Needles: 2–4 s clips inserted (the stream's time runs on, nothing is overwritten) at evenly spread
  places. Generated needles (default) are scenes with seeds the haystack never uses, a wall patch
  and part of the floor repainted and two people, all in colours the haystack never uses
  (``NEEDLE_COLOURS``); ``--needle-source tree`` (the default with ``--haystack vtest`` when the file
  exists) cuts disjoint segments of ``../shared/data/tree.avi`` instead: as many as fit in its 29.6 s
  (8), and they resemble each other, so a needle's query can land on another needle (keep-all
  finds 18 of the 53 held-out frames with the classic encoder, 3 of the 8 middle ones: the first six
  needles come from the first 21 s, a nearly still view, where two frames of one needle differ by
  0.0006 (1 − cosine of their global vectors) and of two needles by 0.0007, while the alteration puts
  a query 0.008 from the nearest frame of its own needle, so which of the six a query lands on is
  close to chance for every method; over twenty ``--seeds``, though, the methods differ, by
  cosines ~1e-5 apart — the rounding of an fp16 vector —: see BENCHMARKS.md, "Twenty cuts of the
  tree.avi needles" and "Timeline means stored relative to an origin"). tree.avi has 68 frames at
  irregular times, so a needle's held-out frame may be the frame on screen at the sample before it
  (it is altered anyway).

Tasks (all top-1, after the whole stream has been ingested):

- ``needle``: each needle is queried with the global embeddings of ALTERED held-out frames of it
  (frames half a sample period after one of its samples, never fed to the memories; flipped
  left-right, 6 % cropped off each border and resized back, contrast ×1.08 and brightness +8: the
  classic encoder's histograms are sensitive to brightness, and at ×1.15 / +12 keep-all itself misses
  a quarter of the needles). ``--needle-queries all`` (the default): every held-out frame of the
  needle, one per sample (53 queries for the 8 tree.avi needles, 119 for the 20 generated ones);
  ``--needle-queries middle``: only the one after the sample nearest the clip's middle (one query per
  needle: the setting of every needle number published before ``all`` existed; it reproduces them,
  and reuses their ``--cache`` files). With one query per needle the 8 look-alike tree.avi needles give
  a hit rate in steps of 1/8, so two queries decide a comparison; every method answers the same
  queries either way. A hit when the returned time lies in ``[start − 1 s, end + 1 s]`` of the
  query's needle, where ``start`` is the time of the clip's first frame and ``end = start + frames /
  fps``; the hit rate is over all needle queries.
- ``recall``: ``--recall`` (default 200) held-out frames, the midpoints between two sampled frames
  of the haystack (not fed to the memories), spread evenly over the haystack's unique content,
  queried with their (unaltered) global embedding. A hit when the returned time is within ±1 s of
  ANY occurrence of that moment in the looped stream (the loop replays identical frames, so no
  memory can tell the passes apart; keep-everything could not either).
- Event grounding (entered/left F1 at ±1.5 s) is measured by ``scripts/bench_events.py``: see ``EVENT_NOTE``.

Per method and budget: hit rate per task, ``nbytes`` after the stream, bytes as % of keep-all's,
mean update time per frame (ms) and mean search time per query (ms); retention = hit rate ÷
keep-all's hit rate. keep-all runs once (it has no budget).

``--seeds S ...`` runs the whole benchmark once per seed (another generated stream, or another cut
of the tree.avi needles) and reports the hits pooled over the runs. Where a baseline beats Δ-Mem
the goal check gives the paired (exact McNemar) test of the two methods' hits on the same queries:
how many only the baseline finds, how many only Δ-Mem finds, and the chance of a split at least
that uneven were each of those queries a coin toss.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
VTEST = SHARED / "vtest.avi"
TREE = SHARED / "tree.avi"

DEFAULT_BUDGETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
QUICK_BUDGETS = (0.25, 1.0, 4.0)
REFERENCE = "keep-all"
TASKS = ("needle", "recall")
NEEDLE_QUERIES = ("all", "middle")  # --needle-queries: every held-out frame of a needle, or the middle one
TASK_TITLES = {"needle": "Image-needle retrieval (hit rate, top-1 within the needle ±1 s)",
               "recall": "Self-supervised recall (hit rate, top-1 within ±1 s of any occurrence)"}
NEEDLE_SLACK = 1.0  # seconds either side of a needle
RECALL_SLACK = 1.0  # seconds either side of a held-out frame's time
GOAL_RETENTION = 0.97  # the goal for Δ-Mem: this share of keep-all's hits at ≤ 1 % of its bytes

HAYSTACK_COLOURS = ("red", "green", "blue", "white", "black", "gray", "brown")
NEEDLE_COLOURS = ("yellow", "orange", "purple", "pink")
STYLES = ("lobby", "street", "office")
LIGHT_DRIFT = 0.05  # haystack brightness wanders by up to ±5 % within a shot
PEOPLE_EVERY = 4.0  # seconds between people entering a haystack shot, on average
ALTER_CONTRAST, ALTER_BRIGHTNESS = 1.08, 8.0  # the needle query's photometric change
NEEDLE_SEED = 7_000_000  # needle scene seeds start here; haystack shots use seed + shot index < this

EVENT_NOTE = (
    "Event grounding (entered/left F1 at ±1.5 s) is measured by scripts/bench_events.py: an entry or "
    "exit is a detection made on frames (the project's EventDetector), which only Δ-Mem keeps (pinned "
    "events, then folded events with their times, then counts); the token memories compared here keep "
    "vectors and no events, so they cannot answer \"who entered?\" at all. Their `search(vector) -> "
    "times` could only be turned into entries and exits by a per-method threshold, which would test the "
    "threshold more than the memory."
)


# ------------------------------------------------------------------------------------- machine
def machine() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_memory import machine as _machine

    return _machine()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------- alteration
def alter(rgb: np.ndarray) -> np.ndarray:
    """The needle query's alteration (deterministic): flip left-right, crop 6 % off every border and
    resize back, contrast ×ALTER_CONTRAST about mid-gray, brightness +ALTER_BRIGHTNESS."""
    import cv2

    h, w = rgb.shape[:2]
    img = np.ascontiguousarray(rgb[:, ::-1])
    dy, dx = round(0.06 * h), round(0.06 * w)
    img = cv2.resize(img[dy:h - dy, dx:w - dx], (w, h), interpolation=cv2.INTER_LINEAR)
    out = (img.astype(np.float32) - 128.0) * ALTER_CONTRAST + 128.0 + ALTER_BRIGHTNESS
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- frame sources
class Clip:
    """Frames of one video piece at the sampling rate: ``frame(i)`` for ``i < n``; ``midpoint(i)``
    is the held-out frame between sample ``i`` and ``i + 1`` with its offset from sample ``i`` (s)."""

    n: int
    desc: str

    def frame(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def midpoint(self, i: int) -> tuple[np.ndarray, float]:
        raise NotImplementedError


class SceneClip(Clip):
    """A generated scene rendered at twice the sampling rate: even frames are fed, odd ones held out."""

    def __init__(self, scene, n: int, desc: str) -> None:
        self.scene, self.n, self.desc = scene, n, desc
        self._half = 1.0 / scene.fps  # the scene runs at 2 × fps: one scene frame is half a sample

    def frame(self, i: int) -> np.ndarray:
        from streamvid import synth

        return synth.render_frame(self.scene, 2 * i)

    def midpoint(self, i: int) -> tuple[np.ndarray, float]:
        from streamvid import synth

        return synth.render_frame(self.scene, 2 * i + 1), self._half


class VideoClip(Clip):
    """Samples ``[first, first + n)`` of a decoded file (``shown``: see :func:`decode_samples`)."""

    def __init__(self, shown: list[np.ndarray], fps: float, first: int, n: int, desc: str) -> None:
        self.shown, self.fps, self.first, self.n, self.desc = shown, fps, first, n, desc

    def frame(self, i: int) -> np.ndarray:
        return self.shown[2 * (self.first + i)]

    def midpoint(self, i: int) -> tuple[np.ndarray, float]:
        return self.shown[2 * (self.first + i) + 1], 0.5 / self.fps


def decode_samples(path: Path, fps: float, size: tuple[int, int] = (320, 240)) -> list[np.ndarray]:
    """Decode ``path`` once (PyAV, by presentation time) → the frame on screen at every half sample
    period ``j / (2 fps)`` up to the end, resized to ``size`` (RGB): even ``j`` are the samples, odd
    ``j`` the held-out midpoints. (By time, not by index: tree.avi has 68 frames at irregular times
    over 29.6 s although it declares 15 fps.)"""
    import av
    import cv2

    half = 0.5 / fps
    shown: list[np.ndarray] = []
    prev = None
    last_t = 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        end = float(stream.duration * stream.time_base) if stream.duration else None
        for f in container.decode(stream):
            t = float(f.time or 0.0)
            while prev is not None and len(shown) * half < t - 1e-9:  # half periods before t show prev
                shown.append(prev)
            prev = cv2.resize(f.to_ndarray(format="rgb24"), size, interpolation=cv2.INTER_AREA)
            last_t = t
    if prev is None:
        raise SystemExit(f"no frames decoded from {path}")
    rate = float(stream.average_rate or 10)
    end = end if end and end > last_t else last_t + 1.0 / rate
    while len(shown) * half < end - 1e-9 or len(shown) % 2:
        shown.append(prev)
    return shown


# -------------------------------------------------------------------------- generated scenes
def _walk(rng: np.random.Generator, t0: float, t1: float, y0: float, y1: float, ltr: bool,
          pause: bool) -> list[tuple[float, float, float]]:
    """Walk across the frame (edge to edge, 0.15 outside) from ``t0`` to ``t1``, maybe pausing midway."""
    a, b = (-0.15, 1.15) if ltr else (1.15, -0.15)
    if not pause:
        return [(t0, a, y0), (t1, b, y1)]
    xm = float(rng.uniform(0.35, 0.65))
    ym = 0.5 * (y0 + y1)
    frac = (xm - a) / (b - a)
    walk = (t1 - t0) * 0.65
    tm0 = t0 + walk * frac
    tm1 = t1 - walk * (1 - frac)
    return [(t0, a, y0), (tm0, xm, ym), (tm1, xm, ym), (t1, b, y1)]


def _lighting(rng: np.random.Generator, dur: float, base: float, drift: float) -> list[tuple[float, float, float]]:
    """Brightness ``base`` that wanders by up to ``±drift`` (a new target every 5–10 s, linear ramps):
    clouds, auto-exposure."""
    out = [(0.0, 0.0, base)]
    t = 0.0
    while drift > 0:
        step = float(rng.uniform(5.0, 10.0))
        if t + step > dur:
            break
        out.append((t, t + step, float(base * (1.0 + rng.uniform(-drift, drift)))))
        t += step
    return out


def haystack_shots(n_frames: int, fps: float, seed: int, size: tuple[int, int]) -> list[SceneClip]:
    """Shots of 15–40 s totalling ``n_frames`` samples (the last one cut to fit).

    Each: a background style with its own seed (layout, posters, buildings) and horizon, a wall patch
    repainted in a haystack colour half of the time, a base brightness 0.7–1.15 that drifts by up to
    ±LIGHT_DRIFT, sensor noise and jitter, and a steady flow of people (one starts every ~PEOPLE_EVERY
    s) walking across at changing depth (so they grow or shrink), a third of them pausing midway.
    """
    from streamvid import synth

    rng = np.random.default_rng([seed, 1])
    shots: list[SceneClip] = []
    total = 0
    while total < n_frames:
        k = len(shots)
        n = int(round(float(rng.uniform(15.0, 40.0)) * fps))
        n = max(1, min(n, n_frames - total))
        dur = n / fps
        style = STYLES[int(rng.integers(len(STYLES)))]
        gain = float(rng.uniform(0.7, 1.15))
        figs = []
        t0 = float(rng.uniform(-6.0, 0.0))
        while t0 < dur - 1.0:
            span = float(rng.uniform(6.0, 14.0))
            top, bottom = (str(c) for c in rng.choice(HAYSTACK_COLOURS, size=2, replace=False))
            path = _walk(rng, t0, t0 + span, float(rng.uniform(0.55, 0.95)), float(rng.uniform(0.55, 0.95)),
                         bool(rng.integers(2)), bool(rng.uniform() < 0.3))
            figs.append(synth.Figure(len(figs) + 1, top, bottom, path, height=float(rng.uniform(0.45, 0.6))))
            t0 += float(rng.uniform(0.5, 1.5)) * PEOPLE_EVERY
        repaints = []
        if rng.uniform() < 0.5:
            w, h = float(rng.uniform(0.15, 0.35)), float(rng.uniform(0.1, 0.25))
            x0, y0 = float(rng.uniform(0.0, 1.0 - w)), float(rng.uniform(0.02, 0.45 - h))
            repaints.append((0, (x0, y0, x0 + w, y0 + h), str(rng.choice(HAYSTACK_COLOURS))))
        scene = synth.Scene(width=size[0], height=size[1], fps=2 * fps, duration=dur, seed=seed + k,
                            backgrounds=[style], lighting=_lighting(rng, dur, gain, LIGHT_DRIFT), noise_sigma=2.0,
                            jitter_px=1, figures=figs, name=f"shot{k}", horizon=float(rng.uniform(0.2, 0.32)),
                            repaints=repaints)
        desc = f"shot {k}: {style} seed {seed + k}, {dur:.1f} s, gain {gain:.2f}, {len(figs)} people"
        shots.append(SceneClip(scene, n, desc))
        total += n
    return shots


def generated_needles(count: int, fps: float, seed: int, size: tuple[int, int]) -> list[SceneClip]:
    """``count`` 2–4 s clips, foreign to the haystack: seeds it never uses, a wall patch and the floor
    repainted and two people dressed, all in needle-only colours (``NEEDLE_COLOURS``)."""
    from streamvid import synth

    rng = np.random.default_rng([seed, 2])
    out: list[SceneClip] = []
    for k in range(count):
        n = max(2, int(round(float(rng.choice([2.0, 2.5, 3.0, 3.5, 4.0])) * fps)))
        dur = n / fps
        style = STYLES[int(rng.integers(len(STYLES)))]
        patch, floor = (str(c) for c in rng.choice(NEEDLE_COLOURS, size=2, replace=False))
        w, h = float(rng.uniform(0.3, 0.5)), float(rng.uniform(0.2, 0.35))
        x0, y0 = float(rng.uniform(0.0, 1.0 - w)), float(rng.uniform(0.02, 0.5 - h))
        fx0 = float(rng.uniform(0.0, 0.4))
        repaints = [(0, (x0, y0, x0 + w, y0 + h), patch), (0, (fx0, 0.72, fx0 + 0.6, 1.0), floor)]
        figs = []
        for fid, x in ((1, float(rng.uniform(0.15, 0.45))), (2, float(rng.uniform(0.55, 0.85)))):
            top, bottom = (str(c) for c in rng.choice(NEEDLE_COLOURS, size=2, replace=True))
            y, drift = float(rng.uniform(0.7, 0.92)), float(rng.uniform(-0.1, 0.1))
            figs.append(synth.Figure(fid, top, bottom, [(0.0, x, y), (dur, x + drift, y)],
                                     height=float(rng.uniform(0.45, 0.6))))
        gain = float(rng.uniform(0.8, 1.1))
        scene = synth.Scene(width=size[0], height=size[1], fps=2 * fps, duration=dur, seed=NEEDLE_SEED + seed + k,
                            backgrounds=[style], lighting=[(0.0, 0.0, gain)], noise_sigma=2.0, jitter_px=1,
                            figures=figs, name=f"needle{k}", repaints=repaints)
        people = ", ".join(f"{f.top}/{f.bottom}" for f in figs)
        out.append(SceneClip(scene, n, f"needle {k}: {style}, {patch} wall patch, {floor} floor, people {people}, "
                                       f"{dur:.1f} s"))
    return out


def tree_needles(count: int, fps: float, size: tuple[int, int], seed: int) -> list[VideoClip]:
    """Disjoint 2–4 s segments of tree.avi (0.5 s apart), at most ``count``: as many as fit."""
    shown = decode_samples(TREE, fps, size)
    samples = len(shown) // 2
    rng = np.random.default_rng([seed, 3])
    out: list[VideoClip] = []
    first = 0
    while len(out) < count:
        n = max(2, int(round(float(rng.choice([2.0, 2.5, 3.0, 3.5, 4.0])) * fps)))
        if first + n > samples:
            break
        out.append(VideoClip(shown, fps, first, n, f"tree.avi {first / fps:.1f}–{(first + n) / fps:.1f} s"))
        first += n + int(round(0.5 * fps))
    return out


# --------------------------------------------------------------------------------- the stream
@dataclass
class Needle:
    start: float  # stream time of the clip's first frame
    end: float  # start + frames / fps
    frames: int
    desc: str


@dataclass
class Bench:
    """An encoded stream, ready to replay into any memory.

    ``tokens [P, N, D]`` / ``globals_ [P, D]``: the pool of encoded frames; the stream's frame ``n``
    (at ``n / fps`` s) is pool row ``order[n]``. ``recall_times[k]``: every stream time at which
    held-out frame ``k`` occurs.
    """

    tokens: object
    globals_: object
    order: np.ndarray
    fps: float
    needles: list[Needle]
    needle_queries: object  # [n, D]
    recall_queries: object  # [R, D]
    recall_times: list[np.ndarray]
    info: dict = field(default_factory=dict)
    needle_of: list[int] | None = None  # the needle each needle query belongs to (None: query k is needle k's)

    def __post_init__(self) -> None:
        if self.needle_of is None:
            self.needle_of = list(range(len(self.needles)))

    @property
    def frames(self) -> int:
        return len(self.order)

    @property
    def duration(self) -> float:
        return self.frames / self.fps


def _encode(encoder, images, batch: int = 16):
    """Encode RGB frames in batches → ``(tokens [n, N, D], globals [n, D])``."""
    import torch

    toks, globs = [], []
    buf: list[np.ndarray] = []

    def flush() -> None:
        for e in encoder.encode_frames(buf):
            toks.append(e.tokens.float())
            globs.append(e.global_.float())
        buf.clear()

    for img in images:
        buf.append(img)
        if len(buf) == batch:
            flush()
    if buf:
        flush()
    return torch.stack(toks), torch.stack(globs)


def build_bench(encoder, *, hours: float = 1.0, fps: float = 2.0, haystack: str = "generated",
                needle_source: str = "generated", needles: int = 20, recall: int = 200,
                unique_minutes: float = 20.0, seed: int = 0, size: tuple[int, int] = (320, 240),
                cache: str | None = None, needle_queries: str = "all") -> Bench:
    """Render/decode, encode once, and lay out the stream (see the module docstring)."""
    import torch

    if needle_queries not in NEEDLE_QUERIES:
        raise ValueError(f"needle_queries must be one of {NEEDLE_QUERIES}, got {needle_queries!r}")
    cfg = {"hours": hours, "fps": fps, "haystack": haystack, "needle_source": needle_source, "needles": needles,
           "recall": recall, "unique_minutes": unique_minutes if haystack == "generated" else None, "seed": seed,
           "size": list(size), "encoder": encoder.config(), "version": 3}
    if needle_queries != "middle":  # "middle" keeps the key (and the cache files) of before the option
        cfg["needle_queries"] = needle_queries
    path = None
    if cache:
        key = hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
        path = Path(cache) / f"retention-{key}.pt"
        if path.is_file():
            log(f"encoded stream from the cache: {path}")
            d = torch.load(path, weights_only=False)
            info = {"needle_queries": len(d["needle_queries"]), "needle_query_mode": needle_queries, **d["info"]}
            return Bench(d["tokens"], d["globals_"], d["order"], d["fps"], [Needle(**n) for n in d["needles"]],
                         d["needle_queries"], d["recall_queries"], d["recall_times"], info, d.get("needle_of"))

    t_start = time.perf_counter()
    # needles first: their lengths decide how much haystack the stream needs
    if needle_source == "tree":
        clips: list[Clip] = tree_needles(needles, fps, size, seed)
        if len(clips) < needles:
            log(f"tree.avi holds {len(clips)} disjoint needles of 2–4 s, not {needles}: using {len(clips)}")
    else:
        clips = generated_needles(needles, fps, seed, size)
    total = int(round(hours * 3600 * fps))
    k_frames = sum(c.n for c in clips)
    h_frames = total - k_frames
    if h_frames < max(1, len(clips)):
        raise SystemExit(f"{hours} h at {fps} fps is {total} frames: too short for {k_frames} needle frames")

    if haystack == "vtest":
        shown = decode_samples(VTEST, fps, size)
        shots: list[Clip] = [VideoClip(shown, fps, 0, len(shown) // 2, f"vtest.avi ({len(shown) / 2 / fps:.1f} s)")]
    else:
        unique = min(int(round(unique_minutes * 60 * fps)), h_frames)
        shots = haystack_shots(unique, fps, seed, size)
    unique = sum(s.n for s in shots)
    where = [(s, i) for s in shots for i in range(s.n)]  # unique haystack frame u -> (clip, index)

    # encode: the unique haystack, the needles' frames, the held-out queries
    log(f"encoding {unique} haystack frames, {k_frames} needle frames, {len(clips)} needle queries "
        f"and the held-out recall frames ({encoder.name}) ...")
    tok_h, glob_h = _encode(encoder, (s.frame(i) for s, i in where))
    tok_n, glob_n = _encode(encoder, (c.frame(i) for c in clips for i in range(c.n)))
    if needle_queries == "middle":  # one per needle: the held-out frame nearest the middle
        picks = [(k, max(0, min(c.n - 2, c.n // 2 - 1))) for k, c in enumerate(clips)]
    else:  # every held-out frame of every needle
        picks = [(k, i) for k, c in enumerate(clips) for i in range(c.n)]
    needle_of = [k for k, _ in picks]
    _, needle_q = _encode(encoder, (alter(clips[k].midpoint(i)[0]) for k, i in picks))
    u_eff = min(unique, h_frames)
    r = min(recall, u_eff)
    recall_u = [int((k + 0.5) * u_eff / r) for k in range(r)]
    rec = [where[u][0].midpoint(where[u][1]) for u in recall_u]
    _, recall_q = _encode(encoder, (img for img, _ in rec))
    tokens = torch.cat([tok_h, tok_n])
    globals_ = torch.cat([glob_h, glob_n])

    # lay out: needle k goes in before haystack position round((k + 0.5) / n * h_frames)
    order = np.empty(total, np.int64)
    before = np.zeros(h_frames + 1, np.int64)  # needle frames inserted before haystack position h
    spots = [int(round((k + 0.5) / len(clips) * h_frames)) for k in range(len(clips))]
    needle_list: list[Needle] = []
    n = 0
    h = 0
    pool_n = unique
    for k, c in enumerate(clips):
        m = spots[k] - h
        order[n:n + m] = np.arange(h, spots[k]) % unique
        n += m
        h = spots[k]
        needle_list.append(Needle(start=n / fps, end=(n + c.n) / fps, frames=c.n, desc=c.desc))
        order[n:n + c.n] = np.arange(pool_n, pool_n + c.n)
        pool_n += c.n
        n += c.n
        before[h:] += c.n
    order[n:] = np.arange(h, h_frames) % unique
    assert n + (h_frames - h) == total
    recall_times = []
    for u, (_, off) in zip(recall_u, rec):
        pos = np.arange(u, h_frames, unique)  # haystack positions that replay unique frame u
        recall_times.append((pos + before[pos]) / fps + off)

    loops = h_frames / unique
    info = {
        "haystack": (f"generated: {len(shots)} shots of 15–40 s (lobby/street/office, seeds {seed}..{seed + len(shots) - 1}, "
                     f"{', '.join(HAYSTACK_COLOURS)} clothes), {unique / fps / 60:.1f} min unique"
                     if haystack == "generated" else f"../shared/data/vtest.avi, {unique / fps:.1f} s unique"),
        "unique_s": unique / fps, "haystack_s": h_frames / fps, "loops": loops, "stream_s": total / fps,
        "frames": total, "unique_frames": unique,
        "needle_source": ("generated clips (unseen seeds; a wall patch, part of the floor and two people in "
                          f"{', '.join(NEEDLE_COLOURS)})" if needle_source == "generated"
                          else "disjoint segments of ../shared/data/tree.avi"),
        "needles": len(needle_list), "needle_s": k_frames / fps,
        "needle_queries": len(needle_of), "needle_query_mode": needle_queries,
        "recall": r, "size": list(size), "encode_s": time.perf_counter() - t_start,
        "shots": [s.desc for s in shots][:200],
    }
    bench = Bench(tokens, globals_, order, fps, needle_list, needle_q, recall_q, recall_times, info, needle_of)
    log(f"stream: {total} frames = {total / fps / 3600:.2f} h ({unique / fps / 60:.1f} min unique haystack "
        f"× {loops:.2f} + {len(needle_list)} needles, {k_frames / fps:.0f} s); encoded in {info['encode_s']:.0f} s")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({**asdict_bench(bench)}, path)
        log(f"cached the encoded stream in {path}")
    return bench


def asdict_bench(b: Bench) -> dict:
    return {"tokens": b.tokens, "globals_": b.globals_, "order": b.order, "fps": b.fps,
            "needles": [asdict(n) for n in b.needles], "needle_queries": b.needle_queries,
            "recall_queries": b.recall_queries, "recall_times": b.recall_times, "info": b.info,
            "needle_of": b.needle_of}


# ------------------------------------------------------------------------------------ methods
def methods_api():
    """``(METHODS, make_memory)`` from :mod:`streamvid.memory.baselines`."""
    from streamvid.memory.baselines import METHODS, make_memory

    return tuple(METHODS), make_memory


def method_kwargs(name: str, encoder) -> dict:
    """Encoder-specific settings: Δ-Mem's novelty threshold suited to these tokens."""
    thr = getattr(encoder, "novelty_threshold", None)
    return {"novelty_threshold": thr} if name == "delta-mem" and thr is not None else {}


def run_one(name: str, budget_bytes: int | None, bench: Bench, encoder, make_memory) -> dict:
    """Feed the whole stream into one memory, then ask every query → one result row."""
    import torch

    from streamvid.types import Encoded

    dim, tpf = bench.tokens.shape[2], bench.tokens.shape[1]
    mem = make_memory(name, budget_bytes, dim=dim, tokens_per_frame=tpf, **method_kwargs(name, encoder))
    check = float(bench.tokens.sum())
    upd = 0.0
    fps = bench.fps
    step = max(1, bench.frames // 4)
    t_wall = time.perf_counter()
    for n, row in enumerate(bench.order.tolist()):
        enc = Encoded(tokens=bench.tokens[row], global_=bench.globals_[row])
        t0 = time.perf_counter()
        mem.update(n / fps, enc)
        upd += time.perf_counter() - t0
        if (n + 1) % step == 0 and bench.frames > 2000:
            log(f"    {name}: {n + 1}/{bench.frames} frames, {1000 * upd / (n + 1):.2f} ms/frame")
    if float(bench.tokens.sum()) != check:
        raise RuntimeError(f"{name} changed the tokens it was given")

    def top1(q: torch.Tensor) -> float | None:
        hits = mem.search(q, top_k=1)
        return float(hits[0].t) if hits else None

    t0 = time.perf_counter()
    needle_t = [top1(q) for q in bench.needle_queries]
    recall_t = [top1(q) for q in bench.recall_queries]
    search_s = time.perf_counter() - t0
    needle_hit = [t is not None and nd.start - NEEDLE_SLACK <= t <= nd.end + NEEDLE_SLACK
                  for t, nd in zip(needle_t, (bench.needles[k] for k in bench.needle_of))]
    by_needle = [[0, 0] for _ in bench.needles]  # [hits, queries] per needle
    for hit, k in zip(needle_hit, bench.needle_of):
        by_needle[k][0] += int(hit)
        by_needle[k][1] += 1
    recall_hit = [t is not None and bool(np.min(np.abs(occ - t)) <= RECALL_SLACK + 1e-9)
                  for t, occ in zip(recall_t, bench.recall_times)]
    n_q = len(needle_t) + len(recall_t)
    return {
        "method": name,
        "budget_mib": None if budget_bytes is None else budget_bytes / 2**20,
        "nbytes": int(mem.nbytes),
        "update_ms": 1000 * upd / bench.frames,
        "search_ms": 1000 * search_s / max(n_q, 1),
        "wall_s": time.perf_counter() - t_wall,
        "needle": sum(needle_hit) / max(len(needle_hit), 1),
        "recall": sum(recall_hit) / max(len(recall_hit), 1),
        "needle_hits": needle_hit,
        "recall_hits": recall_hit,
        "needle_by_needle": by_needle,
        "needle_t": needle_t,
        "recall_t": recall_t,
    }


def run_all(bench: Bench, encoder, methods: list[str], budgets: list[float], make_memory=None) -> dict:
    """keep-all once, then every other method at every budget (MiB) → ``{"runs": [...], "reference": row}``."""
    if make_memory is None:
        _, make_memory = methods_api()
    runs: list[dict] = []
    todo = [(REFERENCE, None)] if REFERENCE in methods else []
    todo += [(m, b) for b in budgets for m in methods if m != REFERENCE]
    for i, (m, b) in enumerate(todo):
        label = f"{m}" + ("" if b is None else f" @ {b:g} MiB")
        t0 = time.perf_counter()
        try:
            row = run_one(m, None if b is None else int(b * 2**20), bench, encoder, make_memory)
        except (ValueError, RuntimeError) as e:  # e.g. a budget too small for a method
            log(f"[{i + 1}/{len(todo)}] {label}: FAILED: {e}")
            runs.append({"method": m, "budget_mib": b, "error": str(e)})
            continue
        runs.append(row)
        log(f"[{i + 1}/{len(todo)}] {label}: needle {row['needle']:.2f}, recall {row['recall']:.2f}, "
            f"{row['nbytes'] / 2**20:.3f} MiB, {row['update_ms']:.2f} ms/frame ({time.perf_counter() - t0:.0f} s)")
    return _relative(runs)


def _relative(runs: list[dict]) -> dict:
    """``{"runs", "reference"}`` with each row's retention per task and bytes as % of keep-all's."""
    ref = next((r for r in runs if r["method"] == REFERENCE and "error" not in r), None)
    for r in runs:
        if "error" in r:
            continue
        for task in TASKS:
            r[f"{task}_retention"] = (r[task] / ref[task]) if ref and ref[task] > 0 else None
        r["bytes_pct"] = 100.0 * r["nbytes"] / ref["nbytes"] if ref else None
    return {"runs": runs, "reference": ref}


# ------------------------------------------------------------------------------------- report
def _cell(v: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)


def _table(runs: list[dict], methods: list[str], budgets: list[float], key: str, fmt: str) -> list[str]:
    by = {(r["method"], r["budget_mib"]): r for r in runs}
    out = ["| method | " + " | ".join(f"{b:g} MiB" for b in budgets) + " |", "|---|" + "---:|" * len(budgets)]
    for m in methods:
        if m == REFERENCE:
            r = by.get((m, None))
            v = "failed" if r is None or "error" in r else _cell(r.get(key), fmt)
            out.append(f"| {m} (no budget) | " + " | ".join([v] * len(budgets)) + " |")
            continue
        cells = []
        for b in budgets:
            r = by.get((m, b))
            cells.append("failed" if r is None or "error" in r else _cell(r.get(key), fmt))
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    return out


def _needle_query_text(info: dict) -> str:
    n, mode = info.get("needle_queries", info["needles"]), info.get("needle_query_mode", "middle")
    if mode == "middle":
        return f"each queried with {n} altered held-out frame{'s' if n != 1 else ''} (one per needle, near its middle)"
    return f"queried with {n} altered held-out frames (every one of each needle's)"


def _needle_table(runs: list[dict], methods: list[str], budgets: list[float]) -> list[str]:
    """Per-needle hits of every method at the smallest and the largest budget (and keep-all)."""
    by = {(r["method"], r["budget_mib"]): r for r in runs if "error" not in r and "needle_by_needle" in r}
    if not by:
        return []
    k = len(next(iter(by.values()))["needle_by_needle"])
    out = ["| method | " + " | ".join(f"N{i}" for i in range(k)) + " | all |", "|---|" + "---:|" * (k + 1)]
    keys = [(m, None) for m in methods if m == REFERENCE]
    keys += [(m, b) for b in sorted({min(budgets), max(budgets)}) for m in methods if m != REFERENCE]
    for m, b in keys:
        r = by.get((m, b))
        if r is None:
            continue
        cells = [f"{h}/{q}" for h, q in r["needle_by_needle"]]
        hits, total = sum(h for h, _ in r["needle_by_needle"]), sum(q for _, q in r["needle_by_needle"])
        label = f"{m} (no budget)" if b is None else f"{m} @ {b:g} MiB"
        out.append(f"| {label} | " + " | ".join(cells) + f" | {hits}/{total} |")
    return out


def paired(a: list[bool], b: list[bool]) -> tuple[int, int, float]:
    """Two methods' hits on the same queries → ``(only_a, only_b, p)``: the queries only ``a`` finds,
    those only ``b`` finds, and the exact two-sided McNemar p-value of the difference (the chance
    of a split at least this uneven if each of the ``only_a + only_b`` discordant queries were a
    coin toss between the two)."""
    if len(a) != len(b):
        raise ValueError(f"paired hits need the same queries ({len(a)} vs {len(b)})")
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    n, k = only_a + only_b, min(only_a, only_b)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return only_a, only_b, p


def _paired_text(other: dict, dm: dict, task: str, who: str) -> str | None:
    """``"3 queries only {who} finds, 1 only Δ-Mem, McNemar p = 0.62"`` for rows ``other`` and ``dm``
    on ``task``, or None when either row lacks its per-query hits."""
    key = task + "_hits"
    if key not in other or key not in dm:
        return None
    only_other, only_dm, p = paired(other[key], dm[key])
    return f"{only_other} queries only {who} finds, {only_dm} only Δ-Mem, McNemar p = {p:.2g}"


def _loss(r: dict, dm: dict, task: str) -> str:
    """``"moviechat at 0.25 MiB (0.434 vs 0.340 …)"``: a baseline's win over Δ-Mem, with the paired
    test when both rows have their per-query hits."""
    test = _paired_text(r, dm, task, "it")
    return f"{r['method']} at {r['budget_mib']:g} MiB ({r[task]:.3f} vs {dm[task]:.3f}" + (f"; {test}" if test else "") + ")"


def _meets_goal(dm: dict, task: str) -> bool:
    """Whether Δ-Mem's row ``dm`` keeps at least :data:`GOAL_RETENTION` of keep-all's hits on ``task``."""
    return (dm[task + "_retention"] or 0) >= GOAL_RETENTION


def _short_of(dm: dict, ref: dict, task: str) -> str:
    """Where Δ-Mem's retention is under the goal: the paired test against keep-all's hits."""
    test = None if _meets_goal(dm, task) else _paired_text(ref, dm, task, "keep-all")
    return f" ({test})" if test else ""


def goal_check(result: dict, methods: list[str], budgets: list[float]) -> list[str]:
    """The issue's goal for Δ-Mem, stated as facts: retention ≥ 97 % at a budget of ≤ 1 % of
    keep-all's bytes (each such budget is listed with its retention, and which meet the goal), and
    the best of all methods (ties count as best) at every budget, per task."""
    runs = [r for r in result["runs"] if "error" not in r]
    ref = result["reference"]
    dm = {r["budget_mib"]: r for r in runs if r["method"] == "delta-mem"}
    if not dm or ref is None:
        return []
    out = []
    small = [b for b in budgets if b in dm and dm[b]["nbytes"] <= 0.01 * ref["nbytes"]]
    for task in TASKS:
        if small:
            parts = [f"{b:g} MiB ({dm[b]['bytes_pct']:.2f} % of keep-all): {_cell(dm[b][task + '_retention'], '{:.0%}')}"
                     + _short_of(dm[b], ref, task) for b in small]
            met = [f"{b:g} MiB" for b in small if _meets_goal(dm[b], task)]
            verdict = f"met at {', '.join(met)}" if met else "NOT met at any of them"
            out.append(f"- {task}: retention at ≤ 1 % of keep-all's bytes — {'; '.join(parts)} → "
                       f"{verdict} (goal ≥ {GOAL_RETENTION * 100:g} %)")
        else:
            out.append(f"- {task}: no Δ-Mem budget is ≤ 1 % of keep-all's bytes ({ref['nbytes'] / 2**20:.1f} MiB)")
        losses = []
        for b in budgets:
            if b not in dm:
                continue
            for r in runs:
                if r["budget_mib"] == b and r["method"] not in ("delta-mem", REFERENCE) and r[task] > dm[b][task]:
                    losses.append(_loss(r, dm[b], task))
        out.append(f"- {task}: Δ-Mem best of all baselines at every budget — "
                   + ("yes" if not losses else "NO; beaten by " + ", ".join(losses)))
    return out


def markdown(result: dict, methods: list[str], budgets: list[float]) -> str:
    info, cfg = result["info"], result["config"]
    runs = result["runs"]
    ref = result["reference"]
    enc = cfg["encoder"]
    if enc == "clip" and not cfg.get("clip_weights"):
        enc += " (RANDOM weights: the hit rates say nothing about quality, only the costs mean something)"
    lines = [
        f"**Machine:** {result['machine']} (before the run); load average after: {result['load_after']}",
        "",
        f"**Stream:** {info['stream_s'] / 3600:.2f} h = {info['frames']:,} frames at {cfg['fps']:g} fps; "
        f"haystack {info['haystack']}, looped to {info['haystack_s'] / 60:.1f} min "
        f"({info['loops']:.2f} passes); {info['needles']} needles ({info['needle_s']:.0f} s in all) from "
        f"{info['needle_source']}, inserted evenly, {_needle_query_text(info)}; {info['recall']} held-out "
        "recall frames. "
        f"Encoder: {enc}, frames {info['size'][0]}×{info['size'][1]}. "
        f"Encoding took {info['encode_s']:.0f} s, the whole run {result['wall_s'] / 60:.1f} min.",
        "",
        f"**Command:** `{result['command']}`",
        "",
    ]
    kw = cfg.get("method_kwargs") or {}
    if kw:
        lines += ["Settings passed through `make_memory`: " + "; ".join(
            f"{m}: " + ", ".join(f"{k}={v}" for k, v in d.items()) for m, d in kw.items())
            + " (the encoder's); everything else at its default.", ""]
    if ref is not None:
        lines += [f"keep-all holds {ref['nbytes']:,} bytes ({ref['nbytes'] / 2**20:.1f} MiB) after the stream; "
                  f"1 % of that is {0.01 * ref['nbytes'] / 2**20:.2f} MiB.", ""]
    for task in TASKS:
        lines += [f"{TASK_TITLES[task]}:", ""] + _table(runs, methods, budgets, task, "{:.2f}") + [""]
        lines += [f"Retention on {task} (hit rate ÷ keep-all's):", ""]
        lines += _table(runs, methods, budgets, task + "_retention", "{:.0%}") + [""]
        if task == "needle":
            per = _needle_table(runs, methods, budgets)
            if per:
                lines += ["Needle hits by needle (hits / queries), at the smallest and the largest budget:", ""]
                lines += per + [""]
    lines += ["Bytes held after the stream, as % of keep-all's:", ""]
    lines += _table(runs, methods, budgets, "bytes_pct", "{:.2f} %") + [""]
    lines += ["Mean update time per frame (ms):", ""]
    lines += _table(runs, methods, budgets, "update_ms", "{:.2f}") + [""]
    lines += ["Mean search time per query (ms, top-1):", ""]
    lines += _table(runs, methods, budgets, "search_ms", "{:.2f}") + [""]
    goal = goal_check(result, methods, budgets)
    if goal:
        lines += ["Δ-Mem's goal (≥ 97 % retention at ≤ 1 % of keep-all's bytes; best at every budget):", ""]
        lines += goal + [""]
    failed = [r for r in runs if "error" in r]
    if failed:
        lines += ["Failed runs:", ""] + [f"- {r['method']} @ {r['budget_mib']} MiB: {r['error']}" for r in failed]
        lines += [""]
    lines += [f"Note: {EVENT_NOTE}"]
    return "\n".join(lines)


def pool(results: list[dict]) -> dict:
    """Several runs of the same methods and budgets (one per seed) → one ``{"runs", "reference"}``
    whose rows hold the per-query hits of every run, one after the other: hit rates and retention
    over all the queries, bytes and times averaged over the runs."""
    rows: dict[tuple, list[dict]] = {}
    for res in results:
        for r in res["runs"]:
            rows.setdefault((r["method"], r["budget_mib"]), []).append(r)
    runs = []
    for (method, mib), rs in rows.items():
        if len(rs) != len(results) or any("error" in r for r in rs):
            runs.append({"method": method, "budget_mib": mib,
                         "error": "; ".join(r["error"] for r in rs if "error" in r) or "missing from a run"})
            continue
        row = {"method": method, "budget_mib": mib}
        for task in TASKS:
            hits = [h for r in rs for h in r[task + "_hits"]]
            row[task + "_hits"], row[task] = hits, sum(hits) / max(len(hits), 1)
        for key in ("nbytes", "update_ms", "search_ms"):
            row[key] = sum(r[key] for r in rs) / len(rs)
        runs.append(row)
    return _relative(runs)


def pooled_markdown(result: dict, methods: list[str], budgets: list[float]) -> str:
    """The report of a ``--seeds`` run: hits pooled over the seeds, retention, and the goal check
    with paired tests."""
    seeds = result["seeds"]
    pooled = result["pooled"]
    info, cfg = seeds[0]["info"], seeds[0]["config"]

    def queries(res: dict, task: str) -> int:  # every method answers the same queries: any row counts them
        return next((len(r[task + "_hits"]) for r in res["runs"] if "error" not in r), 0)

    counts = {task: [queries(s, task) for s in seeds] for task in TASKS}
    lines = [
        f"**Machine:** {result['machine']} (before the run); load average after: {seeds[-1]['load_after']}",
        "",
        f"**Streams:** {len(seeds)} runs, seeds {', '.join(str(s['config']['seed']) for s in seeds)}: each "
        f"{info['stream_s'] / 3600:.2f} h at {cfg['fps']:g} fps, haystack {info['haystack']}, needles from "
        f"{info['needle_source']}; in the first run {_needle_query_text(info)}; needle queries per run "
        f"{'/'.join(map(str, counts['needle']))}, recall queries {'/'.join(map(str, counts['recall']))}. "
        f"Encoder: {cfg['encoder']}. The whole run took {sum(s['wall_s'] for s in seeds) / 60:.1f} min.",
        "",
        f"**Command:** `{result['command']}`",
        "",
    ]
    for task in TASKS:
        total = sum(counts[task])
        lines += [f"{TASK_TITLES[task]}, hits of {total} queries pooled over the runs:", ""]
        hits = [dict(r, hits=sum(r[task + "_hits"])) for r in pooled["runs"] if "error" not in r]
        lines += _table(hits + [r for r in pooled["runs"] if "error" in r], methods, budgets, "hits", "{:d}") + [""]
        lines += [f"Retention on {task}, pooled (hits ÷ keep-all's):", ""]
        lines += _table(pooled["runs"], methods, budgets, task + "_retention", "{:.0%}") + [""]
        per = ", ".join(f"{sum(s['reference'][task + '_hits'])}/{n}" for s, n in zip(seeds, counts[task]) if s["reference"])
        lines += [f"keep-all per run: {per}.", ""] if per else []
    lines += ["Bytes held after the stream, as % of keep-all's (mean over the runs):", ""]
    lines += _table(pooled["runs"], methods, budgets, "bytes_pct", "{:.2f} %") + [""]
    goal = goal_check(pooled, methods, budgets)
    if goal:
        lines += ["Δ-Mem's goal on the pooled queries (≥ 97 % retention at ≤ 1 % of keep-all's bytes; best at "
                  "every budget; a baseline's win comes with the paired test of the two methods' hits):", ""]
        lines += goal + [""]
    return "\n".join(lines)


def plot(result: dict, methods: list[str], budgets: list[float], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in result["runs"] if "error" not in r]
    ref = result["reference"]
    fig, axes = plt.subplots(1, len(TASKS), figsize=(5.0 * len(TASKS) + 1.6, 4.2), sharey=True)
    axes = np.atleast_1d(axes)
    markers = "osD^v<>px*"
    for ax, task in zip(axes, TASKS):
        for k, m in enumerate(x for x in methods if x != REFERENCE):
            pts = sorted((r["budget_mib"], r[task + "_retention"]) for r in runs
                         if r["method"] == m and r.get(task + "_retention") is not None)
            if pts:
                xs, ys = zip(*pts)
                dm = m == "delta-mem"
                ax.plot(xs, ys, marker=markers[k % len(markers)], ms=7 if dm else 5, lw=2.4 if dm else 1.2,
                        label=m, zorder=3 if dm else 2, alpha=1.0 if dm else 0.85)
        ax.axhline(1.0, color="k", lw=0.8, ls="--", label=REFERENCE)
        ax.axhline(GOAL_RETENTION, color="gray", lw=0.6, ls=":")
        one_pct = 0.01 * ref["nbytes"] / 2**20 if ref is not None else None
        if one_pct is not None and min(budgets) / 1.5 <= one_pct <= max(budgets) * 1.5:
            ax.axvline(one_pct, color="gray", lw=0.6, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets)
        ax.set_xticklabels([f"{b:g}" for b in budgets])
        ax.set_xlabel("budget (MiB)")
        ax.set_title(f"{task} (keep-all hit rate {ref[task]:.2f})" if ref else task)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("retention (hit rate ÷ keep-all's)")
    axes[-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    info = result["info"]
    fig.suptitle(f"Retention vs budget: {info['stream_s'] / 3600:.2f} h at {result['config']['fps']:g} fps, "
                 f"{result['config']['encoder']} encoder (dotted: 97 % and, in range, 1 % of keep-all's bytes)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------- main
def make_encoder(name: str, clip_weights: str | None = None):
    if name == "clip":
        from streamvid.models.clip import ClipEncoder

        if clip_weights:
            return ClipEncoder(pretrained=None, weights=clip_weights, device="cpu")
        log("WARNING: clip with RANDOM weights (nothing may be downloaded): hit rates are meaningless")
        return ClipEncoder(pretrained=None, device="cpu")
    from streamvid.models.classic import ClassicEncoder

    return ClassicEncoder()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=None, help="stream length (default 1.0; 0.1 with --quick)")
    p.add_argument("--fps", type=float, default=2.0)
    p.add_argument("--haystack", choices=["generated", "vtest"], default="generated")
    p.add_argument("--needle-source", choices=["auto", "generated", "tree"], default="auto",
                   help="auto: tree.avi with --haystack vtest when it exists, else generated")
    p.add_argument("--needles", type=int, default=None, help="default 20 (10 with --quick)")
    p.add_argument("--recall", type=int, default=None, help="held-out recall queries (default 200; 100 with --quick)")
    p.add_argument("--needle-queries", choices=NEEDLE_QUERIES, default="all",
                   help="all: every held-out frame of each needle is a query (default); middle: one per needle, "
                        "near its middle (the setting before this option existed)")
    p.add_argument("--unique-minutes", type=float, default=20.0, help="generated haystack's unique length")
    p.add_argument("--methods", nargs="+", default=None, help="default: all of baselines.METHODS")
    p.add_argument("--budgets", type=float, nargs="+", default=None, help="MiB (default 0.25 0.5 1 2 4 8)")
    p.add_argument("--encoder", choices=["classic", "clip"], default="classic")
    p.add_argument("--clip-weights", default=None, help="a local CLIP checkpoint (else random weights)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="run once per seed (another stream or cut of the needles each) and report the "
                        "hits pooled over all of them, with paired tests against Δ-Mem")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the memories' tensors are small)")
    p.add_argument("--cache", default=None, help="keep the encoded stream in this folder")
    p.add_argument("--quick", action="store_true", help="0.1 h, budgets 0.25 1 4 MiB, 10 needles, 100 recall")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", default=None, help="write the raw results here")
    p.add_argument("--plot", nargs="?", const="bench_retention.png", default=None,
                   help="PNG of retention vs budget (default path bench_retention.png)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    hours = args.hours if args.hours is not None else (0.1 if args.quick else 1.0)
    budgets = args.budgets or list(QUICK_BUDGETS if args.quick else DEFAULT_BUDGETS)
    needles = args.needles if args.needles is not None else (10 if args.quick else 20)
    recall = args.recall if args.recall is not None else (100 if args.quick else 200)
    if args.haystack == "vtest" and not VTEST.is_file():
        raise SystemExit(f"--haystack vtest needs {VTEST}")
    source = args.needle_source
    if source == "auto":
        source = "tree" if args.haystack == "vtest" and TREE.is_file() else "generated"
    if source == "tree" and not TREE.is_file():
        raise SystemExit(f"--needle-source tree needs {TREE}")
    all_methods, make_memory = methods_api()
    methods = args.methods or list(all_methods)
    unknown = [m for m in methods if m not in all_methods]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {list(all_methods)}")

    mach = machine()
    log(f"machine: {mach}")
    encoder = make_encoder(args.encoder, args.clip_weights)
    command = "python scripts/bench_retention.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    results = []
    for seed in args.seeds or [args.seed]:
        t0 = time.perf_counter()
        if args.seeds:
            log(f"seed {seed}")
        bench = build_bench(encoder, hours=hours, fps=args.fps, haystack=args.haystack, needle_source=source,
                            needles=needles, recall=recall, unique_minutes=args.unique_minutes, seed=seed,
                            cache=args.cache, needle_queries=args.needle_queries)
        res = run_all(bench, encoder, methods, budgets, make_memory)
        results.append({
            "machine": mach,
            "load_after": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
            "command": command.strip(),
            "config": {"hours": hours, "fps": args.fps, "haystack": args.haystack, "needle_source": source,
                       "needles": needles, "needle_queries": args.needle_queries, "recall": recall,
                       "unique_minutes": args.unique_minutes, "seed": seed,
                       "methods": methods, "budgets": budgets, "encoder": args.encoder,
                       "clip_weights": args.clip_weights, "threads": args.threads,
                       "encoder_note": ("clip with RANDOM weights: hit rates say nothing about quality"
                                        if args.encoder == "clip" and not args.clip_weights else None),
                       "needle_slack_s": NEEDLE_SLACK, "recall_slack_s": RECALL_SLACK,
                       "method_kwargs": {m: method_kwargs(m, encoder) for m in methods if method_kwargs(m, encoder)}},
            "info": bench.info,
            "needles": [asdict(n) for n in bench.needles],
            "wall_s": time.perf_counter() - t0,
            "event_grounding": EVENT_NOTE,
            **res,
        })
        log(f"done in {results[-1]['wall_s'] / 60:.1f} min")
    result = results[0] if not args.seeds else {"command": command.strip(), "machine": mach, "seeds": results,
                                                "pooled": pool(results)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.plot:
        if args.seeds:
            log("--plot draws one run: left out with --seeds")
        else:
            plot(result, methods, budgets, args.plot)
            log(f"plot: {args.plot}")
    if args.markdown:
        print(markdown(result, methods, budgets) if not args.seeds else pooled_markdown(result, methods, budgets))
    elif not args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "info"}, indent=1))
    return result


if __name__ == "__main__":
    main()
