"""An optional learned merge gate for Δ-Mem (``DeltaMem(..., gate=GateNet)``).

The memory's closed-form gate for a slot that receives ``n`` tokens this frame is
``g0 = max(n / (count + n), g_min)`` (a floored running mean). :class:`GateNet` computes

    ``g = clamp(g0_raw + mlp(features), g_min, 1)``,   ``g0_raw = n / (count + n)``

from per-slot features (:data:`FEATURES`). The last layer of the MLP is zero-initialised, so an
untrained GateNet returns exactly the closed form (same float32 ops as the reference merge); a
slot with ``count == 0`` (just claimed) always gets ``g = 1``. Nothing in streamvid requires this
module: the memory uses the closed form unless a gate is passed. Weights are stored with
safetensors only. Trained by ``scripts/train_gates.py``.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file, save_file

__all__ = ["FEATURES", "GateNet", "slot_features"]

# per-slot features, in column order; column 0 must stay the raw closed form
FEATURES = ("closed", "log1p_count", "log1p_n", "mean_novelty", "importance")


def slot_features(
    n: torch.Tensor, count: torch.Tensor, novelty_sum: torch.Tensor, importance: torch.Tensor
) -> torch.Tensor:
    """``[H, F]`` features of ``H`` slots hit this frame.

    Args:
        n: tokens merged into each slot this frame, ``[H]`` (> 0).
        count: tokens merged before this frame, ``[H]``.
        novelty_sum: sum of the novelty of the slot's tokens this frame, ``[H]``.
        importance: the slot's importance before the merge, ``[H]``.
    """
    nf = n.float()
    cf = count.float()
    closed = nf / (cf + nf)  # the same float32 ops as delta_merge_ref
    return torch.stack(
        [closed, torch.log1p(cf), torch.log1p(nf), novelty_sum.float() / nf, importance.float()], dim=-1
    )


class GateNet(torch.nn.Module):
    """Closed-form gate plus a zero-initialised MLP residual: features ``[H, F]`` → gate ``[H]``.

    Args:
        hidden: width of the hidden layer.
        g_min: default floor (the memory passes its own ``gate_floor`` to :meth:`forward`).
    """

    def __init__(self, hidden: int = 16, g_min: float = 0.02) -> None:
        super().__init__()
        self.hidden = hidden
        self.g_min = g_min
        self.path: str | None = None  # where it was loaded from / saved to, for configs
        self.inp = torch.nn.Linear(len(FEATURES), hidden)
        self.out = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.out.weight)
        torch.nn.init.zeros_(self.out.bias)

    def forward(self, feats: torch.Tensor, g_min: float | None = None) -> torch.Tensor:
        g_min = self.g_min if g_min is None else g_min
        closed = feats[:, 0]
        resid = self.out(torch.tanh(self.inp(feats))).squeeze(-1)
        g = (closed + resid).clamp(g_min, 1.0)
        # a slot without history (count == 0 ⇔ closed == 1) takes the mean of its tokens
        return torch.where(closed >= 1.0, torch.ones_like(g), g)

    def gate(
        self,
        n: torch.Tensor,
        count: torch.Tensor,
        novelty_sum: torch.Tensor,
        importance: torch.Tensor,
        g_min: float | None = None,
    ) -> torch.Tensor:
        """Gates ``[H]`` for slots described as in :func:`slot_features`."""
        return self(slot_features(n, count, novelty_sum, importance), g_min)

    # -- files ---------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the weights (safetensors) with ``hidden``/``g_min``/``features`` as metadata."""
        tensors = {name: t.detach().cpu().contiguous() for name, t in self.state_dict().items()}
        meta = {"hidden": str(self.hidden), "g_min": repr(self.g_min), "features": json.dumps(FEATURES)}
        save_file(tensors, os.fspath(path), metadata=meta)
        self.path = os.fspath(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GateNet:
        """Read a gate written by :meth:`save` (safetensors; never pickle)."""
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="pt") as f:
            meta = f.metadata() or {}
        if json.loads(meta.get("features", "[]")) != list(FEATURES):
            raise ValueError(f"{path}: gate features {meta.get('features')} != {list(FEATURES)}")
        net = cls(hidden=int(meta["hidden"]), g_min=float(meta["g_min"]))
        net.load_state_dict(load_file(os.fspath(path)))
        net.eval()
        net.path = os.fspath(path)
        return net
