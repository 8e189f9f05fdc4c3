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


def test_segment_channels_keep_max_and_mean_brightness():
    mem = DeltaMem(small_layout())
    a = basis(0)
    mem.update(0.0, Encoded(a[None], a), [0.2, 1.0, 0.0, 0.4, 0.0])
    mem.update(0.1, Encoded(a[None], a), [0.6, 0.0, 0.5, 0.8, 0.0])
    (seg,) = mem.segments()
    assert seg.channels == pytest.approx(
        {"motion": 0.6, "person": 1.0, "face": 0.5, "brightness": 0.6, "scene_change": 0.0}
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
