"""scripts/bench_stages.py on a few seconds of a generated lobby: a table of every stage's CPU."""

from __future__ import annotations

from script_modules import load_script

from streamvid import synth


def _load():
    return load_script("bench_stages")


def test_prints_the_cpu_of_every_stage(tmp_path, capsys, one_torch_thread):
    video = tmp_path / "walk.mp4"
    walker = synth.Figure(1, "red", "blue", [(0.5, -0.15, 0.85), (5.0, 1.15, 0.85)], height=0.5)
    scene = synth.Scene(320, 240, 10, 6.0, 3, ["lobby"], figures=[walker])
    synth.write_video(video, scene)
    assert _load().main([str(video), "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    assert "12 frames" in out and "best of 2 runs" in out
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| stage") and "---" not in line}
    for stage in ("encoder", "detector", "memory update", "pins", "foreground", "track", "scene_checks"):
        assert float(rows[stage]) >= 0.0, stage
    assert float(rows["encoder"]) > 0 and float(rows["detector"]) > 0 and float(rows["memory update"]) > 0
    total = float(rows["**all**"].strip("*"))
    parts = sum(float(rows[s]) for s in ("encoder", "detector", "memory update", "pins"))
    assert parts <= total + 0.05  # the stages are parts of the whole
    assert _load().main([str(video), "--start", "1", "--end", "3", "--repeat", "1"]) == 0
    assert "5 frames" in capsys.readouterr().out  # 1.0, 1.5, ... 3.0 s


def test_a_missing_video_is_a_one_line_error(tmp_path, capsys):
    assert _load().main([str(tmp_path / "nowhere.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench_stages: ") and "nowhere.mp4" in err and "\n" not in err
