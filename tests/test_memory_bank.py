"""MemoryBank: B memories updated with one kernel launch per phase give the same state as B
memories updated one at a time."""

from __future__ import annotations

import pytest
import torch
from test_memory import QUIET, D, small_layout, unit

from streamvid.kernels import triton_interpreting
from streamvid.memory import DeltaMem, load, save
from streamvid.memory.bank import FrameUpdate, MemoryBank
from streamvid.types import Encoded


def _frame(gen: torch.Generator, n_tokens: int = 12) -> Encoded:
    return Encoded(unit(n_tokens, D, gen=gen), unit(D, gen=gen))

def _assert_same(a: DeltaMem, b: DeltaMem) -> None:
    for name, t in a.buffers().items():
        assert torch.equal(t, b.buffers()[name]), name

@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_bank_update_equals_one_memory_at_a_time(backend, monkeypatch):
    if backend == "triton" and not triton_interpreting():  # these memories are on the CPU
        pytest.skip("forcing Triton on CPU tensors needs TRITON_INTERPRET=1 (see the GPU test below)")
    monkeypatch.setenv("STREAMVID_KERNELS", backend)
    frames = 40 if backend == "reference" else 6  # the Triton interpreter is slow: few frames
    layout = small_layout()
    B = 3
    bank = MemoryBank(layout, B, novelty_threshold=0.3)
    singles = [DeltaMem(layout, novelty_threshold=0.3) for _ in range(B)]
    gens = [torch.Generator().manual_seed(10 + b) for b in range(B)]
    for f in range(frames):
        # stream 1 skips every third frame (a slower camera): the bank updates a subset then
        active = [b for b in range(B) if not (b == 1 and f % 3 == 2)]
        ups = {}
        for b in active:
            enc = _frame(gens[b])
            def thumb(f=f, b=b):
                return (b"j%d-%d" % (b, f))
            ups[b] = (0.5 * f, enc, thumb)
            singles[b].update(0.5 * f, enc, QUIET, thumb=thumb)

        bank.update({b: FrameUpdate(t, enc, QUIET, thumb) for b, (t, enc, thumb) in ups.items()})
    assert bank.launches == 2 * frames
    for b in range(B):
        _assert_same(bank[b], singles[b])
    # the memories filled up and evicted: the comparison covered the claim/evict path
    assert all(bool(m.slot_used.all()) for m in singles) or backend == "triton"

def test_bank_memories_are_rows_of_stacked_tensors_and_snapshot_independently(tmp_path):
    layout = small_layout()
    bank = MemoryBank(layout, 2)
    assert bank[1].slot_k.data_ptr() == bank.stacked["slot_k"][1].data_ptr()
    assert bank.nbytes == 2 * layout.nbytes
    gen = torch.Generator().manual_seed(0)

    for f in range(5):
        bank.update({0: FrameUpdate(0.1 * f, _frame(gen), QUIET)})
    assert int(bank[1].scalars.abs().sum()) == 0  # untouched
    save(bank[0], tmp_path / "m.svm")
    loaded, _ = load(tmp_path / "m.svm")
    _assert_same(loaded, bank[0])
    other = MemoryBank(layout, 2)
    other.load(1, loaded)
    _assert_same(other[1], bank[0])

def test_bank_rejects_bad_input():
    layout = small_layout()
    bank = MemoryBank(layout, 2)
    gen = torch.Generator().manual_seed(0)

    with pytest.raises(IndexError):
        bank.update({2: FrameUpdate(0.0, _frame(gen), QUIET)})
    with pytest.raises(ValueError, match="same number of tokens"):
        bank.update({0: FrameUpdate(0.0, _frame(gen, 12), QUIET), 1: FrameUpdate(0.0, _frame(gen, 8), QUIET)})
    with pytest.raises(ValueError):
        MemoryBank(layout, 0)
    with pytest.raises(ValueError, match="layout"):
        bank.load(0, DeltaMem(small_layout(slots=8)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bank_on_a_gpu_matches_one_memory_at_a_time_on_the_cpu():
    """A bank made with ``device="cuda"`` (no index: its buffers report ``cuda:0``) updates on the
    GPU (the Triton kernels unless TRITON_INTERPRET is set) to the state of CPU memories."""
    layout = small_layout()
    B = 3
    bank = MemoryBank(layout, B, device="cuda", novelty_threshold=0.3)
    assert bank.device.index is not None and all(m.device == bank.device for m in bank.memories)
    singles = [DeltaMem(layout, novelty_threshold=0.3) for _ in range(B)]
    gens = [torch.Generator().manual_seed(10 + b) for b in range(B)]
    for f in range(20):
        ups = {}
        for b in range(B):
            enc = _frame(gens[b])
            ups[b] = (0.5 * f, Encoded(enc.tokens.cuda(), enc.global_.cuda()))
            singles[b].update(0.5 * f, enc, QUIET)
        bank.update({b: FrameUpdate(t, enc, QUIET) for b, (t, enc) in ups.items()})
    for b in range(B):
        got, want = bank[b].buffers(), singles[b].buffers()
        for name in ("slot_used", "slot_count", "seg_start", "seg_end"):
            assert torch.equal(got[name].cpu(), want[name]), name
        torch.testing.assert_close(got["slot_k"].cpu(), want["slot_k"], rtol=1e-4, atol=1e-5)
