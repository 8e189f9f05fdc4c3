"""The one entry point the memory calls for its hot operations.

Each public function checks its arguments (shapes, dtypes, devices) once, then runs the
implementation for those tensors. Today that is always the PyTorch reference in ``naive.py``;
the Triton kernels (a later issue) plug in through :func:`_use_triton`.
"""

from __future__ import annotations

import torch

from .delta_assign import delta_assign_ref
from .delta_merge import delta_merge_ref


def _use_triton(t: torch.Tensor) -> bool:
    """Whether the Triton kernel should handle ``t``.

    No Triton kernel exists yet, so this is always ``False``. When one lands beside a ``naive.py``,
    this becomes ``t.is_cuda and <triton importable>`` and the public function below calls the
    kernel's host wrapper instead of the reference.
    """
    return False


def _check_shape(name: str, t: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(t.shape) != shape:
        raise ValueError(f"{name}: expected shape {list(shape)}, got {list(t.shape)}")


def _check_dtype(name: str, t: torch.Tensor, ok: tuple[torch.dtype, ...]) -> None:
    if t.dtype not in ok:
        raise TypeError(f"{name}: expected dtype in {[str(d) for d in ok]}, got {t.dtype}")


def _check_device(device: torch.device, **tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if t.device != device:
            raise ValueError(f"{name} is on {t.device}, expected {device} like the other arguments")


_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def delta_assign(
    x: torch.Tensor,
    k: torch.Tensor,
    valid: torch.Tensor,
    x_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest valid slot of each token: ``x [B, N, D]``, ``k [B, M, D]``, ``valid [B, M]`` bool,
    ``x_mask [B, N]`` bool or ``None`` → ``best_idx [B, N]`` int64 (-1: none), ``best_sim [B, N]``
    and ``second_sim [B, N]`` float32 (-inf: none). See :func:`delta_assign_ref` for the definition.
    """
    if x.ndim != 3 or k.ndim != 3:
        raise ValueError(f"x and k must be [B, N, D] and [B, M, D], got {list(x.shape)} and {list(k.shape)}")
    B, N, D = x.shape
    M = k.shape[1]
    _check_shape("k", k, (B, M, D))
    _check_shape("valid", valid, (B, M))
    _check_dtype("x", x, _FLOATS)
    _check_dtype("k", k, _FLOATS)
    _check_dtype("valid", valid, (torch.bool,))
    _check_device(x.device, k=k, valid=valid)
    if x_mask is not None:
        _check_shape("x_mask", x_mask, (B, N))
        _check_dtype("x_mask", x_mask, (torch.bool,))
        _check_device(x.device, x_mask=x_mask)
    if _use_triton(x):
        raise NotImplementedError("no Triton delta_assign yet")
    return delta_assign_ref(x, k, valid, x_mask)


def delta_merge(
    x: torch.Tensor,
    idx: torch.Tensor,
    k: torch.Tensor,
    count: torch.Tensor,
    importance: torch.Tensor,
    novelty: torch.Tensor,
    g_min: float,
) -> torch.Tensor:
    """Gated grouped merge of tokens into slots, in place on ``k``, ``count`` and ``importance``.

    ``x [B, N, D]``, ``idx [B, N]`` int64 (-1: skip), ``k [B, M, D]`` float32, ``count [B, M]``
    int32/int64, ``importance [B, M]`` float32 (the three contiguous), ``novelty [B, N]`` → tokens
    merged per slot ``[B, M]`` int64. See :func:`delta_merge_ref` for the definition.
    """
    if x.ndim != 3 or k.ndim != 3:
        raise ValueError(f"x and k must be [B, N, D] and [B, M, D], got {list(x.shape)} and {list(k.shape)}")
    B, N, D = x.shape
    M = k.shape[1]
    _check_shape("k", k, (B, M, D))
    _check_shape("idx", idx, (B, N))
    _check_shape("count", count, (B, M))
    _check_shape("importance", importance, (B, M))
    _check_shape("novelty", novelty, (B, N))
    _check_dtype("x", x, _FLOATS)
    _check_dtype("k", k, (torch.float32,))
    _check_dtype("idx", idx, (torch.int64,))
    _check_dtype("count", count, (torch.int32, torch.int64))
    _check_dtype("importance", importance, (torch.float32,))
    _check_dtype("novelty", novelty, _FLOATS)
    _check_device(x.device, idx=idx, k=k, count=count, importance=importance, novelty=novelty)
    for name, t in (("k", k), ("count", count), ("importance", importance)):
        if not t.is_contiguous():
            raise ValueError(f"{name} is updated in place and must be contiguous")
    if not 0.0 <= g_min <= 1.0:
        raise ValueError(f"g_min must be in [0, 1], got {g_min}")
    if _use_triton(x):
        raise NotImplementedError("no Triton delta_merge yet")
    return delta_merge_ref(x, idx, k, count, importance, novelty, g_min)
