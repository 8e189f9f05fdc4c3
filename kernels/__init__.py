"""Δ-Mem compute kernels (installed as ``streamvid.kernels``).

Each op lives in its own folder: ``naive.py`` is the PyTorch reference that defines what the op
computes; Triton kernels sit beside it. Callers go through :mod:`streamvid.kernels.dispatch`.
This package imports only torch (and triton): it knows nothing of frames, videos or the CLI.
"""
