"""`streamvid live` end to end on the committed sample (paced file), alerts, webhook and bad input.

Everything runs in-process on 127.0.0.1 and is bounded (--duration, --speed 20, short timeouts).
"""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_cli import match as match_truth

from streamvid.cli import main

ROOT = Path(__file__).resolve().parent.parent
LOBBY = ROOT / "samples" / "lobby.mp4"
TRUTH = json.loads((ROOT / "samples" / "lobby.json").read_text())["events"]
TOL = 2.0


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def alert_lines(out: str) -> list[dict]:
    docs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [d for d in docs if "alert" in d]


@pytest.fixture
def hook_server():
    """A local HTTP server that records the JSON bodies POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            n = int(self.headers.get("Content-Length", 0))
            received.append(json.loads(self.rfile.read(n)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/hook", received
    finally:
        srv.shutdown()
        srv.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def match(hits, kind):
    return match_truth(hits, TRUTH, kind, tol=TOL)


@pytest.mark.slow
def test_live_lobby_alerts_webhook_save_and_ask(capsys, tmp_path, hook_server):
    url, received = hook_server
    mem = tmp_path / "live.mem"
    # This CPU ingests ~15 frames/s with the classic encoder; --speed 20 at --fps 2 delivers 40/s,
    # so the buffer holds the whole sample (150 frames) to be lossless; with the default buffer of
    # 8 frames the newest are kept and the drops are counted (see test_default_buffer_counts_drops).
    code, out, err = run_cli(capsys, "live", LOBBY, "--realtime", "--speed", 20, "--buffer", 200,
                             "--alert", "a person enters", "--alert", "someone leaves",
                             "--encoder", "classic", "--out", tmp_path / "out", "--webhook", url,
                             "--save", mem, "--ask", "who entered?", "--json")
    assert code == 0, err
    hits = alert_lines(out)
    for h in hits:
        assert {"t", "event", "alert", "description", "thumbnail", "source"} <= set(h)
        assert h["source"].endswith("lobby.mp4")
        assert Path(h["thumbnail"]).is_file() and Path(h["thumbnail"]).read_bytes()[:2] == b"\xff\xd8"
        assert h["alert"] == {"entered": "a person enters", "left": "someone leaves"}[h["event"]]
    for kind in ("entered", "left"):
        missed, extra = match(hits, kind)
        assert not missed, (kind, missed, hits)
        assert len(extra) <= 1, (kind, extra)
    # the final JSON document is the last line of stdout
    last = json.loads(out.strip().splitlines()[-1])
    assert "answers" in last and last["answers"][0]["intent"] == "entered"
    assert last["alerts"] == hits and last["live"]["frames"] > 100
    assert "frames" in err and "dropped" in err and "reconnects" in err and "gaps" in err
    # the webhook got the same documents (delivered before exit)
    assert sorted(received, key=lambda d: (d["t"], d["event"])) == sorted(hits, key=lambda d: (d["t"], d["event"]))
    # the saved memory answers without the stream
    code, out, err = run_cli(capsys, "ask", mem, "who entered?", "--json", "--out", tmp_path / "out2")
    assert code == 0, err
    doc = json.loads(out)
    missed, _ = match([{"t": m["t"], "event": m["event"]} for m in doc["answers"][0]["moments"]], "entered")
    assert not missed


@pytest.mark.slow
def test_two_sources_in_one_process(capsys, tmp_path):
    """Two cameras (the sample twice), one memory each, batched: both get every entry, each has its
    own summary line and saved memory."""
    save = tmp_path / "cam-{i}.svm"
    code, out, err = run_cli(capsys, "live", LOBBY, LOBBY, "--realtime", "--speed", 20, "--buffer", 200,
                             "--duration", 40, "--alert", "a person enters", "--encoder", "classic",
                             "--out", tmp_path / "out", "--save", save, "--ask", "who entered?", "--json")
    assert code == 0, err
    docs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    hits = [d for d in docs if "alert" in d]
    finals = [d for d in docs if "answers" in d]
    assert [d["live"]["stream"] for d in finals] == [0, 1]
    expected = [e["t"] for e in TRUTH if e["event"] == "entered" and e["t"] <= 38]
    thumbs = set()
    for i in (0, 1):
        mine = sorted(h["t"] for h in hits if h["stream"] == i)
        assert len(mine) == len(expected) and all(abs(a - b) <= TOL for a, b in zip(mine, expected)), mine
        thumbs |= {h["thumbnail"] for h in hits if h["stream"] == i}
        assert Path(str(save).replace("{i}", str(i))).is_file()
        assert finals[i]["answers"][0]["intent"] == "entered" and finals[i]["live"]["dropped"] == 0
    assert len(thumbs) == len(hits)  # the two streams' thumbnails do not overwrite each other
    assert err.count("streamvid: live [") == 2


def test_duration_stops_early_and_unreachable_webhook_does_not_block(capsys, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/hook"
    code, out, err = run_cli(capsys, "live", LOBBY, "--realtime", "--speed", 20, "--duration", 14,
                             "--alert", "a person enters", "--alert", "motion", "--encoder", "classic",
                             "--out", tmp_path, "--webhook", url, "--webhook-timeout", 1, "--json")
    assert code == 3, err  # a partial result: the alerts were not delivered
    last = json.loads(out.strip().splitlines()[-1])
    assert last["live"]["stopped_by"] == "duration"
    hits = alert_lines(out)
    assert hits and all(h["t"] <= 14 for h in hits)
    assert last["memory"]["last_t"] <= 14.0 + 1e-6
    assert any("webhook" in w and "failed" in w for w in last["warnings"])  # a warning, not a crash
    assert "Traceback" not in err


def test_default_buffer_counts_drops(capsys, tmp_path):
    code, out, err = run_cli(capsys, "live", LOBBY, "--realtime", "--speed", 40, "--duration", 20,
                             "--encoder", "classic", "--out", tmp_path, "--json", "--fps", 5)
    assert code == 0, err
    live = json.loads(out.strip().splitlines()[-1])["live"]
    assert live["frames"] + live["dropped"] <= live["received"]
    assert f"{live['dropped']} dropped" in err


@pytest.mark.parametrize("args, words", [
    (["--alert", "the meaning of life"], "not understood"),
    (["--alert", "   "], "empty alert"),
    (["--alert", "a person enters", "--webhook", "ftp://example.com/x"], "http"),
    (["--webhook", "http:///nohost"], "no host"),
])
def test_bad_alert_or_webhook_is_one_line_exit_2(capsys, tmp_path, args, words):
    code, out, err = run_cli(capsys, "live", LOBBY, "--realtime", "--encoder", "classic", "--out", tmp_path, *args)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and words in err, err


def test_file_without_realtime_and_missing_source_exit_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "live", LOBBY, "--encoder", "classic")
    assert code == 2 and "--realtime" in err
    code, _, err = run_cli(capsys, "live", tmp_path / "nope.mp4", "--realtime")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_parse_alert_vocabulary():
    from streamvid.alerts import parse_alert
    from streamvid.errors import InputError

    class Classic:
        name = "classic"

    a = parse_alert("someone in red enters", Classic())
    assert a.kind == "entered" and a.colours == ["red"]
    assert parse_alert("someone comes in", Classic()).kind == "entered"
    assert parse_alert("a person in blue goes out", Classic()).kind == "left"
    assert parse_alert("movement", Classic()).kind == "motion"
    assert parse_alert("a scene change", Classic()).kind == "scene_change"
    with pytest.raises(InputError, match="understands"):
        parse_alert("a dog barks", Classic())
