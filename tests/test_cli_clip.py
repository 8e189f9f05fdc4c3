"""The CLIP path through the real CLI: `watch --encoder clip` → `--save` → `ask`, end to end.

A tiny randomly initialised open_clip model (tests/tiny_clip.py) and its checkpoint, written by the
tests; synthetic videos from :mod:`streamvid.synth`. No network, no downloaded weights.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from streamvid import synth
from streamvid.cli import main
from streamvid.memory.snapshot import is_snapshot

try:
    from .tiny_clip import write_tiny_config, write_tiny_weights
except ImportError:  # tests/ is not a package: pytest puts this folder on sys.path
    from tiny_clip import write_tiny_config, write_tiny_weights

QUESTIONS = ["who entered?", "a red shirt"]
DURATION, T_IN, T_OUT = 8.0, 1.0, 6.0
MOMENT_KEYS = {"t", "start", "end", "score", "event", "description", "thumbnail"}
EPS = 1e-3


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def run_cli_captured(*args) -> tuple[int, str, str]:
    """``run_cli`` for module-scoped fixtures, where capsys is not available."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, out: str, err: str) -> str:
    assert code == 2, err
    # stdout: nothing, or with --json one JSON document saying the same
    assert out == "" or json.loads(out) == {"error": err.strip()[len("streamvid: error: "):], "exit_code": 2}
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("streamvid: error:"), err
    assert "Traceback" not in err
    return err


@pytest.fixture(autouse=True)
def empty_caches(monkeypatch, tmp_path_factory):
    """No cached CLIP weights anywhere: HOME (open_clip's ~/.cache/clip) and the HF hub cache → tmp."""
    import huggingface_hub.constants as hf_constants

    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(home / "hf_hub"))
    return home


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The tiny model config and checkpoint, a query image and the videos, in one folder."""
    d = tmp_path_factory.mktemp("clipcli")
    cfg = write_tiny_config(d)
    write_tiny_weights(d / "tiny.safetensors", cfg, seed=1)
    scene = synth.crossing_scene(width=320, height=240, duration=DURATION, t_in=T_IN, t_out=T_OUT)
    synth.write_video(d / "crossing.mp4", scene)
    cv2.imwrite(str(d / "query.png"), cv2.cvtColor(synth.render_frame(scene, 35), cv2.COLOR_RGB2BGR))
    short = synth.crossing_scene(width=320, height=240, duration=3.0, t_in=0.5, t_out=2.5, top="green")
    synth.write_video(d / "short.mp4", short)
    return d


@pytest.fixture(scope="module")
def live(work, tmp_path_factory):
    """One `watch --encoder clip` run, shared by the tests that compare with it.

    It runs inside ``work`` with relative --model/--weights/video paths, so that the later `ask`
    runs (from elsewhere) check that the snapshot records paths that still resolve.
    """
    out_dir = tmp_path_factory.mktemp("live")
    mem = out_dir / "mem.safetensors"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        t0 = time.perf_counter()
        code, out, err = run_cli_captured(
            "watch", "crossing.mp4", "--encoder", "clip", "--model", "tiny_clip.json",
            "--weights", "tiny.safetensors", "--device", "cpu",
            "--ask", QUESTIONS[0], "--ask", QUESTIONS[1], "--ask-image", work / "query.png",
            "--json", "--out", out_dir, "--save", mem)
        seconds = time.perf_counter() - t0
    assert code == 0, err
    return {"doc": json.loads(out), "err": err, "mem": mem, "out": out_dir, "seconds": seconds}


def same_moments(a: list[dict], b: list[dict]) -> None:
    """Equal moments; thumbnails may sit in different --out folders but must hold the same image."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k != "thumbnail"} == {k: v for k, v in y.items() if k != "thumbnail"}
        assert (x["thumbnail"] is None) == (y["thumbnail"] is None)
        if x["thumbnail"] is not None:
            assert Path(x["thumbnail"]).read_bytes() == Path(y["thumbnail"]).read_bytes()


def same_answers(a: list[dict], b: list[dict]) -> None:
    assert [(x["question"], x["kind"], x["intent"], x["answer"]) for x in a] == \
        [(y["question"], y["kind"], y["intent"], y["answer"]) for y in b]
    for x, y in zip(a, b, strict=True):
        same_moments(x["moments"], y["moments"])


# -- 1. watch --------------------------------------------------------------------------------------


def test_watch_clip_json(live, work):
    doc = live["doc"]
    assert live["err"] == ""  # nothing on stderr: no note, no warning
    assert set(doc) >= {"video", "encoder", "memory", "answers", "warnings"}
    assert doc["warnings"] == []

    video = doc["video"]
    assert video["path"] == "crossing.mp4"
    assert video["duration"] == pytest.approx(DURATION, abs=0.2)
    assert video["fps"] == pytest.approx(10.0)
    duration = video["duration"]

    enc = doc["encoder"]
    assert enc["name"] == "clip"
    assert (enc["dim"], enc["tokens_per_frame"]) == (16, 16)
    # recorded absolute, so that `ask` finds them from any directory
    assert enc["weights"] == str((work / "tiny.safetensors").resolve())
    assert enc["model"] == str((work / "tiny_clip.json").resolve())

    memory = doc["memory"]
    assert isinstance(memory["bytes"], int) and isinstance(memory["slots"], int) and memory["slots"] > 0
    assert 0 < memory["bytes"] <= memory["budget_bytes"] == 4 * 2**20
    assert memory["dim"] == 16 and memory["frames_seen"] > 0

    answers = doc["answers"]
    assert [a["question"] for a in answers] == [*QUESTIONS, str(work / "query.png")]
    assert [a["kind"] for a in answers] == ["text", "text", "image"]
    for a in answers:
        assert isinstance(a["answer"], str) and a["answer"]
        for m in a["moments"]:
            assert set(m) == MOMENT_KEYS
            assert -EPS <= m["start"] <= m["t"] <= m["end"] + EPS, m
            assert m["end"] <= duration + EPS, m
            assert isinstance(m["score"], float) and isinstance(m["description"], str)

    entered, shirt, image = answers
    assert entered["intent"] == "entered"
    entries = [m for m in entered["moments"] if m["event"] == "entered"]
    assert entries, entered
    assert any(T_IN - 0.6 <= m["t"] <= T_OUT for m in entries), entries
    assert all(m["description"].startswith("person") for m in entries)

    assert shirt["intent"] == "retrieval"  # CLIP embeds an open question
    assert 1 <= len(shirt["moments"]) <= 5
    scores = [m["score"] for m in shirt["moments"]]
    assert scores == sorted(scores, reverse=True)

    assert image["intent"] == "image" and image["moments"]
    assert all(m["event"] == "match" for m in image["moments"])

    thumbs = [m["thumbnail"] for a in answers for m in a["moments"] if m["thumbnail"] is not None]
    assert thumbs, "no moment has a thumbnail"
    for path in thumbs:
        p = Path(path)
        assert p.is_file() and p.read_bytes()[:2] == b"\xff\xd8", path  # a JPEG
        assert live["out"] in p.parents

    assert is_snapshot(live["mem"])


# -- 2. ask from the saved memory ----------------------------------------------------------------


def test_ask_equals_live(live, work, capsys, tmp_path):
    code, out, err = run_cli(capsys, "ask", live["mem"], *QUESTIONS, "--image", work / "query.png",
                             "--json", "--out", tmp_path / "ask")
    assert code == 0, err
    assert err == ""
    doc = json.loads(out)
    assert doc["encoder"] == live["doc"]["encoder"]
    assert doc["video"]["path"] == str((work / "crossing.mp4").resolve())
    assert doc["video"]["duration"] == live["doc"]["video"]["duration"]
    assert doc["memory"]["bytes"] == live["doc"]["memory"]["bytes"]
    same_answers(doc["answers"], live["doc"]["answers"])

    # an explicit --weights (the memory names its model) changes nothing
    code, out, err = run_cli(capsys, "ask", live["mem"], QUESTIONS[1], "--json", "--out", tmp_path / "ask2",
                             "--weights", work / "tiny.safetensors")
    assert code == 0, err
    same_answers(json.loads(out)["answers"], live["doc"]["answers"][1:2])


def test_ask_without_the_weights_file(live, work, capsys, tmp_path):
    """Event questions need no encoder; retrieval then fails in one line, or works with --weights."""
    weights = work / "tiny.safetensors"
    moved = tmp_path / "moved.safetensors"
    os.replace(weights, moved)
    try:
        code, out, err = run_cli(capsys, "ask", live["mem"], QUESTIONS[0], "--json", "--out", tmp_path / "a")
        assert code == 0, err
        same_answers(json.loads(out)["answers"], live["doc"]["answers"][:1])

        for query in ([QUESTIONS[1]], ["--image", work / "query.png"]):
            err = assert_one_line_error(*run_cli(capsys, "ask", live["mem"], *query, "--json",
                                                 "--out", tmp_path / "b"))
            assert "clip" in err and "not found" in err and str(weights.resolve()) in err

        code, out, err = run_cli(capsys, "ask", live["mem"], QUESTIONS[1], "--weights", moved, "--json",
                                 "--out", tmp_path / "c")
        assert code == 0, err
        same_answers(json.loads(out)["answers"], live["doc"]["answers"][1:2])
    finally:
        os.replace(moved, weights)


# -- 3. auto falls back to classic ---------------------------------------------------------------


def test_auto_without_cached_weights_falls_back_to_classic(work, capsys, tmp_path):
    t0 = time.perf_counter()
    code, out, err = run_cli(capsys, "watch", work / "short.mp4", "--encoder", "auto", "--ask", QUESTIONS[0],
                             "--json", "--out", tmp_path)
    assert time.perf_counter() - t0 < 15  # offline: no waiting on the network
    assert code == 0, err
    assert err.count("\n") == 1 and err.startswith("streamvid: ") and "CLIP" in err, err
    assert "classic" in err and "--weights" in err
    doc = json.loads(out)
    assert doc["encoder"]["name"] == "classic"
    assert doc["answers"][0]["intent"] == "entered"


# -- 4. bad weights ------------------------------------------------------------------------------


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def write_bad_weights(kind: str, work: Path, tmp_path: Path) -> Path:
    if kind == "random":
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        bad = tmp_path / "bad.safetensors"
        data = (work / "tiny.safetensors").read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "garbage-pt":
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"\x80\x04not really a pickle" * 50)
    else:  # a pickle that would run code: refused by the weights-only loader, never executed
        import torch

        bad = tmp_path / "evil.pt"
        torch.save({"x": _Evil()}, bad)
    return bad


@pytest.mark.parametrize("kind", ["random", "truncated", "garbage-pt", "evil-pt"])
def test_corrupt_weights_one_line_error(work, capsys, recwarn, tmp_path, kind):
    bad = write_bad_weights(kind, work, tmp_path)
    out_dir, mem = tmp_path / "out", tmp_path / "mem.safetensors"
    err = assert_one_line_error(*run_cli(
        capsys, "watch", work / "short.mp4", "--encoder", "clip", "--model", work / "tiny_clip.json",
        "--weights", bad, "--ask", QUESTIONS[0], "--json", "--out", out_dir, "--save", mem))
    assert f"cannot read CLIP weights {bad}" in err
    assert "\x1b" not in err and "weights_only" not in err and "unpickled!" not in err
    assert not mem.exists() and not out_dir.exists()
    # nothing else would reach stderr: torch's pickle-protocol UserWarning is not let through
    assert [str(w.message) for w in recwarn if "pickle" in str(w.message).lower()] == []


# -- 5. the memory's size does not depend on the video's length -----------------------------------


def test_memory_bytes_independent_of_video_length(live, work, capsys, tmp_path):
    mem = tmp_path / "short.safetensors"
    code, out, err = run_cli(capsys, "watch", work / "short.mp4", "--encoder", "clip",
                             "--model", work / "tiny_clip.json", "--weights", work / "tiny.safetensors",
                             "--device", "cpu", "--json", "--out", tmp_path, "--save", mem)
    assert code == 0, err
    short, long_ = json.loads(out)["memory"], live["doc"]["memory"]
    assert short["frames_seen"] < long_["frames_seen"]  # the videos really differ
    assert short["bytes"] == long_["bytes"]
    assert short["budget_bytes"] == long_["budget_bytes"]
    # the files too, up to the JSON header (paths of different lengths)
    assert abs(mem.stat().st_size - live["mem"].stat().st_size) < 1024


# -- the real process: nothing else on stderr ----------------------------------------------------


def subprocess_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), STREAMVID_OFFLINE="1", HF_HUB_OFFLINE="1")
    return env


def run_streamvid(*args, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamvid", *map(str, args)], cwd=cwd, env=subprocess_env(home),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_subprocess_clip_prints_nothing_on_stderr(work, tmp_path, empty_caches):
    """As a user runs it: no warning at all, not even open_clip's "initialized randomly" (the
    checkpoint is loaded right after the model is built)."""
    proc = run_streamvid("watch", "short.mp4", "--encoder", "clip", "--model", "tiny_clip.json",
                         "--weights", "tiny.safetensors", "--ask", QUESTIONS[0], "--json", "--out", tmp_path,
                         cwd=work, home=empty_caches)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert json.loads(proc.stdout)["encoder"]["name"] == "clip"


@pytest.mark.slow
def test_subprocess_auto_fallback_and_bad_weights_are_one_line(work, tmp_path, empty_caches):
    proc = run_streamvid("watch", "short.mp4", "--encoder", "auto", "--ask", QUESTIONS[0], "--json",
                         "--out", tmp_path, cwd=work, home=empty_caches)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("\n") == 1 and "CLIP" in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["encoder"]["name"] == "classic"

    bad = write_bad_weights("garbage-pt", work, tmp_path)  # torch would warn about its pickle protocol
    proc = run_streamvid("watch", "short.mp4", "--encoder", "clip", "--model", "tiny_clip.json",
                         "--weights", bad, "--json", "--out", tmp_path, cwd=work, home=empty_caches)
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr)


def test_every_intent_runs_with_clip(live, capsys, tmp_path):
    """Plumbing: each intent answers from a CLIP memory (a tiny random model, so the answers'
    content means nothing; the events come from the detector and must still be right)."""
    questions = {
        "how many people entered?": "count",
        "when did the person in red appear?": "appeared",
        "is there someone in a red shirt?": "presence",
        "what happened?": "summary",
        "when was there motion?": "concept",
        "a bicycle on a road": "retrieval",
        "?!?": "invalid",
    }
    code, out, err = run_cli(capsys, "ask", live["mem"], *questions, "--at", "3", "--json",
                             "--out", tmp_path / "out")
    assert code == 0, err
    answers = json.loads(out)["answers"]
    assert [a["intent"] for a in answers] == [*questions.values(), "at"]
    count = answers[0]
    assert count["answer"].startswith("1 ") and [m["event"] for m in count["moments"]] == ["entered"]
    presence = answers[2]
    assert presence["answer"].split(":")[0] in ("Yes", "No") and 0.0 <= presence["confidence"] <= 1.0
    for a in answers:
        for m in a["moments"]:
            assert 0.0 <= m["start"] <= m["t"] <= m["end"] <= DURATION + EPS
