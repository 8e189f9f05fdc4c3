"""The PyTorch references of the Δ-Mem kernels against plain Python loops, on awkward sizes."""

from __future__ import annotations

import math

import pytest
import torch
from kernel_inputs import assign_inputs, unit

from streamvid.kernels import dispatch
from streamvid.kernels.delta_assign import delta_assign_ref
from streamvid.kernels.delta_merge import delta_merge_ref


def test_delta_assign_ref_matches_brute_force():
    x, k, valid, x_mask = assign_inputs()
    B, N, M, D = x.shape[0], x.shape[1], k.shape[1], x.shape[2]
    idx, best, second = delta_assign_ref(x, k, valid, x_mask)
    assert idx.dtype == torch.int64 and best.dtype == second.dtype == torch.float32

    xs, ks, ok, live = x.tolist(), k.tolist(), valid.tolist(), x_mask.tolist()
    for b in range(B):
        for n in range(N):
            sims = [
                (sum(xs[b][n][d] * ks[b][m][d] for d in range(D)), m)
                for m in range(M)
                if ok[b][m] and live[b][n]
            ]
            sims.sort(key=lambda s: (-s[0], s[1]))
            want_idx = sims[0][1] if sims else -1
            want_best = sims[0][0] if sims else -math.inf
            want_second = sims[1][0] if len(sims) > 1 else -math.inf
            assert int(idx[b, n]) == want_idx
            assert float(best[b, n]) == pytest.approx(want_best, abs=1e-5)
            assert float(second[b, n]) == pytest.approx(want_second, abs=1e-5)


def test_delta_assign_ties_and_no_valid_slot():
    x = torch.tensor([[[1.0, 0.0]]])
    k = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]])
    idx, best, second = delta_assign_ref(x, k, torch.ones(1, 3, dtype=torch.bool))
    assert idx.item() == 1 and best.item() == 1.0 and second.item() == 1.0  # lowest index wins a tie
    idx, best, second = delta_assign_ref(x, k, torch.zeros(1, 3, dtype=torch.bool))
    assert idx.item() == -1 and best.item() == -math.inf and second.item() == -math.inf


def test_delta_assign_ref_on_a_cpu_picks_as_torch_max_does():
    """On a CPU the index comes from numpy's argmax: the same as ``torch.max`` along the slots,
    ties (many), NaN, masked rows and all."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(-2, 3, (3, 40, 6), generator=gen).float()  # small integers: many exact ties
    k = torch.randint(-2, 3, (3, 300, 6), generator=gen).float()
    k[1, 7, 2] = float("nan")  # a NaN slot: NaN is the maximum for every token
    valid = torch.rand(3, 300, generator=gen) > 0.2
    valid[1, 7] = True
    x_mask = torch.rand(3, 40, generator=gen) > 0.1
    idx, best, _ = delta_assign_ref(x, k, valid, x_mask)
    sim = torch.bmm(x, k.transpose(1, 2)).masked_fill(~(valid[:, None, :] & x_mask[:, :, None]), float("-inf"))
    want_best, want_idx = sim.max(dim=-1)
    want_idx = want_idx.masked_fill(want_best == float("-inf"), -1)
    assert torch.equal(idx, want_idx)
    assert torch.equal(best.nan_to_num(7.0), want_best.nan_to_num(7.0))
    assert bool(best[1][x_mask[1]].isnan().all()) and bool((idx[1][x_mask[1]] == 7).all())


def test_delta_merge_ref_matches_per_slot_loop():
    gen = torch.Generator().manual_seed(1)
    B, N, M, D, g_min = 3, 63, 17, 100, 0.05
    x = unit(B, N, D, gen=gen)
    k = unit(B, M, D, gen=gen)
    count = torch.randint(0, 50, (B, M), generator=gen)
    count[0, :3] = 0  # empty slots take the mean
    importance = torch.rand(B, M, generator=gen)
    novelty = torch.rand(B, N, generator=gen)
    idx = torch.randint(-1, M, (B, N), generator=gen)
    idx[1, 40:] = -1  # skipped tail

    want_k, want_count, want_imp = k.clone(), count.clone(), importance.clone()
    want_n = torch.zeros(B, M, dtype=torch.int64)
    for b in range(B):
        for j in range(M):
            members = [i for i in range(N) if int(idx[b, i]) == j]
            if not members:
                continue
            n = len(members)
            mean = torch.stack([x[b, i] for i in members]).sum(0) / n
            g = max(n / (int(count[b, j]) + n), g_min)
            new = k[b, j] + g * (mean - k[b, j])
            want_k[b, j] = new / new.norm()
            want_count[b, j] += n
            want_imp[b, j] += g * sum(float(novelty[b, i]) for i in members) / n
            want_n[b, j] = n

    n = delta_merge_ref(x, idx, k, count, importance, novelty, g_min)
    torch.testing.assert_close(k, want_k, rtol=1e-5, atol=1e-6)
    assert torch.equal(count, want_count)
    torch.testing.assert_close(importance, want_imp, rtol=1e-5, atol=1e-6)
    assert torch.equal(n, want_n)


def test_dispatch_checks_arguments():
    x, k = torch.zeros(1, 4, 8), torch.zeros(1, 5, 8)
    valid = torch.ones(1, 5, dtype=torch.bool)
    dispatch.delta_assign(x, k, valid)
    with pytest.raises(ValueError, match="valid"):
        dispatch.delta_assign(x, k, valid[:, :4])
    with pytest.raises(TypeError, match="valid"):
        dispatch.delta_assign(x, k, valid.int())
    with pytest.raises(ValueError, match="k"):
        dispatch.delta_assign(x, torch.zeros(1, 5, 7), valid)
    idx = torch.zeros(1, 4, dtype=torch.int64)
    count, imp, nov = torch.zeros(1, 5, dtype=torch.int64), torch.zeros(1, 5), torch.zeros(1, 4)
    dispatch.delta_merge(x, idx, k, count, imp, nov, 0.1)
    with pytest.raises(TypeError, match="idx"):
        dispatch.delta_merge(x, idx.int(), k, count, imp, nov, 0.1)
    with pytest.raises(TypeError, match="k"):
        dispatch.delta_merge(x, idx, k.double(), count, imp, nov, 0.1)
    with pytest.raises(ValueError, match="g_min"):
        dispatch.delta_merge(x, idx, k, count, imp, nov, 1.5)
