"""`streamvid serve`: every route, auth, limits and bad requests (in-process), then the real CLI
serving a paced file live (a subprocess on 127.0.0.1), its event feed and a clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest
from fastapi.testclient import TestClient

from streamvid.cli import main
from streamvid.engine import Stream
from streamvid.memory.snapshot import load
from streamvid.models.classic import ClassicEncoder
from streamvid.pipeline import Watcher, new_memory
from streamvid.server.app import create_app
from streamvid.server.hub import Hub
from streamvid.sources import FileSource

ROOT = Path(__file__).resolve().parent.parent
LOBBY = ROOT / "samples" / "lobby.mp4"
TRUTH = json.loads((ROOT / "samples" / "lobby.json").read_text())["events"]
ENTRIES = [e["t"] for e in TRUTH if e["event"] == "entered"]
TOL = 2.0


@pytest.fixture(scope="module")
def lobby_mem(tmp_path_factory):
    """The sample watched once with the classic encoder (memory + one frame for image questions)."""
    enc = ClassicEncoder()
    mem = new_memory(enc, 4 << 20)
    frames = list(FileSource(str(LOBBY), fps=2.0))
    Watcher(enc, mem).ingest(frames)
    path = tmp_path_factory.mktemp("srv") / "lobby.svm"
    from streamvid.memory import save

    save(mem, path, metadata={"encoder": enc.config()})
    return path, frames[10].rgb  # 5 s: the first visitor is in the doorway


def _client(path, *, token=None, max_body=1 << 20) -> TestClient:
    mem, meta = load(path)
    from streamvid.cli import _LazyEncoder

    class Args:
        weights = device = None

    s = Stream(id=0, name="lobby.svm", kind="memory", memory=mem, state="memory",
               query_encoder=_LazyEncoder(meta["encoder"], Args()))
    return TestClient(create_app(Hub([s]), token=token, max_body=max_body))


def _times(answer: dict) -> list[float]:
    return sorted(m["t"] for m in answer["moments"])


def test_read_routes(lobby_mem):
    c = _client(lobby_mem[0])
    h = c.get("/health").json()
    assert h["status"] == "ok" and h["streams"][0]["kind"] == "memory" and h["streams"][0]["frames"] == 150
    m = c.get("/memory").json()["streams"][0]
    assert m["bytes"] <= m["budget_bytes"] == 4 << 20 and m["last_t"] == pytest.approx(74.5)
    assert c.get("/memory?stream=0").status_code == 200
    ev = c.get("/events").json()
    kinds = [e["event"] for e in ev["events"]]
    assert kinds.count("entered") == 5 and kinds.count("left") == 4
    assert [e["id"] for e in ev["events"]] == sorted(e["id"] for e in ev["events"]) and ev["last_id"] == 9
    assert len(c.get(f"/events?since={ev['last_id'] - 2}").json()["events"]) == 2
    thumb = ev["events"][0]["thumbnail"]
    r = c.get(thumb)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    r = c.get("/frame.jpg")
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
    assert c.get("/").status_code == 200 and "text/html" in c.get("/").headers["content-type"]
    assert c.get("/docs").status_code == 200
    paths = c.get("/openapi.json").json()["paths"]
    assert {"/ask", "/events", "/events/stream", "/memory", "/frame.jpg", "/health"} <= set(paths)


def test_ask_text_and_image(lobby_mem):
    c = _client(lobby_mem[0])
    r = c.post("/ask", json={"question": "who entered?"})
    assert r.status_code == 200
    doc = r.json()
    a = doc["answers"][0]
    assert doc["question"] == "who entered?" and a["stream"] == 0 and a["intent"] == "entered"
    got = _times(a)
    assert len(got) == 5 and all(abs(x - y) <= TOL for x, y in zip(got, ENTRIES))
    assert all(c.get(m["thumbnail"]).status_code == 200 for m in a["moments"] if m["thumbnail"])
    assert c.post("/ask", json={"question": "who entered?", "stream": 0, "top_k": 2}).status_code == 200

    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(lobby_mem[1], cv2.COLOR_RGB2BGR))
    r = c.post("/ask", files={"image": ("door.jpg", jpg.tobytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    a = r.json()["answers"][0]
    assert a["kind"] == "image" and a["moments"]
    r2 = c.post("/ask", content=jpg.tobytes(), headers={"content-type": "image/jpeg"})
    assert r2.status_code == 200 and r2.json()["answers"][0]["kind"] == "image"


@pytest.mark.parametrize("kwargs, status, words", [
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ({"json": ["who"]}, 400, "JSON object"),
    ({"json": {"question": 3}}, 400, "must be a string"),
    ({"json": {"question": "   "}}, 422, "empty"),
    ({"json": {"question": "x" * 600}}, 422, "longer than"),
    ({"json": {"question": "who entered?", "stream": 7}}, 404, "no stream 7"),
    ({"json": {"question": "who entered?", "top_k": 0}}, 422, "top_k"),
    ({"json": {"question": "who entered?", "top_k": "many"}}, 422, "integer"),
    ({"content": b"who", "headers": {"content-type": "text/plain"}}, 415, "send JSON"),
    ({"content": b"\xff\xd8garbage", "headers": {"content-type": "image/jpeg"}}, 400, "cannot be decoded"),
    ({"files": {"picture": ("a.jpg", b"x", "image/jpeg")}}, 400, "'image' file"),
    ({"content": b"x" * (2 << 20), "headers": {"content-type": "image/jpeg"}}, 413, "limit"),
])
def test_bad_requests_get_json_errors(lobby_mem, kwargs, status, words):
    c = _client(lobby_mem[0])
    r = c.post("/ask", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status and words in body["error"] and "Traceback" not in body["error"]


def test_other_bad_requests(lobby_mem):
    c = _client(lobby_mem[0])
    for url, status in [("/nope", 404), ("/thumb/0/99999.jpg", 404), ("/thumb/3/1.jpg", 404),
                        ("/thumb/0/x.jpg", 422), ("/events?since=-1", 422), ("/events?stream=5", 404),
                        ("/memory?stream=9", 404), ("/frame.jpg?stream=2", 404), ("/alerts/0/../../etc", 404)]:
        r = c.get(url)
        assert r.status_code == status, (url, r.text)
        assert r.json()["status"] == status
    assert c.get("/ask").status_code == 405


def test_token_on_every_route(lobby_mem):
    c = _client(lobby_mem[0], token="s3cret-token")
    for url in ("/health", "/memory", "/events", "/frame.jpg", "/", "/docs", "/openapi.json", "/thumb/0/1.jpg"):
        r = c.get(url)
        assert r.status_code == 401, url
        assert r.json()["status"] == 401 and r.headers["www-authenticate"] == "Bearer"
    assert c.post("/ask", json={"question": "who entered?"}).status_code == 401
    assert c.get("/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": "Bearer s3cret-token"}
    assert c.get("/health", headers=auth).status_code == 200
    assert c.post("/ask", json={"question": "who entered?"}, headers=auth).status_code == 200
    # the page as /?token=...: sets the cookie, which then opens every route
    assert c.get("/?token=wrong").status_code == 401
    r = c.get("/?token=s3cret-token")
    assert r.status_code == 200 and "streamvid_token" in r.headers.get("set-cookie", "")
    assert c.get("/health").status_code == 200  # the client kept the cookie
    fresh = _client(lobby_mem[0], token="s3cret-token")  # a query token opens the page only
    assert fresh.get("/health?token=s3cret-token").status_code == 401


# -- the CLI --------------------------------------------------------------------------------------
def _cli(capsys, *args):
    code = main([str(a) for a in args])
    return code, capsys.readouterr()


def test_serve_refuses_bad_setups(capsys, tmp_path, lobby_mem):
    code, (out, err) = _cli(capsys, "serve", "--memory", lobby_mem[0], "--host", "0.0.0.0")
    assert code == 2 and "--token" in err and len(err.strip().splitlines()) == 1
    code, (out, err) = _cli(capsys, "serve")
    assert code == 2 and "nothing to serve" in err
    bad = tmp_path / "bad.svm"
    bad.write_bytes(b"not a memory")
    code, (out, err) = _cli(capsys, "serve", "--memory", bad)
    assert code == 2 and "bad.svm" in err
    code, (out, err) = _cli(capsys, "serve", "--source", LOBBY)
    assert code == 2 and "--realtime" in err
    code, (out, err) = _cli(capsys, "serve", "--memory", lobby_mem[0], "--token", " ")
    assert code == 2 and "empty" in err
    with socket.socket() as s:  # a port already taken
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        code, (out, err) = _cli(capsys, "serve", "--memory", lobby_mem[0], "--port", s.getsockname()[1])
    assert code == 2 and "cannot listen" in err
    code, (out, err) = _cli(capsys, "serve", "--source", LOBBY, "--source", LOBBY, "--realtime",
                            "--save", tmp_path / "m.svm")
    assert code == 2 and "{i}" in err


class _Server:
    """`streamvid serve ...` as a subprocess; ``url`` once it listens; stderr kept in ``err``."""

    def __init__(self, *args) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.p = subprocess.Popen([sys.executable, "-m", "streamvid", "serve", "--port", "0", *map(str, args)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.err: list[str] = []
        self.out: list[str] = []
        self.url = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = self.p.stderr.readline()
            if not line:
                break
            self.err.append(line)
            if "serving on " in line:
                self.url = line.split("serving on ", 1)[1].strip().rstrip("/")
                break
        assert self.url, "".join(self.err)
        threading.Thread(target=lambda: self.err.extend(self.p.stderr), daemon=True).start()
        threading.Thread(target=lambda: self.out.extend(self.p.stdout), daemon=True).start()

    def stop(self) -> int:
        self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise


def _sse_events(url: str, want, timeout: float) -> list[tuple[str, dict]]:
    """Read the SSE feed at ``url`` until ``want(messages)`` or ``timeout`` seconds."""
    import httpx

    got: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", url, timeout=httpx.Timeout(timeout, read=10.0)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                got.append((kind, json.loads(line[6:])))
                if want(got):
                    break
            if time.monotonic() > deadline:
                break
    return got


@pytest.mark.slow
def test_serve_a_live_source_end_to_end(tmp_path):
    import httpx

    save = tmp_path / "mem-{i}.svm"
    srv = _Server("--source", LOBBY, "--realtime", "--speed", "8", "--encoder", "classic", "--buffer", "100",
                  "--alert", "a person enters", "--alert", "motion", "--save", save, "--out", tmp_path / "out")
    try:
        entered = lambda got: sum(1 for k, d in got if k == "event" and d["event"] == "entered") >= 5  # noqa: E731
        got = _sse_events(srv.url + "/events/stream", entered, timeout=60)
        kinds = {k for k, _ in got}
        assert {"status", "frame", "event"} <= kinds
        pins = [d for k, d in got if k == "event" and d["event"] == "entered"]
        times = sorted(d["t"] for d in pins)
        assert len(times) == 5 and all(abs(x - y) <= TOL for x, y in zip(times, ENTRIES)), times
        assert all(d["alert"] == "a person enters" for d in pins)
        motion = [d for k, d in got if k == "event" and d["event"] == "motion"]
        assert motion and motion[0]["alert"] == "motion"
        r = httpx.get(srv.url + motion[0]["thumbnail"])
        assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
        r = httpx.get(srv.url + "/frame.jpg")
        assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
        h = httpx.get(srv.url + "/health").json()["streams"][0]
        assert h["kind"] == "file" and h["state"] in ("running", "ended") and h["frames"] > 0
        a = httpx.post(srv.url + "/ask", json={"question": "who entered?"}).json()["answers"][0]
        assert len(a["moments"]) >= 4
        m = httpx.get(srv.url + "/memory").json()["streams"][0]
        assert m["sources"][0]["frames"] > 0 and m["bytes"] <= m["budget_bytes"]
    finally:
        code = srv.stop()
    assert code == 0, "".join(srv.err)
    assert "server stopped; saved" in "".join(srv.err)
    # stdout: one JSON line per alert hit, as `streamvid live` prints them
    lines = [json.loads(x) for x in srv.out if x.startswith("{")]
    assert any(d["alert"] == "a person enters" and d["stream"] == 0 for d in lines)
    mem, meta = load(str(save).replace("{i}", "0"))
    assert mem.stats()["frames_seen"] > 0 and meta["stream"]["sources"][0]["frames"] > 0
