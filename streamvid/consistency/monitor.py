"""``ConsistencyMonitor``: VBench scores and long-range drift of a (generated) video, fed in chunks.

Feed it frames as a generator produces them (:meth:`ConsistencyMonitor.feed`), ask for
:meth:`~ConsistencyMonitor.report` whenever you like. It keeps, in bytes fixed at creation:

- a :class:`~streamvid.memory.DeltaMem` of the whole video (slots, timeline, thumbnails), which
  re-identifies places: a shot's opening is compared with the memory's timeline segments of
  earlier shots;
- a bounded *place book*: for the opening ``settle`` seconds of every shot, the per-cell median of
  the encoder's token grid ``[N, D]`` (the encoders' tokens are a grid of image cells), how much
  each cell varied inside that window (its noise), a small median image (for colour names) and a
  thumbnail; at most ``max_places`` of them (the least recently matched go first);
- the VBench accumulators of the video and of the current shot (O(1) each), a bounded score
  series for the plot, and the findings.

**Drift** (``event: "drift"``): when a shot opens on a place the memory has seen before (cosine of
the global vectors ≥ ``place_threshold`` with a segment of an earlier shot), its cell grid is
compared with the book's record of that earlier shot, cell by cell. A cell has *changed* when
``1 − cos > cell_threshold`` and more than ``noise_k`` times the cells' own variation in the two
windows (so a person swaying or walking through does not count). Connected changed cells form a
region; each region is described by where it is and the dominant colour before and after
("red → green"). A returning place with no changed cell is consistent; a shot that matches no
earlier place is a new scene. Neither is a drift.

Limits, stated plainly: a change so large that the place is no longer recognised (its global
cosine falls under ``place_threshold``) is taken for a new scene; subjects are compared where they
stand in the frame, so a character who returns somewhere else in the frame is compared with what
was there before (a region of change, not a re-identified person); the thresholds are calibrated
for the classic encoder on generated scenes; CLIP's defaults are not calibrated on real weights.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from streamvid.events import ViewChecker
from streamvid.memory import DeltaMem
from streamvid.models.classic import dominant_colour
from streamvid.pipeline import encode_jpeg, new_memory
from streamvid.types import Frame

log = logging.getLogger(__name__)

SMALL_WIDTH = 160  # the analysis image (cuts, colours)
THUMB_HEIGHT = 144
SERIES_POINTS = 2000  # the score series keeps at most this many points (pairs merge when full)

# defaults per encoder: (place_threshold, cell_threshold); see the module docstring
THRESHOLDS = {"classic": (0.9, 0.1), "clip": (0.85, 0.15)}


@dataclass
class ConsistencyConfig:
    settle: float = 1.0  # seconds at the start of a shot that form its record
    min_frames: int = 2  # a window needs this many frames
    place_threshold: float | None = None  # None: by encoder (THRESHOLDS)
    cell_threshold: float | None = None
    noise_k: float = 3.0
    min_cells: int = 1
    max_places: int = 256


@dataclass
class _Record:
    """The opening window of one shot."""

    shot: int
    t0: float
    t1: float
    grid: torch.Tensor  # [N, D] per-cell median tokens, L2-normalised
    noise: torch.Tensor  # [N] max over the window of 1 - cos(token, median)
    glob: torch.Tensor  # [D]
    small: np.ndarray  # [h, w, 3] median image of the window
    thumb: bytes | None


@dataclass
class Shot:
    index: int
    start: float
    end: float
    frames: int = 0
    subject: float | None = None
    background: float | None = None
    flicker: float | None = None
    matches: int | None = None  # the earlier shot whose place this one returns to
    status: str = "new"  # new | same | drift | short


@dataclass
class Drift:
    """One flagged drift (the moments schema, ``event: "drift"``, plus what it matches)."""

    t: float
    start: float
    end: float
    score: float
    description: str
    matches_t: float
    matches_end: float
    shot: int
    matches_shot: int
    regions: list[dict] = field(default_factory=list)
    thumb: bytes | None = None  # the returning shot
    match_thumb: bytes | None = None  # the earlier appearance
    event: str = "drift"

    def to_json(self) -> dict:
        return {"t": round(self.t, 3), "start": round(self.start, 3), "end": round(self.end, 3),
                "score": round(self.score, 4), "event": self.event, "description": self.description,
                "thumbnail": None, "matches": {"t": round(self.matches_t, 3), "end": round(self.matches_end, 3),
                                               "shot": self.matches_shot},
                "shot": self.shot, "regions": self.regions}


class _Series:
    """A bounded time series: when full, neighbouring points merge (means), halving the resolution."""

    def __init__(self, limit: int = SERIES_POINTS) -> None:
        self.limit = limit
        self.points: list[list[float]] = []  # [t, value..., weight]
        self._pending: list[float] | None = None
        self._stride = 1
        self._n = 0

    def add(self, t: float, *values: float) -> None:
        row = [t, *values, 1.0]
        if self._pending is None:
            self._pending = row
        else:
            w = self._pending[-1]
            self._pending = [(a * w + b) / (w + 1) for a, b in zip(self._pending[:-1], row[:-1])] + [w + 1]
        self._n += 1
        if self._n % self._stride == 0:
            self.points.append(self._pending)
            self._pending = None
            if len(self.points) >= self.limit:
                self.points = [[(a * p[-1] + b * q[-1]) / (p[-1] + q[-1]) for a, b in zip(p[:-1], q[:-1])]
                               + [p[-1] + q[-1]] for p, q in zip(self.points[::2], self.points[1::2])]
                self._stride *= 2

    def rows(self) -> list[list[float]]:
        return [p[:-1] for p in self.points] + ([self._pending[:-1]] if self._pending else [])


def _grid_shape(encoder) -> tuple[int, int]:
    cfg = encoder.config() if hasattr(encoder, "config") else {}
    if isinstance(cfg.get("grid"), (list, tuple)) and len(cfg["grid"]) == 2:
        return int(cfg["grid"][0]), int(cfg["grid"][1])
    n = int(getattr(encoder, "tokens_per_frame", 0) or 0)
    side = int(round(math.sqrt(n)))
    if side * side != n:
        raise ValueError(f"encoder {encoder.name}: {n} tokens are not a square grid")
    return side, side


_ROWS = ("top", "middle", "bottom")
_COLS = ("left", "centre", "right")


def _where(box: tuple[float, float, float, float]) -> str:
    """Words for a normalised box (x, y, w, h): "top left", "centre", "bottom right"..."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    r, c = _ROWS[min(2, int(cy * 3))], _COLS[min(2, int(cx * 3))]
    if r == "middle" and c == "centre":
        return "centre"
    return c if r == "middle" else (r if c == "centre" else f"{r} {c}")


class ConsistencyMonitor:
    """See the module docstring.

    Args:
        encoder: the project's encoder (tokens on a grid; classic or clip).
        subject, background: VBench feature extractors (``encode(list of RGB) -> [T, D]``, ``name``);
            None: the score is not computed.
        memory_mb: Δ-Mem budget.
        config: thresholds (defaults by encoder).
    """

    def __init__(self, encoder, *, subject=None, background=None, memory_mb: float = 4.0,
                 config: ConsistencyConfig | None = None, batch_size: int = 8) -> None:
        from streamvid.consistency import vbench

        self.encoder = encoder
        self.cfg = config or ConsistencyConfig()
        place, cell = THRESHOLDS.get(encoder.name, THRESHOLDS["clip"])
        self.place_threshold = self.cfg.place_threshold if self.cfg.place_threshold is not None else place
        self.cell_threshold = self.cfg.cell_threshold if self.cfg.cell_threshold is not None else cell
        self.grid = _grid_shape(encoder)
        self.memory: DeltaMem = new_memory(encoder, int(memory_mb * 2**20))
        self.subject, self.background = subject, background
        ex = getattr(background, "extractor", background)
        # the classic fallback's features are the drift encoder's global vectors: computed once
        self._reuse = ex if isinstance(ex, vbench.ClassicGlobalFeatures) and ex.uses(encoder) else None
        self.batch_size = batch_size
        self._video = {"subject": vbench.PairwiseConsistency(), "background": vbench.PairwiseConsistency(),
                       "flicker": vbench.Flicker()}
        self._shot_acc = {k: type(v)() for k, v in self._video.items()}
        self._view = ViewChecker()
        self.shots: list[Shot] = []
        self.drifts: list[Drift] = []
        self.book: OrderedDict[int, _Record] = OrderedDict()
        self.series = _Series()
        self.frames = 0
        self.last_t: float | None = None
        self._window: list[tuple[Frame, torch.Tensor, np.ndarray]] = []  # the current shot's opening
        self._recorded = False
        self._pending: list[Frame] = []

    # -- feeding ---------------------------------------------------------------------------------
    def feed(self, frames: Iterable[Frame]) -> list[Drift]:
        """Process ``frames`` (in time order); returns the drifts found in them."""
        before = len(self.drifts)
        batch: list[Frame] = []
        for f in frames:
            batch.append(f)
            if len(batch) == self.batch_size:
                self._process(batch)
                batch = []
        if batch:
            self._process(batch)
        return self.drifts[before:]

    def finish(self) -> None:
        """The video ended: close the last shot (a short last shot still gets its record)."""
        self._close_shot()

    def _process(self, batch: list[Frame]) -> None:
        encoded = self.encoder.encode_frames([f.rgb for f in batch])
        rgbs = [f.rgb for f in batch]
        if self._reuse is not None:
            back = self._reuse.from_encoded(encoded)
        else:
            back = self.background.encode(rgbs) if self.background is not None else None
        if self.subject is not None and _same_extractor(self.subject, self.background):
            subj = back  # the subject score fell back to the background's features: encode once
        else:
            subj = self.subject.encode(rgbs) if self.subject is not None else None
        for i, (f, enc) in enumerate(zip(batch, encoded)):
            small = self._small(f.rgb)
            gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
            cut, _ = self._view.check(small, gray, moves=False)
            if cut or not self.shots:
                self._close_shot()
                self._open_shot(f.t)
            shot = self.shots[-1]
            shot.frames += 1
            shot.end = f.t
            self.memory.update(f.t, enc, [0.0, 0.0, 0.0, float(gray.mean() / 255.0), 1.0 if cut else 0.0],
                               thumb=lambda f=f: encode_jpeg(f.rgb, height=96, max_bytes=self.memory.layout.thumb_bytes),
                               boundary=cut)
            values = []  # this frame's terms of the three scores (NaN: none yet)
            for key, feats in (("subject", subj), ("background", back)):
                v = math.nan
                if feats is not None:
                    row = feats[i : i + 1]
                    s_i = self._video[key].update(row)
                    self._shot_acc[key].update(row)
                    v = float(s_i[-1]) if len(s_i) else math.nan
                values.append(v)
            mae = self._video["flicker"].update(f.rgb[None])
            self._shot_acc["flicker"].update(f.rgb[None])
            values.append((255.0 - float(mae[-1])) / 255.0 if len(mae) else math.nan)
            self.series.add(f.t, *values)
            if not self._recorded:
                self._window.append((f, enc.tokens.float(), small))
                if f.t - shot.start >= self.cfg.settle and len(self._window) >= self.cfg.min_frames:
                    self._record(shot)
            self.frames += 1
            self.last_t = f.t

    @staticmethod
    def _small(rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        s = SMALL_WIDTH / w
        return cv2.resize(rgb, (SMALL_WIDTH, max(1, round(h * s))), interpolation=cv2.INTER_AREA)

    def _open_shot(self, t: float) -> None:
        self.shots.append(Shot(index=len(self.shots), start=t, end=t))
        self._shot_acc = {k: type(v)() for k, v in self._video.items()}
        self._window = []
        self._recorded = False

    def _close_shot(self) -> None:
        if not self.shots:
            return
        shot = self.shots[-1]
        shot.subject = self._shot_acc["subject"].score
        shot.background = self._shot_acc["background"].score
        shot.flicker = self._shot_acc["flicker"].score
        if not self._recorded:
            if len(self._window) >= self.cfg.min_frames:
                self._record(shot)
            else:
                shot.status = "short"
                self._recorded = True

    # -- records and drift -----------------------------------------------------------------------
    def _record(self, shot: Shot) -> None:
        self._recorded = True
        toks = torch.stack([tok for _, tok, _ in self._window])  # [T, N, D]
        med = toks.median(dim=0).values
        med = med / med.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        noise = (1.0 - (toks * med).sum(-1)).max(dim=0).values
        glob = med.mean(0)
        glob = glob / glob.norm().clamp_min(1e-12)
        small = np.median(np.stack([s for _, _, s in self._window]), axis=0).astype(np.uint8)
        mid = self._window[len(self._window) // 2][0]
        rec = _Record(shot.index, self._window[0][0].t, self._window[-1][0].t, med, noise, glob, small,
                      encode_jpeg(mid.rgb, height=THUMB_HEIGHT, max_bytes=1 << 20))
        self._window = []
        earlier = self._reidentify(rec)
        if earlier is None:
            shot.status = "new"
        else:
            self.book.move_to_end(earlier.shot)
            shot.matches = earlier.shot
            drift = self._compare(earlier, rec, shot)
            shot.status = "drift" if drift else "same"
            if drift:
                self.drifts.append(drift)
                log.info("drift at %.1f s (matches %.1f s): %s", drift.t, drift.matches_t, drift.description)
        if earlier is None:  # the book keeps first appearances: a return is compared with the original
            self.book[rec.shot] = rec
            while len(self.book) > self.cfg.max_places:
                self.book.popitem(last=False)

    def _reidentify(self, rec: _Record) -> _Record | None:
        """The book's record of the earlier place this shot returns to, via the memory's timeline."""
        segs = [s for s in self.memory.segments() if s.end < rec.t0 - 1e-6]
        if not segs:
            return None
        emb = self.memory.seg_vectors(torch.tensor([s.index for s in segs]))
        cos = emb @ rec.glob
        best = int(cos.argmax())
        if float(cos[best]) < self.place_threshold:
            return None
        t = segs[best].start
        # the record of the shot that segment belongs to, else the most similar record in the book
        cands = [r for r in self.book.values() if r.t0 - 1e-6 <= t <= self._shot_end(r.shot) + 1e-6]
        if not cands:
            cands = list(self.book.values())
        if not cands:
            return None
        r = max(cands, key=lambda r: float(r.glob @ rec.glob))
        return r if float(r.glob @ rec.glob) >= self.place_threshold else None

    def _shot_end(self, index: int) -> float:
        return self.shots[index].end if index < len(self.shots) else math.inf

    def _compare(self, old: _Record, new: _Record, shot: Shot) -> Drift | None:
        d = 1.0 - (old.grid * new.grid).sum(-1)  # [N]
        floor = self.cfg.noise_k * (old.noise + new.noise)
        changed = (d > self.cell_threshold) & (d > floor)
        if int(changed.sum()) < self.cfg.min_cells:
            return None
        rows, cols = self.grid
        mask = changed.view(rows, cols).numpy().astype(np.uint8)
        n_regions, labels = cv2.connectedComponents(mask, connectivity=8)
        regions = []
        h, w = new.small.shape[:2]
        for k in range(1, n_regions):
            cells = np.argwhere(labels == k)
            r0, c0 = cells.min(0)
            r1, c1 = cells.max(0) + 1
            box = (c0 / cols, r0 / rows, (c1 - c0) / cols, (r1 - r0) / rows)
            y0, y1, x0, x1 = int(r0 * h / rows), int(r1 * h / rows), int(c0 * w / cols), int(c1 * w / cols)
            sel = np.zeros((h, w), bool)
            for r, c in cells:
                sel[int(r * h / rows):int((r + 1) * h / rows), int(c * w / cols):int((c + 1) * w / cols)] = True
            before = _changed_colour(old.small, new.small, sel, y0, y1, x0, x1)
            score = float(d.view(rows, cols)[labels == k].max())
            regions.append({"where": _where(box), "box": [round(v, 3) for v in box], "cells": len(cells),
                            "from": before[0], "to": before[1], "score": round(score, 4)})
        regions.sort(key=lambda r: -r["score"])
        parts = []
        for r in regions:
            colours = f": {r['from']} → {r['to']}" if r["from"] and r["to"] and r["from"] != r["to"] else ""
            parts.append(f"{r['where']}{colours}")
        desc = "changed since its earlier appearance at " f"{old.t0:.1f} s: " + "; ".join(parts)
        return Drift(t=shot.start, start=shot.start, end=new.t1, score=float(d[changed].max()), description=desc,
                     matches_t=old.t0, matches_end=old.t1, shot=shot.index, matches_shot=old.shot, regions=regions,
                     thumb=new.thumb, match_thumb=old.thumb)

    # -- results ---------------------------------------------------------------------------------
    def report(self) -> dict:
        """Findings so far (JSON-able; the current shot's scores are provisional)."""
        cur = dict(self.shots[-1].__dict__) if self.shots else None
        shots = [dict(s.__dict__) for s in self.shots]
        if cur is not None:
            shots[-1].update(subject=self._shot_acc["subject"].score, background=self._shot_acc["background"].score,
                             flicker=self._shot_acc["flicker"].score)
        for s in shots:
            for k in ("start", "end", "subject", "background", "flicker"):
                if s[k] is not None:
                    s[k] = round(float(s[k]), 4 if k not in ("start", "end") else 3)
        return {
            "frames": self.frames,
            "duration": round(self.last_t, 3) if self.last_t is not None else None,
            "scores": {"subject_consistency": _r(self._video["subject"].score),
                       "background_consistency": _r(self._video["background"].score),
                       "temporal_flickering": _r(self._video["flicker"].score)},
            "features": {"subject": _describe(self.subject), "background": _describe(self.background),
                         "drift": self.encoder.name},
            "shots": shots,
            "drifts": [d.to_json() for d in self.drifts],
            "memory": {"bytes": self.memory.nbytes, "places": len(self.book), "max_places": self.cfg.max_places},
            "thresholds": {"place": self.place_threshold, "cell": self.cell_threshold, "noise_k": self.cfg.noise_k,
                           "settle": self.cfg.settle},
        }


def _describe(choice) -> dict | None:
    if choice is None:
        return None
    if hasattr(choice, "describe"):
        return choice.describe()
    return {"features": getattr(choice, "features_name", type(choice).__name__)}


def _same_extractor(a, b) -> bool:
    ea, eb = getattr(a, "extractor", a), getattr(b, "extractor", b)
    return b is not None and ea is eb


def _r(v) -> float | None:
    return None if v is None else round(float(v), 4)


def _changed_colour(old: np.ndarray, new: np.ndarray, sel: np.ndarray, y0, y1, x0, x1) -> tuple[str | None, str | None]:
    """Dominant colours of the pixels that differ most inside the region (before, after)."""
    a = old[y0:y1, x0:x1].astype(np.int16)
    b = new[y0:y1, x0:x1].astype(np.int16)
    m = sel[y0:y1, x0:x1]
    diff = np.abs(a - b).sum(-1)
    if m.any():
        thr = max(30, np.percentile(diff[m], 60))
        m = m & (diff >= thr)
    if not m.any():
        m = sel[y0:y1, x0:x1]
    return dominant_colour(old[y0:y1, x0:x1], m), dominant_colour(new[y0:y1, x0:x1], m)
