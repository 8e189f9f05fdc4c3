"""``delta_assign``: nearest slot + similarity of each token. Call it through ``streamvid.kernels.dispatch``.

``delta_assign_ref`` (``naive.py``) is the PyTorch reference; ``delta_assign_triton`` (``triton.py``)
the Triton kernel's public function. The latter is imported lazily, on first access, so this
package works without triton and ``TRITON_INTERPRET`` may be set any time before that access.
"""

from .naive import delta_assign_ref

__all__ = ["delta_assign_ref", "delta_assign_triton"]


def __getattr__(name: str):
    if name == "delta_assign_triton":
        from .triton import delta_assign_triton

        return delta_assign_triton
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
