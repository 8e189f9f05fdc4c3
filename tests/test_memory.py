"""Δ-Mem invariants: constant bytes, conservation of tokens and events, time order, snapshots."""

from __future__ import annotations

import math
import os

import pytest
import torch

from streamvid.memory import CHANNELS, DeltaMem, MemoryLayout, SnapshotError, load, save
from streamvid.memory import snapshot as snapshot_mod
from streamvid.types import Encoded

D = 32
QUIET = [0.0] * len(CHANNELS)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def unit(*shape: int, gen: torch.Generator | None = None) -> torch.Tensor:
    x = torch.randn(*shape, generator=gen)
    return x / x.norm(dim=-1, keepdim=True)


def basis(i: int) -> torch.Tensor:
    return torch.eye(D)[i]


def small_layout(**kw) -> MemoryLayout:
    sizes = {"dim": D, "slots": 16, "segments": 8, "events": 8, "thumbs": 8, "thumb_bytes": 1024}
    return MemoryLayout(**{**sizes, **kw})


def feed(mem: DeltaMem, frames: int, gen: torch.Generator, t0: float = 0.0, n_tokens: int = 16, **kw) -> None:
    """``frames`` frames of random unit tokens, 0.1 s apart, each opening a segment with a thumbnail."""
    for f in range(frames):
        enc = Encoded(unit(n_tokens, D, gen=gen), unit(D, gen=gen))
        mem.update(t0 + 0.1 * f, enc, QUIET, thumb=lambda f=f: b"jpeg%d" % f, **kw)


def check_thumb_refs(mem: DeltaMem) -> None:
    """Every reference held by a used slot, segment or event points at a live pool entry."""
    for ids, used in (
        (mem.slot_thumb, mem.slot_used),
        (mem.seg_thumb, mem.seg_used),
        (mem.ev_thumb, mem.ev_used),
    ):
        for i in ids[used & (ids >= 0)].tolist():
            assert mem.thumbnail(i) is not None


# -- layout -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mib", [0.25, 4, 64])
@pytest.mark.parametrize("dim", [16, 64, 512, 1024])
def test_layout_fills_budget(mib, dim):
    budget = int(mib * 2**20)
    layout = MemoryLayout.from_budget(budget, dim)
    assert layout.nbytes <= budget
    assert budget - layout.nbytes < layout.tier_nbytes()["slot"] / layout.slots  # less than one slot left
    assert layout.slots >= 16 and layout.segments >= 8 and layout.events >= 8 and layout.thumbs >= 8
    assert layout.channels == len(CHANNELS)
    assert MemoryLayout.from_dict(layout.to_dict()) == layout


def test_layout_too_small_budget_raises():
    with pytest.raises(ValueError, match="too small"):
        MemoryLayout.from_budget(50_000, 1024)


def test_allocation_matches_layout():
    layout = MemoryLayout.from_budget(2**20, 64)
    mem = DeltaMem(layout)
    assert mem.nbytes == layout.nbytes
    assert mem.stats()["budget_bytes"] == 2**20


# -- constant size ------------------------------------------------------------------------------


def test_bytes_constant_after_10_and_10000_frames():
    gen = torch.Generator().manual_seed(0)
    layout = MemoryLayout.from_budget(64 * 1024, D)
    mem = DeltaMem(layout)
    ptrs = {name: t.data_ptr() for name, t in mem.buffers().items()}
    feed(mem, 10, gen)
    assert mem.nbytes == layout.nbytes
    for f in range(10_000 - 10):  # scenes of 50 frames: 16 random unit patterns seen with noise
        if f % 50 == 0:
            patterns, scene = unit(16, D, gen=gen), unit(D, gen=gen)
        tokens = patterns + 0.03 * torch.randn(16, D, generator=gen)
        enc = Encoded(tokens / tokens.norm(dim=-1, keepdim=True), scene)
        mem.update(1.0 + 0.1 * f, enc, QUIET, thumb=lambda: b"x" * 700, boundary=f % 50 == 0)
    assert mem.nbytes == layout.nbytes
    assert {name: t.data_ptr() for name, t in mem.buffers().items()} == ptrs  # nothing reallocated
    stats = mem.stats()
    assert stats["frames_seen"] == 10_000 and stats["slots_used"] == layout.slots
    assert int(mem.slot_count.sum()) == stats["tokens_seen"] == 160_000


# -- slots --------------------------------------------------------------------------------------


def test_token_counts_are_conserved_through_evictions():
    gen = torch.Generator().manual_seed(1)
    mem = DeltaMem(small_layout())
    feed(mem, 200, gen)
    assert mem.stats()["slots_used"] == 16
    assert int(mem.slot_count.sum()) == 200 * 16
    assert int(mem.slot_count[~mem.slot_used].sum()) == 0


def test_identical_token_merges_and_novel_token_claims():
    mem = DeltaMem(small_layout())
    a = basis(0)
    mem.update(0.0, Encoded(a[None], a), QUIET)
    mem.update(0.1, Encoded(a[None], a), QUIET)
    assert mem.stats()["slots_used"] == 1
    (slot,) = mem.slots()
    assert slot.count == 2 and slot.t_first == 0.0 and slot.t_last == pytest.approx(0.1)
    torch.testing.assert_close(mem.slot_k[slot.index], a)

    mem.update(0.2, Encoded(basis(1)[None], basis(1)), QUIET)
    assert mem.stats()["slots_used"] == 2


def test_close_novel_tokens_of_one_frame_share_a_slot():
    mem = DeltaMem(small_layout())
    a = basis(0)
    b = (basis(0) + 0.05 * basis(1)) / math.hypot(1, 0.05)
    mem.update(0.0, Encoded(torch.stack([a, b, basis(2)]), a), QUIET)
    assert mem.stats()["slots_used"] == 2
    assert sorted(s.count for s in mem.slots()) == [1, 2]


def test_eviction_folds_content_into_nearest_slot():
    mem = DeltaMem(small_layout())
    for i in range(15):
        mem.update(float(i), Encoded(basis(i)[None], basis(i)), QUIET)
    near0 = (basis(0) + 0.9 * basis(15)) / math.hypot(1, 0.9)  # novel (cos 0.74) but nearest to slot 0
    mem.update(15.0, Encoded(near0[None], near0), QUIET)
    assert mem.stats()["slots_used"] == 16 and int(mem.slot_count[15]) == 1
    mem.mark_retrieved(list(range(15)), boost=10.0)  # slot 15 has the lowest retention

    mem.update(16.0, Encoded(basis(20)[None], basis(20)), QUIET)
    assert int(mem.slot_count.sum()) == 17  # nothing dropped
    assert int(mem.slot_count[0]) == 2  # slot 15 folded into its nearest neighbour, slot 0
    folded = basis(0) + near0
    torch.testing.assert_close(mem.slot_k[0], folded / folded.norm())
    torch.testing.assert_close(mem.slot_k[15], basis(20))  # the freed slot holds the novel token
    assert mem.slot_t_last[0].item() == 15.0 and mem.slot_t_first[0].item() == 0.0


# -- timeline -----------------------------------------------------------------------------------


def test_timeline_merges_keep_time_order_and_cover_the_stream():
    gen = torch.Generator().manual_seed(2)
    mem = DeltaMem(small_layout())
    scenes = unit(5, D, gen=gen)
    t = 3.0
    for f in range(300):
        g = scenes[(f // 7) % 5]
        mem.update(t, Encoded(unit(4, D, gen=gen), g), QUIET, thumb=lambda: b"x" * 100, boundary=f % 40 == 0)
        t += 0.04
    segs = mem.segments()
    assert len(segs) == 8
    assert segs[0].start == 3.0 and segs[-1].end == mem.stats()["last_t"]
    for a, b in zip(segs, segs[1:], strict=False):
        assert a.start <= a.end < b.start <= b.end
    assert sum(s.count for s in segs) == 300
    check_thumb_refs(mem)


def _drifting(n: int, gen: torch.Generator, turn: float = 0.6) -> torch.Tensor:
    """``[n, D]`` unit vectors turning steadily from one random direction towards another (a
    lighting drift, a person crossing): nearly a line over time, as a segment models it."""
    a, b = unit(2, D, gen=gen)
    b = b - (a @ b) * a
    b = b / b.norm()
    th = torch.linspace(0, turn, n)[:, None]
    return torch.cos(th) * a + torch.sin(th) * b


def test_segments_hold_the_least_squares_line_of_their_frames():
    gen = torch.Generator().manual_seed(5)
    mem = DeltaMem(small_layout(segments=6))
    G = torch.cat([_drifting(30, gen), _drifting(25, gen), unit(20, D, gen=gen)])
    times = torch.arange(len(G), dtype=torch.float64) * 0.5 + 7.0
    for t, g in zip(times.tolist(), G):
        mem.update(t, Encoded(g[None], g), QUIET)
    n = int(mem.seg_used.sum())
    assert n == 6
    for i in range(n):  # against a direct float64 fit of the frames each segment covers
        inside = (times >= float(mem.seg_start[i])) & (times <= float(mem.seg_end[i]))
        t, g = times[inside], G[inside].double()
        tm = t.mean()
        stt = ((t - tm) ** 2).sum()
        assert int(mem.seg_count[i]) == len(t)
        assert float(mem.seg_tmean[i]) == pytest.approx(float(tm), abs=1e-9)
        assert float(mem.seg_stt[i]) == pytest.approx(float(stt), rel=1e-6)
        assert torch.allclose(mem.seg_means(i).double(), g.mean(0), atol=1e-3)
        if stt > 0:
            drift = ((t - tm)[:, None] * g).sum(0) / stt * (t[-1] - t[0])
            # int8 with a scale per row: half a step of its own rounding and up to half a step
            # carried from the rows merged into it, besides the fp16 means' error (2e-3)
            step = float(drift.abs().max()) / 127
            assert torch.allclose(mem.seg_drifts(i).double(), drift, atol=2e-3 + step)
    assert torch.equal(mem._costs, mem._merge_cost())  # the cached merge costs are up to date


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0])
def test_merge_cost_is_the_rise_of_the_residual_sum_of_squares(scale):
    """The cost of merging two adjacent segments: the rise of the residual sum of squares of a
    least-squares line, times ``1 + span / seg_time_scale`` (0: the rise alone)."""
    gen = torch.Generator().manual_seed(6)
    mem = DeltaMem(small_layout(segments=64), seg_tolerance=0.0, seg_time_scale=scale,
                   seg_frames_per_row=0.0)  # a segment per frame
    G = torch.cat([_drifting(6, gen), unit(4, D, gen=gen), _drifting(5, gen)])
    for f, g in enumerate(G):
        mem.update(0.25 * f, Encoded(g[None], g), QUIET)
    assert int(mem.seg_used.sum()) == len(G)
    # merge runs of frames by hand, then compare each pair's cost with a direct fit
    for _ in range(6):
        mem._costs = mem._merge_cost()
        mem._merge_segments()
    n = int(mem.seg_used.sum())
    assert n == len(G) - 6 and max(s.count for s in mem.segments()) > 1
    times = torch.arange(len(G), dtype=torch.float64) * 0.25

    def sse(lo: float, hi: float) -> float:
        inside = (times >= lo) & (times <= hi)
        t, g = times[inside], G[inside].double()
        X = torch.stack([torch.ones_like(t), t - t.mean()], 1)
        coef = torch.linalg.lstsq(X, g).solution
        return float(((g - X @ coef) ** 2).sum())

    cost = mem._merge_cost()
    st, en = mem.seg_start.tolist(), mem.seg_end.tolist()
    for i in range(n - 1):
        want = sse(st[i], en[i + 1]) - sse(st[i], en[i]) - sse(st[i + 1], en[i + 1])
        if scale > 0:
            want *= 1.0 + (en[i + 1] - st[i]) / scale
        assert float(cost[i]) == pytest.approx(want, abs=5e-3, rel=1e-3), i
    assert torch.isinf(cost[n - 1 :]).all()


def test_merges_prefer_short_spans_among_similar_misfits():
    """Three frames 2 s apart, then (other content between) three frames 0.5 s apart whose third
    is a little further off the line of the first two: merging the dense run raises the residual
    sum of squares more, so without the span weighting the sparse run merges first (4 s); with it
    the dense one does (1 s: its rise weighs 2x, the sparse one's 5x)."""
    gen = torch.Generator().manual_seed(11)
    a = torch.cat([_drifting(2, gen, turn=0.3), unit(1, D, gen=gen)])  # off the line of the first two
    b2 = a[1] + 1.2 * (a[2] - a[1])
    c = unit(2, D, gen=gen)  # unrelated to the runs and to each other: any merge with it costs more
    frames = [(0.0, a[0]), (2.0, a[1]), (4.0, a[2]), (6.0, c[0]), (6.5, c[1]),
              (10.0, a[0]), (10.5, a[1]), (11.0, b2 / b2.norm())]
    merged = {}
    for scale in (0.0, 1.0):
        mem = DeltaMem(small_layout(segments=16), seg_tolerance=0.0, seg_time_scale=scale)
        for t, g in frames:
            mem.update(t, Encoded(g[None], g), QUIET)
        for i in (0, 2, 3):  # force the pairs (0, 2 s), (6, 6.5 s), (10, 10.5 s) into segments
            mem._costs = torch.full((15,), math.inf)
            mem._costs[i] = 0.0
            mem._merge_segments()
        assert [(s.start, s.end) for s in mem.segments()] == [(0, 2), (4, 4), (6, 6.5), (10, 10.5), (11, 11)]
        cost = mem._merge_cost()[:4]
        rise = cost / (1.0 + torch.tensor([4.0, 2.5, 4.5, 1.0]) / scale) if scale else cost
        assert 1.1 < float(rise[3]) / float(rise[0]) < 2.0 and float(rise[0]) > 1e-3
        mem._costs = None
        mem._merge_segments()
        merged[scale] = [(s.start, s.end) for s in mem.segments()]
    assert merged[0.0] == [(0, 4), (6, 6.5), (10, 10.5), (11, 11)]
    assert merged[1.0] == [(0, 2), (4, 4), (6, 6.5), (10, 11)]


@pytest.mark.parametrize("name, default, before", [("seg_time_scale", 3.0, 1.0), ("seg_frames_per_row", 2.5, 0.0),
                                                 ("shot_gate", 2.5, 0.0), ("shot_span", 5.0, 0.0)])
def test_timeline_settings_are_in_the_config_and_old_snapshots_keep_theirs(tmp_path, name, default, before):
    """The config always holds ``seg_time_scale`` (default 3 s), ``seg_frames_per_row`` (default
    2.5), ``shot_gate`` (default 2.5) and ``shot_span`` (default 5 s). A snapshot whose config lacks
    one was written before it was always recorded: while the time scale's default was 1 s (and left
    out), before the rows-per-frame cap or the shot gate existed (off, 0), or with the short-shot
    rule's first form (``shot_span`` 0), so such a memory keeps merging as it did. 0 turns any of
    them off and survives a save."""
    mem = DeltaMem(small_layout())
    assert getattr(mem, name) == default and mem.config()[name] == default
    feed(mem, 12, torch.Generator().manual_seed(2))
    save(mem, tmp_path / "new.svm")
    assert getattr(load(tmp_path / "new.svm")[0], name) == default
    _old_snapshot(tmp_path / "old.svm", mem, 4, mem.buffers(),
                  config={k: v for k, v in mem.config().items() if k != name})
    old, _ = load(tmp_path / "old.svm")
    assert getattr(old, name) == before and old.config()[name] == before
    mem = DeltaMem(small_layout(), **{name: 0.0})
    assert mem.config()[name] == 0.0
    feed(mem, 12, torch.Generator().manual_seed(2))
    save(mem, tmp_path / "m.svm")
    back, _ = load(tmp_path / "m.svm")
    assert getattr(back, name) == 0.0 and back.config() == mem.config()
    with pytest.raises(ValueError, match=name):
        DeltaMem(small_layout(), **{name: -1.0})


def _view(n: int, gen: torch.Generator, noise: float = 0.03) -> torch.Tensor:
    """``[n, D]`` frames of one view: a random direction with a little noise (cosines ~0.999)."""
    a = unit(D, gen=gen)
    x = a + noise * torch.randn(n, D, generator=gen)
    return x / x.norm(dim=-1, keepdim=True)


def _three_shots(**kw) -> DeltaMem:
    """A memory of 16 rows holding a row per frame, 0.5 s apart, of three shots: 6 frames of a view
    (3 s), 4 of another (2 s), 3 of the first again (the last shot, from 5 s)."""
    gen = torch.Generator().manual_seed(3)
    a, b = _view(6, gen), _view(4, gen)
    mem = DeltaMem(small_layout(segments=16), seg_tolerance=0.0, seg_frames_per_row=0.0, **kw)
    for f, g in enumerate(torch.cat([a, b, a[:3]])):
        mem.update(0.5 * f, Encoded(g[None], g), QUIET)
    assert int(mem.seg_used.sum()) == 13  # a row per frame: nothing merged
    return mem


def test_shot_weights_follow_the_cuts_between_rows():
    """A row starts a shot when its line's first point is far (cosine < ``scene_threshold``) from
    the last point of the row before; a merge inside a shot is weighted ``1 + shot_weight · merged
    span / shot span`` (the last shot's span runs to ``now``), one across a cut is not."""
    mem = _three_shots(shot_weight=4.0, shot_span=0.0)
    w = mem._shot_weights(now=6.5).tolist()
    assert len(w) == 15
    expect = [1 + 4 * 0.5 / 3.0] * 5 + [1.0] + [1 + 4 * 0.5 / 2.0] * 3 + [1.0] + [1 + 4 * 0.5 / 1.5] * 2 + [1.0] * 3
    assert w == pytest.approx(expect, rel=1e-6)
    assert mem._shot_weights(now=8.0)[10] == pytest.approx(1 + 4 * 0.5 / 3.0)  # the open shot grew


def test_shots_as_long_as_shot_span_are_not_kept_finer():
    """With ``shot_span`` T the weight inside a shot is ``1 + shot_weight · merged span · (1 / shot
    span - 1 / T)``, nothing more for a shot of T or longer: the 3-second shot is not weighted
    with T = 2.5 s, the 2-second one and the last (1.5 s so far) are, less than without T."""
    mem = _three_shots(shot_weight=4.0, shot_span=2.5)
    w = mem._shot_weights(now=6.5).tolist()
    expect = [1.0] * 6 + [1 + 4 * 0.5 * (1 / 2.0 - 0.4)] * 3 + [1.0] + [1 + 4 * 0.5 * (1 / 1.5 - 0.4)] * 2 + [1.0] * 3
    assert w == pytest.approx(expect, rel=1e-6)
    assert mem._shot_weights(now=8.0)[10] == 1.0  # the open shot is 3 s long now


@pytest.mark.parametrize("gate, merged", [(0.5, (0.5, 1.0)), (1.0, (3.0, 3.5)), (0.0, (3.0, 3.5))])
def test_merges_weigh_short_shots_once_the_gate_is_open(gate, merged):
    """Past ``shot_gate`` (frames seen / rows: 13 / 16 here) the pair merged is the cheapest by cost
    times shot weight: a pair inside the 2-second shot (weight 2) gives way to a dearer one inside
    the 3-second shot (weight 1.67); with the gate closed or off, the cheapest by cost alone."""
    mem = _three_shots(shot_gate=gate, shot_weight=4.0, shot_span=0.0)
    mem._costs = torch.full((15,), math.inf)
    mem._costs[6], mem._costs[1] = 1.0, 1.1  # inside the short shot, inside the first one
    mem._merge_segments(now=6.5)
    assert [(s.start, s.end) for s in mem.segments() if s.end > s.start] == [merged]
    assert sum(s.count for s in mem.segments()) == 13


@pytest.mark.parametrize("span, finite, merged", [(10.0, (5, 1), (0.5, 1.0)), (0.0, (5, 1), (2.5, 3.0)),
                                                  (10.0, (5, 9), (2.5, 3.0))])
def test_merges_across_a_cut_come_last(span, finite, merged):
    """Two one-frame rows on either side of a cut merge at no cost (a line fits any two frames),
    into a line between two views: with ``shot_span`` > 0 such a merge is made only when no pair
    inside a shot is left (then the cheapest of them); the rule's first form (0) merged them first."""
    mem = _three_shots(shot_gate=0.5, shot_span=span)  # λ 1000
    mem._costs = torch.full((15,), math.inf)
    mem._costs[finite[0]], mem._costs[finite[1]] = 0.0, 1.0  # pair 5 crosses the cut at 3 s, pair 9 the one at 5 s
    mem._merge_segments(now=6.5)
    assert [(s.start, s.end) for s in mem.segments() if s.end > s.start] == [merged]


class _ShotsUncached(DeltaMem):
    """Works out every row's shot start at each merge, as :meth:`DeltaMem._shot_weights` did
    before it kept them."""

    def _shot_weights(self, now: float) -> torch.Tensor:
        self._cuts = self._cuts_stale = None
        return super()._shot_weights(now)


def test_kept_shot_starts_merge_as_the_rows_say():
    """The shot starts are kept between merges and worked out again only for rows that changed:
    a stream of 98 frames in 10 shots (rows extended, merged, opened) leaves the same bytes as
    working them all out at every merge, and the kept starts are the rows' own."""
    gen = torch.Generator().manual_seed(5)
    views = [unit(D, gen=gen) for _ in range(4)]
    frames = []
    for s in range(10):
        v, n = views[s % 4], 5 + 2 * (s % 7)
        x = v + 0.05 * torch.randn(n, D, generator=gen) + torch.linspace(0, 0.3, n)[:, None] * unit(D, gen=gen)
        frames.append(x / x.norm(dim=-1, keepdim=True))
    frames = torch.cat(frames)
    mems = [cls(small_layout(segments=16), shot_gate=1.0, seg_frames_per_row=0.0) for cls in (DeltaMem, _ShotsUncached)]
    for f, g in enumerate(frames):
        for mem in mems:
            mem.update(0.5 * f, Encoded(g[None], g), QUIET)
    kept, uncached = mems
    n = kept._n_segments()
    assert n == 16 and kept._cuts is not None and 2 < int(kept._cuts[:n].sum()) < n  # merges past the gate, across cuts
    for name, buf in kept.buffers().items():
        assert torch.equal(buf, uncached.buffers()[name]), name
    kept._shot_weights(now=0.5 * len(frames))  # refresh what the last frame changed
    assert torch.equal(kept._cuts[:n], kept._shot_starts(torch.arange(n)))


def test_timeline_rows_are_capped_by_the_frames_seen():
    """With ``seg_frames_per_row`` K the timeline uses at most ``max(8, frames seen / K)`` rows,
    made by merges of the cheapest adjacent pairs even with rows free; 0 lets the budget alone
    bound them (one row per distinct frame here)."""
    gen = torch.Generator().manual_seed(21)
    G = unit(40, D, gen=gen)
    rows = {}
    for k in (2.5, 4.0, 0.0):
        mem = DeltaMem(small_layout(segments=64), seg_tolerance=0.0, seg_frames_per_row=k)
        for f, g in enumerate(G):
            mem.update(0.5 * f, Encoded(g[None], g), QUIET)
            cap = 64 if k == 0 else min(64, max(8, int((f + 1) / k)))
            assert int(mem.seg_used.sum()) <= cap
        segs = mem.segments()
        assert sum(s.count for s in segs) == len(G) and segs[0].start == 0.0 and segs[-1].end == 19.5
        assert mem.stats()["segments_cap"] == cap and mem.stats()["segments_used"] == len(segs)
        rows[k] = len(segs)
    assert rows == {2.5: 16, 4.0: 10, 0.0: 40}


def test_the_last_segment_is_extended_unrounded():
    """Each frame that extends the last segment is added to its unrounded mean and drift
    (``tail_mean``, ``tail_drift``): a long segment's stored mean is its frames' mean rounded once
    to fp16 and its drift is within half an int8 step, where rounding the stored row at every frame
    (a layout without ``timeline_tail``) piles up errors over ten times as large."""
    gen = torch.Generator().manual_seed(7)
    G = _drifting(300, gen, turn=0.9)
    times = torch.arange(len(G), dtype=torch.float64) * 0.5
    worst = {}
    for tail in (True, False):
        mem = DeltaMem(small_layout(segments=64, timeline_tail=tail))
        for t, g in zip(times.tolist(), G):
            mem.update(t, Encoded(g[None], g), QUIET)
        n = int(mem.seg_used.sum())
        assert 1 < n < 64  # a few long lines, never merged
        worst[tail] = 0.0
        for i in range(n):
            inside = (times >= float(mem.seg_start[i])) & (times <= float(mem.seg_end[i]))
            t, g = times[inside], G[inside].double()
            mean = g.mean(0)
            drift = ((t - t.mean())[:, None] * g).sum(0) / ((t - t.mean()) ** 2).sum() * (t[-1] - t[0])
            err = float((mem.seg_means(i).double() - mean).abs().max())
            worst[tail] = max(worst[tail], err)
            if tail:
                once = (mean.float() - mem.origin).half().float() + mem.origin  # one fp16 rounding
                assert err <= float((once.double() - mean).abs().max()) + 1e-6
                step = float(drift.abs().max()) / 127
                assert float((mem.seg_drifts(i).double() - drift).abs().max()) <= step / 2 + 1e-4
                if i == n - 1:
                    assert torch.allclose(mem.tail_mean.double(), mean, atol=1e-6)
                    assert torch.allclose(mem.tail_drift.double(), drift, atol=1e-4)
    assert worst[False] > 10 * worst[True]


def test_drifts_are_int8_with_a_scale_per_segment():
    """With the classic encoder's D = 40 a segment costs 181 bytes (219 with fp16 drifts; 177 with
    fp16 means), so a budget's timeline share holds 21 % more of them than with fp16 drifts; a
    segment of one frame has no drift."""
    import dataclasses

    layout = MemoryLayout.from_budget(2**20, 40)
    fp16 = dataclasses.replace(layout, drift_int8=False, budget_bytes=0)
    fp16_means = dataclasses.replace(layout, mean_int16=False, budget_bytes=0)
    assert layout.tier_nbytes()["seg"] == 181 * layout.segments
    assert fp16.tier_nbytes()["seg"] == 219 * layout.segments
    assert fp16_means.tier_nbytes()["seg"] == 177 * layout.segments
    assert layout.segments == int((2**20 - 8 * 40 - 4 * 40 - layout.tier_nbytes()["scalars"]) * 0.45) // 181
    mem = DeltaMem(small_layout())
    g = unit(D, gen=torch.Generator().manual_seed(1))
    mem.update(0.0, Encoded(g[None], g), QUIET)
    assert mem.seg_drift.dtype == torch.int8 and float(mem.seg_dscale[0]) == 0 and not mem.seg_drifts(0).any()


def test_a_query_finds_the_time_inside_a_segment():
    """21 frames of a steady drift, 1 s apart, in 4 segments (three of 6-8 frames): every held-out
    frame between two fed ones is found within half a second, not at its segment's middle."""
    gen = torch.Generator().manual_seed(7)
    mem = DeltaMem(small_layout(segments=4), seg_tolerance=0.0)  # segments made by merges only
    G = _drifting(41, gen, turn=0.4)
    for f, g in enumerate(G[::2]):  # the frames fed; the odd ones are held out
        mem.update(1.0 * f, Encoded(g[None], g), QUIET)
    segs = mem.segments()
    assert [s.end - s.start >= 5.0 for s in segs] == [True, True, True, False]  # the newest is short
    for k in range(1, 41, 2):  # held-out frames at t = k / 2
        hit = mem.read(G[k], top_k=1).segments
        assert abs(float(hit.t[0]) - k / 2) <= 0.5, k


def test_frames_the_last_line_explains_join_it_while_the_timeline_has_room():
    gen = torch.Generator().manual_seed(9)
    G = _drifting(12, gen, turn=0.05)  # a slow drift: each frame ~0.005 from the next
    jump = unit(D, gen=gen)
    mem = DeltaMem(small_layout(segments=8))
    for f, g in enumerate([*G, jump]):
        mem.update(0.5 * f, Encoded(g[None], g), QUIET)
    assert [s.count for s in mem.segments()] == [12, 1]  # the drift is one line; the jump is not on it
    off = DeltaMem(small_layout(segments=8), seg_tolerance=0.0)
    for f, g in enumerate([*G, jump]):
        off.update(0.5 * f, Encoded(g[None], g), QUIET)
    assert len(off.segments()) == 8  # without the tolerance: a segment per frame, then merges


def test_a_one_frame_segment_takes_a_second_frame_only_of_the_same_view():
    """A line through two frames fits any two: a one-frame segment takes the next frame only when
    it shows the same view (cosine ≥ scene_threshold), never across a cut, so no line runs from
    one view to another (its middle would be a blend of the two that no camera showed)."""
    gen = torch.Generator().manual_seed(11)
    a, b, c = unit(D, gen=gen), unit(D, gen=gen), unit(D, gen=gen)  # three views, cosine ~0
    near = a + 0.2 * unit(D, gen=gen)  # the same view, a little changed: cosine ~0.98 with a
    near = near / near.norm()
    mem = DeltaMem(small_layout(segments=8))
    for f, g in enumerate([a, b, c, a, near]):
        mem.update(0.5 * f, Encoded(g[None], g), QUIET)
    assert [s.count for s in mem.segments()] == [1, 1, 1, 2]  # cuts stay apart; the same view joins
    # a blend of two views is found on a frame of one of them, not halfway between the two
    # (before, a and b shared a line and this query matched its middle, t = 0.25, with cosine 1)
    mid = (a + b) / (a + b).norm()
    t = float(mem.read(mid, top_k=1).segments.t[0])
    assert not any(lo < t < hi for lo, hi in [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5)]), t


def test_segment_channels_keep_max_and_mean_brightness():
    mem = DeltaMem(small_layout())
    a = basis(0)
    mem.update(0.0, Encoded(a[None], a), [0.2, 1.0, 0.0, 0.4, 0.0])
    mem.update(0.1, Encoded(a[None], a), [0.6, 0.0, 0.5, 0.8, 0.0])
    (seg,) = mem.segments()
    assert seg.channels == pytest.approx(  # stored in fp16: 11 significant bits
        {"motion": 0.6, "person": 1.0, "face": 0.5, "brightness": 0.6, "scene_change": 0.0}, rel=2**-11
    )


# -- events -------------------------------------------------------------------------------------


def test_events_beyond_capacity_fold_into_counts():
    gen = torch.Generator().manual_seed(3)
    mem = DeltaMem(small_layout())
    feed(mem, 50, gen)
    keep = mem.pin(0.5, "entered", unit(D, gen=gen), "vip", None, 0.9, importance=5.0)
    for i in range(20):
        mem.pin(0.1 * i, "entered", unit(D, gen=gen), f"person {i}", None, 0.8)
    for i in range(3):
        mem.pin(2.0 + i, "left", unit(D, gen=gen), "gone", None, 0.7)
    entered = mem.events("entered")
    assert len(mem.events()) == 8 and mem.stats()["events_used"] == 8
    assert len(entered) + mem.folded_counts()["entered"] == 21
    assert len(mem.events("left")) + mem.folded_counts()["left"] == 3
    assert sum(s.folded["entered"] for s in mem.segments()) == mem.folded_counts()["entered"]
    assert keep in [e.index for e in entered]  # the important one stays pinned


def test_folded_events_keep_their_times_until_the_oldest_must_go(tmp_path):
    gen = torch.Generator().manual_seed(4)
    mem = DeltaMem(small_layout(folds=4))
    feed(mem, 50, gen)  # 0 .. 4.9 s
    for i in range(14):  # 8 pinned, 6 folded: the 4 latest folded keep their times, 2 become counts
        mem.pin(0.3 * i, "entered" if i % 3 else "left", unit(D, gen=gen), f"p{i}", None, 0.8)
    folded = mem.folded_counts()
    assert len(mem.events()) == 8 and folded["entered"] + folded["left"] == 6
    kept = mem.folded_events()
    assert [t for t, _ in kept] == pytest.approx([0.6, 0.9, 1.2, 1.5])  # folded: oldest first
    assert [k for _, k in kept] == ["entered", "left", "entered", "entered"]
    assert mem.folded_events("left") == [kept[1]]
    counted = sum(sum(s.folded.values()) for s in mem.segments())
    assert counted == 2 and mem.stats()["folded_times_used"] == 4
    save(mem, tmp_path / "m.svm", {})
    assert load(tmp_path / "m.svm")[0].folded_events() == kept

    from streamvid.query import answer_at, answer_text

    text = answer_text(mem, "who entered?", None, encoder_name="classic").answer
    assert "whose details were folded" in text and "3 of them at known times: 00:00:00.6, 00:00:01.2, 00:00:01.5" in text
    assert "Folded (details not kept): entered at 00:00:01.2; entered at 00:00:01.5" in answer_at(mem, 1.4, window=0.3).answer


def test_event_fields_round_trip():
    mem = DeltaMem(small_layout(desc_bytes=8))
    a = basis(3)
    mem.update(1.0, Encoded(a[None], a), QUIET)
    mem.update(2.0, Encoded(a[None], a), QUIET)
    i = mem.pin(1.5, "alert", a, "héhéhé", b"JPEG", 0.75, t_end=9.0, track_id=7, bbox=(1, 2, 3, 4))
    (ev,) = mem.events()
    assert (
        ev.index == i and ev.kind == "alert" and ev.t == 1.5 and ev.t_end == 2.0
    )  # clamped to the seen range
    assert ev.description == "héhéh"  # 8 bytes, cut at a character boundary
    assert ev.track_id == 7 and ev.bbox == (1, 2, 3, 4) and ev.score == pytest.approx(0.75)
    assert mem.thumbnail(ev.thumb) == b"JPEG"
    torch.testing.assert_close(ev.emb, a)


# -- thumbnails ---------------------------------------------------------------------------------


def test_thumbnail_pool_is_bounded_and_keeps_pinned_event_thumbnails():
    gen = torch.Generator().manual_seed(4)
    mem = DeltaMem(small_layout())
    feed(mem, 5, gen)
    pinned = {
        mem.pin(0.1 * i, "entered", unit(D, gen=gen), "p", b"event%d" % i, 0.9): b"event%d" % i
        for i in range(3)
    }
    for f in range(100):
        feed(mem, 1, gen, t0=1.0 + 0.1 * f, boundary=True)
        assert mem.stats()["thumbnails_used"] <= 8
    for ev in mem.events():
        assert mem.thumbnail(ev.thumb) == pinned[ev.index]
    check_thumb_refs(mem)
    assert mem.put_thumb(b"x" * 1025) == -1  # larger than thumb_bytes: the caller re-encodes


def test_thumbnail_pool_full_of_event_thumbnails_refuses_new_ones():
    gen = torch.Generator().manual_seed(5)
    mem = DeltaMem(small_layout())
    feed(mem, 2, gen)
    for i in range(8):
        mem.pin(0.1, "alert", unit(D, gen=gen), "a", b"e%d" % i, 0.5)
    assert mem.put_thumb(b"new") == -1
    assert sorted(mem.thumbnail(ev.thumb) for ev in mem.events()) == sorted(b"e%d" % i for i in range(8))


# -- times and reading --------------------------------------------------------------------------


def test_all_times_inside_the_seen_range():
    gen = torch.Generator().manual_seed(6)
    mem = DeltaMem(small_layout())
    feed(mem, 120, gen, t0=10.0)
    mem.pin(-5.0, "entered", unit(D, gen=gen), "early", None, 1.0, t_end=1e9)
    first, last = mem.stats()["first_t"], mem.stats()["last_t"]
    times = [t for s in mem.slots() for t in (s.t_first, s.t_last)]
    times += [t for s in mem.segments() for t in (s.start, s.end)]
    times += [t for e in mem.events() for t in (e.t, e.t_end)]
    assert all(first <= t <= last for t in times)


def test_read_ranks_the_stored_pattern_first():
    gen = torch.Generator().manual_seed(7)
    mem = DeltaMem(small_layout())
    patterns = unit(6, D, gen=gen)
    for p in range(6):
        for f in range(5):
            noisy = patterns[p] + 0.02 * torch.randn(4, D, generator=gen)
            mem.update(p + 0.1 * f, Encoded(noisy / noisy.norm(dim=-1, keepdim=True), patterns[p]), QUIET)
        mem.pin(p + 0.2, "entered", patterns[p], f"pattern {p}", None, 1.0)
    res = mem.read(patterns[3], top_k=3)
    assert res.slots.index.shape == (3,)
    assert float(mem.slot_k[res.slots.index[0]] @ patterns[3]) > 0.99
    assert mem.segments()[int(res.segments.index[0])].start == 3.0
    assert mem.events()[3].index == int(res.events.index[0])
    assert res.segments.score[0] == pytest.approx(1.0, abs=1e-4)

    batch = mem.read(patterns[[1, 4]], top_k=2)
    assert batch.slots.index.shape == (2, 2) and batch.slots.score.sum(-1).le(1.0 + 1e-6).all()
    for q, p in enumerate((1, 4)):
        assert float(mem.slot_k[batch.slots.index[q, 0]] @ patterns[p]) > 0.99

    before = float(mem.slot_importance[res.slots.index[0]])
    mem.mark_retrieved(res.slots.index[:1])
    assert float(mem.slot_importance[res.slots.index[0]]) == pytest.approx(before + 1.0)


def test_read_of_an_empty_memory_returns_no_hits():
    res = DeltaMem(small_layout()).read(basis(0))
    assert res.slots.index.numel() == res.segments.index.numel() == res.events.index.numel() == 0


def test_update_rejects_bad_shapes():
    mem = DeltaMem(small_layout())
    with pytest.raises(ValueError, match="tokens"):
        mem.update(0.0, Encoded(torch.zeros(4, D + 1), torch.zeros(D)), QUIET)
    with pytest.raises(ValueError, match="channels"):
        mem.update(0.0, Encoded(torch.zeros(4, D), torch.zeros(D)), [0.0])


# -- snapshots ----------------------------------------------------------------------------------


@pytest.fixture
def busy_mem() -> DeltaMem:
    gen = torch.Generator().manual_seed(8)
    mem = DeltaMem(small_layout(), novelty_threshold=0.3)
    feed(mem, 60, gen)
    for i in range(10):
        mem.pin(0.5 * i, "entered" if i % 2 else "left", unit(D, gen=gen), f"ev {i}", b"t%d" % i, 0.5)
    return mem


def test_snapshot_round_trip(tmp_path, busy_mem):
    path = tmp_path / "mem.safetensors"
    save(busy_mem, path, {"encoder": {"name": "classic"}, "source": "x.mp4"})
    mem, meta = load(path)
    assert meta == {"encoder": {"name": "classic"}, "source": "x.mp4"}
    assert mem.layout == busy_mem.layout and mem.config() == busy_mem.config()
    for name, t in busy_mem.buffers().items():
        assert torch.equal(mem.buffers()[name], t), name
    q = unit(3, D, gen=torch.Generator().manual_seed(9))
    a, b = busy_mem.read(q), mem.read(q)
    for tier in ("slots", "segments", "events"):
        assert torch.equal(getattr(a, tier).index, getattr(b, tier).index)
        assert torch.equal(getattr(a, tier).score, getattr(b, tier).score)
    assert mem.events()[0].description == busy_mem.events()[0].description


def _old_snapshot(path, mem: DeltaMem, version: int, tensors: dict[str, torch.Tensor],
                  config: dict | None = None, metadata: dict | None = None) -> None:
    """Write ``tensors`` (``mem``'s buffers, or some of them) as a snapshot of format ``version`` (1-4)
    wrote it: before version 5 the layout has no ``mean_int16`` (fp16 means, no ``seg_mscale``),
    before version 4 the layout has no ``drift_int8`` or ``timeline_tail`` (fp16 drifts, no
    ``seg_dscale``, ``tail_mean``, ``tail_drift``), before version 3 no ``timeline_origin`` (no
    ``origin``)."""
    import json

    from safetensors.torch import save_file

    flags, gone = set(), set()
    if version < 5:
        flags, gone = {"mean_int16"}, {"seg_mscale"}
    if version < 4:
        flags, gone = flags | {"drift_int8", "timeline_tail"}, gone | {"seg_dscale", "tail_mean", "tail_drift"}
    if version < 3:
        flags, gone = flags | {"timeline_origin"}, gone | {"origin"}
    layout = {k: v for k, v in mem.layout.to_dict().items() if k not in flags}
    header = {"format_version": version, "layout": layout, "config": config or mem.config(),
              "metadata": metadata or {}}
    tensors = {k: t for k, t in tensors.items() if k not in gone}
    if version < 5 and tensors.get("seg_emb") is mem.seg_emb:  # fp16 differences from the origin
        tensors["seg_emb"] = (mem.seg_means() - mem.origin).half()
    if version < 4 and "seg_drift" in tensors:
        tensors["seg_drift"] = mem.seg_drifts().half()
    save_file(tensors, str(path), metadata={"streamvid": json.dumps(header)})


def test_snapshot_of_format_version_1_is_upgraded(tmp_path, busy_mem):
    """Version 1 held segment/event vectors in fp32 (absolute segment means: no origin), segment
    counts in int64, no segment lines and a ``seg_length_penalty`` in the config: such a file loads
    (segments become lines without drift over their span; values fp16 holds are kept exactly),
    answers, and saves as the current version, still without an origin."""
    import dataclasses

    widen = {torch.float16: torch.float32, torch.int32: torch.int64}
    wider = {"seg_emb", "seg_count", "seg_channels", "seg_folded", "ev_emb"}
    new_since_v1 = {"seg_drift", "seg_tmean", "seg_stt", "origin", "seg_dscale", "tail_mean", "tail_drift",
                    "seg_mscale"}
    tensors = {name: t.to(widen[t.dtype]) if name in wider and name != "seg_emb" else t.clone()
               for name, t in busy_mem.buffers().items() if name not in new_since_v1}
    tensors["seg_emb"] = busy_mem.seg_means().half().float()  # absolute means that fp16 holds exactly
    assert {tensors[n].dtype for n in wider} == {torch.float32, torch.int64}
    old = tmp_path / "v1.svm"
    _old_snapshot(old, busy_mem, 1, tensors, config={**busy_mem.config(), "seg_length_penalty": 0.5},
                  metadata={"source": "old.mp4"})

    mem, meta = load(old)
    assert meta == {"source": "old.mp4"} and mem.config() == busy_mem.config()
    assert mem.layout == dataclasses.replace(busy_mem.layout, timeline_origin=False, drift_int8=False,
                                             timeline_tail=False, mean_int16=False)
    assert "origin" not in mem.buffers() and not mem.origin.any()
    for name, t in busy_mem.buffers().items():
        if name not in new_since_v1 and name != "seg_emb":  # fp16 means, not int16 ones
            assert mem.buffers()[name].dtype == t.dtype, name
            assert torch.equal(mem.buffers()[name], t), name
    assert torch.equal(mem.seg_emb, tensors["seg_emb"].half())
    n = int(mem.seg_used.sum())
    assert not mem.seg_drift.any()
    assert torch.equal(mem.seg_tmean[:n], 0.5 * (mem.seg_start[:n] + mem.seg_end[:n]))
    q = busy_mem.seg_vectors(0)
    hit = mem.read(q, top_k=1).segments
    assert int(hit.index[0]) == 0 and float(mem.seg_start[0]) <= float(hit.t[0]) <= float(mem.seg_end[0])
    again = tmp_path / "v5.svm"
    save(mem, again, meta)
    with open(again, "rb") as f:
        head = f.read(8 + int.from_bytes(f.read(8), "little"))
    assert b'\\"format_version\\":5' in head
    assert load(again)[0].layout == mem.layout


def test_segment_and_event_vectors_are_compact(busy_mem):
    assert busy_mem.seg_emb.dtype == torch.int16 and busy_mem.seg_mscale.dtype == torch.float32
    assert busy_mem.ev_emb.dtype == torch.float16
    n = int(busy_mem.seg_used.sum())
    assert busy_mem.seg_vectors().dtype == torch.float32
    norms = busy_mem.seg_vectors(slice(0, n)).norm(dim=-1)
    assert torch.allclose(norms, torch.ones(n), atol=2e-3)
    ev = busy_mem.events()[0]
    assert ev.emb.dtype == torch.float32 and abs(float(ev.emb.norm()) - 1) < 2e-3


def test_timeline_means_are_stored_relative_to_the_first_frame():
    """The fp16 means are differences from the first frame's vector (fp32): frames that all look
    alike (one camera) keep their means several times more precisely than absolute fp16 would,
    and a query that tells such frames apart by ~1e-4 of cosine finds its own."""
    gen = torch.Generator().manual_seed(11)
    base = unit(D, gen=gen)
    frames = base + 0.02 * torch.randn(12, D, generator=gen)  # cosine ~0.99 with each other
    frames = frames / frames.norm(dim=-1, keepdim=True)
    mem = DeltaMem(small_layout(segments=16), seg_tolerance=0.0, seg_frames_per_row=0.0)
    for f, g in enumerate(frames):
        mem.update(0.5 * f, Encoded(g[None], g), QUIET)
    assert mem.layout.timeline_origin and "origin" in mem.buffers()
    assert torch.equal(mem.origin, frames[0]) and not mem.seg_emb[0].any()
    n = int(mem.seg_used.sum())
    assert n == len(frames)  # one segment per frame: each mean is its frame
    err = (mem.seg_means(slice(0, n)).double() - frames.double()).norm(dim=-1)
    err_absolute = (frames.half().double() - frames.double()).norm(dim=-1)
    assert float(err[1:].mean()) < float(err_absolute[1:].mean()) / 4
    for f, g in enumerate(frames):  # the nearest frame by cosine is the query's own
        hit = mem.read(g, top_k=1).segments
        assert int(hit.index[0]) == f


def test_timeline_means_are_int16_with_a_scale_per_segment():
    """A mean is stored as int16 times an fp32 scale per segment that takes its largest difference
    from the origin to ±32767: each entry within half a step of the true mean, several times closer
    than an fp16 difference would be, so frames of one still view (1 - cosine ~1e-5 between them)
    each find their own segment; a memory with ``mean_int16`` off stores fp16 differences as before."""
    import dataclasses

    gen = torch.Generator().manual_seed(12)
    base = unit(D, gen=gen)
    frames = base + 0.003 * torch.randn(16, D, generator=gen)
    frames = frames / frames.norm(dim=-1, keepdim=True)
    mems = {}
    for int16 in (True, False):
        mem = DeltaMem(dataclasses.replace(small_layout(segments=32), mean_int16=int16), seg_tolerance=0.0,
                       seg_frames_per_row=0.0)
        for f, g in enumerate(frames):
            mem.update(0.5 * f, Encoded(g[None], g), QUIET)
        assert int(mem.seg_used.sum()) == len(frames)  # one segment per frame: each mean is its frame
        mems[int16] = mem
    mem = mems[True]
    assert mem.seg_emb.dtype == torch.int16 and mems[False].seg_emb.dtype == torch.float16
    assert "seg_mscale" not in mems[False].buffers()
    n = len(frames)
    diff = (frames - frames[0]).double()
    step = mem.seg_mscale[:n].double()
    assert torch.allclose(step, (diff.abs().amax(-1) / 32767).float().double())
    err = (mem.seg_means(slice(0, n)).double() - frames.double()).abs()
    assert bool((err <= step[:, None] / 2 + 1e-7).all())
    err16 = (mems[False].seg_means(slice(0, n)).double() - frames.double()).norm(dim=-1)
    assert float(err.norm(dim=-1)[1:].mean()) < float(err16[1:].mean()) / 4
    for f, g in enumerate(frames):  # the nearest frame by cosine is the query's own
        assert int(mem.read(g, top_k=1).segments.index[0]) == f


def _answers_as_saved_and_saves_again(tmp_path, busy_mem: DeltaMem, mem: DeltaMem) -> DeltaMem:
    """``mem``, loaded from an older snapshot of ``busy_mem``, answers as ``busy_mem`` did, takes more
    frames, and saves as the current version with its own layout; → the memory read back."""
    q = unit(3, D, gen=torch.Generator().manual_seed(9))
    a, b = busy_mem.read(q).segments, mem.read(q).segments
    assert torch.equal(a.index, b.index) and torch.allclose(a.cos, b.cos, atol=1e-3)
    feed(mem, 5, torch.Generator().manual_seed(4), t0=100.0)
    again = tmp_path / "v4.svm"
    save(mem, again)
    back, _ = load(again)
    assert back.layout == mem.layout
    return back


def test_snapshot_of_format_version_2_loads_with_absolute_means(tmp_path, busy_mem):
    """A version 2 file (no origin: absolute fp16 means, layout without ``timeline_origin``) loads,
    answers as the memory it was saved from did, keeps absolute means when fed more, and saves as
    the current version without an origin."""
    tensors = {**busy_mem.buffers(), "seg_emb": busy_mem.seg_means().half()}
    old = tmp_path / "v2.svm"
    _old_snapshot(old, busy_mem, 2, tensors)

    mem, _ = load(old)
    assert not mem.layout.timeline_origin and "origin" not in mem.buffers()
    S = mem.layout.segments  # fp16 drifts instead of int8 and a scale, fp16 means without a scale;
    # no origin, no unrounded tail
    assert mem.nbytes == busy_mem.nbytes + (2 * S * D - S * D - 2 * S) - 4 * S - 4 * D - 2 * 4 * D
    back = _answers_as_saved_and_saves_again(tmp_path, busy_mem, mem)
    assert not mem.origin.any()
    assert torch.equal(back.seg_emb, mem.seg_emb)


def test_snapshot_of_format_version_3_loads_with_fp16_drifts(tmp_path, busy_mem):
    """A version 3 file (fp16 drifts, no ``seg_dscale`` and no unrounded tail) loads, answers as the
    memory it was saved from did, keeps fp16 drifts when fed more, and saves as the current version."""
    old = tmp_path / "v3.svm"
    _old_snapshot(old, busy_mem, 3, busy_mem.buffers())

    mem, _ = load(old)
    assert mem.layout.timeline_origin and not mem.layout.drift_int8 and not mem.layout.timeline_tail
    assert mem.seg_drift.dtype == torch.float16 and not {"seg_dscale", "tail_mean", "tail_drift"} & set(mem.buffers())
    assert torch.equal(mem.seg_drifts(), busy_mem.seg_drifts().half().float())
    back = _answers_as_saved_and_saves_again(tmp_path, busy_mem, mem)
    assert mem.seg_drift.dtype == torch.float16
    assert torch.equal(back.seg_drift, mem.seg_drift)


def test_identical_frames_extend_one_segment_despite_fp16_storage():
    mem = DeltaMem(small_layout())
    gen = torch.Generator().manual_seed(3)
    x = unit(16, D, gen=gen)
    g = unit(D, gen=gen)
    for i in range(5):
        mem.update(0.5 * i, Encoded(tokens=x, global_=g), [0.0] * len(CHANNELS))
    segs = mem.segments()
    assert len(segs) == 1 and segs[0].count == 5 and (segs[0].start, segs[0].end) == (0.0, 2.0)


def test_snapshot_save_is_atomic(tmp_path, busy_mem, monkeypatch):
    path = tmp_path / "mem.safetensors"
    save(busy_mem, path, {"v": 1})
    before = path.read_bytes()
    feed(busy_mem, 5, torch.Generator().manual_seed(10))

    def fail(*args):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk on fire"):
        save(busy_mem, path, {"v": 2})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["mem.safetensors"]  # no temporary file left behind
    monkeypatch.undo()
    assert load(path)[1] == {"v": 1}


def test_snapshot_rejects_bad_files(tmp_path, busy_mem, monkeypatch):
    good = tmp_path / "good.safetensors"
    save(busy_mem, good, {})
    blob = good.read_bytes()
    cases = {
        "missing": None,
        "random": os.urandom(4096),
        "truncated": blob[: len(blob) // 2],
        "header_only": blob[:8],
        "empty": b"",
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.safetensors"
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(SnapshotError) as err:
            load(path)
        assert "\n" not in str(err.value), name

    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    with pytest.raises(SnapshotError, match="not a streamvid"):
        load(foreign)

    monkeypatch.setattr(snapshot_mod, "FORMAT_VERSION", 99)
    future = tmp_path / "future.safetensors"
    save(busy_mem, future, {})
    monkeypatch.undo()
    with pytest.raises(SnapshotError, match="version 99"):
        load(future)
