"""The retention benchmark's baseline memories (streamvid.memory.baselines) and Δ-Mem's adapter."""

from __future__ import annotations

import pytest
import torch

from streamvid.memory.baselines import (
    ENTRY_BYTES,
    METHODS,
    VALUE_BYTES,
    DifferentialTokenDrop,
    FifoWindow,
    KeepAll,
    MALMMMerge,
    MovieChatMerge,
    UniformSampling,
    WeightedKMeans,
    make_memory,
    weighted_kmeans,
)
from streamvid.memory.retention import Hit, RetentionMemory
from streamvid.types import Encoded

N, D = 8, 32
FPS = 2.0
BUDGET = 64 * 1024
FRAME_BYTES = (N + 1) * D * VALUE_BYTES + ENTRY_BYTES
PATTERN_FRAMES = range(10, 14)  # t = 5.0 .. 6.5 s
PATTERN_T = (5.0, 6.5)
BOUNDED = [name for name in METHODS if name != "keep-all"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only cost (badly so on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _random_frame(g: torch.Generator, n: int = N, d: int = D) -> Encoded:
    tokens = _unit(torch.randn(n, d, generator=g))
    return Encoded(tokens, _unit(torch.randn(d, generator=g)))


def _pattern() -> Encoded:
    g = torch.Generator().manual_seed(1234)
    tokens = _unit(torch.randn(N, D, generator=g))
    return Encoded(tokens, _unit(tokens.mean(0)))


def _feed(mem, frames: int, seed: int = 0, start: int = 0) -> None:
    """Random frames at 2 fps, with the pattern at PATTERN_FRAMES."""
    g = torch.Generator().manual_seed(seed)
    pattern = _pattern()
    for i in range(start, start + frames):
        enc = _random_frame(g)
        mem.update(i / FPS, pattern if i in PATTERN_FRAMES else enc)


def _found(hits: list[Hit]) -> bool:
    return bool(hits) and PATTERN_T[0] - 1.0 <= hits[0].t <= PATTERN_T[1] + 1.0


def _check_hits(hits: list[Hit], top_k: int, min_gap: float = 1.0) -> None:
    assert len(hits) <= top_k
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    for i, a in enumerate(hits):
        assert -1.0001 <= a.score <= 1.0001
        for b in hits[:i]:
            assert abs(a.t - b.t) >= min_gap


@pytest.mark.parametrize("name", list(METHODS))
def test_interface_empty_search_and_hits(name):
    mem = make_memory(name, BUDGET, dim=D, tokens_per_frame=N)
    assert isinstance(mem, RetentionMemory)
    assert mem.name == name
    assert mem.search(_pattern().global_, 5) == []
    _feed(mem, 120)
    for top_k in (1, 3, 8):
        hits = mem.search(_pattern().global_, top_k)
        assert 1 <= len(hits)
        _check_hits(hits, top_k)
        assert all(0.0 <= h.t <= 119 / FPS + 1e-3 for h in hits)
    assert mem.search(_pattern().global_, 0) == []


@pytest.mark.parametrize("name", BOUNDED)
def test_bytes_bounded(name):
    mem = make_memory(name, BUDGET, dim=D, tokens_per_frame=N)
    seen = []
    for chunk in range(3):
        _feed(mem, 100, seed=chunk, start=100 * chunk)
        seen.append(mem.nbytes)
        assert 0 < mem.nbytes <= BUDGET
    assert seen[1] == seen[2] or name in ("uniform", "kmeans")  # full: constant (these two breathe)


def test_keep_all_grows():
    mem = KeepAll(BUDGET, D, N, block=16)
    _feed(mem, 100)
    assert mem.nbytes == 100 * FRAME_BYTES > BUDGET
    assert _found(mem.search(_pattern().global_, 3))
    assert _found(mem.search(_pattern().tokens[3], 3))
    assert mem.search(_pattern().global_, 1)[0].score == pytest.approx(1.0, abs=1e-5)


def test_pattern_retrieved_by_delta_mem():
    # 256 KiB: with 300 frames of pure noise (every frame novel) 64 KiB is not enough for Δ-Mem
    mem = make_memory("delta-mem", 256 * 1024, dim=D, tokens_per_frame=N)
    _feed(mem, 300)
    assert _found(mem.search(_pattern().global_, 3))


def test_uniform_keeps_spread_frames():
    mem = UniformSampling(256 * 1024, D, N)
    assert mem.capacity == 256 * 1024 // FRAME_BYTES == 225
    _feed(mem, 300)
    assert mem.stride == 2 and mem.nbytes == 150 * FRAME_BYTES
    assert _found(mem.search(_pattern().global_, 3))
    small = UniformSampling(20 * FRAME_BYTES, D, N)
    _feed(small, 300)
    times = sorted(small._buf.times[: small.nbytes // FRAME_BYTES].tolist())
    assert small.stride == 16 and len(times) == 19  # frames 0, 16, ..., 288
    assert times == [16 * i / FPS for i in range(19)]


def test_fifo_forgets_outside_window():
    mem = FifoWindow(BUDGET, D, N)
    assert mem.capacity == BUDGET // FRAME_BYTES
    _feed(mem, 12 + mem.capacity - 2)  # pattern frames 12, 13 still in the window
    assert _found(mem.search(_pattern().global_, 3))
    _feed(mem, 10, seed=5, start=12 + mem.capacity - 2)
    hits = mem.search(_pattern().global_, 3)
    assert not _found(hits) and hits[0].score < 0.9
    assert mem.nbytes == mem.capacity * FRAME_BYTES


def test_merge_memories_conserve_counts_and_times():
    frames = 200
    times_sum = sum(i / FPS for i in range(frames))
    mc = MovieChatMerge(BUDGET, D, N)
    _feed(mc, frames)
    b = mc._bank
    assert b.used == mc.capacity and mc.nbytes == mc.capacity * FRAME_BYTES
    assert b.count[0].sum().item() == frames
    assert (b.count[0] * b.tmean[0]).sum().item() == pytest.approx(times_sum, rel=1e-4)
    assert torch.equal(b.order[0], torch.argsort(b.tmean[0]))  # the time order is the mean-time order
    ma = MALMMMerge(BUDGET, D, N)
    assert ma.capacity == BUDGET // ((N + 1) * (D * VALUE_BYTES + ENTRY_BYTES))
    _feed(ma, frames)
    assert torch.all(ma._bank.count.sum(1) == frames)
    assert torch.allclose((ma._bank.count * ma._bank.tmean).sum(1), torch.full((N + 1,), times_sum), rtol=1e-4)
    km = WeightedKMeans(BUDGET, D, N)
    _feed(km, frames)
    assert km.weight[: km.used].sum().item() == frames
    assert (km.weight * km.tmean).sum().item() == pytest.approx(times_sum, rel=1e-4)


def _naive_adjacent_merge(frames: list[tuple[float, torch.Tensor]], k: int):
    """Reference: append, then merge the most similar adjacent pair while over ``k`` (per row)."""
    rows = frames[0][1].shape[0]
    out = []
    for r in range(rows):
        entries: list[list] = []  # [vec, count, t]
        for t, x in frames:
            entries.append([x[r].clone(), 1.0, t])
            if len(entries) > k:
                cos = [torch.nn.functional.cosine_similarity(entries[i][0], entries[i + 1][0], dim=0).item()
                       for i in range(len(entries) - 1)]
                i = max(range(len(cos)), key=lambda j: cos[j])
                (va, ca, ta), (vb, cb, tb) = entries[i], entries[i + 1]
                entries[i : i + 2] = [[(va * ca + vb * cb) / (ca + cb), ca + cb, (ta * ca + tb * cb) / (ca + cb)]]
        out.append(entries)
    return out


@pytest.mark.parametrize("k", [1, 2, 5])
def test_ma_lmm_matches_naive_merge(k):
    n, d = 2, 4
    mem = MALMMMerge(k * (n + 1) * (d * VALUE_BYTES + ENTRY_BYTES), d, n)
    assert mem.capacity == k
    g = torch.Generator().manual_seed(7)
    frames = []
    for i in range(40):
        enc = _random_frame(g, n, d)
        mem.update(i / FPS, enc)
        frames.append((i / FPS, torch.cat([enc.tokens, enc.global_[None]])))
    ref = _naive_adjacent_merge(frames, k)
    b = mem._bank
    for r in range(n + 1):
        slots = b.order[r].tolist()
        assert [b.count[r, s].item() for s in slots] == [e[1] for e in ref[r]]
        assert [b.tmean[r, s].item() for s in slots] == pytest.approx([e[2] for e in ref[r]], abs=1e-4)
        got = b.payload[r, slots]
        assert torch.allclose(got, torch.stack([e[0] for e in ref[r]]), atol=1e-5)


def test_timechat_drops_static_tokens():
    mem = DifferentialTokenDrop(BUDGET, D, N, tau=0.9)
    assert mem.capacity == (BUDGET - (N + 1) * D * VALUE_BYTES) // (D * VALUE_BYTES + ENTRY_BYTES)
    g = torch.Generator().manual_seed(3)
    still = _random_frame(g)
    for i in range(50):
        mem.update(i / FPS, still)
    assert mem.stored_total == N + 1  # only the first frame
    assert mem.nbytes == (N + 1) * D * VALUE_BYTES + (N + 1) * (D * VALUE_BYTES + ENTRY_BYTES)
    moved = Encoded(torch.cat([still.tokens[:6], _unit(torch.randn(2, D, generator=g))]), still.global_)
    mem.update(25.0, moved)
    assert mem.stored_total == N + 3  # the two changed tokens
    hits = mem.search(moved.tokens[7], 2)
    assert hits[0].t == 25.0 and hits[0].score == pytest.approx(1.0, abs=1e-5)
    _feed(mem, 400, start=60)  # random frames: everything is stored, the oldest evicted
    assert mem.nbytes <= BUDGET and mem.stored_total == N + 3 + 400 * (N + 1)


def test_weighted_kmeans():
    g = torch.Generator().manual_seed(0)
    centers = _unit(torch.randn(3, 16, generator=g))
    x = torch.cat([centers[i] + 0.01 * torch.randn(5, 16, generator=g) for i in range(3)])
    tm = torch.arange(15, dtype=torch.float32)
    w = torch.ones(15)
    cent, cw, ct = weighted_kmeans(x, w, tm, 3)
    assert cw.tolist() == [5.0, 5.0, 5.0] and ct.tolist() == [2.0, 7.0, 12.0]
    assert torch.allclose(cent, centers, atol=0.02)
    again = weighted_kmeans(x, w, tm, 3)
    assert all(torch.equal(a, b) for a, b in zip((cent, cw, ct), again))  # deterministic
    dup = torch.cat([x[:1]] * 4)  # identical points: the duplicate centroids empty out and are dropped
    cent, cw, ct = weighted_kmeans(dup, torch.ones(4), torch.arange(4.0), 3)
    assert cw.tolist() == [4.0] and ct.tolist() == [1.5]


def test_factory_errors():
    with pytest.raises(ValueError, match="known: .*delta-mem.*kmeans"):
        make_memory("nope", BUDGET, dim=D, tokens_per_frame=N)
    for name in METHODS:
        if name == "keep-all":
            continue
        with pytest.raises(ValueError, match="budget"):
            make_memory(name, FRAME_BYTES - 1, dim=D, tokens_per_frame=N)
    assert isinstance(make_memory("fifo", BUDGET, dim=D, tokens_per_frame=N, min_gap=2.0), FifoWindow)
    assert make_memory("timechat-online", BUDGET, dim=D, tokens_per_frame=N, tau=0.5).tau == 0.5
    with pytest.raises(ValueError, match="tokens"):
        make_memory("fifo", BUDGET, dim=D, tokens_per_frame=N).update(0.0, _random_frame(torch.Generator(), 3))


def test_min_gap_respected_and_deterministic():
    a = make_memory("ma-lmm", BUDGET, dim=D, tokens_per_frame=N, min_gap=3.0)
    b = make_memory("ma-lmm", BUDGET, dim=D, tokens_per_frame=N, min_gap=3.0)
    _feed(a, 150)
    _feed(b, 150)
    hits = a.search(_pattern().global_, 6)
    _check_hits(hits, 6, min_gap=3.0)
    assert hits == b.search(_pattern().global_, 6)
