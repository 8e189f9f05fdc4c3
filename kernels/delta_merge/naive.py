"""PyTorch reference for ``delta_merge``: the grouped, gated running-mean merge of tokens into slots."""

from __future__ import annotations

import torch


def delta_merge_ref(
    x: torch.Tensor,
    idx: torch.Tensor,
    k: torch.Tensor,
    count: torch.Tensor,
    importance: torch.Tensor,
    novelty: torch.Tensor,
    g_min: float,
    gate: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Merge tokens into their slots in place, one gated step per slot.

    For every slot ``j`` that receives ``n_j > 0`` tokens (those with ``idx == j``):

    - ``mean_j = sum(x_i) / n_j`` (float32 grouped sum),
    - ``g_j = max(n_j / (count_j + n_j), g_min)`` — the running-mean gate, floored so that a slot
      with a long history still follows slow drift; a slot with ``count_j == 0`` takes the mean,
    - ``k_j <- normalise(k_j + g_j * (mean_j - k_j))``,
    - ``count_j <- count_j + n_j``,
    - ``importance_j <- importance_j + g_j * mean(novelty_i)``: importance grows with the size of
      the write (a slot that merely repeats a frequent pattern gains little; its frequency is
      already in ``count``).

    Slots that receive no token are left untouched. Everything is a grouped sum over the slot
    index, so a kernel can reproduce it exactly without depending on the order of the tokens.

    Args:
        x (torch.Tensor):
            tokens of shape `[B, N, D]`, L2-normalised rows.
        idx (torch.Tensor):
            int64 of shape `[B, N]`: the slot of each token, ``-1`` to skip the token.
        k (torch.Tensor):
            contiguous float32 slots of shape `[B, M, D]`, updated in place.
        count (torch.Tensor):
            contiguous integer tokens merged so far, of shape `[B, M]`, updated in place.
        importance (torch.Tensor):
            contiguous float32 of shape `[B, M]`, updated in place.
        novelty (torch.Tensor):
            of shape `[B, N]`: the novelty of each token.
        g_min (float):
            the gate floor, in ``[0, 1]``.
        gate (torch.Tensor, optional):
            float32 of shape `[B, M]`: a given gate ``g_j`` per slot (e.g. from a learned
            :class:`~streamvid.models.gates.GateNet`), used as is in place of the closed form;
            NaN entries (and ``gate=None``) use the closed form above.

    Returns:
        n (torch.Tensor):
            int64 of shape `[B, M]`: the number of tokens merged into each slot.
    """
    B, N, D = x.shape
    M = k.shape[1]
    # Flat slot of each token; skipped tokens (idx < 0) are dropped. The memory calls this every
    # frame with B = 1 on a CPU, where each small op costs microseconds, so the steps below avoid
    # ops that cannot change a bit: no row offsets when B = 1, no gathers when no token is skipped.
    group = idx.reshape(-1)  # [B*N]
    if B > 1:
        rows = torch.arange(B, device=x.device)[:, None] * M
        group = torch.where(idx >= 0, idx + rows, -1).reshape(-1)
    tokens, nov_t = x.reshape(B * N, D), novelty.reshape(-1)
    if group.numel() and int(group.min()) < 0:
        take = (group >= 0).nonzero().squeeze(1)
        group, tokens, nov_t = group[take], tokens[take], nov_t[take]
    # Tokens in slot order (stable: equal slots keep token order), novelty as one more column:
    # ``cat`` promotes to a float type that holds both exactly and ``cumsum`` runs down each column
    # on its own, so the float64 sums are those of the tokens and of the novelties taken apart.
    group, order = torch.sort(group, stable=True)
    vals = torch.cat([tokens, nov_t[:, None]], 1)[order].double()  # [T, D + 1]
    hit, n_hit = torch.unique_consecutive(group, return_counts=True)  # [H] flat slots, tokens each
    # grouped sums over sorted groups: differences of a float64 running sum at group ends
    ends = torch.cumsum(n_hit, 0)  # one past each group's last row of ``vals``
    csum = torch.cat([torch.zeros(1, D + 1, dtype=torch.float64, device=x.device), torch.cumsum(vals, 0)])
    both = (csum[ends] - csum[ends - n_hit]).float()  # [H, D + 1]
    sums, nov = both[:, :D], both[:, D]

    nf = n_hit.float()
    kf, cf = k.view(B * M, D), count.view(B * M)
    gate_h = (nf / (cf[hit].float() + nf)).clamp_min(g_min)
    if gate is not None:
        given = gate.reshape(B * M)[hit].float()
        gate_h = torch.where(torch.isnan(given), gate_h, given)
    gate = gate_h
    old = kf[hit]
    new = old + gate[:, None] * (sums / nf[:, None] - old)
    # ``Tensor.norm(dim=-1)`` is this call behind a Python wrapper
    kf[hit] = new / torch.linalg.vector_norm(new, 2, -1, True).clamp_min(1e-12)
    # ``hit`` holds each slot once, so adding at it is the read-add-write of ``a[hit] += v``
    cf.index_add_(0, hit, n_hit.to(cf.dtype))
    importance.view(B * M).index_add_(0, hit, gate * nov / nf)
    n = torch.zeros(B * M, dtype=torch.int64, device=x.device)
    n[hit] = n_hit
    return n.view(B, M)
