"""``delta_assign``: nearest slot + similarity of each token. Call it through ``streamvid.kernels.dispatch``."""

from .naive import delta_assign_ref

__all__ = ["delta_assign_ref"]
