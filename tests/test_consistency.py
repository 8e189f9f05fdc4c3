"""Drift and VBench scores of `streamvid consistency` on generated stories with a known drift."""

from __future__ import annotations

import json

import pytest

from streamvid import synth
from streamvid.cli import main
from streamvid.consistency import vbench
from streamvid.consistency.monitor import ConsistencyMonitor
from streamvid.models.classic import ClassicEncoder
from streamvid.types import Frame

RETURN_T = 2 * synth.STORY_SHOT  # the story returns to the lobby here (the drift, when there is one)
TOL = 1.0


def frames(scene: synth.Scene) -> list[Frame]:
    return [Frame(t, rgb, i) for i, (t, rgb) in enumerate(synth.render(scene))]


@pytest.fixture(scope="module")
def stories() -> dict:
    return {d: frames(synth.story_scene(d)) for d in (None, "subject", "scene")}


def run_monitor(fr: list[Frame], chunk: int = 25, vb: bool = False) -> ConsistencyMonitor:
    enc = ClassicEncoder()
    feats = vbench.ClassicGlobalFeatures(enc) if vb else None
    mon = ConsistencyMonitor(enc, subject=feats, background=feats, memory_mb=1.0)
    for i in range(0, len(fr), chunk):  # fed chunk by chunk, as a generator produces them
        mon.feed(fr[i : i + chunk])
    mon.finish()
    return mon


def test_control_story_has_no_drift(stories):
    rep = run_monitor(stories[None]).report()
    assert rep["drifts"] == []
    assert [s["status"] for s in rep["shots"]] == ["new", "new", "same", "new"]
    assert rep["shots"][2]["matches"] == 0
    assert [round(s["start"], 1) for s in rep["shots"]] == [0.0, 6.0, 12.0, 18.0]


@pytest.mark.parametrize("drift, colours", [("subject", ("red", "green")), ("scene", (None, "yellow"))])
def test_drift_is_flagged_at_the_return_and_not_before(stories, drift, colours):
    mon = ConsistencyMonitor(ClassicEncoder(), memory_mb=1.0)
    fr = stories[drift]
    found_before = []
    for i in range(0, len(fr), 25):
        new = mon.feed(fr[i : i + 25])
        if fr[min(i + 24, len(fr) - 1)].t < RETURN_T:
            found_before += new
    mon.finish()
    assert not found_before
    rep = mon.report()
    assert len(rep["drifts"]) == 1, rep["drifts"]
    d = rep["drifts"][0]
    assert d["event"] == "drift" and abs(d["t"] - RETURN_T) <= TOL
    assert {"t", "start", "end", "score", "event", "description", "thumbnail"} <= set(d)
    assert d["matches"]["t"] == pytest.approx(0.0, abs=TOL) and d["matches"]["shot"] == 0
    assert 0 < d["score"] <= 2
    before, after = colours
    r = d["regions"][0]
    assert r["to"] == after and (before is None or r["from"] == before)
    assert f"→ {after}" in d["description"]
    assert [s["status"] for s in rep["shots"]] == ["new", "new", "drift", "new"]
    assert mon.drifts[0].thumb and mon.drifts[0].match_thumb  # the pair for the report


def test_chunking_does_not_change_the_findings(stories):
    a = run_monitor(stories["subject"], chunk=7, vb=True).report()
    b = run_monitor(stories["subject"], chunk=240, vb=True).report()
    assert a == b


def test_vbench_scores_per_video_and_shot(stories):
    rep = run_monitor(stories[None], vb=True).report()
    sc = rep["scores"]
    for k in ("subject_consistency", "background_consistency", "temporal_flickering"):
        assert 0.0 < sc[k] <= 1.0
    for s in rep["shots"]:  # inside a shot the story barely changes: high scores
        assert s["flicker"] > 0.95 and s["subject"] > 0.95
    # the cuts lower the whole video's consistency below every shot's
    assert sc["background_consistency"] < min(s["background"] for s in rep["shots"])


def test_memory_and_place_book_are_bounded(stories):
    mon = run_monitor(stories[None])
    nbytes = mon.memory.nbytes
    mon.feed(stories["scene"])  # more shots
    assert mon.memory.nbytes == nbytes
    assert len(mon.book) <= mon.cfg.max_places


@pytest.mark.slow
def test_cli_json_and_report(tmp_path, capsys):
    video = tmp_path / "story.mp4"
    synth.write_video(str(video), synth.story_scene("subject"))
    code = main(["consistency", str(video), "--json", "--report", str(tmp_path / "rep"), "--encoder", "classic"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert [round(d["t"]) for d in doc["drifts"]] == [12]
    assert doc["drifts"][0]["thumbnail"].endswith("drift_00_after.jpg")
    assert doc["features"]["subject"]["kind"] == "classic" and "NOT VBench-comparable" in " ".join(doc["notes"])
    assert 0 < doc["scores"]["temporal_flickering"] <= 1
    rep = tmp_path / "rep"
    page = (rep / "index.html").read_text()
    assert "scores.png" in page and "drift_00_before.jpg" in page and "drift_00_after.jpg" in page
    for name in ("scores.png", "drift_00_before.jpg", "drift_00_after.jpg"):
        assert (rep / name).stat().st_size > 500
    # text output
    code = main(["consistency", str(video), "--encoder", "classic", "--no-vbench"])
    out, err = capsys.readouterr()
    assert code == 0 and "1 drift" in out and "red → green" in out and "DRIFT" in out


def test_cli_bad_input(tmp_path, capsys):
    code = main(["consistency", str(tmp_path / "missing.mp4")])
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith("streamvid: error:") and len(err.strip().splitlines()) == 1


def test_story_variants_differ_only_from_the_return():
    scenes = {d: synth.story_scene(d, width=160, height=120) for d in (None, "subject", "scene")}
    for t in (3.0, 8.0, 20.0):  # before the return and after it (the office): identical
        i = round(t * 10)
        ref = synth.render_frame(scenes[None], i)
        assert all((synth.render_frame(s, i) == ref).all() for s in scenes.values())
    i = round((RETURN_T + 1) * 10)
    ref = synth.render_frame(scenes[None], i)
    assert all(not (synth.render_frame(scenes[d], i) == ref).all() for d in ("subject", "scene"))
    with pytest.raises(ValueError):
        synth.story_scene("lighting")
    with pytest.raises(ValueError):
        synth.Scene(repaints=[(3, (0, 0, 1, 1), "red")])
