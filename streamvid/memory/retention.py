"""One interface for every memory the retention benchmark compares (issue 7).

A :class:`RetentionMemory` is fed one frame at a time (``update(t, enc)`` with the encoder's
``tokens [N, D]`` and ``global_ [D]``) within a byte budget fixed at creation, and answers
``search(query [D], top_k)`` with the times it believes match, best first. Δ-Mem
(:class:`DeltaMemRetention`) and the baselines (:mod:`streamvid.memory.baselines`) implement it,
so ``scripts/bench_retention.py`` swaps them freely.

Counting bytes: ``nbytes`` is what the memory holds for the video — stored vectors and their
bookkeeping (times, counts) at their dtype — the same accounting for all. Δ-Mem's is its
layout's bytes (every tier: slots, timeline, events, thumbnails); its budget is the budget given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from streamvid.types import CHANNELS, Encoded


@dataclass(frozen=True)
class Hit:
    """One answer of :meth:`RetentionMemory.search`: a time in seconds and its score (higher is better)."""

    t: float
    score: float


@runtime_checkable
class RetentionMemory(Protocol):
    name: str

    @property
    def nbytes(self) -> int:
        """Bytes held now (never above the budget, except for the keep-everything upper bound)."""
        ...

    def update(self, t: float, enc: Encoded) -> None:
        """Take one frame at time ``t`` (seconds, increasing)."""
        ...

    def search(self, query: torch.Tensor, top_k: int = 5) -> list[Hit]:
        """Times that match ``query [D]`` (L2-normalised), best first, at most ``top_k``."""
        ...


class DeltaMemRetention:
    """Δ-Mem behind the benchmark's interface: ``update`` → :meth:`DeltaMem.update` (no detector
    signals), ``search`` → the query module's attention over slots, timeline and events
    (:func:`streamvid.query.attend`), the same path a retrieval question takes."""

    name = "delta-mem"

    def __init__(self, budget_bytes: int, dim: int, *, novelty_threshold: float = 0.2, device: str = "cpu",
                 min_gap: float = 1.0, **kwargs) -> None:
        from streamvid.memory import DeltaMem, MemoryLayout

        self.mem = DeltaMem(MemoryLayout.from_budget(budget_bytes, dim), device=device,
                            novelty_threshold=novelty_threshold, **kwargs)
        self.min_gap = min_gap
        self._quiet = [0.0] * len(CHANNELS)

    @property
    def nbytes(self) -> int:
        return self.mem.nbytes

    def update(self, t: float, enc: Encoded) -> None:
        self.mem.update(t, enc, self._quiet)

    def search(self, query: torch.Tensor, top_k: int = 5) -> list[Hit]:
        from streamvid.query import attend

        return [Hit(m.t, m.score) for m in attend(self.mem, query, top_k, min_gap=self.min_gap, mark=False)]
