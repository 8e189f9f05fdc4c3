"""``delta_merge``: grouped gated merge of tokens into slots. Call it through ``streamvid.kernels.dispatch``."""

from .naive import delta_merge_ref

__all__ = ["delta_merge_ref"]
