"""Triton ``delta_assign``: fused similarity + running top-2 over slot tiles.

Layout (as in flash-linear-attention): :func:`delta_assign_ref` in ``naive.py`` defines the op;
here are the kernels, the host wrapper :func:`delta_assign_fwd` (allocation, tile sizes, grid) and
the public function :func:`delta_assign_triton` (argument checks).

Tile strategy. One program owns ``BLOCK_N`` tokens of one stream and walks its share of the slots
in tiles of ``BLOCK_M``; for each tile it accumulates ``x_tile @ k_tile^T`` over ``D`` in chunks of
``BLOCK_D`` (float32 accumulator; ``D`` need not be a power of two), masks invalid slots and
tokens to ``-inf`` and folds the tile into a running (best, index, second) kept in registers. The
``[N, M]`` similarities exist only one ``[BLOCK_N, BLOCK_M]`` tile at a time, in registers.

Grid ``(cdiv(N, BLOCK_N), B, S)``. When ``B * cdiv(N, BLOCK_N)`` programs cannot fill the GPU
(one stream, a few hundred tokens, thousands of slots), the slots are split into ``S`` contiguous
ranges; each program writes a partial top-2 to a small ``[S, B, N]`` scratch and a second kernel
folds the ``S`` partials in slot order. Both folds keep the lowest index on ties, so the result does
not depend on ``S`` or the tile sizes, except for float32 rounding of the dot products.

Precision: products are accumulated in float32. float16/bfloat16 pairs go to the tensor cores as
they are (their products are exact in float32); when either side is float32 both are taken as
float32 and multiplied with ``input_precision="tf32x3"`` on NVIDIA GPUs (about float32 accuracy on
the tensor cores) or ``"ieee"`` elsewhere.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from streamvid.kernels import triton_interpreting

__all__ = ["delta_assign_triton", "delta_assign_fwd"]


@triton.jit
def _top2_fold(sim, cols, b1, i1, b2):
    """Fold a ``[BLOCK_N, BLOCK_M]`` tile of similarities (slot indices ``cols [BLOCK_M]``, all above
    the indices already seen) into the running ``best / index / second`` of each row."""
    m1 = tl.max(sim, axis=1)
    # the lowest index reaching the tile maximum
    j1 = tl.min(tl.where(sim == m1[:, None], cols[None, :], 2147483647), axis=1)
    # tile second: everything but that one column (a tie elsewhere gives m2 == m1)
    m2 = tl.max(tl.where(cols[None, :] == j1[:, None], float("-inf"), sim), axis=1)
    upd = m1 > b1  # strictly greater: on ties the earlier (lower) index stays
    b2 = tl.where(upd, tl.maximum(b1, m2), tl.maximum(b2, m1))
    i1 = tl.where(upd, j1, i1)
    b1 = tl.where(upd, m1, b1)
    return b1, i1, b2


@triton.jit
def _delta_assign_kernel(
    x_ptr, k_ptr, valid_ptr, xmask_ptr,
    best_ptr, idx_ptr, second_ptr,
    N, M, D, m_per_split,
    sxb, sxn, sxd,
    skb, skm, skd,
    svb, svm,
    smb, smn,
    sos, sob,
    HAS_XMASK: tl.constexpr,
    FINAL: tl.constexpr,
    F32_DOT: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Running top-2 of ``BLOCK_N`` tokens over the slots ``[s * m_per_split, (s+1) * m_per_split)``.

    ``FINAL``: write ``best_idx`` (-1 where nothing was found) / ``best_sim`` / ``second_sim`` of
    shape ``[B, N]``; otherwise write the partial (best, index, second) to ``[S, B, N]`` scratch.
    """
    pid_n = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    pid_s = tl.program_id(2)

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < N
    live = n_ok
    if HAS_XMASK:
        xm = tl.load(xmask_ptr + pid_b * smb + offs_n * smn, mask=n_ok, other=0)
        live = live & (xm != 0)
    x_rows = x_ptr + pid_b * sxb + offs_n.to(tl.int64)[:, None] * sxn

    m_lo = pid_s * m_per_split
    m_hi = tl.minimum(m_lo + m_per_split, M)

    b1 = tl.full([BLOCK_N], float("-inf"), tl.float32)
    b2 = tl.full([BLOCK_N], float("-inf"), tl.float32)
    i1 = tl.zeros([BLOCK_N], tl.int32)
    for m0 in range(m_lo, m_hi, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        m_ok = offs_m < m_hi
        k_rows = k_ptr + pid_b * skb + offs_m.to(tl.int64)[:, None] * skm
        acc = tl.zeros([BLOCK_N, BLOCK_M], tl.float32)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            d_ok = offs_d < D
            xt = tl.load(x_rows + offs_d[None, :] * sxd, mask=n_ok[:, None] & d_ok[None, :], other=0.0)
            kt = tl.load(k_rows + offs_d[None, :] * skd, mask=m_ok[:, None] & d_ok[None, :], other=0.0)
            if F32_DOT:
                acc = tl.dot(xt.to(tl.float32), tl.trans(kt.to(tl.float32)), acc, input_precision=PRECISION)
            else:
                acc = tl.dot(xt, tl.trans(kt), acc)
        v = tl.load(valid_ptr + pid_b * svb + offs_m * svm, mask=m_ok, other=0)
        keep = live[:, None] & (v != 0)[None, :]
        sim = tl.where(keep, acc, float("-inf"))
        b1, i1, b2 = _top2_fold(sim, offs_m, b1, i1, b2)

    out = pid_s * sos + pid_b * sob + offs_n
    if FINAL:
        tl.store(idx_ptr + out, tl.where(b1 == float("-inf"), -1, i1).to(tl.int64), mask=n_ok)
    else:
        tl.store(idx_ptr + out, i1.to(tl.int64), mask=n_ok)
    tl.store(best_ptr + out, b1, mask=n_ok)
    tl.store(second_ptr + out, b2, mask=n_ok)


@triton.jit
def _delta_assign_combine_kernel(
    pbest_ptr, pidx_ptr, psecond_ptr,
    best_ptr, idx_ptr, second_ptr,
    N, S,
    sps, spb,
    BLOCK_N: tl.constexpr,
):
    """Fold ``S`` partial top-2 ``[S, B, N]`` (slot ranges in ascending order) into ``[B, N]``."""
    pid_n = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < N
    b1 = tl.full([BLOCK_N], float("-inf"), tl.float32)
    b2 = tl.full([BLOCK_N], float("-inf"), tl.float32)
    i1 = tl.zeros([BLOCK_N], tl.int64)
    for s in range(0, S):
        p = s * sps + pid_b * spb + offs_n
        m1 = tl.load(pbest_ptr + p, mask=n_ok, other=float("-inf"))
        j1 = tl.load(pidx_ptr + p, mask=n_ok, other=0)
        m2 = tl.load(psecond_ptr + p, mask=n_ok, other=float("-inf"))
        upd = m1 > b1
        b2 = tl.where(upd, tl.maximum(b1, m2), tl.maximum(b2, m1))
        i1 = tl.where(upd, j1, i1)
        b1 = tl.where(upd, m1, b1)
    out = pid_b * N + offs_n
    tl.store(idx_ptr + out, tl.where(b1 == float("-inf"), -1, i1), mask=n_ok)
    tl.store(best_ptr + out, b1, mask=n_ok)
    tl.store(second_ptr + out, b2, mask=n_ok)


# ------------------------------------------------------------------------------------ host side


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(int(n), 1))))


def delta_assign_fwd(
    x: torch.Tensor,
    k: torch.Tensor,
    valid: torch.Tensor,
    x_mask: torch.Tensor | None = None,
    *,
    out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    block_n: int | None = None,
    block_m: int | None = None,
    block_d: int | None = None,
    splits: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Host wrapper: allocation, tile sizes, grid. No argument checks (see :func:`delta_assign_triton`).

    Args:
        x: tokens `[B, N, D]`; k: slots `[B, M, D]`; valid: bool `[B, M]`; x_mask: bool `[B, N]` or None.
        out: optional ``(best_idx [B, N] int64, best_sim [B, N] f32, second_sim [B, N] f32)``,
            contiguous, written entirely (e.g. static buffers for CUDA graphs).
        block_n, block_m, block_d: tile sizes (powers of two, at least 16); ``None``: chosen here.
        splits: number of slot ranges ``S`` (``None``: enough programs to fill the GPU).
    Returns:
        ``best_idx [B, N]`` int64, ``best_sim [B, N]`` float32, ``second_sim [B, N]`` float32.
    """
    B, N, D = x.shape
    M = k.shape[1]
    dev = x.device
    if out is None:
        best_idx = torch.empty(B, N, dtype=torch.int64, device=dev)
        best_sim = torch.empty(B, N, dtype=torch.float32, device=dev)
        second_sim = torch.empty(B, N, dtype=torch.float32, device=dev)
    else:
        best_idx, best_sim, second_sim = out
    if B * N == 0:
        return best_idx, best_sim, second_sim
    if M == 0:  # no slots at all
        best_idx.fill_(-1)
        best_sim.fill_(float("-inf"))
        second_sim.fill_(float("-inf"))
        return best_idx, best_sim, second_sim

    interp = triton_interpreting()
    if interp and (x.dtype == torch.bfloat16 or k.dtype == torch.bfloat16):
        # numpy has no bfloat16; widening is exact and the products are float32 anyway
        x, k = x.float(), k.float()
    f32_dot = x.dtype != k.dtype or x.dtype == torch.float32
    precision = "tf32x3" if (x.is_cuda and torch.version.hip is None) else "ieee"

    # Defaults from ptxas register counts for sm_80/sm_90 (no spills; fp16 128x64x64 with 8 warps:
    # 126 registers, 2 CTAs/SM; float32 with tf32x3 64x64x32 with 4 warps: 166 registers, 3 CTAs/SM).
    # The interpreter gets small tiles: it is slow and the test sizes are tiny.
    BLOCK_N = block_n or _pow2(N, 16, (64 if f32_dot else 128) if x.is_cuda else 32)
    BLOCK_M = block_m or 64
    BLOCK_D = block_d or _pow2(D, 16, 32 if f32_dot else 64)
    n_tiles = triton.cdiv(N, BLOCK_N)
    m_tiles = triton.cdiv(M, BLOCK_M)
    if splits is None:
        splits = 1
        if x.is_cuda:
            target = 2 * _sm_count(x.device.index if x.device.index is not None else torch.cuda.current_device())
            # at least two slot tiles per program so the loop amortises its setup
            splits = max(1, min(triton.cdiv(target, B * n_tiles), m_tiles // 2))
    splits = max(1, min(int(splits), m_tiles))
    m_per_split = triton.cdiv(m_tiles, splits) * BLOCK_M
    S = triton.cdiv(M, m_per_split)
    if num_warps is None:
        num_warps = 8 if BLOCK_N * BLOCK_M >= 8192 else 4
    if num_stages is None:
        num_stages = 3

    valid_u8 = valid.view(torch.uint8)
    xm = x_mask.view(torch.uint8) if x_mask is not None else valid_u8  # dummy pointer when absent
    final = S == 1
    if final:
        p_best, p_idx, p_second = best_sim, best_idx, second_sim
        sos, sob = 0, N
    else:
        p_best = torch.empty(S, B, N, dtype=torch.float32, device=dev)
        p_idx = torch.empty(S, B, N, dtype=torch.int64, device=dev)
        p_second = torch.empty(S, B, N, dtype=torch.float32, device=dev)
        sos, sob = B * N, N
    _delta_assign_kernel[(n_tiles, B, S)](
        x, k, valid_u8, xm,
        p_best, p_idx, p_second,
        N, M, D, m_per_split,
        x.stride(0), x.stride(1), x.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        valid_u8.stride(0), valid_u8.stride(1),
        xm.stride(0), xm.stride(1),
        sos, sob,
        HAS_XMASK=x_mask is not None,
        FINAL=final,
        F32_DOT=f32_dot,
        PRECISION=precision,
        BLOCK_N=BLOCK_N,
        BLOCK_M=BLOCK_M,
        BLOCK_D=BLOCK_D,
        num_warps=num_warps,
        num_stages=num_stages,
    )
    if not final:
        CB = _pow2(N, 16, 256)
        _delta_assign_combine_kernel[(triton.cdiv(N, CB), B)](
            p_best, p_idx, p_second,
            best_sim, best_idx, second_sim,
            N, S,
            B * N, N,
            BLOCK_N=CB,
            num_warps=4,
        )
    return best_idx, best_sim, second_sim


_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def delta_assign_triton(
    x: torch.Tensor,
    k: torch.Tensor,
    valid: torch.Tensor,
    x_mask: torch.Tensor | None = None,
    *,
    out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Nearest valid slot (cosine) of each token with the best and second-best similarity, on Triton.

    Computes exactly what :func:`~streamvid.kernels.delta_assign.delta_assign_ref` defines (lowest
    index on ties; ``-1`` / ``-inf`` where nothing is found) without materialising the
    `[B, N, M]` similarities.

    Args:
        x (torch.Tensor): tokens of shape `[B, N, D]`, float32/float16/bfloat16, L2-normalised rows.
        k (torch.Tensor): slots of shape `[B, M, D]`, float32/float16/bfloat16.
        valid (torch.Tensor): bool `[B, M]`: the slots that may be chosen.
        x_mask (torch.Tensor | None): bool `[B, N]`: the tokens to assign (``None``: all).
        out: optional contiguous output tensors ``(best_idx, best_sim, second_sim)`` to write into.

    Returns:
        best_idx (torch.Tensor): int64 `[B, N]`.
        best_sim (torch.Tensor): float32 `[B, N]`.
        second_sim (torch.Tensor): float32 `[B, N]`.
    """
    if x.ndim != 3 or k.ndim != 3:
        raise ValueError(f"x and k must be [B, N, D] and [B, M, D], got {list(x.shape)} and {list(k.shape)}")
    B, N, D = x.shape
    M = k.shape[1]
    if tuple(k.shape) != (B, M, D):
        raise ValueError(f"k: expected shape {[B, M, D]}, got {list(k.shape)}")
    if x.dtype not in _FLOATS or k.dtype not in _FLOATS:
        raise TypeError(f"x and k must be float32/float16/bfloat16, got {x.dtype} and {k.dtype}")
    masks = {"valid": (valid, (B, M))}
    if x_mask is not None:
        masks["x_mask"] = (x_mask, (B, N))
    for name, (t, shape) in masks.items():
        if tuple(t.shape) != shape:
            raise ValueError(f"{name}: expected shape {list(shape)}, got {list(t.shape)}")
        if t.dtype != torch.bool:
            raise TypeError(f"{name}: expected torch.bool, got {t.dtype}")
    tensors = {"k": k, "valid": valid} | ({"x_mask": x_mask} if x_mask is not None else {})
    for name, t in tensors.items():
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device}, expected {x.device} like x")
    if out is not None:
        for name, t, dt in zip(("best_idx", "best_sim", "second_sim"), out,
                               (torch.int64, torch.float32, torch.float32)):
            if tuple(t.shape) != (B, N) or t.dtype != dt or not t.is_contiguous() or t.device != x.device:
                raise ValueError(f"out {name}: expected a contiguous {dt} [{B}, {N}] tensor on {x.device}")
    return delta_assign_fwd(x, k, valid, x_mask, out=out)
