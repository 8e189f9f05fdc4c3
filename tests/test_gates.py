"""The optional learned merge gate: an untrained GateNet is the closed form, end to end."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from script_modules import load_script

from streamvid.kernels import dispatch
from streamvid.kernels.delta_merge import delta_merge_ref
from streamvid.memory.deltamem import DeltaMem
from streamvid.memory.layout import CHANNELS, MemoryLayout
from streamvid.models.gates import GateNet, slot_features
from streamvid.types import Encoded


def _unit(*shape, seed=0):
    v = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return v / v.norm(dim=-1, keepdim=True)


def test_untrained_gatenet_is_the_closed_form():
    g = torch.Generator().manual_seed(1)
    n = torch.randint(1, 9, (200,), generator=g)
    count = torch.randint(0, 5000, (200,), generator=g)
    count[:10] = 0
    feats = slot_features(n, count, torch.rand(200, generator=g) * n, torch.rand(200, generator=g))
    for g_min in (0.0, 0.02, 0.3):
        closed = (n.float() / (count.float() + n.float())).clamp_min(g_min)
        assert torch.equal(GateNet()(feats, g_min), closed)


def test_given_gate_in_the_reference_merge():
    x = _unit(1, 6, 8)
    k0 = _unit(1, 4, 8, seed=1).contiguous()
    idx = torch.tensor([[0, 0, 1, 2, -1, 2]])
    nov = torch.rand(1, 6)
    outs = []
    for gate in (None, torch.full((1, 4), float("nan")), torch.tensor([[0.5, float("nan"), 1.0, 0.0]])):
        k, c, imp = k0.clone(), torch.tensor([[3, 1, 2, 0]]), torch.zeros(1, 4)
        dispatch.delta_merge(x, idx, k, c, imp, nov, 0.02, gate=gate)
        outs.append(k)
    assert torch.equal(outs[0], outs[1])  # all NaN: the closed form
    assert torch.allclose(outs[2][0, 2], torch.nn.functional.normalize(x[0, [3, 5]].mean(0), dim=0))
    assert torch.equal(outs[2][0, 1], outs[0][0, 1])  # NaN entry: closed form
    assert torch.equal(outs[2][0, 3], k0[0, 3])  # not hit
    # g = 0 keeps the slot (up to normalisation)
    k, c, imp = k0.clone(), torch.tensor([[3, 1, 2, 5]]), torch.zeros(1, 4)
    delta_merge_ref(x, torch.tensor([[3, 3, 3, 3, 3, 3]]), k, c, imp, nov, 0.02, gate=torch.zeros(1, 4))
    assert torch.allclose(k, k0) and int(c[0, 3]) == 11


def _feed(mem, frames=25, seed=3):
    g = torch.Generator().manual_seed(seed)
    base = _unit(6, 16, seed=seed)
    for t in range(frames):
        x = base[torch.randint(0, 6, (10,), generator=g)] + 0.3 * torch.randn(10, 16, generator=g)
        x = x / x.norm(dim=-1, keepdim=True)
        mem.update(float(t), Encoded(x, x.mean(0) / x.mean(0).norm()), [0.0] * len(CHANNELS))
    return mem


def test_deltamem_with_untrained_gate_equals_closed_form(tmp_path):
    layout = MemoryLayout(dim=16, slots=8, segments=4, events=2, thumbs=2)
    a = _feed(DeltaMem(layout))
    b = _feed(DeltaMem(layout, gate=GateNet()))
    assert torch.equal(a.slot_used, b.slot_used) and torch.equal(a.slot_count, b.slot_count)
    assert torch.allclose(a.slot_k, b.slot_k) and torch.allclose(a.slot_importance, b.slot_importance)
    assert "gate" not in a.config()  # no gate: config unchanged
    net = GateNet()
    net.save(tmp_path / "g.safetensors")
    c = DeltaMem(layout, **{**a.config(), "gate": str(tmp_path / "g.safetensors")})
    assert c.config()["gate"] == str(tmp_path / "g.safetensors")


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    net = GateNet(hidden=8, g_min=0.05)
    torch.nn.init.normal_(net.out.weight)
    path = tmp_path / "gate.safetensors"
    net.save(path)
    back = GateNet.load(path)
    assert back.hidden == 8 and back.g_min == 0.05 and back.path == str(path)
    for (na, ta), (nb, tb) in zip(net.state_dict().items(), back.state_dict().items(), strict=True):
        assert na == nb and torch.equal(ta, tb)
    feats = slot_features(torch.tensor([1, 2, 3]), torch.tensor([0, 5, 50]), torch.ones(3), torch.zeros(3))
    assert torch.equal(net(feats), back(feats))


@pytest.fixture(scope="module")
def train_gates():
    return load_script("train_gates")


def test_training_smoke_is_deterministic(train_gates):
    args = train_gates.argparse.Namespace(
        steps=2, batch=1, lr=1e-2, hidden=4, seed=0, frames=12, tokens=4, dim=8, slots=4, episode=3,
        pool=4, sigma=0.3, queries=8, threshold=0.2, g_min=0.02, temperature=0.05,
    )
    a, b = train_gates.train(args), train_gates.train(args)
    for ta, tb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(ta, tb)
    assert a.out.weight.abs().sum() > 0  # it learned something (the zero-init head moved)
    frames, times, q, qt = train_gates.stream(123, args)
    real = train_gates.run_real(frames, times, q, qt, args, None)
    assert 0.0 <= real[1] <= 1.0


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
@pytest.mark.parametrize("grouping", ["sort", "scan"])
def test_triton_merge_takes_the_given_gate(grouping):
    from functools import partial

    from streamvid.kernels.delta_merge import delta_merge_triton  # interpreted on CPU (conftest)

    x = _unit(2, 7, 40)
    idx = torch.tensor([[0, 0, 1, 2, -1, 2, 3], [1, 1, 1, 0, 3, -1, 2]])
    nov = torch.rand(2, 7, generator=torch.Generator().manual_seed(2))
    gate = torch.tensor([[0.5, float("nan"), 1.0, 0.0], [float("nan"), 0.25, 0.7, 0.1]])
    k0 = _unit(2, 4, 40, seed=1).contiguous()
    outs = []
    for fn in (delta_merge_ref, partial(delta_merge_triton, grouping=grouping)):
        k, c, imp = k0.clone(), torch.tensor([[3, 1, 2, 0], [4, 0, 9, 2]]), torch.zeros(2, 4)
        n = fn(x, idx, k, c, imp, nov, 0.02, gate=gate)
        outs.append((k, c, imp, n))
    for a, b in zip(*outs, strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)
