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
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from streamvid.kernels import triton_interpreting

__all__ = ["delta_merge_triton", "delta_merge_fwd"]


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
        n = tl.load(ends_ptr + p) - p  # tokens in the run (int64)
        n32 = n.to(tl.int32)
        nf = n.to(tl.float32)
        run = order_ptr + p  # the run's token indices (flat b * N + i), ascending

        # novelty of the run
        nov_acc = tl.zeros([BLOCK_T], tl.float32)
        for t0 in range(0, n32, BLOCK_T):
            offs_t = t0 + tl.arange(0, BLOCK_T)
            t_ok = offs_t < n32
            tok = tl.load(run + offs_t, mask=t_ok, other=0)
            nv = tl.load(nov_ptr + (tok // N) * snb + (tok % N) * snn, mask=t_ok, other=0.0)
            nov_acc += nv.to(tl.float32)
        nov = tl.sum(nov_acc, axis=0)

        cnt = tl.load(count_ptr + slot)
        g = tl.maximum(tl.div_rn(nf, cnt.to(tl.float32) + nf), g_min)
        if HAS_GATE:  # a given gate (NaN: keep the closed form)
            given = tl.load(gate_ptr + slot)
            g = tl.where(given == given, given, g)
        k_row = k_ptr + slot * D

        if ONE_CHUNK:
            offs_d = tl.arange(0, BLOCK_D)
            d_ok = offs_d < D
            acc = tl.zeros([BLOCK_D], tl.float32)
            for t0 in range(0, n32, BLOCK_T):
                offs_t = t0 + tl.arange(0, BLOCK_T)
                t_ok = offs_t < n32
                tok = tl.load(run + offs_t, mask=t_ok, other=0)
                rows = x_ptr + (tok // N) * sxb + (tok % N) * sxn
                xt = tl.load(rows[:, None] + offs_d[None, :] * sxd, mask=t_ok[:, None] & d_ok[None, :], other=0.0)
                acc += tl.sum(xt.to(tl.float32), axis=0)
            old = tl.load(k_row + offs_d, mask=d_ok, other=0.0)
            new = old + g * (tl.div_rn(acc, nf) - old)
            norm = tl.maximum(tl.sqrt_rn(tl.sum(new * new, axis=0)), 1e-12)
            tl.store(k_row + offs_d, tl.div_rn(new, norm), mask=d_ok)
        else:
            sq = tl.zeros([BLOCK_D], tl.float32)
            for d0 in range(0, D, BLOCK_D):
                offs_d = d0 + tl.arange(0, BLOCK_D)
                d_ok = offs_d < D
                acc = tl.zeros([BLOCK_D], tl.float32)
                for t0 in range(0, n32, BLOCK_T):
                    offs_t = t0 + tl.arange(0, BLOCK_T)
                    t_ok = offs_t < n32
                    tok = tl.load(run + offs_t, mask=t_ok, other=0)
                    rows = x_ptr + (tok // N) * sxb + (tok % N) * sxn
                    xt = tl.load(rows[:, None] + offs_d[None, :] * sxd, mask=t_ok[:, None] & d_ok[None, :],
                                 other=0.0)
                    acc += tl.sum(xt.to(tl.float32), axis=0)
                old = tl.load(k_row + offs_d, mask=d_ok, other=0.0)
                new = old + g * (tl.div_rn(acc, nf) - old)
                sq += new * new
                tl.store(k_row + offs_d, new, mask=d_ok)
            norm = tl.maximum(tl.sqrt_rn(tl.sum(sq, axis=0)), 1e-12)
            tl.debug_barrier()  # the unnormalised row written above is read back by other threads
            for d0 in range(0, D, BLOCK_D):
                offs_d = d0 + tl.arange(0, BLOCK_D)
                d_ok = offs_d < D
                new = tl.load(k_row + offs_d, mask=d_ok, other=0.0)
                tl.store(k_row + offs_d, tl.div_rn(new, norm), mask=d_ok)

        tl.store(count_ptr + slot, (cnt + n).to(count_ptr.dtype.element_ty))
        imp = tl.load(imp_ptr + slot)
        tl.store(imp_ptr + slot, imp + tl.div_rn(g * nov, nf))
        tl.store(n_ptr + slot, n)


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
) -> torch.Tensor:
    """Host wrapper: grouping (stable sort by slot), allocation, grid. No argument checks.

    Args:
        x: tokens `[B, N, D]`; idx: int64 `[B, N]` (-1 or out of range: skip); k: contiguous float32
            `[B, M, D]`; count: contiguous int32/int64 `[B, M]`; importance: contiguous float32
            `[B, M]`; novelty: `[B, N]`; g_min: the gate floor.
        out: optional contiguous int64 `[B, M]` for ``n`` (zeroed, then written).
        gate: optional float32 `[B, M]`: given per-slot gates (NaN: the closed form).
        block_t, block_d: token tile and ``D`` chunk (powers of two); ``None``: chosen here.
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

    BM = B * M
    rows = torch.arange(B, device=dev, dtype=torch.int64)[:, None] * M
    ok = (idx >= 0) & (idx < M)
    flat = torch.where(ok, idx + rows, BM).reshape(-1)  # [B*N]
    sorted_flat, order = torch.sort(flat, stable=True)
    ends = torch.searchsorted(sorted_flat, sorted_flat, right=True)

    BLOCK_D = block_d or max(16, min(triton.next_power_of_2(D), 1024))
    BLOCK_T = block_t or max(1, min(16, 4096 // BLOCK_D))
    if num_warps is None:
        num_warps = 4 if BLOCK_D * BLOCK_T <= 4096 else 8
    if gate is not None:
        gate = gate.contiguous()
    _delta_merge_kernel[(B * N,)](
        x, novelty, order, sorted_flat, ends,
        k, count, importance, n, gate if gate is not None else importance,
        N, D, BM, float(g_min),
        x.stride(0), x.stride(1), x.stride(2),
        novelty.stride(0), novelty.stride(1),
        BLOCK_T=BLOCK_T,
        BLOCK_D=BLOCK_D,
        ONE_CHUNK=D <= BLOCK_D,
        HAS_GATE=gate is not None,
        num_warps=num_warps,
    )
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
    return delta_merge_fwd(x, idx, k, count, importance, novelty, g_min, out=out, gate=gate)
