"""scripts/bench_ingest.py: its arguments, and a short run on the committed sample."""

from __future__ import annotations

import json

import pytest
from script_modules import registered_script


@pytest.fixture(scope="module")
def bi():
    with registered_script("bench_ingest") as mod:
        yield mod


def test_arguments(bi):
    a = bi.parse_args([])
    assert a.fps == 2 and a.cv_threads is None and a.torch_threads is None
    a = bi.parse_args(["--cv-threads", "4", "--torch-threads", "2", "--encoders", "classic"])
    assert a.cv_threads == 4 and a.torch_threads == 2 and a.encoders == ["classic"]
    for bad in (["--cv-threads", "0"], ["--torch-threads", "0"], ["--fps", "0"], ["--repeat", "0"]):
        with pytest.raises(SystemExit):
            bi.parse_args(bad)


def test_a_short_run_reports_what_it_set(bi, tmp_path, capsys):
    """Ten frames of the sample with classic: decode-only and ingest rows, OpenCV's threads as set by
    ``--cv-threads`` (1, as ``watch`` sets it, without it), the JSON beside the table."""
    out = tmp_path / "ingest.json"
    assert bi.main(["--videos", "samples/lobby.mp4", "--encoders", "classic", "--max-frames", "10",
                    "--cv-threads", "2", "--markdown", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "OpenCV 2 threads in ingest, where `watch` uses 1" in text and "| lobby.mp4 | classic | 10 |" in text
    data = json.loads(out.read_text())
    (row,) = data["ingest"]
    assert row["frames"] == 10 and row["cv_threads"] == 2 and data["args"]["cv_threads"] == 2
    assert bi.main(["--videos", "samples/lobby.mp4", "--encoders", "classic", "--max-frames", "10",
                    "--json", str(out)]) == 0
    assert "OpenCV 1 thread in ingest, as in `watch`" in capsys.readouterr().out
    assert json.loads(out.read_text())["ingest"][0]["cv_threads"] == 1


def test_no_detector_measures_the_encoder_and_memory_alone(bi, tmp_path, capsys):
    """``--no-detector``: the ingest runs without the event detector (no events, no detector time,
    no ``prepare`` on the encoder's thread) and the report says it is not what ``watch`` runs."""
    out = tmp_path / "ingest.json"
    assert bi.parse_args([]).no_detector is False
    assert bi.main(["--videos", "samples/lobby.mp4", "--encoders", "classic", "--max-frames", "12",
                    "--no-detector", "--markdown", "--json", str(out)]) == 0
    assert "**no event detector** (--no-detector: not what `watch` runs)" in capsys.readouterr().out
    data = json.loads(out.read_text())
    (row,) = data["ingest"]
    assert row["frames"] == 12 and row["entered"] == 0 and row["left"] == 0
    assert row["stages"]["prep"] == 0.0 and row["calls"].get("prep", 0) == 0
    assert row["calls"]["memory"] == 12 and data["args"]["no_detector"] is True
