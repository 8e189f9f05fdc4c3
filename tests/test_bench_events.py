"""scripts/bench_events.py on a short stream (the lobby scene looped once and a half; a few seconds)."""

from __future__ import annotations

import json

import pytest
from script_modules import registered_script


@pytest.fixture(scope="module")
def be():
    with registered_script("bench_events") as mod:
        yield mod


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def test_match_f1_is_one_to_one_within_the_tolerance(be):
    assert be.match_f1([1.0, 1.2, 5.0], [1.1, 9.0]) == (1, 3, 2)  # 1.2 is a duplicate, 5.0 a miss
    assert be.match_f1([2.4, 4.0], [1.0, 4.0]) == (2, 2, 2)
    assert be.match_f1([1.0], [0.0, 1.2]) == (1, 1, 2)  # in time order: 0.0 takes 1.0, 1.2 finds none
    assert be.match_f1([2.5], [1.0]) == (1, 1, 1) and be.match_f1([2.6], [1.0]) == (0, 1, 1)
    assert be.f1(0, 0, 0) == 1.0 and be.f1(1, 2, 2) == 0.5


def test_stream_loops_the_lobby_and_its_ground_truth(be):
    s = be.build_stream(0.03, 2.0, (160, 90), 2024)
    assert s.n == 216 and len(s.frames) == 150 and s.unique_s == 75.0
    first = [e for e in s.events if e["t"] < 75]
    again = [e for e in s.events if e["t"] >= 75]
    assert first and [e["t"] - 75 for e in again] == [e["t"] for e in first if e["t"] + 75 < 108]
    # the fifth person is in the lobby at the scene's last frame (74.5 s) and not at its first: at
    # the loop point they vanish, an exit of the looped video that the scene alone does not have
    assert {"t": 74.5, "event": "left"} in first
    assert not any(e["t"] >= 74.5 + 75 for e in s.events)  # the stream ends before the second loop point


@pytest.mark.slow
def test_runs_and_reports(be, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert be.main(["--hours", "0.03", "--budgets", "0.25", "--markdown", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    ref, (row,) = res["reference"], res["runs"]
    assert res["stream"]["frames"] == 216 and res["stream"]["events"] > 0
    assert 0.5 <= ref["both"] <= 1.0  # the detector finds the lobby's entries and exits
    assert row["budget_mib"] == 0.25 and row["retention"] == pytest.approx(row["both"] / ref["both"])
    assert row["pinned"] + row["folded"] == ref["pinned"]  # every detection is pinned or folded
    md = capsys.readouterr().out
    assert "| detector (every event, no budget) |" in md and "| delta-mem | 0.25 MiB |" in md
