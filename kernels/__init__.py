"""Δ-Mem compute kernels (installed as ``streamvid.kernels``).

Each op lives in its own folder: ``naive.py`` is the PyTorch reference that defines what the op
computes; Triton kernels sit beside it. Callers go through :mod:`streamvid.kernels.dispatch`.
This package imports only torch (and triton): it knows nothing of frames, videos or the CLI.
"""

import os


def triton_interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")
