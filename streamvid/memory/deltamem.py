"""Δ-Mem: a streaming memory of one video whose bytes are fixed when it is created.

Four tiers, all allocated once from a :class:`~streamvid.memory.layout.MemoryLayout`:

- **slots** ``slot_k [M, D]``: compressed visual tokens, each with the tokens merged into it
  (``slot_count``), an ``importance``, the first/last time it was written and an exemplar thumbnail;
- **timeline** ``seg_emb [S, D]``: runs of similar frames with ``[start, end]``, kept in time order
  in rows ``0 .. segments_used-1``; per-frame channels and folded event counts per segment; the
  means are differences from ``origin [D]`` (fp32, the first frame's global vector) in int16 with
  an fp32 scale per segment, each segment a line whose drift is int8 with an fp16 scale; at most
  one row per ``seg_frames_per_row`` frames seen, and short shots kept finer once the budget bounds
  the rows (``shot_gate``);
- **pinned events** ``ev_emb [E, D]``: entries, exits and alerts at full fidelity; when full, one
  folds into the counts of the segment holding its time (never silently lost);
- **thumbnails** ``thumb_data [P, thumb_bytes]``: a pool of JPEG bytes referenced by the others.

The per-frame hot operations (nearest slot, grouped gated merge) go through
:mod:`streamvid.kernels.dispatch`: with ``B = 1`` from :meth:`DeltaMem.update`, with ``B > 1`` from a
:class:`~streamvid.memory.bank.MemoryBank` holding several streams' memories.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from streamvid.kernels import dispatch
from streamvid.memory.layout import CHANNELS, EVENT_KINDS, MIN_SEGMENTS, SCALARS, MemoryLayout
from streamvid.types import Encoded

if TYPE_CHECKING:
    from streamvid.models.gates import GateNet

log = logging.getLogger(__name__)

_S = {name: i for i, name in enumerate(SCALARS)}  # name -> index into ``scalars``
_FOLDED = _S[f"folded_{EVENT_KINDS[0]}"]  # folded counts per kind start here
_OTHER = EVENT_KINDS.index("other")
_BRIGHTNESS = CHANNELS.index("brightness")

# Retention score of a slot (the lowest is evicted when a novel token needs room):
#   importance + RECENCY_WEIGHT * exp(-(now - t_last) / recency_tau) + COUNT_WEIGHT * log1p(count)
RECENCY_WEIGHT = 1.0
COUNT_WEIGHT = 0.1
EVENT_SLOTS = 3  # slots nearest to a pinned event whose importance rises ("taking part in an event")
SEG_TIME_SCALE = 3.0  # seconds: the default ``seg_time_scale`` (a merge's cost grows with its span)
SEG_TIME_SCALE_BEFORE = 1.0  # the default until 2026-11-28: configs without ``seg_time_scale`` mean it
SEG_FRAMES_PER_ROW = 2.5  # the default ``seg_frames_per_row``: at most one timeline row per 2.5 frames seen
SEG_FRAMES_PER_ROW_BEFORE = 0.0  # configs without ``seg_frames_per_row`` were written before it existed: off
SHOT_GATE = 2.5  # the default ``shot_gate``: short shots are kept finer from 2.5 frames seen per row
SHOT_GATE_BEFORE = 0.0  # configs without ``shot_gate`` were written before it existed: off
SHOT_WEIGHT = 1000.0  # the default ``shot_weight`` (λ)
SHOT_SPAN = 5.0  # the default ``shot_span``: shots this long or longer are not kept finer
SHOT_SPAN_BEFORE = 0.0  # configs with ``shot_gate`` but without ``shot_span``: the rule's first form
_F32_TINY = float(np.float32(1e-12))  # ``clamp_min(1e-12)`` on a float32 tensor clamps at this


def indexed_device(device: str | torch.device) -> torch.device:
    """``device`` with its index filled in: ``"cuda"`` is the current CUDA device (``cuda:0``, ...),
    the device that tensors made there report, so that comparisons with them hold."""
    d = torch.device(device)
    if d.type != "cpu" and d.index is None:
        d = torch.empty(0, device=d).device
    return d


def _f32(v: float) -> float:
    """``v`` rounded to float32 (as a float64 tensor's ``.float()`` does), as a Python float."""
    return float(np.float32(v))


def _f16(v: float) -> float:
    """``v`` rounded to float16, as a Python float."""
    return float(np.float16(v))


def _quantize(v: torch.Tensor | float, qmax: int, rounded: Callable[[float], float]) -> tuple[torch.Tensor | int, float]:
    """``v`` as whole steps of one scale that takes its largest entry to ±``qmax`` → ``(steps,
    scale)``: integers in ``[-qmax, qmax]`` as a float tensor, the scale as ``rounded`` stores it
    (:func:`_f16`, :func:`_f32`); ``(0, 0.0)`` when ``v`` is zero (or the float ``0.0``, a run of
    one frame's drift)."""
    amax = float(v.abs().max()) if isinstance(v, torch.Tensor) else 0.0
    scale = rounded(amax / qmax)
    if not scale > 0:
        return 0, 0.0
    return (v / scale).round_().clamp_(-qmax, qmax), scale


def _shift_up(buf: np.ndarray | torch.Tensor, j: int, n: int) -> None:
    """``buf[j : n - 1] = buf[j + 1 : n]``: rows ``j + 1 ..`` move up one. numpy copies overlapping
    ranges as if through a temporary; torch needs the copy made."""
    src = buf[j + 1 : n]
    buf[j : n - 1] = src.clone() if isinstance(src, torch.Tensor) else src


def _rows(buf: torch.Tensor, rows: torch.Tensor | slice | int | None) -> torch.Tensor:
    """``buf[rows]``, or all of ``buf`` for ``rows=None``."""
    return buf if rows is None else buf[rows]


def _col(v: torch.Tensor | float) -> torch.Tensor | float:
    """``v[..., None]`` for a tensor of per-run scalars; a Python float as it is (it broadcasts)."""
    return v[..., None] if isinstance(v, torch.Tensor) else v


@dataclass(frozen=True)
class SlotInfo:
    """One used slot, as plain data."""

    index: int
    t_first: float
    t_last: float
    count: int
    importance: float
    thumb: int  # pool id of its exemplar frame, -1: none


@dataclass(frozen=True)
class Segment:
    """One timeline segment, as plain data. ``index`` is its row (segments are in time order)."""

    index: int
    start: float
    end: float
    count: int  # frames merged into it
    channels: dict[str, float]  # max of each channel, mean of brightness
    folded: dict[str, int]  # "entered"/"left" events folded into it
    thumb: int


@dataclass(frozen=True)
class PinnedEvent:
    """One pinned event, as plain data. ``index`` is its row in the event tier."""

    index: int
    t: float
    t_end: float
    kind: str
    description: str
    score: float
    importance: float
    thumb: int
    track_id: int
    bbox: tuple[int, int, int, int]
    emb: torch.Tensor  # [D] float32


@dataclass(frozen=True)
class Hits:
    """The best rows of one tier for each query, best first.

    ``index`` ``[Q, k]`` int64 (row in the tier), ``score`` ``[Q, k]`` float32 (the ranking score),
    ``cos`` ``[Q, k]`` float32 (cosine of query and row; for a timeline segment, with the best point
    of its line, whose time is ``t``). ``k = min(top_k, rows used)``; a single
    ``[D]`` query gives ``[k]`` tensors.
    """

    index: torch.Tensor
    score: torch.Tensor
    cos: torch.Tensor
    t: torch.Tensor | None = None  # segments: ``[Q, k]`` float64, the best time inside each segment


@dataclass(frozen=True)
class ReadResult:
    """What :meth:`DeltaMem.read` returns.

    ``slots.score`` is the attention weight (softmax over used slots of ``q·k/τ + log(count)``);
    ``segments.score`` and ``events.score`` are cosines. Indices are rows of the memory at read
    time: read :meth:`DeltaMem.segments` / :meth:`DeltaMem.events` / :meth:`DeltaMem.slots` before
    the next ``update``/``pin``.
    """

    slots: Hits
    segments: Hits
    events: Hits


class DeltaMem:
    """Constant-size memory of one stream. See the module docstring for the tiers.

    Args:
        layout: sizes of every buffer (``MemoryLayout.from_budget``).
        device: where the buffers live.
        novelty_threshold: a token with ``1 - cos(token, nearest slot) >`` this claims a slot;
            below it merges. A token within it of a slot claimed in the same frame joins that slot.
        gate_floor: the smallest merge gate ``g`` (lets old slots follow slow drift).
        seg_threshold: a frame whose global vector has cosine ``>=`` this with the last segment
            extends it (unless it is a boundary). The default, 1.0, opens a segment for every frame
            that is not identical to the last: the timeline's resolution is then set by the
            budget alone (when it is full the adjacent pair one line fits best merges), which keeps
            times precise wherever the video changes (issue 7's retention benchmark).
        seg_tolerance: while the timeline has free rows, a frame also extends the last segment
            when that segment's line explains it: when taking it in raises the segment's residual
            sum of squares by less than this (``1e-4``: a frame within ~0.01 of the line). Frames
            that only noise tells apart then share a line, which places a held-out frame better
            than the nearest single frame does: without it, a budget roomy enough to never merge
            (an hour at 4 MiB, classic encoder) found 0.83 of the retention benchmark's held-out
            frames, with it 0.86, as 2 MiB does with merges. Once the timeline is full, merges
            (globally the cheapest pair) do this better than a greedy choice. 0: off. A segment of
            one frame has no line yet (a line through two frames fits any two exactly), so it takes
            a second frame only when that frame shows the same view (``scene_threshold``): a line
            through a cut would place, between the two views, blends that no camera showed, and
            such a blend had drawn needle queries away from their needles.
        seg_time_scale: seconds; when the timeline is full, the cost of merging two adjacent
            segments is the rise of the residual sum of squares of their lines times ``1 + span /
            seg_time_scale``, ``span`` being the merged segment's length (end of the second minus
            start of the first). The rise measures how much worse the line represents the frames'
            vectors, not how well it still places a time: a query is answered with the time of the
            best point of a line, and the longer the span one line covers, the further that time
            can be from the frame's (the same misfit is more seconds on a longer line). So among
            merges of similar rise the shorter result goes first, while a merge that costs nothing
            (frames the line fits exactly, a still view) stays free at any length. Measured on
            issue 7's retention benchmark (held-out frames of an hour, top-1 within ±1 s; every
            value 0.5-2 s did better than none at 0.25-1 MiB): 1 s took recall at 0.25 / 0.5 / 1
            MiB from 0.66 / 0.81 / 0.83 to 0.70 / 0.83 / 0.86 on the generated hour and from 0.80 /
            0.91 / 0.96 to 0.83 / 0.94 / 0.96 on the vtest.avi hour (larger or equal with all five
            needle cuts of that hour; on three other generated hours 5 of the 9 values larger, 1
            equal, 3 lower by 0.02, 0.005 and 0.005). The price: a finer haystack also matches
            needle queries better; on those three hours 6 needle queries of 369 were lost at 0.5 or
            1 MiB, 5 of them one needle whose queries a haystack moment matched within 2e-4. The
            default was 1 s until lines kept their drift precisely (int8 with a scale per segment,
            an unrounded last segment): re-measured then, on the 20 tree.avi cuts of the vtest.avi
            hour at 0.5 MiB, 3 s found 281 needle queries against 1 s's 273 (keep-all 299) and 3008
            held-out frames against 2964, with no significant change at 0.25 and 1 MiB or on the
            generated hours (BENCHMARKS.md, "A longer time scale for merges"). 0: off (the rise
            alone). Always in :meth:`config`; a snapshot whose config lacks it was written when the
            default was 1 s, and loads with 1 s.
        seg_frames_per_row: the timeline holds at most one row per this many frames seen (and at
            least 8 rows): a stream short for its budget is segmented by merges too (the adjacent
            pair one line fits best, as when the timeline is full) rather than by the greedy
            ``seg_tolerance`` alone, and the rows beyond stay free. Without it, a budget too roomy
            to ever fill kept more rows than a smaller one that did fill, and answered worse: on
            issue 7's vtest.avi hour (20 cuts of tree.avi needles, 2 fps) 2 MiB found 292
            needle queries and 3057 held-out frames where 1 MiB, full and merged, found 299 and
            3094; with 2.5 (and int16 means), 2-8 MiB find 300 and 3087 (BENCHMARKS.md, "Rows per
            frame"). 0: off (only the budget bounds the rows). Always in :meth:`config`; a snapshot
            whose config lacks it was written before it existed, and loads with it off.
        shot_gate: once the frames seen are at least this many times the layout's rows (with the
            default 2.5, ``seg_frames_per_row``'s: once the budget, not the frames seen, bounds the
            rows), short shots are kept finer. A shot is a run of rows between cuts; a row starts
            one when its line's first point has cosine ``< scene_threshold`` with the line's last
            point of the row before. A merge inside a shot costs ``1 + shot_weight · (merged
            span) · (1 / shot span - 1 / shot_span)`` times more (nothing more in shots of
            ``shot_span`` or longer; the last shot's span is its span so far, every span at least
            0.5 s), and a merge across a cut, a line running between two views, is made only when
            no pair inside a shot is left. A brief view (someone passing, a cut-in clip) then
            keeps its frames apart where a long one gives up its finest. On issue 7's vtest.avi
            hour at 0.5 MiB, tree.avi needle queries found 283 -> 304 (keep-all 299), and on three
            more sets of cuts 304 -> 325 (324), 320 -> 353 (353), 300 -> 318 (314), held-out frames
            -0.5 %; at 0.25 MiB 282 -> 309 needles (with the rule's first form before), held-out
            frames -2 %; at 1 MiB and more as good as without it (BENCHMARKS.md, "Short shots kept
            apart").
            0: off. Always in :meth:`config`; a snapshot whose config lacks it was written before
            it existed, and loads with it off.
        shot_weight: λ of ``shot_gate`` (0: off).
        shot_span: shots this long (seconds) or longer are not kept finer (see ``shot_gate``).
            0: the rule's first form (``shot_gate`` 6, ``shot_weight`` 4 then): ``1 + shot_weight
            · merged span / shot span`` in every shot, merges across a cut by cost like the rest;
            a snapshot whose config has ``shot_gate`` but not ``shot_span`` was written with it.
        scene_threshold: a new segment whose global vector has cosine ``>=`` this with the last
            one shows the same view: it shares that segment's thumbnail instead of encoding one.
        importance_decay: slot importance is multiplied by this every frame.
        max_claims: most slots claimed per frame (default ``max(2, M // 8)``).
        temperature: τ of the slot attention in :meth:`read`.
        recency_tau: seconds; time scale of the recency term of the retention score.
        gate: optional learned merge gate (:class:`~streamvid.models.gates.GateNet`, or the path of
            one saved with safetensors); ``None`` (the default): the closed-form gate
            ``max(n / (count + n), gate_floor)``. Not part of the snapshot tensors; :meth:`config`
            records its path.
        storage: optional tensors to use as buffers (by name, each of the layout's shape and
            dtype, contiguous, on ``device``; zeroed here) instead of allocating them: how a
            :class:`~streamvid.memory.bank.MemoryBank` makes its memories' slot tensors rows of
            its stacked ``[B, M, ...]`` tensors.
    """

    def __init__(
        self,
        layout: MemoryLayout,
        *,
        device: str | torch.device = "cpu",
        novelty_threshold: float = 0.2,
        gate_floor: float = 0.02,
        seg_threshold: float = 1.0,
        seg_tolerance: float = 1e-4,
        seg_time_scale: float = SEG_TIME_SCALE,
        seg_frames_per_row: float = SEG_FRAMES_PER_ROW,
        shot_gate: float = SHOT_GATE,
        shot_weight: float = SHOT_WEIGHT,
        shot_span: float = SHOT_SPAN,
        scene_threshold: float = 0.9,
        importance_decay: float = 0.999,
        max_claims: int | None = None,
        temperature: float = 0.05,
        recency_tau: float = 30.0,
        gate: GateNet | str | os.PathLike | None = None,
        storage: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.layout = layout
        self.device = indexed_device(device)
        self.novelty_threshold = novelty_threshold
        self.gate_floor = gate_floor
        self.seg_threshold = seg_threshold
        self.seg_tolerance = seg_tolerance
        if not seg_time_scale >= 0:
            raise ValueError(f"seg_time_scale must be >= 0 seconds (0: off), got {seg_time_scale}")
        self.seg_time_scale = float(seg_time_scale)
        if not seg_frames_per_row >= 0:
            raise ValueError(f"seg_frames_per_row must be >= 0 (0: off), got {seg_frames_per_row}")
        self.seg_frames_per_row = float(seg_frames_per_row)
        if not shot_gate >= 0 or not shot_weight >= 0 or not shot_span >= 0:
            raise ValueError("shot_gate, shot_weight and shot_span must be >= 0 (0: off), "
                             f"got {shot_gate}, {shot_weight}, {shot_span}")
        self.shot_gate = float(shot_gate)
        self.shot_weight = float(shot_weight)
        self.shot_span = float(shot_span)
        self.scene_threshold = scene_threshold
        self.importance_decay = importance_decay
        self.max_claims = max(2, layout.slots // 8) if max_claims is None else max_claims
        self.temperature = temperature
        self.recency_tau = recency_tau
        if gate is not None and not isinstance(gate, torch.nn.Module):
            from streamvid.models.gates import GateNet

            gate = GateNet.load(gate)
        self.gate = gate.to(self.device).eval() if gate is not None else None

        self._buffers: dict[str, torch.Tensor] = {}
        storage = storage or {}
        for name, (shape, dtype) in layout.buffers().items():
            buf = storage.get(name)
            if buf is None:
                buf = torch.zeros(shape, dtype=dtype, device=self.device)
            elif tuple(buf.shape) != shape or buf.dtype != dtype or buf.device != self.device \
                    or not buf.is_contiguous():
                raise ValueError(f"storage for {name} must be a contiguous {dtype}{list(shape)} on {self.device}")
            else:
                buf.zero_()
            self._buffers[name] = buf
            setattr(self, name, buf)
        for name in ("slot_thumb", "seg_thumb", "ev_thumb", "fold_kind"):
            self._buffers[name].fill_(-1)
        if "origin" not in self._buffers:  # a layout from before the origin: absolute means
            self.origin = torch.zeros(layout.dim, device=self.device)
        self._seg_names = [name for name in self._buffers if name.startswith("seg_")]
        # On a CPU, numpy views of the buffers (the same memory) read and write single entries
        # without a torch op each (microseconds apiece, many per frame): see :meth:`_item`/:meth:`_put`.
        self._host = {name: buf.numpy() for name, buf in self._buffers.items()} if self.device.type == "cpu" else None
        self._costs: torch.Tensor | None = None  # cached merge costs of adjacent segments [S - 1]
        # cached shot starts [S] (:meth:`_shot_weights`, once its gate is open) and which of them
        # are stale (the row or the one before it changed since): refreshed at the next merge
        self._cuts: torch.Tensor | None = None
        self._cuts_stale: np.ndarray | None = None
        self._max_channels = torch.tensor([c != "brightness" for c in CHANNELS], device=self.device)

    def __getstate__(self) -> dict:
        """Pickling and ``copy.deepcopy`` leave out the numpy views (they would be copies of the
        buffers, no longer sharing their memory); :meth:`__setstate__` makes them anew."""
        state = self.__dict__.copy()
        state["_host"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.device.type == "cpu":
            self._host = {name: buf.numpy() for name, buf in self._buffers.items()}

    # -- bookkeeping --------------------------------------------------------------------------

    def config(self) -> dict:
        """The keyword arguments that rebuild this memory's behaviour (stored in snapshots)."""
        cfg = {
            "novelty_threshold": self.novelty_threshold,
            "gate_floor": self.gate_floor,
            "seg_threshold": self.seg_threshold,
            "seg_tolerance": self.seg_tolerance,
            "scene_threshold": self.scene_threshold,
            "importance_decay": self.importance_decay,
            "max_claims": self.max_claims,
            "temperature": self.temperature,
            "recency_tau": self.recency_tau,
        }
        cfg["seg_time_scale"] = self.seg_time_scale  # a config without it is from when the default was 1 s
        cfg["seg_frames_per_row"] = self.seg_frames_per_row  # a config without it is from before it (off)
        cfg["shot_gate"] = self.shot_gate  # a config without it is from before it (off)
        cfg["shot_weight"] = self.shot_weight
        cfg["shot_span"] = self.shot_span  # a config with shot_gate but without it: the first form (0)
        if self.gate is not None:  # only then, so configs without a gate are unchanged
            cfg["gate"] = getattr(self.gate, "path", None)
            if cfg["gate"] is None:
                log.warning("the memory's learned gate was never saved; its config records gate=None")
        return cfg

    def buffers(self) -> dict[str, torch.Tensor]:
        """Every buffer by name (the same tensors the memory works on, not copies). Write them
        through :meth:`load_buffers`, which also drops what the memory derived from them."""
        return dict(self._buffers)

    def load_buffers(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copy ``tensors`` (name → tensor of the layout's shape and dtype, every buffer) into the
        memory's buffers, e.g. from a snapshot or another memory."""
        for name, buf in self._buffers.items():
            buf.copy_(tensors[name])
        self._costs = None
        self._cuts = self._cuts_stale = None

    @property
    def nbytes(self) -> int:
        """Bytes held by all buffers; always ``layout.nbytes``."""
        return sum(t.numel() * t.element_size() for t in self._buffers.values())

    def _scalar(self, name: str) -> float:
        return float(self._item("scalars", _S[name]))

    def _item(self, name: str, i: int) -> float | int | bool:
        """Entry ``i`` of the 1-D buffer ``name`` as a Python number (exact: float32 and int32
        values are float64 and int values)."""
        if self._host is not None:
            return self._host[name][i].item()
        return self._buffers[name][i].item()

    def _put(self, name: str, i: int, value: float | int | bool) -> None:
        """``buffers[name][i] = value`` for a Python number: converted to the buffer's dtype as
        torch converts it (float64 → float32 rounds to nearest, ties to even, as numpy does)."""
        if self._host is not None:
            self._host[name][i] = value
        else:
            self._buffers[name][i] = value

    def _n_segments(self) -> int:
        if self._host is not None:
            return int(np.count_nonzero(self._host["seg_used"]))
        return int(self.seg_used.sum())

    def seg_means(self, rows: torch.Tensor | slice | int | None = None) -> torch.Tensor:
        """The timeline segments' mean vectors as stored (not normalised: norm <= 1), fp32 ``[S, D]``
        (or the rows asked for): ``seg_emb`` (int16 times ``seg_mscale``; fp16 alone in layouts
        without ``mean_int16``) plus ``origin``."""
        mean = _rows(self.seg_emb, rows).float()
        if self.layout.mean_int16:
            mean = mean * _rows(self.seg_mscale, rows)[..., None]
        return mean + self.origin

    def _stored_equal(self, g: torch.Tensor, i: int) -> bool:
        """Whether the vector ``g [D]`` would be stored as row ``i``'s mean is."""
        code, scale = self._encode_mean(g)
        return torch.equal(code, self.seg_emb[i]) and (not self.layout.mean_int16
                                                       or scale == self._item("seg_mscale", i))

    def _encode_mean(self, mean: torch.Tensor) -> tuple[torch.Tensor, float]:
        """A mean ``[D]`` as stored: its difference from ``origin`` in ``seg_emb``'s dtype, and the
        row's scale (int16 layouts: the largest entry to ±32767; 1.0 otherwise)."""
        diff = mean - self.origin
        if not self.layout.mean_int16:
            return diff.to(self.seg_emb.dtype), 1.0
        steps, scale = _quantize(diff, 32767, _f32)
        return (steps.to(torch.int16) if scale > 0 else torch.zeros_like(diff, dtype=torch.int16)), scale

    def seg_drifts(self, rows: torch.Tensor | slice | int | None = None) -> torch.Tensor:
        """The timeline segments' drifts (each line's change from start to end), fp32 ``[S, D]`` (or
        the rows asked for): ``seg_drift`` times ``seg_dscale`` (int8 and a scale per row; fp16 alone
        in layouts without ``drift_int8``)."""
        drift = _rows(self.seg_drift, rows).float()
        if not self.layout.drift_int8:
            return drift
        return drift * _rows(self.seg_dscale, rows).float()[..., None]

    def seg_vectors(self, rows: torch.Tensor | slice | int | None = None) -> torch.Tensor:
        """The timeline segments' mean vectors, L2-normalised, fp32 ``[S, D]`` (or the rows asked for)."""
        mean = self.seg_means(rows)
        # ``mean.norm(dim=-1, keepdim=True)`` is this call behind a Python wrapper
        return mean / torch.linalg.vector_norm(mean, 2, -1, True).clamp_min(1e-12)

    def ev_vectors(self, rows: torch.Tensor | slice | None = None) -> torch.Tensor:
        """The pinned events' vectors as fp32 ``[E, D]`` (or the rows asked for); stored in fp16."""
        return _rows(self.ev_emb, rows).float()

    def _clamp_time(self, t: float) -> float:
        """``t`` moved inside ``[first_t, last_t]`` once a frame has been seen."""
        if self._scalar("frames_seen") == 0:
            return t
        return min(max(t, self._scalar("first_t")), self._scalar("last_t"))

    # -- the per-frame update -----------------------------------------------------------------

    def update(
        self,
        t: float,
        enc: Encoded,
        channels: Sequence[float] | torch.Tensor,
        thumb: Callable[[], bytes] | None = None,
        boundary: bool = False,
    ) -> None:
        """Write one frame: its tokens into the slots, its global vector into the timeline.

        Args:
            t: time of the frame in seconds; a time earlier than the last one is taken as the last.
            enc: ``tokens [N, D]`` and ``global_ [D]``, L2-normalised float32.
            channels: ``[C]`` per-frame signals in :data:`CHANNELS` order.
            thumb: returns the frame's JPEG bytes; called only when a new segment opens.
            boundary: a scene cut or camera move: always open a new segment.
        """
        t, x, seg_thumb = self._begin(t, enc, channels, thumb, boundary)
        hi = self.slots_in_use()
        best_idx, best_sim, _ = dispatch.delta_assign(x[None], self.slot_k[None, :hi], self.slot_used[None, :hi])
        target, novelty = self._targets(t, x, best_idx[0], best_sim[0], seg_thumb)
        n = dispatch.delta_merge(
            x[None],
            target[None],
            self.slot_k[None],
            self.slot_count[None],
            self.slot_importance[None],
            novelty[None],
            self.gate_floor,
            gate=None if self.gate is None else self._learned_gate(target, novelty)[None],
        )[0]
        self._end(t, n)

    # The three phases of ``update`` around the two kernels; a MemoryBank runs them for several
    # memories with one kernel launch each (B > 1) in between.

    def slots_in_use(self) -> int:
        """Used slots always form a prefix (free slots are claimed lowest first and a slot is
        never freed, only evicted and re-claimed), so only ``slot_k[:slots_in_use()]`` is compared."""
        if self._host is not None:
            return int(np.count_nonzero(self._host["slot_used"]))
        return int(self.slot_used.sum())

    def _begin(
        self, t: float, enc: Encoded, channels, thumb: Callable[[], bytes] | None, boundary: bool
    ) -> tuple[float, torch.Tensor, int]:
        """Check the frame, count it, decay importance, extend the timeline → ``(t, x [N, D], seg_thumb)``."""
        D = self.layout.dim
        x = enc.tokens.to(self.device, torch.float32)
        g = enc.global_.to(self.device, torch.float32)
        ch = torch.as_tensor(channels, dtype=torch.float32).to(self.device)
        if x.ndim != 2 or x.shape[1] != D or g.shape != (D,):
            raise ValueError(
                f"expected tokens [N, {D}] and global [{D}], got {list(x.shape)} and {list(g.shape)}"
            )
        if ch.shape != (len(CHANNELS),):
            raise ValueError(f"expected {len(CHANNELS)} channels {CHANNELS}, got shape {list(ch.shape)}")

        # the scalars as Python floats: the same float64 arithmetic, without a torch op for each
        seen, last_t = self._item("scalars", _S["frames_seen"]), self._item("scalars", _S["last_t"])
        if seen == 0:
            self._put("scalars", _S["first_t"], t)
        elif t < last_t:
            log.warning("frame time %.3f is before the last one (%.3f); using the last", t, last_t)
            t = last_t
        self._put("scalars", _S["last_t"], t)
        self._put("scalars", _S["frames_seen"], seen + 1)
        self._put("scalars", _S["tokens_seen"], self._item("scalars", _S["tokens_seen"]) + x.shape[0])

        self.slot_importance.mul_(self.importance_decay)
        seg_thumb = self._extend_timeline(t, g, ch, thumb, boundary)
        return t, x, seg_thumb

    def _targets(
        self, t: float, x: torch.Tensor, best_idx: torch.Tensor, best_sim: torch.Tensor, seg_thumb: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """From the nearest slots ``best_idx/best_sim [N]`` of ``x [N, D]``: claim slots for the novel
        tokens → ``(target [N], novelty [N])``, the slot each token merges into and its novelty."""
        novelty = (1.0 - best_sim).clamp(0.0, 2.0)  # 2 (the most) when no slot is used yet
        novel = (novelty > self.novelty_threshold).cpu().numpy()
        target = best_idx  # slot each token merges into
        if novel.any():
            target = self._claim(t, x, best_idx, best_sim, novelty, novel, seg_thumb)
        return target, novelty

    def _end(self, t: float, n: torch.Tensor) -> None:
        """After the merge: ``n [M]`` tokens merged into each slot."""
        self.slot_t_last.masked_fill_(n > 0, t)  # ``slot_t_last[n > 0] = t`` without the index op

    @torch.no_grad()
    def _learned_gate(self, target: torch.Tensor, novelty: torch.Tensor) -> torch.Tensor:
        """``[M]`` gates from ``self.gate`` for the slots ``target [N]`` hits (NaN elsewhere)."""
        M = self.layout.slots
        ok = target >= 0
        tgt, nov = target[ok], novelty[ok].float()
        n = torch.bincount(tgt, minlength=M)
        nov_sum = torch.zeros(M, device=self.device).index_add_(0, tgt, nov)
        hit = (n > 0).nonzero().squeeze(1)
        out = torch.full((M,), float("nan"), device=self.device)
        out[hit] = self.gate.gate(
            n[hit], self.slot_count[hit], nov_sum[hit], self.slot_importance[hit], self.gate_floor
        ).float()
        return out

    def _claim(
        self,
        t: float,
        x: torch.Tensor,
        best_idx: torch.Tensor,
        best_sim: torch.Tensor,
        novelty: torch.Tensor,
        novel: np.ndarray,
        seg_thumb: int,
    ) -> torch.Tensor:
        """Give the ``novel [N]`` tokens slots; returns the slot ``[N]`` every token merges into.

        Novel tokens, most novel first, either join a slot claimed earlier in this frame (cosine
        with its first token ``>= 1 - novelty_threshold``) or claim one: a free slot, else the slot
        of lowest retention score that no non-novel token of this frame merges into, which is first
        folded into its nearest surviving slot. Past ``max_claims`` (or when nothing can be
        evicted) a novel token merges into the nearest of its old best slot (or where that slot
        was folded) and this frame's claimed slots. Claimed slots start empty, so the merge that
        follows sets them to the mean of their tokens. Per-token bookkeeping runs in numpy.
        """
        target, sim_best, nov = (v.cpu().numpy() for v in (best_idx, best_sim, novelty))
        order = np.flatnonzero(novel)
        order = order[np.argsort(-nov[order], kind="stable")]
        xo = x[torch.from_numpy(order).to(self.device)]
        sim = (xo @ xo.T).cpu().numpy()  # [n, n]

        used = self.slot_used.cpu().numpy()
        free = np.flatnonzero(~used)
        eligible = used.copy()
        eligible[target[~novel]] = False  # slots written by this frame's non-novel tokens stay
        evictable = min(int(eligible.sum()), max(int(used.sum()) - 1, 0))  # keep one slot to fold into
        cap = min(self.max_claims, len(free) + evictable)
        leaders, group = _leader_groups(sim, 1.0 - self.novelty_threshold, cap)

        slots = free[: len(leaders)]
        victim_thumbs: list[int] = []
        if len(leaders) > len(free):
            victims, dests = self._evict(
                t, len(leaders) - len(free), torch.from_numpy(eligible).to(self.device)
            )
            victim_thumbs = self.slot_thumb[victims].tolist()
            victims, dests = victims.cpu().numpy(), dests.cpu().numpy()
            slots = np.concatenate([slots, victims])
            # a token whose best slot was evicted now goes where that slot's content went
            moved = dict(zip(victims.tolist(), dests.tolist(), strict=True))
            target[order] = [moved.get(j, j) for j in target[order].tolist()]

        joined = group >= 0
        target[order[joined]] = slots[group[joined]]
        rest = np.flatnonzero(~joined)
        if len(rest) and leaders:  # overflow: nearest of the old best slot and this frame's claims
            lead_sim = sim[np.ix_(rest, leaders)]
            j = lead_sim.argmax(axis=1)
            closer = lead_sim[np.arange(len(rest)), j] > sim_best[order[rest]]
            target[order[rest[closer]]] = slots[j[closer]]

        claimed = torch.from_numpy(slots).to(self.device)
        self.slot_k[claimed] = 0.0
        self.slot_count[claimed] = 0
        self.slot_importance[claimed] = 0.0
        self.slot_t_first[claimed] = t
        self.slot_thumb[claimed] = seg_thumb
        self.slot_used[claimed] = True
        self._release_thumbs(victim_thumbs)
        return torch.from_numpy(target).to(self.device)

    def _retention(self, now: float) -> torch.Tensor:
        """``[M]`` retention score of every slot (see ``RECENCY_WEIGHT`` / ``COUNT_WEIGHT``)."""
        recency = torch.exp((self.slot_t_last - now) / self.recency_tau).float()
        return (
            self.slot_importance
            + RECENCY_WEIGHT * recency
            + COUNT_WEIGHT * torch.log1p(self.slot_count.float())
        )

    def _evict(self, now: float, n: int, eligible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fold the ``n`` eligible slots of lowest retention into their nearest surviving slots.

        The fold is count-weighted: ``k_d <- normalise(c_d k_d + Σ c_v k_v)``; counts add up, the
        importance is the max (summing would make a frequent fold target unevictable), times widen. Returns ``(victims [n], dests [n])``; the victims are left to reuse.
        """
        score = self._retention(now).masked_fill(~eligible, math.inf)
        victims = score.topk(n, largest=False).indices
        survivors = self.slot_used.clone()
        survivors[victims] = False
        dests = dispatch.delta_assign(self.slot_k[victims][None], self.slot_k[None], survivors[None])[0][0]

        ud, pos = torch.unique(dests, return_inverse=True)
        acc = self.slot_k[ud] * self.slot_count[ud, None]
        acc.index_add_(0, pos, self.slot_k[victims] * self.slot_count[victims, None])
        self.slot_count.index_add_(0, dests, self.slot_count[victims])
        self.slot_k[ud] = acc / acc.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        self.slot_importance.scatter_reduce_(0, dests, self.slot_importance[victims], "amax")
        self.slot_t_first.scatter_reduce_(0, dests, self.slot_t_first[victims], "amin")
        self.slot_t_last.scatter_reduce_(0, dests, self.slot_t_last[victims], "amax")
        log.debug("evicted %d slots", n)
        return victims, dests

    # -- timeline -----------------------------------------------------------------------------
    #
    # A segment is a least-squares line through its frames' unit global vectors over time:
    # ``g(t) ≈ mean + (t - t_mean) · v`` with ``v = Σ (t - t_mean) g / stt``, stored as ``seg_emb``
    # (the mean), ``seg_drift`` (``v · (end - start)``, int8 with a scale per row: :meth:`seg_drifts`),
    # ``seg_tmean`` and ``seg_stt`` (``Σ (t - t_mean)²``). These statistics combine exactly when two
    # segments merge (the last segment's from its unrounded ``tail_mean``/``tail_drift`` where the
    # layout keeps them), and the merged pair is the one whose line fits worst by the least: the
    # smallest rise of the residual sum of squares, weighted by ``1 + span / seg_time_scale`` (a
    # longer line places a time less precisely).
    # A query then finds the best point on each segment's line, so it gets a time inside the segment
    # (the lighting drifting, a person walking) instead of its middle.

    def _seg_stats(self, rows: slice | int) -> tuple[torch.Tensor, ...]:
        """``(n, t_mean, stt, mean [.., D], stg [.., D])`` of segment rows in float64/float32,
        with ``stg = Σ (t - t_mean) g`` rebuilt from the stored drift."""
        n = self.seg_count[rows].double()
        tm, stt = self.seg_tmean[rows], self.seg_stt[rows].double()
        length = self.seg_end[rows] - self.seg_start[rows]
        mean, drift = self.seg_means(rows), self.seg_drifts(rows)
        scale = torch.where(length > 0, stt / length.clamp_min(1e-12), 0.0).float()
        return n, tm, stt, mean, drift * scale[..., None]

    def _row_stats(self, i: int, tail: bool = False) -> tuple[float, float, float, torch.Tensor, torch.Tensor]:
        """:meth:`_seg_stats` of the one row ``i`` with ``n``, ``t_mean``, ``stt`` as Python floats;
        ``tail``: ``i`` is the last segment, whose unrounded mean and drift (``tail_mean``,
        ``tail_drift``) are used where the layout keeps them (to extend or merge it; merge costs use
        the stored rows, as the batched :meth:`_merge_cost` does).

        The timeline's per-frame work is on one or two rows, where each 0-d tensor op costs
        microseconds; Python floats are IEEE float64 too, so the same steps give the same bits
        (float32 ones rounded with :func:`_f32`, as ``.float()`` rounds)."""
        n = float(self._item("seg_count", i))
        tm = self._item("seg_tmean", i)
        stt = self._item("seg_stt", i)  # float32: exact as a Python float, like ``.double()``
        length = self._item("seg_end", i) - self._item("seg_start", i)
        scale = _f32(stt / max(length, 1e-12)) if length > 0 else 0.0
        # float32 times a Python float: the float is cast to float32 (exact here), as the [1] tensor was
        if tail and self.layout.timeline_tail:
            return n, tm, stt, self.tail_mean.clone(), self.tail_drift * scale
        return n, tm, stt, self.seg_means(i), self.seg_drifts(i) * scale

    @staticmethod
    def _combine(a: tuple, b: tuple) -> tuple:
        """The statistics of two consecutive runs of frames as one (Chan et al.'s pairwise update)
        → ``(n, t_mean, stt, mean, stg)``.

        ``n``, ``t_mean`` and ``stt`` are float64 tensors (one entry per run) or, for single runs
        (:meth:`_row_stats`), Python floats: the same float64 arithmetic either way. ``stg`` may be
        the Python float 0.0 (a run of one frame): adding it is adding a zero vector."""
        na, ta, sa, ma, ga = a
        nb, tb, sb, mb, gb = b
        n = na + nb
        w = na * nb / n
        dt = ta - tb
        ma, mb = ma.double(), mb.double()
        mean = (_col(na) * ma + _col(nb) * mb) / _col(n)
        ga = ga.double() if isinstance(ga, torch.Tensor) else ga
        gb = gb.double() if isinstance(gb, torch.Tensor) else gb
        stg = ga + gb + _col(w * dt) * (ma - mb)
        return n, (na * ta + nb * tb) / n, sa + sb + w * dt * dt, mean.float(), stg.float()

    def _store_seg(self, i: int, stats: tuple, start: float, end: float, tail: bool = False) -> None:
        """Write the statistics ``stats`` (:meth:`_combine`) of a run over ``[start, end]`` to row
        ``i``; ``tail``: the row is (now) the last segment (its unrounded mean and drift are kept too)."""
        n, tm, stt, mean, stg = stats
        stt = float(stt)
        length = end - start
        self._put("seg_count", i, int(n))
        self._put("seg_tmean", i, float(tm))
        self._put("seg_stt", i, stt)
        self.seg_emb[i], mscale = self._encode_mean(mean)
        if self.layout.mean_int16:
            self._put("seg_mscale", i, mscale)
        drift = stg * (length / stt) if stt > 0 and length > 0 else 0.0
        if not self.layout.drift_int8:
            self.seg_drift[i] = drift
        else:  # int8 times a per-row fp16 scale that takes the largest entry to ±127
            self.seg_drift[i], scale = _quantize(drift, 127, _f16)
            self._put("seg_dscale", i, scale)
        if tail and self.layout.timeline_tail:
            self.tail_mean.copy_(mean)
            self.tail_drift[:] = drift
        self._put("seg_start", i, start)
        self._put("seg_end", i, end)

    def _extend_timeline(
        self, t: float, g: torch.Tensor, ch: torch.Tensor, thumb: Callable[[], bytes] | None, boundary: bool
    ) -> int:
        """Extend the last segment with this frame or open a new one; returns its thumbnail id."""
        n = self._n_segments()
        last = n - 1
        cos_last, same = -1.0, False
        if n:
            cos_last = float(g @ self.seg_vectors(last))
            # "the same as the last segment" is judged at the precision ``seg_emb`` stores; a frame
            # stored alike lies within half a step of every entry (1 - cosine < 1e-6 even for
            # D = 1024), so the stored form is worked out only that close
            same = cos_last >= self.seg_threshold or cos_last > 1.0 - 1e-5 and self._stored_equal(g, last)
        elif self.layout.timeline_origin:  # the first segment: means are stored relative to its frame
            self.origin.copy_(g)
        one = (1.0, float(t), 0.0, g, 0.0)  # this frame as a run of one (as :meth:`_row_stats` gives runs)
        tolerant = self.seg_tolerance > 0 and 0 < n < self.layout.segments
        merged = None
        if not boundary and (same or tolerant):  # only then is the extended segment needed
            stats = self._row_stats(last, tail=True)
            merged = self._combine(stats, one)
            # a segment of one frame has no line yet (a line through two frames fits any two): it
            # takes a second frame only of the same view, or its line would run between two views
            line = stats[0] > 1.0 or cos_last >= self.scene_threshold
            same = same or line and self._rise_row(stats, one, merged) < self.seg_tolerance
        if same and not boundary:
            c = int(stats[0])
            self._store_seg(last, merged, self._item("seg_start", last), t, tail=True)
            row = self.seg_channels[last].float()
            self.seg_channels[last] = torch.where(self._max_channels, torch.maximum(row, ch), row + (ch - row) / (c + 1))
            self._recost(last)
            return self._item("seg_thumb", last)

        while n >= self._row_cap():
            self._merge_segments(now=t)
            n -= 1
        self._store_seg(n, one, t, t, tail=True)
        self.seg_channels[n] = ch
        self.seg_folded[n] = 0
        self._put("seg_used", n, True)
        self._recost(n)
        if n and not boundary and cos_last >= self.scene_threshold and self._item("seg_thumb", n - 1) >= 0:
            tid = self._item("seg_thumb", n - 1)  # the same view: share its thumbnail
        else:
            tid = self.put_thumb(thumb()) if thumb is not None else -1
        self._put("seg_thumb", n, tid)
        return tid

    def _row_cap(self) -> int:
        """The most timeline rows in use now: the layout's, or fewer while few frames have been
        seen (``seg_frames_per_row``)."""
        S = self.layout.segments
        if self.seg_frames_per_row <= 0:
            return S
        return min(S, max(MIN_SEGMENTS, int(self._scalar("frames_seen") / self.seg_frames_per_row)))

    def _merge_cost(self, lo: int = 0, hi: int | None = None) -> torch.Tensor:
        """``[hi - lo]``: for ``i`` in ``lo .. hi-1`` (default: every pair), how much the residual sum
        of squares of the segments' lines rises when segment ``i`` and ``i + 1`` become one (``≥ 0``;
        the identity ``SSE(a ∪ b) - SSE(a) - SSE(b) = w |mean_a - mean_b|² - |stg_ab|² / stt_ab +
        |stg_a|² / stt_a + |stg_b|² / stt_b`` with ``w = n_a n_b / (n_a + n_b)`` keeps it exact for
        stored (rounded) means), times ``1 + span / seg_time_scale`` (``span``: the merged segment's length in
        seconds; see ``seg_time_scale``); ``inf`` where ``i + 1`` is not in use."""
        hi = self.layout.segments - 1 if hi is None else hi
        n, tm, stt, mean, stg = self._seg_stats(slice(lo, hi + 1))
        n = n.clamp_min(1.0)  # unused rows: masked below
        a = (n[:-1], tm[:-1], stt[:-1], mean[:-1], stg[:-1])
        b = (n[1:], tm[1:], stt[1:], mean[1:], stg[1:])
        cost = self._rise(a, b, self._combine(a, b))
        if self.seg_time_scale > 0:
            span = (self.seg_end[lo + 1 : hi + 1] - self.seg_start[lo:hi]).clamp_min(0.0)
            cost = cost * (1.0 + span / self.seg_time_scale).float()
        return cost.masked_fill(~self.seg_used[lo + 1 : hi + 1], math.inf)

    @staticmethod
    def _rise(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...], ab: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``SSE(a ∪ b) - SSE(a) - SSE(b)`` of runs ``a``, ``b`` and their union ``ab`` (statistics as
        :meth:`_combine` takes them), clamped at 0."""

        def fit(g: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            s = s.float()
            return torch.where(s > 0, (g * g).sum(-1) / s.clamp_min(1e-12), 0.0)

        w = (a[0] * b[0] / ab[0]).float()
        spread = w * ((a[3] - b[3]) ** 2).sum(-1)
        return (spread - fit(ab[4], ab[2]) + fit(a[4], a[2]) + fit(b[4], b[2])).clamp_min(0.0)

    @staticmethod
    def _rise_row(a: tuple, b: tuple, ab: tuple) -> float:
        """:meth:`_rise` of single runs whose ``n`` and ``stt`` are Python floats (:meth:`_row_stats`,
        :meth:`_combine`), as a Python float: the same float32 steps, each rounded to float32 as the
        0-d float32 tensors round them (a float32 sum, product or quotient is exact in float64, so
        rounding it once more to float32 gives float32's own result)."""

        def fit(g: torch.Tensor, s: float) -> float:
            s = _f32(s)
            return _f32(float((g * g).sum(-1)) / max(s, _F32_TINY)) if s > 0 else 0.0

        w = _f32(a[0] * b[0] / ab[0])
        spread = _f32(w * float(((a[3] - b[3]) ** 2).sum(-1)))
        return max(_f32(_f32(_f32(spread - fit(ab[4], ab[2])) + fit(a[4], a[2])) + fit(b[4], b[2])), 0.0)

    def _pair_cost(self, i: int, a: tuple, b: tuple) -> float:
        """``_merge_cost(i, i + 1)[0]`` from the :meth:`_row_stats` ``a``, ``b`` of rows ``i`` and
        ``i + 1`` (in use), as a Python float: the same steps, scalars as Python floats (rounded to
        float32 where the tensors are), so the same bits (a row's sum over ``D`` is the same alone
        as in a batch); for the one or two pairs :meth:`_recost` refreshes every frame, without
        the ~100 small tensor ops of the batched form."""
        a, b = (max(a[0], 1.0), *a[1:]), (max(b[0], 1.0), *b[1:])  # as ``n.clamp_min(1.0)``
        cost = self._rise_row(a, b, self._combine(a, b))
        if self.seg_time_scale > 0:
            span = max(self._item("seg_end", i + 1) - self._item("seg_start", i), 0.0)
            cost = _f32(cost * _f32(1.0 + span / self.seg_time_scale))
        return cost

    def _host_costs(self) -> np.ndarray | torch.Tensor:
        """The cached merge costs, as a numpy view on a CPU (see :meth:`_item`)."""
        return self._costs.numpy() if self._host is not None else self._costs

    def _recost(self, i: int) -> None:
        """Refresh the cached merge costs of the pairs around segment ``i`` after it changed (and
        mark the cached shot starts of rows ``i`` and ``i + 1`` stale)."""
        if self._cuts_stale is not None:
            self._cuts_stale[i : i + 2] = True
        if self._costs is not None:
            lo, hi = max(i - 1, 0), min(i + 1, self.layout.segments - 1)
            costs = self._host_costs()
            stats = {}
            for p in range(lo, hi):  # pair p: rows p and p + 1 (inf where p + 1 is not in use)
                if not self._item("seg_used", p + 1):
                    costs[p] = math.inf
                    continue
                for r in (p, p + 1):
                    if r not in stats:
                        stats[r] = self._row_stats(r)
                costs[p] = self._pair_cost(p, stats[p], stats[p + 1])

    def _merge_segments(self, now: float | None = None) -> None:
        """Merge the adjacent pair of the lowest merge cost (the timeline at its row cap,
        :meth:`_row_cap`): the one whose merged line fits worst by the least, weighted by its span
        (:meth:`_merge_cost`) and, past ``shot_gate``, by its shot (:meth:`_shot_weights`; ``now``:
        the time of the frame that asks for the room), where with ``shot_span`` > 0 a pair across a
        cut is taken only when no pair inside a shot is left (then the cheapest of them by cost)."""
        if self._costs is None:  # computed once, then kept up to date pair by pair
            self._costs = self._merge_cost()
        costs = self._costs
        if now is not None and self._shot_gate_open():
            weighted = costs * self._shot_weights(now)
            if self.shot_span > 0 and self._cuts is not None:  # across a cut: last
                # pair p crosses a cut when row p + 1 starts a shot (pairs past the rows in use cost inf)
                across = self._cuts[1:]
                inside = weighted.masked_fill(across, math.inf)
                i = int(inside.argmin())
                if inside[i] == math.inf:  # no pair inside a shot left: the cheapest across a cut
                    i = int(costs.masked_fill(~across, math.inf).argmin())
            else:
                i = int(weighted.argmin())
        else:
            i = int(costs.argmin())
        j = i + 1
        last = j + 1 == self.layout.segments or not self._item("seg_used", j + 1)  # j is the last segment
        sa, sb = self._row_stats(i), self._row_stats(j, tail=last)
        ca, cb = int(sa[0]), int(sb[0])
        merged = self._combine(sa, sb)
        self._store_seg(i, merged, self._item("seg_start", i), self._item("seg_end", j), tail=last)
        a, b = self.seg_channels[i].float(), self.seg_channels[j].float()
        self.seg_channels[i] = torch.where(self._max_channels, torch.maximum(a, b), (ca * a + cb * b) / (ca + cb))
        ta, tb = self._item("seg_thumb", i), self._item("seg_thumb", j)
        keep, drop = (tb, ta) if (cb > ca and tb >= 0) or ta < 0 else (ta, tb)
        self._put("seg_thumb", i, keep)

        n = self.layout.segments
        bufs = self._host if self._host is not None else self._buffers
        bufs["seg_folded"][i] += bufs["seg_folded"][j]
        for name in self._seg_names:  # close the gap: rows j+1.. move up one
            _shift_up(bufs[name], j, n)
        _shift_up(self._host_costs(), j, n - 1)
        if self._cuts is not None:
            _shift_up(self._cuts, j, n)
            _shift_up(self._cuts_stale, j, n)
        self._put("seg_used", n - 1, False)
        self._put("seg_thumb", n - 1, -1)
        self._costs[n - 2] = math.inf
        self._recost(i)
        self._release_thumbs([drop])

    def _shot_gate_open(self) -> bool:
        """Whether merges are weighted by their shot now (see ``shot_gate``)."""
        return (self.shot_gate > 0 and self.shot_weight > 0
                and self._scalar("frames_seen") / self.layout.segments >= self.shot_gate)

    def _shot_weights(self, now: float) -> torch.Tensor:
        """``[S - 1]``: the factor on each adjacent pair's merge cost for its shot (``shot_gate``):
        ``1 + shot_weight · (merged span) · max(1 / max(shot span, 0.5 s) - 1 / shot_span, 0)``
        inside a shot (``shot_span`` 0: ``1 + shot_weight · (merged span) / max(shot span, 0.5 s)``),
        1 across a cut and where a row is unused. A row starts a shot when the cosine of its line's
        first point with the line's last point of the row before is below ``scene_threshold``
        (:meth:`_shot_starts`); the last shot's span runs to ``now``.

        The shot starts are worked out for every row the first time, then kept: the rows that
        changed since the last call (:meth:`_recost` marks them) are worked out again, so a merge
        costs O(changed rows × D) + O(S) instead of O(S × D)."""
        n = self._n_segments()
        w = torch.ones(self.layout.segments - 1, device=self.device)
        if n < 2:
            return w
        if self._cuts is None:
            self._cuts = torch.ones(self.layout.segments, dtype=torch.bool, device=self.device)
            self._cuts[:n] = self._shot_starts(torch.arange(n, device=self.device))
            self._cuts_stale = np.zeros(self.layout.segments, dtype=bool)
        else:
            stale = np.flatnonzero(self._cuts_stale[:n])
            if stale.size:
                rows = torch.from_numpy(stale).to(self.device)
                self._cuts[rows] = self._shot_starts(rows)
        self._cuts_stale[:] = False
        start, end = self.seg_start[:n], self.seg_end[:n]
        cut = self._cuts[:n]  # row r starts a shot
        shot = torch.cumsum(cut, 0) - 1  # row r's shot
        shot_start = start[cut]
        shot_end = torch.cat([shot_start[1:], shot_start.new_tensor([float(now)])])  # the last: ``now``
        sp = shot[:-1]  # pair p (rows p, p + 1) inside shot sp unless row p + 1 starts one
        span = (shot_end[sp] - shot_start[sp]).clamp_min(0.5)
        merged = end[1:] - start[:-1]
        if self.shot_span > 0:
            rise = merged * (1.0 / span - 1.0 / self.shot_span).clamp_min(0.0)
        else:  # the first form
            rise = merged / span
        w[: n - 1] = torch.where(cut[1:], 1.0, 1.0 + self.shot_weight * rise).float()
        return w

    def _shot_starts(self, rows: torch.Tensor) -> torch.Tensor:
        """``[R]`` bool: whether each of timeline ``rows [R]`` (in use) starts a shot: row 0 does;
        row ``r`` does when the cosine of its line's first point with the last point of row
        ``r - 1``'s line is below ``scene_threshold``."""
        R = len(rows)
        mean, drift, lo, hi, _, _ = self._lines(torch.cat([(rows - 1).clamp_min(0), rows]))  # rows before, rows
        first_pt, last_pt = mean[R:] + lo[R:, None] * drift[R:], mean[:R] + hi[:R, None] * drift[:R]
        cos = (first_pt * last_pt).sum(-1) / (first_pt.norm(dim=-1) * last_pt.norm(dim=-1)).clamp_min(1e-12)
        return (cos < self.scene_threshold) | (rows == 0)

    def _lines(self, rows: torch.Tensor | slice) -> tuple[torch.Tensor, ...]:
        """The lines of timeline ``rows`` as :meth:`seg_locate` and :meth:`_shot_weights` use them →
        ``(mean, drift, lo, hi, t_mean, length)``: the point at time ``t`` is ``mean + u · drift``
        with ``u = (t - t_mean) / length``, from ``lo`` (at the start) to ``hi`` (at the end); both 0
        for a segment of no length."""
        mean, drift = self.seg_means(rows), self.seg_drifts(rows)
        start, end, tm = self.seg_start[rows], self.seg_end[rows], self.seg_tmean[rows]
        length = end - start
        safe = length.clamp_min(1e-12)
        lo = torch.where(length > 0, (start - tm) / safe, torch.zeros_like(tm)).float()
        hi = torch.where(length > 0, (end - tm) / safe, torch.zeros_like(tm)).float()
        return mean, drift, lo, hi, tm, length

    def seg_locate(self, q: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The best point of each segment's line for each query → ``(cos [Q, R], t [Q, R])``.

        ``q [Q, D]`` (L2-normalised), ``rows [R]``. The point ``mean + u · drift`` with ``u`` in the
        segment's span maximises ``cos(q, ·)``; ``t = t_mean + u (end - start)``. In closed form:
        with ``a = q·mean, b = q·drift, c = |mean|², e = mean·drift, f = |drift|²`` the cosine
        ``(a + b u) / sqrt(c + 2 e u + f u²)`` has one critical point, ``u* = (b c - a e) / (a f -
        b e)``, so its maximum on the span is at ``u*`` or an end.
        """
        mean, drift, lo, hi, tm, length = self._lines(rows)
        a, b = q @ mean.T, q @ drift.T  # [Q, R]
        c, e, f = (mean * mean).sum(-1), (mean * drift).sum(-1), (drift * drift).sum(-1)
        den = a * f - b * e
        crit = torch.where(den.abs() > 1e-12, (b * c - a * e) / torch.where(den == 0, torch.ones_like(den), den),
                           torch.zeros_like(den))
        cands = torch.stack([lo.expand_as(a), hi.expand_as(a), torch.maximum(torch.minimum(crit, hi), lo)])
        cos = (a + b * cands) / (c + 2 * e * cands + f * cands * cands).clamp_min(1e-12).sqrt()
        best, which = cos.max(0)
        u = cands.gather(0, which[None])[0]
        return best, tm + u.double() * length

    # -- pinned events ------------------------------------------------------------------------

    def pin(
        self,
        t: float,
        kind: str,
        emb: torch.Tensor,
        description: str,
        thumb: bytes | None,
        score: float,
        importance: float = 1.0,
        t_end: float | None = None,
        track_id: int = -1,
        bbox: Sequence[int] = (0, 0, 0, 0),
    ) -> int:
        """Pin an event at full fidelity; returns its row.

        ``kind`` is one of :data:`EVENT_KINDS` (anything else is stored as ``"other"``); ``emb``
        ``[D]``; ``description`` is kept up to ``desc_bytes`` UTF-8 bytes (cut at a character
        boundary); ``thumb`` JPEG bytes (``None``: no thumbnail). Times are clamped into the seen
        range. When the tier is full, the lowest-importance (then oldest) event folds into the
        counts first. The :data:`EVENT_SLOTS` slots nearest to ``emb`` gain ``importance``.
        """
        D = self.layout.dim
        e = emb.to(self.device, torch.float32).reshape(-1)
        if e.shape != (D,):
            raise ValueError(f"expected an event embedding [{D}], got {list(emb.shape)}")
        e = e / e.norm().clamp_min(1e-12)
        code = EVENT_KINDS.index(kind) if kind in EVENT_KINDS else _OTHER
        t = self._clamp_time(t)
        t_end = max(t, self._clamp_time(t if t_end is None else t_end))

        free = (~self.ev_used).nonzero()
        i = int(free[0]) if len(free) else self._fold_event()
        desc = description.encode("utf-8")[: self.layout.desc_bytes].decode("utf-8", "ignore").encode("utf-8")
        self.ev_t[i] = t
        self.ev_t_end[i] = t_end
        self.ev_kind[i] = code
        self.ev_emb[i] = e
        self.ev_desc[i] = 0
        if desc:
            self.ev_desc[i, : len(desc)] = torch.frombuffer(bytearray(desc), dtype=torch.uint8)
        self.ev_desc_len[i] = len(desc)
        self.ev_importance[i] = importance
        self.ev_track_id[i] = track_id
        self.ev_bbox[i] = torch.tensor([int(v) for v in bbox], dtype=torch.int32)
        self.ev_score[i] = score
        self.ev_thumb[i] = -1
        self.ev_used[i] = True
        if thumb:
            self.ev_thumb[i] = self.put_thumb(thumb)

        used = self.slot_used.nonzero().squeeze(1)
        if len(used):
            near = (self.slot_k[used] @ e).topk(min(EVENT_SLOTS, len(used))).indices
            self.slot_importance[used[near]] += importance
        return i

    def _fold_event(self) -> int:
        """Fold the lowest-importance (then oldest) event out of the pinned tier; returns its free row.

        Its time and kind go to the folded-event times (``fold_t``/``fold_kind``); when those are
        full, the oldest of them becomes a count in the segment holding its time (``seg_folded``).
        ``folded_<kind>`` counts every folded event, with a time or without."""
        used = self.ev_used.nonzero().squeeze(1)
        imp = self.ev_importance[used].cpu().numpy()
        when = self.ev_t[used].cpu().numpy()
        i = int(used[np.lexsort((when, imp))[0]])
        code = int(self.ev_kind[i])
        self.scalars[_FOLDED + code] += 1
        t = float(self.ev_t[i])
        if self.layout.folds:
            free = (self.fold_kind < 0).nonzero()
            if len(free):
                j = int(free[0])
            else:  # full: the oldest keeps only a count
                j = int(self.fold_t.argmin())
                self._count_folded(float(self.fold_t[j]), int(self.fold_kind[j]))
            self.fold_t[j] = t
            self.fold_kind[j] = code
        else:
            self._count_folded(t, code)
        log.debug("event tier full: folded %s event at %.3f", EVENT_KINDS[code], t)
        old = int(self.ev_thumb[i])
        self.ev_used[i] = False
        self.ev_thumb[i] = -1
        self._release_thumbs([old])
        return i

    def _count_folded(self, t: float, code: int) -> None:
        n = self._n_segments()
        if code < 2 and n:  # entered / left: count it in the segment holding its time
            seg = torch.searchsorted(self.seg_start[:n], torch.tensor([t], dtype=torch.float64, device=self.device),
                                     right=True)
            self.seg_folded[int(seg.clamp(1, n)) - 1, code] += 1

    def folded_events(self, kind: str | None = None) -> list[tuple[float, str]]:
        """Folded events whose time is still kept, ``(t, kind)`` in time order (optionally of one
        kind). The others folded so far are counts in their segments (:meth:`segments`)."""
        used = (self.fold_kind >= 0).nonzero().squeeze(1)
        out = [(t, EVENT_KINDS[c]) for t, c in zip(self.fold_t[used].tolist(), self.fold_kind[used].tolist())]
        return sorted(e for e in out if kind is None or e[1] == kind)

    # -- thumbnail pool -----------------------------------------------------------------------

    def put_thumb(self, data: bytes) -> int:
        """Store JPEG bytes in the pool; returns its id, or -1 when it is empty, longer than
        ``thumb_bytes`` (re-encode it smaller) or every entry holds a pinned event's thumbnail.

        When the pool is full an entry no pinned event uses is evicted: first those no slot uses
        (held only by segments, the oldest being old merged ones), oldest first; references to it
        become -1.
        """
        if not data or len(data) > self.layout.thumb_bytes:
            log.debug(
                "thumbnail of %d bytes rejected (pool entries hold 1..%d)", len(data), self.layout.thumb_bytes
            )
            return -1
        free = (self.thumb_len == 0).nonzero()
        i = int(free[0]) if len(free) else self._evict_thumb()
        if i < 0:
            log.debug("thumbnail pool holds only pinned events' thumbnails; not stored")
            return -1
        self.thumb_data[i] = 0
        self.thumb_data[i, : len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        self.thumb_len[i] = len(data)
        self.scalars[_S["thumb_clock"]] += 1
        self.thumb_stamp[i] = self.scalars[_S["thumb_clock"]]
        return i

    def thumbnail(self, tid: int) -> bytes | None:
        """The JPEG bytes of pool entry ``tid``, or ``None`` when there is none."""
        if not 0 <= tid < self.layout.thumbs or int(self.thumb_len[tid]) == 0:
            return None
        return bytes(self.thumb_data[tid, : int(self.thumb_len[tid])].cpu().numpy())

    def _referenced(self, *by: torch.Tensor) -> torch.Tensor:
        """``[P]`` bool: the pool entries that appear in any of the reference buffers ``by``.

        Rows not in use always hold -1, so the used masks need not be consulted.
        """
        out = torch.zeros(self.layout.thumbs + 1, dtype=torch.bool, device=self.device)
        for ids in by:
            out[ids.long() + 1] = True  # -1 (none) lands in entry 0, dropped
        return out[1:]

    def _evict_thumb(self) -> int:
        by_slot = self._referenced(self.slot_thumb)
        key = self.thumb_stamp + by_slot.double() * (self._scalar("thumb_clock") + 1)
        key = key.masked_fill(self._referenced(self.ev_thumb), math.inf)
        i = int(key.argmin())
        if key[i] == math.inf:
            return -1
        self.slot_thumb[self.slot_thumb == i] = -1
        self.seg_thumb[self.seg_thumb == i] = -1
        self.thumb_len[i] = 0
        return i

    def _release_thumbs(self, ids: Sequence[int]) -> None:
        """Free the pool entries among ``ids`` that nothing references any more."""
        ids = [i for i in ids if i >= 0]
        if not ids:
            return
        held = self._referenced(self.slot_thumb, self.seg_thumb, self.ev_thumb)
        for i in ids:
            if not held[i]:
                self.thumb_len[i] = 0

    # -- reading ------------------------------------------------------------------------------

    def read(self, query: torch.Tensor, top_k: int = 5) -> ReadResult:
        """Attend with ``query`` (``[D]`` or ``[Q, D]``, L2-normalised) over the three tiers.

        Slots: softmax over used slots of ``q·k / temperature + log(count)``, top ``top_k`` by
        weight. Segments: top ``top_k`` by the cosine with the best point of each one's line, whose
        time is ``segments.t`` (:meth:`seg_locate`). Events: top ``top_k`` by cosine. See
        :class:`ReadResult`.
        """
        q = query.to(self.device, torch.float32)
        single = q.ndim == 1
        q = q.reshape(-1, self.layout.dim)
        slots = self.slot_used.nonzero().squeeze(1)
        segs = torch.arange(self._n_segments(), device=self.device)
        events = self.ev_used.nonzero().squeeze(1)
        cos = q @ self.slot_k[slots].T
        attn = torch.softmax(cos / self.temperature + torch.log(self.slot_count[slots].float()), dim=-1)
        hits = [_top(attn, cos, slots, top_k)]
        cos, seg_t = self.seg_locate(q, segs)
        seg_hits = _top(cos, cos, segs, top_k)  # segs is 0 .. n-1: a row is its own position
        hits.append(Hits(seg_hits.index, seg_hits.score, seg_hits.cos, seg_t.gather(-1, seg_hits.index)))
        cos = q @ self.ev_vectors(events).T
        hits.append(_top(cos, cos, events, top_k))
        if single:
            hits = [Hits(h.index[0], h.score[0], h.cos[0], None if h.t is None else h.t[0]) for h in hits]
        return ReadResult(*hits)

    def mark_retrieved(self, slot_idx: int | Sequence[int] | torch.Tensor, boost: float = 1.0) -> None:
        """Raise the importance of slots a query retrieved."""
        idx = torch.as_tensor(slot_idx, dtype=torch.int64).to(self.device).reshape(-1)
        self.slot_importance.index_add_(0, idx, torch.full(idx.shape, boost, device=self.device))

    # -- plain-data accessors -----------------------------------------------------------------

    def slots(self) -> list[SlotInfo]:
        rows = self.slot_used.nonzero().squeeze(1).tolist()
        t0, t1 = self.slot_t_first.tolist(), self.slot_t_last.tolist()
        count, imp, thumb = self.slot_count.tolist(), self.slot_importance.tolist(), self.slot_thumb.tolist()
        return [SlotInfo(i, t0[i], t1[i], count[i], imp[i], thumb[i]) for i in rows]

    def segments(self) -> list[Segment]:
        n = self._n_segments()
        start, end = self.seg_start[:n].tolist(), self.seg_end[:n].tolist()
        count, ch = self.seg_count[:n].tolist(), self.seg_channels[:n].tolist()
        folded, thumb = self.seg_folded[:n].tolist(), self.seg_thumb[:n].tolist()
        return [
            Segment(
                index=i,
                start=start[i],
                end=end[i],
                count=count[i],
                channels=dict(zip(CHANNELS, ch[i], strict=True)),
                folded=dict(zip(EVENT_KINDS[:2], folded[i], strict=True)),
                thumb=thumb[i],
            )
            for i in range(n)
        ]

    def events(self, kind: str | None = None) -> list[PinnedEvent]:
        """Pinned events in time order, optionally only those of ``kind``."""
        out = []
        for i in self.ev_used.nonzero().squeeze(1).tolist():
            k = EVENT_KINDS[int(self.ev_kind[i])]
            if kind is not None and k != kind:
                continue
            desc = bytes(self.ev_desc[i, : int(self.ev_desc_len[i])].cpu().numpy()).decode("utf-8")
            out.append(
                PinnedEvent(
                    index=i,
                    t=float(self.ev_t[i]),
                    t_end=float(self.ev_t_end[i]),
                    kind=k,
                    description=desc,
                    score=float(self.ev_score[i]),
                    importance=float(self.ev_importance[i]),
                    thumb=int(self.ev_thumb[i]),
                    track_id=int(self.ev_track_id[i]),
                    bbox=tuple(self.ev_bbox[i].tolist()),
                    emb=self.ev_emb[i].float(),
                )
            )
        return sorted(out, key=lambda ev: (ev.t, ev.index))

    def folded_counts(self) -> dict[str, int]:
        """Events folded out of the pinned tier so far, per kind."""
        return {kind: int(self.scalars[_FOLDED + c]) for c, kind in enumerate(EVENT_KINDS)}

    def stats(self) -> dict:
        L = self.layout
        return {
            "bytes": self.nbytes,
            "budget_bytes": L.budget_bytes,
            "dim": L.dim,
            "slots": L.slots,
            "slots_used": int(self.slot_used.sum()),
            "segments": L.segments,
            "segments_used": self._n_segments(),
            "segments_cap": self._row_cap(),  # rows the timeline may use now (``seg_frames_per_row``)
            "events": L.events,
            "events_used": int(self.ev_used.sum()),
            "folded_times": L.folds,
            "folded_times_used": int((self.fold_kind >= 0).sum()),
            "thumbnails": L.thumbs,
            "thumbnails_used": int((self.thumb_len > 0).sum()),
            "thumb_bytes": L.thumb_bytes,
            "frames_seen": int(self._scalar("frames_seen")),
            "tokens_seen": int(self._scalar("tokens_seen")),
            "first_t": self._scalar("first_t"),
            "last_t": self._scalar("last_t"),
            "folded": self.folded_counts(),
        }


def _leader_groups(sim: np.ndarray, min_sim: float, cap: int) -> tuple[list[int], np.ndarray]:
    """Greedy leader clustering of tokens already sorted most novel first.

    ``sim [n, n]`` cosines. Token ``i`` joins the most similar leader when that cosine is
    ``>= min_sim``, else becomes a leader while fewer than ``cap`` exist, else stays alone.
    Returns the leaders (positions) and ``group [n]``: index into leaders, -1 for alone.
    """
    group = np.full(len(sim), -1, dtype=np.int64)
    leaders: list[int] = []
    for i in range(len(sim)):
        if leaders:
            s = sim[i, leaders]
            j = int(s.argmax())
            if s[j] >= min_sim:
                group[i] = j
                continue
        if len(leaders) < cap:
            group[i] = len(leaders)
            leaders.append(i)
    return leaders, group


def _top(score: torch.Tensor, cos: torch.Tensor, rows: torch.Tensor, top_k: int) -> Hits:
    """The ``top_k`` best of ``rows [R]`` by ``score [Q, R]``, with their ``cos [Q, R]``."""
    top, pos = score.topk(min(top_k, len(rows)), dim=-1)
    return Hits(index=rows[pos], score=top, cos=cos.gather(-1, pos))
