"""``delta_merge``: grouped gated merge of tokens into slots. Call it through ``streamvid.kernels.dispatch``.

``delta_merge_ref`` (``naive.py``) is the PyTorch reference; ``delta_merge_triton`` (``triton.py``)
the Triton kernel's public function. The latter is imported lazily, on first access, so this
package works without triton and ``TRITON_INTERPRET`` may be set any time before that access.
"""

from .naive import delta_merge_ref

__all__ = ["delta_merge_ref", "delta_merge_triton"]


def __getattr__(name: str):
    if name == "delta_merge_triton":
        from .triton import delta_merge_triton

        return delta_merge_triton
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
