"""Several streams' memories updated together: one kernel launch per phase for ``B`` streams.

A :class:`MemoryBank` holds ``B`` :class:`~streamvid.memory.DeltaMem` of one layout whose slot
tensors (``slot_k [B, M, D]``, ``slot_count``, ``slot_importance``, ``slot_used [B, M]``) are rows
of tensors it allocates once. :meth:`MemoryBank.update` writes one frame into each of any subset
of the memories:

1. each memory checks and counts its frame and extends its own timeline (``_begin``);
2. one ``delta_assign`` launch finds every token's nearest slot for all of them, ``x [B', N, D]``
   against ``slot_k[rows, :hi]`` (``hi``: the most slots any of them uses);
3. each memory claims slots for its novel tokens (``_targets``; per-token bookkeeping on the host);
4. one ``delta_merge`` launch merges all of them into the whole bank, ``[B, M, D]`` in place (the
   memories without a frame this step get no token: ``idx = -1``, so their slots are untouched).

The result is the same as calling :meth:`DeltaMem.update` on each memory in turn (tested); what
changes is the number of kernel launches, which is what costs on a GPU with small ``N``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from streamvid.kernels import dispatch
from streamvid.memory.deltamem import DeltaMem, indexed_device
from streamvid.memory.layout import MemoryLayout
from streamvid.types import Encoded

log = logging.getLogger(__name__)

STACKED = ("slot_k", "slot_count", "slot_importance", "slot_used")
"""The buffers a bank stacks: everything the two kernels read or write."""


@dataclass
class FrameUpdate:
    """One frame for one memory of a bank: the arguments of :meth:`DeltaMem.update`."""

    t: float
    enc: Encoded
    channels: Sequence[float] | torch.Tensor
    thumb: Callable[[], bytes | None] | None = None
    boundary: bool = False


class MemoryBank:
    """``n`` memories of one ``layout`` with stacked slot tensors (see the module docstring).

    ``memory_kwargs`` go to every :class:`DeltaMem` (``novelty_threshold``, ``gate``, ...); they
    share ``gate_floor`` and the learned gate, if any, by construction.
    """

    def __init__(self, layout: MemoryLayout, n: int, *, device: str | torch.device = "cpu", **memory_kwargs) -> None:
        if n < 1:
            raise ValueError(f"a bank needs at least one memory, got {n}")
        self.layout = layout
        self.device = indexed_device(device)
        specs = layout.buffers()
        self.stacked = {name: torch.zeros((n, *specs[name][0]), dtype=specs[name][1], device=self.device)
                        for name in STACKED}
        self.memories = [
            DeltaMem(layout, device=self.device, storage={name: t[b] for name, t in self.stacked.items()},
                     **memory_kwargs)
            for b in range(n)
        ]
        self.launches = 0  # kernel launches made by update() (two per call)

    def __len__(self) -> int:
        return len(self.memories)

    def __getitem__(self, b: int) -> DeltaMem:
        return self.memories[b]

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self.memories)

    def load(self, b: int, other: DeltaMem) -> None:
        """Make memory ``b`` a copy of ``other`` (e.g. a loaded snapshot): same layout and config."""
        mem = self.memories[b]
        if other.layout != self.layout:
            raise ValueError("the memory's layout differs from the bank's")
        if other.config() != mem.config():
            raise ValueError("the memory's config differs from the bank's")
        mem.load_buffers(other.buffers())

    def update(self, frames: dict[int, FrameUpdate]) -> None:
        """Write ``frames[b]`` into memory ``b`` for every ``b`` given (the others are untouched)."""
        if not frames:
            return
        rows = sorted(frames)
        if rows[0] < 0 or rows[-1] >= len(self.memories):
            raise IndexError(f"memory rows {rows} out of range for a bank of {len(self.memories)}")
        mems = [self.memories[b] for b in rows]
        begun = [m._begin(f.t, f.enc, f.channels, f.thumb, f.boundary) for m, f in
                 zip(mems, (frames[b] for b in rows))]
        ns = {x.shape[0] for _, x, _ in begun}
        if len(ns) != 1:  # different token counts: no common [B, N, D]; one memory at a time
            raise ValueError(f"frames of one bank update must have the same number of tokens, got {sorted(ns)}")
        N = ns.pop()
        D = self.layout.dim
        B = len(self.memories)

        hi = max(m.slots_in_use() for m in mems)
        index = torch.tensor(rows, device=self.device)
        x = torch.stack([x for _, x, _ in begun])  # [B', N, D]
        k, used = self.stacked["slot_k"], self.stacked["slot_used"]
        if len(rows) == B:
            k_sel, used_sel = k[:, :hi], used[:, :hi]
        else:
            k_sel, used_sel = k[index, :hi], used[index, :hi]
        best_idx, best_sim, _ = dispatch.delta_assign(x, k_sel, used_sel)

        targets, novelties = [], []
        gates = None
        for j, (b, m, (t, xb, seg_thumb)) in enumerate(zip(rows, mems, begun)):
            target, novelty = m._targets(t, xb, best_idx[j], best_sim[j], seg_thumb)
            targets.append(target)
            novelties.append(novelty)
            if m.gate is not None:
                if gates is None:
                    gates = torch.full((B, self.layout.slots), float("nan"), device=self.device)
                gates[b] = m._learned_gate(target, novelty)
        idx_sel, nov_sel = torch.stack(targets), torch.stack(novelties)
        if len(rows) == B:  # every memory has a frame: the selection is the whole bank
            x_all, idx_all, nov_all = x, idx_sel, nov_sel
        else:  # the others get no token (idx -1): their slots are left as they are
            x_all = torch.zeros((B, N, D), device=self.device).index_copy_(0, index, x)
            idx_all = torch.full((B, N), -1, dtype=torch.int64, device=self.device).index_copy_(0, index, idx_sel)
            nov_all = torch.zeros((B, N), device=self.device).index_copy_(0, index, nov_sel)
        n = dispatch.delta_merge(x_all, idx_all, self.stacked["slot_k"], self.stacked["slot_count"],
                                 self.stacked["slot_importance"], nov_all, mems[0].gate_floor, gate=gates)
        self.launches += 2
        for b, m, (t, _, _) in zip(rows, mems, begun):
            m._end(t, n[b])
