"""The one entry point the memory calls for its hot operations.

Each public function checks its arguments (shapes, dtypes, devices) once, then runs the
implementation for those tensors, chosen by :func:`_use_triton`:

- ``STREAMVID_KERNELS`` unset, empty or ``auto``: the Triton kernel when the tensors are on a CUDA
  device and triton imports (and was not put in interpreter mode), the PyTorch reference
  (``naive.py``) otherwise — the production path on a CPU;
- ``STREAMVID_KERNELS=triton``: always the Triton kernel. On CPU tensors that needs Triton's
  interpreter: ``TRITON_INTERPRET=1`` set before the kernels are first used (slow; for tests);
- ``STREAMVID_KERNELS=reference``: always the reference.

triton is imported lazily, the first time a kernel is chosen: this module (and the memory) works
on machines without it.
"""

from __future__ import annotations

import logging
import os

import torch

from streamvid.kernels import triton_interpreting

from .delta_assign import delta_assign_ref
from .delta_merge import delta_merge_ref

log = logging.getLogger(__name__)

ENV = "STREAMVID_KERNELS"
BACKENDS = ("auto", "triton", "reference")

_kernels = None  # (delta_assign_triton, delta_merge_triton) once imported
_import_error: BaseException | None = None  # why importing them failed, once it has


def backend() -> str:
    """The backend asked for by ``STREAMVID_KERNELS``: one of :data:`BACKENDS`."""
    mode = os.environ.get(ENV, "").strip().lower() or "auto"
    if mode not in BACKENDS:
        raise ValueError(f"{ENV}={os.environ.get(ENV)!r}: expected one of {list(BACKENDS)}")
    return mode


def _load_kernels():
    """Import the Triton kernels once; ``None`` (with the reason kept) when triton is unusable."""
    global _kernels, _import_error
    if _kernels is None and _import_error is None:
        try:
            from .delta_assign.triton import delta_assign_triton
            from .delta_merge.triton import delta_merge_triton
        except Exception as e:  # ImportError, or a triton that fails to initialise
            _import_error = e
            log.warning("Triton kernels unavailable (%s: %s); using the PyTorch references",
                        type(e).__name__, e)
        else:
            _kernels = (delta_assign_triton, delta_merge_triton)
    return _kernels


def _interpreted_kernels() -> bool:
    """Whether the imported kernels were defined under ``TRITON_INTERPRET=1`` (so run on a CPU)."""
    from .delta_assign import triton as mod

    return type(mod._delta_assign_kernel).__name__ == "InterpretedFunction"


def _use_triton(t: torch.Tensor) -> bool:
    """Whether the Triton kernel should handle ``t`` (see the module docstring for the rules).

    Raises:
        RuntimeError: ``STREAMVID_KERNELS=triton`` but triton cannot be imported, or ``t`` is on the
            CPU and the kernels are not (or cannot be) interpreted.
    """
    mode = backend()
    if mode == "reference":
        return False
    if mode == "auto":  # kernels defined under TRITON_INTERPRET only run when asked for explicitly
        return t.is_cuda and _load_kernels() is not None and not _interpreted_kernels()
    # forced
    if not t.is_cuda and not triton_interpreting():
        raise RuntimeError(
            f"{ENV}=triton with tensors on {t.device} needs Triton's CPU interpreter: set TRITON_INTERPRET=1 "
            "in the environment before the kernels are first used (slow; meant for tests), "
            f"or use {ENV}=reference / leave it unset"
        )
    if _load_kernels() is None:
        raise RuntimeError(f"{ENV}=triton but the Triton kernels cannot be imported: {_import_error!r}")
    if not t.is_cuda and not _interpreted_kernels():
        raise RuntimeError(
            f"{ENV}=triton with tensors on {t.device}: the Triton kernels were already defined for a GPU "
            "(TRITON_INTERPRET=1 was set after they were imported); set it before the first use"
        )
    return True


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
        return _kernels[0](x, k, valid, x_mask)
    return delta_assign_ref(x, k, valid, x_mask)


def delta_merge(
    x: torch.Tensor,
    idx: torch.Tensor,
    k: torch.Tensor,
    count: torch.Tensor,
    importance: torch.Tensor,
    novelty: torch.Tensor,
    g_min: float,
    gate: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gated grouped merge of tokens into slots, in place on ``k``, ``count`` and ``importance``.

    ``x [B, N, D]``, ``idx [B, N]`` int64 (-1: skip), ``k [B, M, D]`` float32, ``count [B, M]``
    int32/int64, ``importance [B, M]`` float32 (the three contiguous), ``novelty [B, N]`` → tokens
    merged per slot ``[B, M]`` int64. ``gate [B, M]`` float32 or ``None``: a given per-slot gate
    (NaN: the closed form), e.g. from a learned gate. See :func:`delta_merge_ref` for the definition.
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
    if gate is not None:
        _check_shape("gate", gate, (B, M))
        _check_dtype("gate", gate, (torch.float32,))
        _check_device(x.device, gate=gate)
    if _use_triton(x):
        if gate is None:
            return _kernels[1](x, idx, k, count, importance, novelty, g_min)
        return _kernels[1](x, idx, k, count, importance, novelty, g_min, gate=gate)
    return delta_merge_ref(x, idx, k, count, importance, novelty, g_min, gate=gate)
