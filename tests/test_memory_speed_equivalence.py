"""The memory's fast per-frame paths give the same bits as the plain formulations they replace.

``DeltaMem`` reads and writes single entries through numpy views of its buffers on a CPU (through
torch elsewhere), keeps one-row timeline statistics as Python floats and refreshes the cached merge
costs pair by pair; ``delta_merge_ref`` skips ops that cannot change a bit. Every one of these must
leave the memory exactly as before: compared here byte for byte, signed zeros included.
"""

from __future__ import annotations

import pytest
import torch

from streamvid.kernels.delta_merge import delta_merge_ref
from streamvid.memory import CHANNELS, DeltaMem, MemoryLayout
from streamvid.types import Encoded

D = 32


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.uint8) if t.dtype != torch.bool else t


def assert_same_bits(a: torch.Tensor, b: torch.Tensor, what: str = "") -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert torch.equal(_bytes(a), _bytes(b)), what


def unit(*shape: int, gen: torch.Generator) -> torch.Tensor:
    x = torch.randn(*shape, generator=gen)
    return x / x.norm(dim=-1, keepdim=True)


def _stream(mem: DeltaMem, seed: int) -> None:
    """Frames that drift, repeat, jump (boundaries) and go back in time, with pins and reads:
    slots fill and get evicted, segments extend, open and merge, events fold."""
    gen = torch.Generator().manual_seed(seed)
    g = unit(D, gen=gen)
    protos = unit(40, D, gen=gen)
    for f in range(220):
        if f % 37 == 0:
            g = unit(D, gen=gen)  # a new view
        elif f % 5:
            g = g + 0.05 * torch.randn(D, generator=gen)  # drifting
            g = g / g.norm()
        pick = torch.randint(0, 40, (12,), generator=gen)
        tokens = protos[pick] + 0.1 * torch.randn(12, D, generator=gen)
        tokens = tokens / tokens.norm(dim=-1, keepdim=True)
        t = 0.5 * f if f != 150 else 0.5 * f - 3.0  # once earlier than the last frame
        channels = torch.rand(len(CHANNELS), generator=gen).tolist()
        mem.update(t, Encoded(tokens, g), channels, thumb=lambda f=f: b"jpeg%d" % f, boundary=f % 53 == 52)
        if f % 19 == 3:
            mem.pin(t, ("entered", "left", "alert")[f % 3], g, f"event {f}", b"ev%d" % f, 0.5, track_id=f)
        if f % 23 == 7:
            mem.mark_retrieved(mem.read(g, top_k=3).slots.index)


@pytest.mark.parametrize("seg_time_scale", [0.0, 1.0])
def test_host_views_and_the_torch_path_leave_the_same_memory(seg_time_scale):
    """The numpy-view path (CPU) and the torch path (what other devices run) agree bit for bit,
    and the merge costs refreshed pair by pair are those of the batched computation."""
    layout = MemoryLayout(dim=D, slots=24, segments=10, events=4, thumbs=6, thumb_bytes=64, folds=3)
    fast = DeltaMem(layout, seg_time_scale=seg_time_scale)
    plain = DeltaMem(layout, seg_time_scale=seg_time_scale)
    plain._host = None  # as on a GPU: every entry read and written through torch
    assert fast._host is not None
    _stream(fast, seed=3)
    _stream(plain, seed=3)
    assert fast.stats()["folded"] != dict.fromkeys(fast.stats()["folded"], 0)  # the paths were exercised
    for name, buf in fast.buffers().items():
        assert_same_bits(buf, plain.buffers()[name], name)
    assert_same_bits(fast._costs, plain._costs, "_costs")
    assert_same_bits(fast._costs, fast._merge_cost(), "_costs vs _merge_cost()")



@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_memory_gets_views_of_its_own_buffers(how):
    """A deep copy or an unpickled memory reads and writes its own buffers, not the original's."""
    import copy
    import pickle

    layout = MemoryLayout(dim=D, slots=24, segments=10, events=4, thumbs=6, thumb_bytes=64, folds=3)
    mem = DeltaMem(layout)
    _stream(mem, seed=5)
    clone = copy.deepcopy(mem) if how == "deepcopy" else pickle.loads(pickle.dumps(mem))
    before = {name: buf.clone() for name, buf in mem.buffers().items()}
    _stream(clone, seed=6)
    for name, buf in mem.buffers().items():  # the original is untouched ...
        assert_same_bits(buf, before[name], name)
    assert clone._scalar("frames_seen") == 2 * mem._scalar("frames_seen")  # ... and the copy counted on
    for name, buf in clone._buffers.items():
        assert clone._host[name].__array_interface__["data"][0] == buf.data_ptr(), name


def _plain_merge(x, idx, k, count, importance, novelty, g_min, gate=None):
    """``delta_merge_ref`` as first written (every step, no shortcuts): the definition to match."""
    B, N, D = x.shape
    M = k.shape[1]
    rows = torch.arange(B, device=x.device)[:, None] * M
    group = torch.where(idx >= 0, idx + rows, -1).reshape(-1)
    take = (group >= 0).nonzero().squeeze(1)
    group = group[take]
    order = torch.argsort(group, stable=True)
    group = group[order]
    tokens = x.reshape(B * N, D)[take][order].double()
    nov_t = novelty.reshape(-1)[take][order].double()
    hit, n_hit = torch.unique_consecutive(group, return_counts=True)
    ends = torch.cumsum(n_hit, 0) - 1
    zero = torch.zeros(1, D, dtype=torch.float64, device=x.device)
    csum = torch.cat([zero, torch.cumsum(tokens, 0)])
    sums = (csum[ends + 1] - csum[ends + 1 - n_hit]).float()
    ncsum = torch.cat([zero[:, 0], torch.cumsum(nov_t, 0)])
    nov = (ncsum[ends + 1] - ncsum[ends + 1 - n_hit]).float()
    n = torch.zeros(B * M, dtype=torch.int64, device=x.device)
    n[hit] = n_hit
    nf = n_hit.float()
    kf, cf = k.view(B * M, D), count.view(B * M)
    gate_h = (nf / (cf[hit].float() + nf)).clamp_min(g_min)
    if gate is not None:
        given = gate.reshape(B * M)[hit].float()
        gate_h = torch.where(torch.isnan(given), gate_h, given)
    old = kf[hit]
    new = old + gate_h[:, None] * (sums / nf[:, None] - old)
    kf[hit] = new / new.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cf[hit] += n_hit.to(cf.dtype)
    importance.view(B * M)[hit] += gate_h * nov / nf
    return n.view(B, M)


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("count_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("with_gate", [False, True])
def test_delta_merge_ref_matches_its_plain_formulation(B, skip, x_dtype, count_dtype, with_gate):
    gen = torch.Generator().manual_seed(B * 7 + skip)
    N, M = 48, 30
    x = unit(B, N, D, gen=gen).to(x_dtype)
    idx = torch.randint(0, M, (B, N), generator=gen)
    if skip:
        idx[torch.rand(B, N, generator=gen) < 0.3] = -1
    k = unit(B, M, D, gen=gen)
    count = torch.randint(0, 9, (B, M), generator=gen).to(count_dtype)
    importance = torch.rand(B, M, generator=gen)
    importance[0, :3] = -0.0  # signed zeros must survive as before
    novelty = torch.rand(B, N, generator=gen)
    gate = None
    if with_gate:
        gate = torch.rand(B, M, generator=gen)
        gate[torch.rand(B, M, generator=gen) < 0.5] = float("nan")
    args = (k, count, importance)
    ours, theirs = [a.clone() for a in args], [a.clone() for a in args]
    n_ours = delta_merge_ref(x, idx, *ours, novelty, 0.02, gate=gate)
    n_theirs = _plain_merge(x, idx, *theirs, novelty, 0.02, gate=gate)
    assert_same_bits(n_ours, n_theirs, "n")
    for name, a, b in zip(("k", "count", "importance"), ours, theirs, strict=True):
        assert_same_bits(a, b, name)
