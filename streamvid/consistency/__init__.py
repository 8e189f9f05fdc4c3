"""Consistency of long (generated) video: ``streamvid consistency``.

- :mod:`streamvid.consistency.vbench` — VBench's subject consistency, background consistency and
  temporal flickering (the formulas are in its docstring), as streaming accumulators and one-shot
  functions, and the choice of feature extractors (DINO, CLIP image features, classic fallback);
- :mod:`streamvid.consistency.monitor` — :class:`~streamvid.consistency.monitor.ConsistencyMonitor`:
  fed frames chunk by chunk, it keeps the scores per video and per shot and flags drift (a place
  or character that looks different when the video returns to it) with Δ-Mem;
- :mod:`streamvid.consistency.report` — the HTML report; :mod:`streamvid.consistency.run` — the CLI.

The monitor is imported on demand (``from streamvid.consistency.monitor import ConsistencyMonitor``).
"""

from . import vbench
from .vbench import *  # noqa: F403 - the scores and feature choices, as listed in vbench.__all__

__all__ = list(vbench.__all__)
