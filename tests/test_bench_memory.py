"""scripts/bench_memory.py's sweep and bank on tiny sizes, and its --device check."""

from __future__ import annotations

import sys

import pytest
import torch
from script_modules import load_script


@pytest.fixture(scope="module")
def bm():
    return load_script("bench_memory")


def test_sweep_and_bank_on_the_cpu(bm, one_torch_thread):
    rows = bm.sweep([16, 40], [1, 2], n=5, d=8, repeat=2)
    assert [(r["B"], r["M"]) for r in rows] == [(1, 16), (1, 40), (2, 16), (2, 40)]
    assert all(r["device"] == "cpu" and r["ms_per_frame"] > 0 for r in rows)
    table = bm.markdown(rows, [])
    assert "on cpu" in table and "| 40 |" in table
    (row,) = bm.bank([2], frames=8, n=4, d=8, budget_mib=0.02)
    assert row["B"] == 2 and row["device"] == "cpu" and row["bank_ms"] > 0 and row["single_ms"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_usage_error(bm, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_memory.py", "sweep", "--device", "cuda"])
    with pytest.raises(SystemExit) as e:
        bm.main()
    assert e.value.code == 2 and "CUDA is not available" in capsys.readouterr().err
