"""The fixed shape of a Δ-Mem memory: how many slots, segments, events and thumbnails a byte budget buys.

Every buffer the memory holds is listed in :meth:`MemoryLayout.buffers`; ``nbytes`` is their exact
sum, and :class:`~streamvid.memory.deltamem.DeltaMem` allocates exactly these, once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from streamvid.types import CHANNELS  # a segment keeps the max of each, the mean of brightness

EVENT_KINDS = ("entered", "left", "alert", "other")
"""Event kind codes are indices into this tuple; any other kind string is stored as ``other``."""

SCALARS = (
    "frames_seen",
    "tokens_seen",
    "first_t",
    "last_t",
    "thumb_clock",  # puts into the thumbnail pool so far: the pool's notion of age
    *(f"folded_{kind}" for kind in EVENT_KINDS),  # events folded out of the pinned tier, per kind
)
"""Names of the entries of the memory's ``scalars [len(SCALARS)]`` float64 buffer."""

MIN_SLOTS, MIN_SEGMENTS, MIN_EVENTS, MIN_THUMBS = 16, 8, 8, 8
MIN_THUMB_BYTES = 1024
# The timeline is the memory's time index: with a segment per changing frame, merged under budget,
# its share sets how precisely times are kept (issue 7: 0.17 → 0.45 took recall at 1 MiB of an hour
# from 0.46 to 0.79 of 200 held-out frames); slots take the rest (~29 %).
THUMB_SHARE, EVENT_SHARE, TIMELINE_SHARE = 0.20, 0.06, 0.45
# Folded events keep their time and kind (9 bytes each, against ~234 for a pinned event with its
# description, vector and box) before they become timeline counts: 2 % of the budget keeps the
# times of ~2 folded events per KiB of budget, 582 at 0.25 MiB (issue 7: entered/left F1 of an hour
# at 0.5 MiB 0.81 → 0.95, the detector's own; BENCHMARKS.md, "Event grounding").
FOLD_SHARE = 0.02


@dataclass(frozen=True)
class MemoryLayout:
    """Sizes of every tier of one memory.

    ``dim`` is D, ``slots`` M, ``segments`` S, ``events`` E, ``thumbs`` P; ``thumb_bytes`` is the
    largest JPEG one pool entry holds, ``desc_bytes`` the UTF-8 bytes kept of an event description.
    ``budget_bytes`` is the budget it was sized for (0 when built by hand: then it is ``nbytes``).
    ``folds`` F is how many folded events keep their time and kind (0: folded events are counts only,
    as in memories saved before it existed). ``timeline_origin``: the timeline's fp16 means are
    stored as their difference from an fp32 ``origin [D]`` (the first frame's global vector), which
    keeps them several times more precise when a camera's frames all look alike (17x on the
    vtest.avi hour of issue 7's benchmark, 1.5x on its generated hours); False in memories saved
    before it existed (absolute means, no ``origin`` buffer). ``drift_int8``: each segment's drift
    is stored as int8 with an fp16 scale per segment (``seg_drift`` ``[S, D]`` int8, ``seg_dscale``
    ``[S]``), 177 bytes a segment with D = 40 instead of 215, so a budget holds 21 % more segments;
    False in memories saved before it existed (fp16 drifts, no ``seg_dscale``). ``timeline_tail``:
    the last segment's mean and drift are also kept unrounded (``tail_mean``, ``tail_drift``: fp32
    ``[D]`` each), so the frames that extend it, one at a time, do not pile up a rounding each;
    False in memories saved before it existed. ``mean_int16``: each segment's mean is stored as
    its difference from the origin in int16 with an fp32 scale per segment (``seg_emb`` ``[S, D]``
    int16, ``seg_mscale`` ``[S]``) instead of fp16: a step 16-32x finer for the largest entries, so
    frames of a still view that differ by ~1e-5 of cosine stay apart (issue 7: one row per frame
    of the vtest.avi hour found 284 of 979 needle queries with fp16 means, 299 with int16 ones,
    keep-all's 299), for 4 bytes a segment (181 with D = 40); False in memories saved before it
    existed (fp16 means, no ``seg_mscale``).
    """

    dim: int
    slots: int
    segments: int
    events: int
    thumbs: int
    thumb_bytes: int = 8192
    desc_bytes: int = 96
    budget_bytes: int = 0
    folds: int = 0
    timeline_origin: bool = True
    drift_int8: bool = True
    timeline_tail: bool = True
    mean_int16: bool = True

    def __post_init__(self) -> None:
        sizes = (
            self.dim,
            self.slots,
            self.segments,
            self.events,
            self.thumbs,
            self.thumb_bytes,
            self.desc_bytes,
        )
        if min(sizes) < 1 or self.folds < 0:
            raise ValueError(f"invalid memory layout {self}: every size must be >= 1 (folds >= 0)")
        if self.budget_bytes == 0:
            object.__setattr__(self, "budget_bytes", self.nbytes)
        elif self.budget_bytes < self.nbytes:
            raise ValueError(f"layout needs {self.nbytes} bytes, more than its budget of {self.budget_bytes}")

    @property
    def channels(self) -> int:
        """C, the number of per-frame channels (``len(CHANNELS)``)."""
        return len(CHANNELS)

    def buffers(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """Name → (shape, dtype) of every buffer. The name's prefix is its tier."""
        M, S, E, P, D, C = self.slots, self.segments, self.events, self.thumbs, self.dim, self.channels
        f16, f32, f64, i64, i32 = torch.float16, torch.float32, torch.float64, torch.int64, torch.int32
        # A segment is a linear model of its frames' global vectors, g(t) ≈ mean + (t - t_mean) ·
        # drift / (end - start): a query finds the time inside a segment, not just the segment
        # (issue 7). Its vectors are stored in half precision (with the drift that localises inside a
        # segment, fp16 means lose ~1 % of recall in the retention benchmark), so a segment costs
        # 215 bytes with the classic encoder's D = 40, as much as a mean-only fp32 one did. All
        # arithmetic on them is fp32/fp64. Slots stay fp32: the kernels accumulate into them in place.
        # fp16 keeps ~11 bits of each value, so a mean is stored as its difference from ``origin``
        # (fp32, the first frame's vector): frames of one camera differ from each other far less
        # than they measure, and the difference's rounding error is that much smaller. Queries on
        # a still view are decided by cosines ~1e-5 apart, the size of an absolute fp16 mean's
        # error with D = 40 (issue 7: look-alike tree.avi needles of an hour at 4 MiB, 277 → 290
        # of 979 found, keep-all 299). The drift only places a time inside its segment, and int8
        # with a scale per row keeps it well enough: a segment costs 177 bytes instead of 215, and
        # the 21 % more segments a budget then holds are worth more than the drift's last bits.
        # The means need more than fp16 even so: with one row per frame of a still view, fp16
        # differences lost 15 of keep-all's 299 needle queries on issue 7's vtest.avi hour, int16
        # ones with a scale per row none (``mean_int16``).
        # The last segment grows a frame at a time; rebuilt from its rounded row each time, its
        # mean piled up 36x the error of one rounding (a synthetic 300-frame drift): ``tail_mean``
        # and ``tail_drift`` keep it unrounded (issue 7; BENCHMARKS.md, "Int8 drifts and an unrounded
        # last segment").
        out = {
            "slot_k": ((M, D), f32),
            "slot_count": ((M,), i64),
            "slot_importance": ((M,), f32),
            "slot_t_first": ((M,), f64),
            "slot_t_last": ((M,), f64),
            "slot_thumb": ((M,), i32),
            "slot_used": ((M,), torch.bool),
            # mean of the frames' unit global vectors (norm <= 1), minus ``origin``: int16 times
            # ``seg_mscale`` (see ``mean_int16``), else fp16
            "seg_emb": ((S, D), torch.int16 if self.mean_int16 else f16),
            # fitted change of the vector from start to end: int8 times ``seg_dscale`` (see ``drift_int8``)
            "seg_drift": ((S, D), torch.int8 if self.drift_int8 else f16),
            "seg_start": ((S,), f64),
            "seg_end": ((S,), f64),
            "seg_tmean": ((S,), f64),  # mean frame time
            "seg_stt": ((S,), f32),  # sum over frames of (t - t_mean)^2
            "seg_count": ((S,), i32),
            "seg_channels": ((S, C), f16),
            "seg_folded": ((S, 2), i32),  # entered, left events folded into this segment
            "seg_thumb": ((S,), i32),
            "seg_used": ((S,), torch.bool),
            "ev_t": ((E,), f64),
            "ev_t_end": ((E,), f64),
            "ev_kind": ((E,), torch.int8),
            "ev_emb": ((E, D), f16),
            "ev_desc": ((E, self.desc_bytes), torch.uint8),
            "ev_desc_len": ((E,), i32),
            "ev_thumb": ((E,), i32),
            "ev_importance": ((E,), f32),
            "ev_track_id": ((E,), i64),
            "ev_bbox": ((E, 4), i32),
            "ev_score": ((E,), f32),
            "ev_used": ((E,), torch.bool),
            "fold_t": ((self.folds,), f64),  # folded events' times, kept until the oldest must go
            "fold_kind": ((self.folds,), torch.int8),  # their kind codes; -1: free
            "thumb_data": ((P, self.thumb_bytes), torch.uint8),
            "thumb_len": ((P,), i32),  # 0: free entry
            "thumb_stamp": ((P,), f64),  # thumb_clock when put: older entries are evicted first
            "scalars": ((len(SCALARS),), f64),
        }
        if self.mean_int16:
            out["seg_mscale"] = ((S,), f32)  # the mean of row i is seg_emb[i] * seg_mscale[i] + origin
        if self.drift_int8:
            out["seg_dscale"] = ((S,), f16)  # the drift of row i is seg_drift[i] * seg_dscale[i]
        if self.timeline_tail:
            # the last segment's mean and drift unrounded: each frame that extends it adds to them
            # without the rounding of every earlier frame piling up (as it would through fp16 rows)
            out["tail_mean"] = ((D,), f32)
            out["tail_drift"] = ((D,), f32)
        if self.timeline_origin:
            out["origin"] = ((D,), f32)  # the timeline's means are stored as their difference from it
        return out

    def tier_nbytes(self) -> dict[str, int]:
        """Bytes per tier: ``slot``, ``seg``, ``ev``, ``fold``, ``thumb`` and ``scalars``."""
        out: dict[str, int] = {}
        for name, (shape, dtype) in self.buffers().items():
            tier = name.split("_")[0]
            out[tier] = out.get(tier, 0) + _numel(shape) * dtype.itemsize
        return out

    @property
    def nbytes(self) -> int:
        """Exact bytes of all the memory's buffers."""
        return sum(self.tier_nbytes().values())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MemoryLayout:
        # a layout saved before a flag existed lacks what it adds: absolute means before
        # ``timeline_origin``, fp16 drifts before ``drift_int8``, no unrounded last segment before
        # ``timeline_tail``, fp16 means before ``mean_int16``
        return cls(**{"timeline_origin": False, "drift_int8": False, "timeline_tail": False, "mean_int16": False, **d})

    @classmethod
    def from_budget(
        cls, budget_bytes: int, dim: int, *, thumb_bytes: int = 8192, desc_bytes: int = 96
    ) -> MemoryLayout:
        """The layout that fills ``budget_bytes`` for tokens of dimension ``dim``.

        The budget is split ~20 % thumbnails, ~6 % events, ~2 % folded-event times, ~45 % timeline,
        each tier at least its minimum (8 thumbnails, 8 events, 8 segments, no folded-event times);
        the slots take what is left (at least 16), so
        ``budget_bytes - nbytes`` is less than one slot. When the minimums eat the slots' room the
        other tiers drop to their minimums. For small budgets the thumbnail size shrinks (not below
        1 KiB) so that 8 of them fit in the thumbnail share. Raises ``ValueError`` when even the
        minimums do not fit.
        """
        per = cls(dim, 1, 1, 1, 1, thumb_bytes=thumb_bytes, desc_bytes=desc_bytes, folds=1).tier_nbytes()
        fixed = per["scalars"] + per["origin"] + per["tail"]  # bytes that do not grow with any tier
        avail = budget_bytes - fixed
        overhead = per["thumb"] - thumb_bytes  # per-entry bytes besides the JPEG itself
        fit = int(avail * THUMB_SHARE) // MIN_THUMBS - overhead
        thumb_bytes = max(MIN_THUMB_BYTES, min(thumb_bytes, fit // 256 * 256))
        per["thumb"] = thumb_bytes + overhead

        mins = {"thumb": MIN_THUMBS, "ev": MIN_EVENTS, "seg": MIN_SEGMENTS, "fold": 0}
        shares = {"thumb": THUMB_SHARE, "ev": EVENT_SHARE, "seg": TIMELINE_SHARE, "fold": FOLD_SHARE}
        n = {tier: max(mins[tier], int(avail * shares[tier]) // per[tier]) for tier in mins}
        if avail - sum(n[tier] * per[tier] for tier in n) < MIN_SLOTS * per["slot"]:
            n = mins  # a small budget: the other tiers at their minimum leave the slots more room
        slots = (avail - sum(n[tier] * per[tier] for tier in n)) // per["slot"]
        if slots < MIN_SLOTS:
            need = fixed + MIN_SLOTS * per["slot"] + sum(mins[tier] * per[tier] for tier in mins)
            raise ValueError(
                f"a memory budget of {budget_bytes} bytes is too small for dim={dim}: {MIN_SLOTS} slots, "
                f"{MIN_SEGMENTS} segments, {MIN_EVENTS} events and {MIN_THUMBS} thumbnails of "
                f"{thumb_bytes} bytes need {need} bytes"
            )
        return cls(
            dim=dim,
            slots=slots,
            segments=n["seg"],
            events=n["ev"],
            thumbs=n["thumb"],
            thumb_bytes=thumb_bytes,
            desc_bytes=desc_bytes,
            budget_bytes=budget_bytes,
            folds=n["fold"],
        )


def _numel(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out
