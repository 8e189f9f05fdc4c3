"""Smoke test of scripts/bench_retention.py on a tiny generated haystack (no ../shared, a few seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from script_modules import registered_script

FPS = 2.0
HOURS = 48 / FPS / 3600  # 48 frames: 24 s of stream


@pytest.fixture(scope="module")
def br():
    with registered_script("bench_retention") as mod:
        yield mod


@pytest.fixture(scope="module")
def encoder():
    from streamvid.models.classic import ClassicEncoder

    return ClassicEncoder()


@pytest.fixture(scope="module")
def bench(br, encoder):
    return br.build_bench(encoder, hours=HOURS, fps=FPS, needles=2, recall=10, size=(160, 120))


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def test_stream_layout(br, bench):
    assert bench.frames == 48 and bench.duration == pytest.approx(24.0)
    n_tok, dim = bench.tokens.shape[1:]
    assert bench.globals_.shape == (bench.tokens.shape[0], dim) and n_tok == 48
    n_q = sum(n.frames for n in bench.needles)  # --needle-queries all: every held-out frame of a needle
    assert bench.needle_queries.shape == (n_q, dim) and bench.recall_queries.shape == (10, dim)
    assert bench.needle_of == [k for k, n in enumerate(bench.needles) for _ in range(n.frames)]
    assert bench.info["needle_queries"] == n_q and bench.info["needle_query_mode"] == "all"
    unique = bench.info["unique_frames"]
    assert unique + sum(n.frames for n in bench.needles) == bench.frames  # 24 s: no loop needed
    assert bench.info["loops"] == pytest.approx(1.0)
    # each needle's frames are its own pool rows, at its own times; the haystack fills the rest in order
    fed = np.zeros(bench.frames, bool)
    for k, nd in enumerate(bench.needles):
        assert 2.0 <= nd.end - nd.start <= 4.0 and nd.frames == round((nd.end - nd.start) * FPS)
        i0 = round(nd.start * FPS)
        rows = bench.order[i0:i0 + nd.frames]
        assert (rows >= unique).all() and not fed[i0:i0 + nd.frames].any()
        fed[i0:i0 + nd.frames] = True
        if k:
            assert nd.start > bench.needles[k - 1].end  # haystack between needles
    assert (bench.order[~fed] == np.arange(unique)).all()
    # held-out recall frames sit half a sample after a haystack frame, inside the stream
    for occ in bench.recall_times:
        assert len(occ) == 1 and 0 < occ[0] < bench.duration
        assert (occ[0] * FPS) % 1 == pytest.approx(0.5)
        assert not fed[int(occ[0] * FPS)]


def test_middle_needle_queries_are_the_old_ones_and_among_all(br, bench, encoder):
    """``--needle-queries middle``: one query per needle, the held-out frame after the sample nearest
    the clip's middle (as before the option), which is also one of the ``all`` queries; the stream is
    the same."""
    mid = br.build_bench(encoder, hours=HOURS, fps=FPS, needles=2, recall=10, size=(160, 120),
                         needle_queries="middle")
    assert mid.needle_of == [0, 1] and mid.needle_queries.shape == (2, bench.tokens.shape[2])
    assert np.array_equal(mid.order, bench.order) and [n.start for n in mid.needles] == [n.start for n in bench.needles]
    first = 0
    for k, nd in enumerate(bench.needles):
        i = max(0, min(nd.frames - 2, nd.frames // 2 - 1))
        assert np.allclose(mid.needle_queries[k].numpy(), bench.needle_queries[first + i].numpy(), atol=1e-6)
        first += nd.frames
    with pytest.raises(ValueError, match="needle_queries"):
        br.build_bench(encoder, hours=HOURS, fps=FPS, needles=2, recall=10, needle_queries="some")


def test_alter_is_deterministic_and_changes_the_frame(br):
    rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    a, b = br.alter(rgb), br.alter(rgb)
    assert a.shape == rgb.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, rgb)


def test_runs_and_reports(br, bench, encoder, tmp_path):
    methods, budgets = ["delta-mem", "keep-all"], [0.25]
    res = br.run_all(bench, encoder, methods, budgets)
    runs = {(r["method"], r["budget_mib"]): r for r in res["runs"]}
    assert set(runs) == {("keep-all", None), ("delta-mem", 0.25)}
    ref, dm = runs[("keep-all", None)], runs[("delta-mem", 0.25)]
    assert res["reference"] is ref
    assert ref["needle"] == 1.0  # keep-everything finds every needle
    assert ref["needle_retention"] == 1.0 and ref["bytes_pct"] == 100.0
    for r in (ref, dm):
        assert "error" not in r
        assert 0.0 <= r["needle"] <= 1.0 and 0.0 <= r["recall"] <= 1.0
        n_q = len(bench.needle_of)
        assert len(r["needle_t"]) == n_q and len(r["recall_t"]) == 10 and len(r["needle_hits"]) == n_q
        assert [q for _, q in r["needle_by_needle"]] == [n.frames for n in bench.needles]
        assert sum(h for h, _ in r["needle_by_needle"]) == sum(r["needle_hits"])
        assert r["needle"] == pytest.approx(sum(r["needle_hits"]) / n_q)
        assert r["update_ms"] > 0 and r["search_ms"] > 0 and r["nbytes"] > 0
    assert ref["nbytes"] == 48 * (49 * 40 * 4 + 8)
    assert dm["nbytes"] <= 0.25 * 2**20
    assert dm["needle_retention"] == pytest.approx(dm["needle"])  # keep-all's is 1
    assert dm["bytes_pct"] == pytest.approx(100 * dm["nbytes"] / ref["nbytes"])

    result = {"machine": br.machine(), "load_after": "0", "command": "test", "wall_s": 1.0,
              "config": {"fps": FPS, "encoder": "classic"}, "info": bench.info, **res}
    md = br.markdown(result, methods, budgets)
    assert "Image-needle retrieval" in md and "Self-supervised recall" in md and "| delta-mem |" in md
    assert "keep-all (no budget)" in md and "Event grounding" in md
    assert "Needle hits by needle" in md and "| delta-mem @ 0.25 MiB |" in md
    assert f"queried with {len(bench.needle_of)} altered held-out frames" in md
    png = tmp_path / "r.png"
    br.plot(result, methods, budgets, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(result)  # what --json writes


def test_main_cli(br, tmp_path, capsys):
    out = tmp_path / "r.json"
    br.main(["--hours", str(HOURS), "--needles", "2", "--recall", "4", "--methods", "keep-all", "delta-mem",
             "--budgets", "0.25", "--json", str(out), "--markdown"])
    data = json.loads(out.read_text())
    assert data["config"]["haystack"] == "generated" and data["config"]["needle_source"] == "generated"
    assert data["config"]["needle_queries"] == "all"
    assert data["reference"]["needle"] == 1.0
    assert {(r["method"], r["budget_mib"]) for r in data["runs"]} == {("keep-all", None), ("delta-mem", 0.25)}
    assert "Command:" in capsys.readouterr().out


def test_goal_check_names_the_budgets_that_meet_the_goal(br):
    ref = {"method": "keep-all", "budget_mib": None, "nbytes": 100 * 2**20, "needle": 1.0, "recall": 0.8}

    def row(method, mib, needle, recall):
        return {"method": method, "budget_mib": mib, "nbytes": int(mib * 2**20), "bytes_pct": mib,
                "needle": needle, "recall": recall, "needle_retention": needle / 1.0, "recall_retention": recall / 0.8}

    runs = [row("delta-mem", 0.25, 1.0, 0.6), row("delta-mem", 0.5, 1.0, 0.79), row("delta-mem", 2, 1.0, 0.8),
            row("uniform", 0.25, 0.2, 0.7)]
    lines = br.goal_check({"runs": runs, "reference": ref}, ["delta-mem", "uniform"], [0.25, 0.5, 2])
    assert len(lines) == 4
    assert lines[0].endswith("→ met at 0.25 MiB, 0.5 MiB (goal ≥ 97 %)")
    assert "0.25 MiB (0.25 % of keep-all): 75%" in lines[2] and lines[2].endswith("→ met at 0.5 MiB (goal ≥ 97 %)")
    assert "2 MiB" not in lines[2]  # 2 % of keep-all's bytes: not a budget the goal counts
    assert lines[3] == "- recall: Δ-Mem best of all baselines at every budget — NO; beaten by uniform at 0.25 MiB (0.700 vs 0.600)"


def test_paired_counts_the_discordant_queries_and_gives_the_exact_mcnemar_p(br):
    a = [True, True, True, False, False, True]
    b = [True, False, False, False, True, True]
    assert br.paired(a, b)[:2] == (2, 1)
    assert br.paired(a, b)[2] == pytest.approx(1.0)  # 2 vs 1: a coin could do that
    assert br.paired(a, a) == (0, 0, 1.0)
    ten = [True] * 10
    only, none = br.paired(ten, [False] * 10)[:2], br.paired(ten, [False] * 10)[2]
    assert only == (10, 0) and none == pytest.approx(2 / 2**10)  # ten to none: p = 2 * 0.5**10
    assert br.paired([True] * 6 + [False], [False] * 6 + [True])[2] == pytest.approx(2 * 8 / 2**7)
    with pytest.raises(ValueError):
        br.paired([True], [True, False])


def test_pool_joins_the_runs_queries_and_the_goal_check_tests_a_loss(br):
    def run(method, mib, needle, recall, nbytes):
        return {"method": method, "budget_mib": mib, "nbytes": nbytes, "update_ms": 1.0, "search_ms": 0.5,
                "needle_hits": needle, "recall_hits": recall}

    seed0 = {"runs": [run("keep-all", None, [True, True], [True, False], 1000),
                      run("delta-mem", 0.25, [True, False], [True, False], 10),
                      run("moviechat", 0.25, [True, True], [False, False], 10)]}
    seed1 = {"runs": [run("keep-all", None, [True, False, True], [True], 2000),
                      run("delta-mem", 0.25, [False, False, True], [True], 10),
                      run("moviechat", 0.25, [True, False, True], [True], 30)]}
    pooled = br.pool([seed0, seed1])
    rows = {(r["method"], r["budget_mib"]): r for r in pooled["runs"]}
    ref, dm, mc = rows[("keep-all", None)], rows[("delta-mem", 0.25)], rows[("moviechat", 0.25)]
    assert pooled["reference"] is ref
    assert dm["needle_hits"] == [True, False, False, False, True] and dm["needle"] == pytest.approx(2 / 5)
    assert ref["needle"] == pytest.approx(4 / 5) and dm["needle_retention"] == pytest.approx(0.5)
    assert ref["recall"] == pytest.approx(2 / 3) and mc["recall_retention"] == pytest.approx(0.5)
    assert mc["nbytes"] == 20 and mc["bytes_pct"] == pytest.approx(100 * 20 / 1500)
    lines = br.goal_check(pooled, ["keep-all", "delta-mem", "moviechat"], [0.25])
    assert lines[0] == ("- needle: retention at ≤ 1 % of keep-all's bytes — 0.25 MiB (0.67 % of keep-all): 50% "
                        "(2 queries only keep-all finds, 0 only Δ-Mem, McNemar p = 0.5) → NOT met at any of them "
                        "(goal ≥ 97 %)")
    assert lines[1] == ("- needle: Δ-Mem best of all baselines at every budget — NO; beaten by moviechat at "
                        "0.25 MiB (0.800 vs 0.400; 2 queries only it finds, 0 only Δ-Mem, McNemar p = 0.5)")
    assert lines[3] == "- recall: Δ-Mem best of all baselines at every budget — yes"
    # a method missing from a run is an error row of the pool, not a row of fewer queries
    partial = br.pool([seed0, {"runs": seed1["runs"][:2]}])
    assert "error" in {(r["method"], r["budget_mib"]): r for r in partial["runs"]}[("moviechat", 0.25)]


def test_main_cli_pools_seeds(br, tmp_path, capsys):
    out = tmp_path / "r.json"
    br.main(["--hours", str(HOURS), "--needles", "2", "--recall", "4", "--methods", "keep-all", "delta-mem",
             "--budgets", "0.25", "--seeds", "0", "1", "--json", str(out), "--markdown"])
    data = json.loads(out.read_text())
    assert [s["config"]["seed"] for s in data["seeds"]] == [0, 1]
    ref = data["pooled"]["reference"]
    n_q = sum(len(s["reference"]["needle_hits"]) for s in data["seeds"])
    assert len(ref["needle_hits"]) == n_q and len(ref["recall_hits"]) == 8
    text = capsys.readouterr().out
    assert f"hits of {n_q} queries pooled over the runs" in text and "seeds 0, 1" in text
    assert "| delta-mem |" in text and "Δ-Mem's goal on the pooled queries" in text
    # without keep-all the queries are still counted (from the rows there are)
    br.main(["--hours", str(HOURS), "--needles", "2", "--recall", "4", "--methods", "delta-mem",
             "--budgets", "0.25", "--seeds", "0", "1", "--markdown"])
    assert f"hits of {n_q} queries pooled over the runs" in capsys.readouterr().out
