"""Triton ``delta_merge``: the grouped, gated running-mean merge of tokens into slots, in place.

Layout (as in flash-linear-attention): :func:`delta_merge_ref` in ``naive.py`` defines the op; here
are the kernel, the host wrapper :func:`delta_merge_fwd` and the public function
:func:`delta_merge_triton` (argument checks).

Strategy (deterministic, no float atomics):

1. host side, a few torch ops: the flat slot ``b * M + idx`` of every token (skipped and
   out-of-range tokens get the sentinel ``B * M``), a *stable* sort of the ``B * N`` tokens by it,
   and for each sorted position the end of its run (``searchsorted``). The tokens of one slot are
   now one contiguous run, in ascending token order;
2. one program per sorted position; only the first position of each run (a *hit* slot) works —
   at most ``B * N`` programs, no host synchronisation, so the whole merge can be captured in a
   CUDA graph. The program sums its run in a fixed order (tiles of ``BLOCK_T`` tokens, a fixed
   reduction tree per tile, tiles in order) for ``D`` in chunks of ``BLOCK_D``, then applies
   ``g = max(n / (count + n), g_min)``, ``k <- normalise(k + g (mean - k))``, ``count += n``,
   ``importance += g * mean(novelty)`` and writes ``n``.

When ``D`` does not fit one chunk the new row is written unnormalised chunk by chunk while its
squared norm accumulates, then scaled in a second pass (after a CTA barrier). Every slot row is
touched by exactly one program, so runs are bitwise reproducible.

``grouping="scan"`` finds the groups without sorting: one program per token ``(i, b)`` loads the
stream's ``N`` slot indices as one vector, compares them with its own and, if no earlier token
has its slot, sums the group's rows one at a time in token order (each next member found by a
reduction over the comparison, in registers) and applies the same update. It replaces the sort,
``searchsorted`` and a dozen small torch ops (about 13 launches) by one launch, at an ``O(N²)``
comparison cost per stream, so it is for frames of up to :data:`SCAN_MAX_N` tokens, and is the
default there. Its sums group the tokens differently from the sorted path (both deterministic;
they differ in float32 rounding). ``scripts/bench_kernels.py`` times both: on an H200 the scan
merge took 9.0–42 µs against the sort's 36–219 µs on every case of its default grid (B ≤ 64,
N ≤ 256, M ≤ 16,384, D = 512; one warp per program, and with one ``D`` chunk the token's row, the
slot's row and count loaded before the comparison; BENCHMARKS.md, "The scan merge on an H200").

A third grouping, ``block_t`` tokens per program as ``[block_t, D]`` tiles (the stream's indices
loaded once per program, ``block_t`` rows in flight), was built and timed on the same H200 over
block_t 1–16 × 1–8 warps: it was never faster than this scan beyond noise, its best setting always
one token per program, so it was removed (BENCHMARKS.md, "Tiles of tokens in the scan merge").
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from streamvid.kernels import triton_interpreting

__all__ = ["delta_merge_triton", "delta_merge_fwd", "GROUPINGS", "SCAN_MAX_N"]

GROUPINGS = ("sort", "scan")
SCAN_MAX_N = 1024  # "scan" compares each token's slot with those of the tokens before it: O(N²) per stream


@triton.jit
def _tile(t0, hi, run, N, x_ptr, sxb, sxn, nov_ptr, snb, snn, BLOCK_T: tl.constexpr):
    """The tile of ``BLOCK_T`` positions of a sorted run from ``t0`` (positions below ``hi``; ``run[t]``:
    flat token indices ``b * N + i``) → (their ``x`` row pointers, their novelty pointers, in range)."""
    offs_t = t0 + tl.arange(0, BLOCK_T)
    ok = offs_t < hi
    tok = tl.load(run + offs_t, mask=ok, other=0)
    rows = x_ptr + (tok // N) * sxb + (tok % N) * sxn
    novs = nov_ptr + (tok // N) * snb + (tok % N) * snn
    return rows, novs, ok


@triton.jit
def _moved_chunk(hi, offs_d, d_ok, k_row, g, nf, run, same, offs_s, first, n, N,
                 x_ptr, sxb, sxn, sxd, nov_ptr, snb, snn, x0, old0,
                 SCAN: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, PRELOADED: tl.constexpr):
    """The slot row's chunk ``offs_d`` moved ``g`` of the way to the group's mean (unnormalised):
    the group's tokens summed in a fixed order, float32.

    ``SCAN``: the group is the ``n`` tokens where ``same`` is set (positions ``offs_s`` of one
    stream, ``x_ptr`` pointing at it), ``first`` the first of them: summed one row at a time in token
    order, each next member found by a reduction over ``same`` in registers. Otherwise the group is
    the sorted run ``run[0:hi]``, summed in tiles of ``BLOCK_T`` rows (a fixed tree per tile).
    ``PRELOADED`` (scan, one chunk): ``x0`` is the first member's row and ``old0`` the slot's row,
    already loaded (float32)."""
    acc = tl.zeros([BLOCK_D], tl.float32)
    if SCAN:
        pos = first
        if PRELOADED:
            acc += x0
        else:
            acc += tl.load(x_ptr + pos.to(tl.int64) * sxn + offs_d * sxd, mask=d_ok, other=0.0).to(tl.float32)
        for _ in range(1, n):
            pos = tl.min(tl.where(same & (offs_s > pos), offs_s, 2147483647), axis=0)
            acc += tl.load(x_ptr + pos.to(tl.int64) * sxn + offs_d * sxd, mask=d_ok, other=0.0).to(tl.float32)
    else:
        for t0 in range(0, hi, BLOCK_T):
            rows, novs, ok = _tile(t0, hi, run, N, x_ptr, sxb, sxn, nov_ptr, snb, snn, BLOCK_T)
            xt = tl.load(rows[:, None] + offs_d[None, :] * sxd, mask=ok[:, None] & d_ok[None, :], other=0.0)
            acc += tl.sum(xt.to(tl.float32), axis=0)
    if PRELOADED:
        old = old0
    else:
        old = tl.load(k_row + offs_d, mask=d_ok, other=0.0)
    return old + g * (tl.div_rn(acc, nf) - old)


@triton.jit
def _merge_group(
    hi, run, same, offs_s, first, flat,
    x_ptr, nov_ptr, k_ptr, count_ptr, imp_ptr, n_ptr, gate_ptr,
    N, D, g_min,
    sxb, sxn, sxd,
    snb, snn,
    x0, old0, cnt0,
    SCAN: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ONE_CHUNK: tl.constexpr,
    HAS_GATE: tl.constexpr,
):
    """Merge one group of tokens (see :func:`_moved_chunk`: the sorted run ``run[0:hi]``, or with
    ``SCAN`` the stream's tokens where ``same`` is set) into slot row ``flat`` of the flat
    ``[B * M]`` slots: sums in a fixed order, the gate, the new row (normalised), its count,
    importance and ``n``. With ``SCAN`` the caller loaded the slot's count ``cnt0`` and, with one
    chunk, the first member's row ``x0`` and the slot's row ``old0``."""
    # size and novelty of the group
    if SCAN:
        n = tl.sum(same.to(tl.int32), axis=0)
        nov = tl.sum(tl.load(nov_ptr + offs_s * snn, mask=same, other=0.0).to(tl.float32), axis=0)
    else:
        nov_acc = tl.zeros([BLOCK_T], tl.float32)
        for t0 in range(0, hi, BLOCK_T):
            rows, novs, ok = _tile(t0, hi, run, N, x_ptr, sxb, sxn, nov_ptr, snb, snn, BLOCK_T)
            nov_acc += tl.load(novs, mask=ok, other=0.0).to(tl.float32)
        nov = tl.sum(nov_acc, axis=0)
        n = hi
    nf = n.to(tl.float32)

    if SCAN:
        cnt = cnt0
    else:
        cnt = tl.load(count_ptr + flat)
    g = tl.maximum(tl.div_rn(nf, cnt.to(tl.float32) + nf), g_min)
    if HAS_GATE:  # a given gate (NaN: keep the closed form)
        given = tl.load(gate_ptr + flat)
        g = tl.where(given == given, given, g)
    k_row = k_ptr + flat * D

    if ONE_CHUNK:
        offs_d = tl.arange(0, BLOCK_D)
        d_ok = offs_d < D
        new = _moved_chunk(hi, offs_d, d_ok, k_row, g, nf, run, same, offs_s, first, n, N,
                           x_ptr, sxb, sxn, sxd, nov_ptr, snb, snn, x0, old0, SCAN, BLOCK_T, BLOCK_D, SCAN)
        norm = tl.maximum(tl.sqrt_rn(tl.sum(new * new, axis=0)), 1e-12)
        tl.store(k_row + offs_d, tl.div_rn(new, norm), mask=d_ok)
    else:
        sq = tl.zeros([BLOCK_D], tl.float32)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            d_ok = offs_d < D
            new = _moved_chunk(hi, offs_d, d_ok, k_row, g, nf, run, same, offs_s, first, n, N,
                               x_ptr, sxb, sxn, sxd, nov_ptr, snb, snn, 0.0, 0.0, SCAN, BLOCK_T, BLOCK_D, False)
            sq += new * new
            tl.store(k_row + offs_d, new, mask=d_ok)
        norm = tl.maximum(tl.sqrt_rn(tl.sum(sq, axis=0)), 1e-12)
        tl.debug_barrier()  # the unnormalised row written above is read back by other threads
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            d_ok = offs_d < D
            new = tl.load(k_row + offs_d, mask=d_ok, other=0.0)
            tl.store(k_row + offs_d, tl.div_rn(new, norm), mask=d_ok)

    tl.store(count_ptr + flat, (cnt + n).to(count_ptr.dtype.element_ty))
    imp = tl.load(imp_ptr + flat)
    tl.store(imp_ptr + flat, imp + tl.div_rn(g * nov, nf))
    tl.store(n_ptr + flat, n.to(tl.int64))


@triton.jit
def _delta_merge_kernel(
    x_ptr, nov_ptr, order_ptr, sorted_ptr, ends_ptr,
    k_ptr, count_ptr, imp_ptr, n_ptr, gate_ptr,
    N, D, BM, g_min,
    sxb, sxn, sxd,
    snb, snn,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ONE_CHUNK: tl.constexpr,
    HAS_GATE: tl.constexpr,
):
    """Program ``p``: if sorted position ``p`` starts the run of a slot, merge that run into it."""
    p = tl.program_id(0).to(tl.int64)
    slot = tl.load(sorted_ptr + p)
    prev = tl.load(sorted_ptr + p - 1, mask=p > 0, other=-1)
    if (slot < BM) & (slot != prev):
        hi = (tl.load(ends_ptr + p) - p).to(tl.int32)  # tokens in the run
        _merge_group(hi, order_ptr + p, 0, 0, 0, slot,
                     x_ptr, nov_ptr, k_ptr, count_ptr, imp_ptr, n_ptr, gate_ptr,
                     N, D, g_min, sxb, sxn, sxd, snb, snn, 0.0, 0.0, 0,
                     False, BLOCK_T, BLOCK_D, ONE_CHUNK, HAS_GATE)


@triton.jit
def _delta_merge_scan_kernel(
    x_ptr, nov_ptr, idx_ptr,
    k_ptr, count_ptr, imp_ptr, n_ptr, gate_ptr,
    N, M, D, g_min,
    sxb, sxn, sxd,
    snb, snn,
    sib, sin,
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ONE_CHUNK: tl.constexpr,
    HAS_GATE: tl.constexpr,
):
    """Program ``(i, b)``: if token ``i`` is the first of stream ``b`` with its slot, merge all the
    stream's tokens of that slot into it. The stream's ``N <= BLOCK_S`` slot indices are compared
    with ``i``'s in one vector (no sort); the group's members are then read row by row."""
    i = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    idx_row = idx_ptr + b * sib
    slot = tl.load(idx_row + i * sin)
    if (slot >= 0) & (slot < M):
        flat = b * M + slot
        # With one chunk, the token's own row, the slot's row and count are loaded here, before the
        # comparison: their latency overlaps that of the indices' load instead of following it
        # (a token that turns out not to lead its group wasted one row's load).
        if ONE_CHUNK:
            offs_d = tl.arange(0, BLOCK_D)
            d_ok = offs_d < D
            x0 = tl.load(x_ptr + b * sxb + i.to(tl.int64) * sxn + offs_d * sxd, mask=d_ok, other=0.0).to(tl.float32)
            old0 = tl.load(k_ptr + flat * D + offs_d, mask=d_ok, other=0.0)
        else:
            x0 = 0.0
            old0 = 0.0
        cnt0 = tl.load(count_ptr + flat)
        offs_s = tl.arange(0, BLOCK_S)
        same = tl.load(idx_row + offs_s * sin, mask=offs_s < N, other=-1) == slot
        earlier = tl.sum((same & (offs_s < i)).to(tl.int32), axis=0)  # i leads its group when 0
        if earlier == 0:
            _merge_group(0, idx_row, same, offs_s, i, flat,
                         x_ptr + b * sxb, nov_ptr + b * snb, k_ptr, count_ptr, imp_ptr, n_ptr, gate_ptr,
                         N, D, g_min, sxb, sxn, sxd, snb, snn, x0, old0, cnt0,
                         True, 1, BLOCK_D, ONE_CHUNK, HAS_GATE)


# ------------------------------------------------------------------------------------ host side


def delta_merge_fwd(
    x: torch.Tensor,
    idx: torch.Tensor,
    k: torch.Tensor,
    count: torch.Tensor,
    importance: torch.Tensor,
    novelty: torch.Tensor,
    g_min: float,
    *,
    out: torch.Tensor | None = None,
    block_t: int | None = None,
    block_d: int | None = None,
    num_warps: int | None = None,
    gate: torch.Tensor | None = None,
    grouping: str | None = None,
) -> torch.Tensor:
    """Host wrapper: grouping, allocation, grid. No argument checks but ``grouping``'s.

    Args:
        x: tokens `[B, N, D]`; idx: int64 `[B, N]` (-1 or out of range: skip); k: contiguous float32
            `[B, M, D]`; count: contiguous int32/int64 `[B, M]`; importance: contiguous float32
            `[B, M]`; novelty: `[B, N]`; g_min: the gate floor.
        out: optional contiguous int64 `[B, M]` for ``n`` (zeroed, then written).
        gate: optional float32 `[B, M]`: given per-slot gates (NaN: the closed form).
        block_t, block_d: token tile and ``D`` chunk (powers of two); ``None``: chosen here.
        grouping: how the tokens of a slot are found (see the module docstring): ``"sort"`` (a
            stable sort by slot, then one program per sorted position), ``"scan"`` (one program per
            token, no sort; ``N`` at most :data:`SCAN_MAX_N`); ``None``: ``"scan"`` up to
            :data:`SCAN_MAX_N` tokens per stream, ``"sort"`` beyond.
    Returns:
        n: int64 `[B, M]`, the tokens merged into each slot.
    """
    B, N, D = x.shape
    M = k.shape[1]
    dev = x.device
    n = torch.zeros(B, M, dtype=torch.int64, device=dev) if out is None else out.zero_()
    if B * N == 0 or B * M == 0:
        return n

    if triton_interpreting():
        if x.dtype == torch.bfloat16:
            x = x.float()
        if novelty.dtype == torch.bfloat16:
            novelty = novelty.float()

    grouping = grouping or ("scan" if N <= SCAN_MAX_N else "sort")
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {GROUPINGS}, got {grouping!r}")
    if grouping == "scan" and N > SCAN_MAX_N:
        raise ValueError(f"grouping='scan' takes at most {SCAN_MAX_N} tokens per stream, got N={N}")
    BLOCK_D = block_d or max(16, min(triton.next_power_of_2(D), 1024))
    BLOCK_T = block_t or max(1, min(16, 4096 // BLOCK_D))
    if num_warps is None:  # the scan's programs read one row at a time: one warp each is fastest (H200, D = 512)
        num_warps = 1 if grouping == "scan" else 4 if BLOCK_D * BLOCK_T <= 4096 else 8
    if gate is not None:
        gate = gate.contiguous()
    state = (k, count, importance, n, gate if gate is not None else importance)  # gate_ptr: a dummy without one
    strides = (*x.stride(), *novelty.stride())
    meta = dict(BLOCK_T=BLOCK_T, BLOCK_D=BLOCK_D, ONE_CHUNK=D <= BLOCK_D, HAS_GATE=gate is not None,
                num_warps=num_warps)
    if grouping == "scan":
        scan_meta = {key: v for key, v in meta.items() if key != "BLOCK_T"}
        _delta_merge_scan_kernel[(N, B)](x, novelty, idx, *state, N, M, D, float(g_min), *strides, *idx.stride(),
                                         BLOCK_S=max(16, triton.next_power_of_2(N)), **scan_meta)
        return n

    BM = B * M
    rows = torch.arange(B, device=dev, dtype=torch.int64)[:, None] * M
    ok = (idx >= 0) & (idx < M)
    flat = torch.where(ok, idx + rows, BM).reshape(-1)  # [B*N]
    sorted_flat, order = torch.sort(flat, stable=True)
    ends = torch.searchsorted(sorted_flat, sorted_flat, right=True)
    _delta_merge_kernel[(B * N,)](x, novelty, order, sorted_flat, ends, *state, N, D, BM, float(g_min), *strides,
                                  **meta)
    return n


_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def delta_merge_triton(
    x: torch.Tensor,
    idx: torch.Tensor,
    k: torch.Tensor,
    count: torch.Tensor,
    importance: torch.Tensor,
    novelty: torch.Tensor,
    g_min: float,
    *,
    out: torch.Tensor | None = None,
    check_idx: bool | None = None,
    gate: torch.Tensor | None = None,
    grouping: str | None = None,
) -> torch.Tensor:
    r"""Merge tokens into their slots in place, one gated step per slot, on Triton.

    Computes what :func:`~streamvid.kernels.delta_merge.delta_merge_ref` defines (float32 sums in a
    fixed order instead of float64 ones), bitwise reproducibly.

    Args:
        x (torch.Tensor): tokens `[B, N, D]`, float32/float16/bfloat16, L2-normalised rows.
        idx (torch.Tensor): int64 `[B, N]`: the slot of each token, ``-1`` to skip it.
        k (torch.Tensor): contiguous float32 slots `[B, M, D]`, updated in place.
        count (torch.Tensor): contiguous int32/int64 `[B, M]`, updated in place.
        importance (torch.Tensor): contiguous float32 `[B, M]`, updated in place.
        novelty (torch.Tensor): `[B, N]`, float32/float16/bfloat16.
        g_min (float): the gate floor, in ``[0, 1]``.
        out: optional contiguous int64 `[B, M]` receiving ``n``.
        gate: optional float32 `[B, M]`: a given gate per slot used in place of the closed form
            (NaN: the closed form), as in the reference.
        check_idx: raise ``IndexError`` for an index outside ``[-1, M)`` (one device sync).
            ``None``: check unless a CUDA graph is being captured. Unchecked, such tokens are skipped.
        grouping: ``"sort"`` or ``"scan"`` (see :func:`delta_merge_fwd`); ``None``: ``"scan"`` up to
            :data:`SCAN_MAX_N` tokens per stream, ``"sort"`` beyond.

    Returns:
        n (torch.Tensor): int64 `[B, M]`: the number of tokens merged into each slot.
    """
    if x.ndim != 3 or k.ndim != 3:
        raise ValueError(f"x and k must be [B, N, D] and [B, M, D], got {list(x.shape)} and {list(k.shape)}")
    B, N, D = x.shape
    M = k.shape[1]
    spec = {
        "k": (k, (B, M, D), (torch.float32,)),
        "idx": (idx, (B, N), (torch.int64,)),
        "count": (count, (B, M), (torch.int32, torch.int64)),
        "importance": (importance, (B, M), (torch.float32,)),
        "novelty": (novelty, (B, N), _FLOATS),
    }
    if gate is not None:
        spec["gate"] = (gate, (B, M), (torch.float32,))
    if x.dtype not in _FLOATS:
        raise TypeError(f"x: expected float32/float16/bfloat16, got {x.dtype}")
    for name, (t, shape, dtypes) in spec.items():
        if tuple(t.shape) != shape:
            raise ValueError(f"{name}: expected shape {list(shape)}, got {list(t.shape)}")
        if t.dtype not in dtypes:
            raise TypeError(f"{name}: expected dtype in {[str(d) for d in dtypes]}, got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device}, expected {x.device} like x")
    for name, t in (("k", k), ("count", count), ("importance", importance)):
        if not t.is_contiguous():
            raise ValueError(f"{name} is updated in place and must be contiguous")
    if not 0.0 <= g_min <= 1.0:
        raise ValueError(f"g_min must be in [0, 1], got {g_min}")
    if out is not None and (tuple(out.shape) != (B, M) or out.dtype != torch.int64
                            or not out.is_contiguous() or out.device != x.device):
        raise ValueError(f"out: expected a contiguous int64 [{B}, {M}] tensor on {x.device}")
    if check_idx is None:
        check_idx = not (x.is_cuda and torch.cuda.is_current_stream_capturing())
    if check_idx and idx.numel() and bool(((idx < -1) | (idx >= M)).any()):
        raise IndexError(f"idx holds slots outside [-1, {M})")
    return delta_merge_fwd(x, idx, k, count, importance, novelty, g_min, out=out, gate=gate, grouping=grouping)
