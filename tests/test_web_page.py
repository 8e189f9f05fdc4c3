"""The web page (streamvid/server/static) end to end, in headless Chromium driven by Playwright.

- Fast tests serve the static files and canned API answers through Playwright's request routing
  (no server process): time formatting equal to the CLI's, escaping of server strings, the 401
  message.
- Slow tests start ``streamvid serve`` as a subprocess on 127.0.0.1 and use the page like a
  person: ask "who entered?" about the lobby memory, ask with an image, an inline error, the
  token cookie, and a live stream updating the page without a reload.

Without Chromium or the ``playwright`` package the tests are skipped, unless
``STREAMVID_REQUIRE_BROWSER=1`` (CI), where they fail.
"""

from __future__ import annotations

import json
import mimetypes
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamvid.timefmt import fmt_time

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "streamvid" / "server" / "static"
LOBBY = ROOT / "samples" / "lobby.mp4"
TRUTH = json.loads((ROOT / "samples" / "lobby.json").read_text())
ENTRIES = [e["t"] for e in TRUTH["events"] if e["event"] == "entered"]  # 4, 12, 30, 50, 60
EXITS = [e["t"] for e in TRUTH["events"] if e["event"] == "left"]  # 16, 42, 45, 62
TOLERANCE = 2.0

SERVE = [sys.executable, "-m", "streamvid", "serve"]
READY = re.compile(r"^streamvid: serving on (http://127\.0\.0\.1:\d+/)\s*$")
SERVER_START_S = 60.0
STOP_S = 10.0
TIME_RE = re.compile(r"\d{2,}:\d{2}:\d{2}\.\d")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Chromium reports every 4xx answer to a fetch/img as a console error; those are expected here.
EXPECTED_CONSOLE = re.compile(r"^Failed to load resource: the server responded with a status of 4\d\d")
WAIT_MS = 20_000


def parse_time(text: str) -> float:
    h, m, s = text.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _unavailable(reason: str):
    if os.environ.get("STREAMVID_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (STREAMVID_REQUIRE_BROWSER=1 requires the browser tests to run)")
    pytest.skip(reason)


# ---------------------------------------------------------------------- browser

@pytest.fixture(scope="module")
def playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is not installed (pip install playwright)")
    exe = os.environ.get("STREAMVID_CHROMIUM") or "/usr/bin/chromium"
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        _unavailable(f"no Chromium at {exe} (apt-get install chromium, or set STREAMVID_CHROMIUM)")
    pw = sync_playwright().start()
    try:
        yield pw, exe
    finally:
        pw.stop()


class Page:
    """A page in a fresh browser profile that records JS exceptions and unexpected console errors."""

    def __init__(self, playwright, width: int = 1280, height: int = 900) -> None:
        pw, exe = playwright
        self.profile = tempfile.TemporaryDirectory(prefix="streamvid-chromium-")
        # launch_persistent_context passes the fresh profile as --user-data-dir
        self.context = pw.chromium.launch_persistent_context(
            self.profile.name, executable_path=exe, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height}, timeout=60_000)
        self.context.set_default_timeout(WAIT_MS)
        self.page = self.context.pages[0] if self.context.pages else self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("console", self._console)

    def _console(self, msg) -> None:
        if msg.type == "error" and not EXPECTED_CONSOLE.match(msg.text):
            self.errors.append(f"console.error: {msg.text}")

    def close(self) -> None:
        try:
            self.context.close()
        finally:
            self.profile.cleanup()


@pytest.fixture
def browser(playwright) -> Iterator:
    """browser() -> a new Page (fresh profile, no cookies); all are closed at the end of the test."""
    pages: list[Page] = []

    def make(**kw) -> Page:
        pages.append(Page(playwright, **kw))
        return pages[-1]

    yield make
    for p in pages:
        p.close()


# ---------------------------------------------------------------------- server

class Server:
    """``streamvid serve ARGS --port 0`` as a subprocess; ``url`` once it says where it listens."""

    def __init__(self, *args: str) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        env = {k: v for k, v in os.environ.items() if k != "STREAMVID_TOKEN"}  # --token only where given
        self.proc = subprocess.Popen([*SERVE, *args, "--port", "0"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1)
        threading.Thread(target=self._drain, daemon=True).start()  # the pipe never fills
        self.url = self._wait_ready()

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))
            self.lines.put(line)
        self.lines.put(None)

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.01, left)) if left > 0 else None
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                pytest.fail(f"streamvid serve did not say 'serving on' within {SERVER_START_S:.0f} s "
                            f"(exit {self.proc.returncode}); stderr:\n" + self.tail())
            m = READY.match(line)
            if m:
                return m.group(1)

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log[-n:])

    def stop(self) -> int | None:
        """SIGTERM, then kill after STOP_S; returns the exit code (None when it had to be killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


def _serve(*args: str) -> Iterator[Server]:
    srv = Server(*args)
    try:
        yield srv
    finally:
        rc = srv.stop()
    assert rc == 0, f"streamvid serve exited {rc} on SIGTERM (None: killed after {STOP_S:.0f} s); stderr:\n" + srv.tail()


@pytest.fixture(scope="module")
def lobby_memory(playwright, tmp_path_factory) -> Path:
    """The lobby video watched once with the classic encoder and saved (~10 s on 2 cores).

    Asks for ``playwright`` first so that a machine without a browser skips before this work."""
    tmp = tmp_path_factory.mktemp("web")
    mem = tmp / "lobby.svm"
    cmd = [sys.executable, "-m", "streamvid", "watch", str(LOBBY), "--encoder", "classic", "--save", str(mem),
           "-q", "--out", str(tmp / "out")]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and mem.is_file(), f"watch failed ({r.returncode}):\n{r.stderr[-3000:]}"
    return mem


@pytest.fixture(scope="module")
def lobby_server(lobby_memory) -> Iterator[Server]:
    yield from _serve("--memory", str(lobby_memory), "--encoder", "classic")


@pytest.fixture(scope="module")
def token_server(lobby_memory) -> Iterator[Server]:
    yield from _serve("--token", "secret", "--memory", str(lobby_memory), "--encoder", "classic")


@pytest.fixture
def live_server(playwright) -> Iterator[Server]:
    yield from _serve("--source", str(LOBBY.relative_to(ROOT)), "--realtime", "--speed", "10",
                      "--encoder", "classic")


# ---------------------------------------------------------------------- helpers

def events_shown(page) -> list[tuple[float, str, str]]:
    """(time, kind, description) of every .event in #events, in page order (newest first)."""
    rows = page.eval_on_selector_all("#events .event", """items => items.map(li => [
        li.querySelector('.event-time').textContent, li.querySelector('.event-kind').textContent,
        li.querySelector('.event-description').textContent])""")
    return [(parse_time(t), k, d) for t, k, d in rows]


def ask(page, question: str) -> None:
    """Types QUESTION, presses Enter, waits for one more answer group (or an inline error)."""
    before = page.locator("#answers .qa").count()
    page.fill("#question", question)
    page.press("#question", "Enter")
    page.wait_for_function(
        "n => document.querySelectorAll('#answers .qa').length > n || !document.getElementById('ask-error').hidden",
        arg=before)


def assert_clean(p: Page) -> None:
    assert not p.errors, "JS errors on the page:\n" + "\n".join(p.errors)


def near(values: list[float], t: float) -> bool:
    return any(abs(v - t) <= TOLERANCE for v in values)


# ---------------------------------------------------------------------- fast: page with canned answers

ORIGIN = "http://127.0.0.1:9/"  # never contacted: every request is answered by route_api
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def route_api(page, api: dict) -> None:
    """Serves / and /static/* from the source tree and API paths from ``api`` (path -> (status, body))."""

    def handle(route):
        path = route.request.url[len(ORIGIN) - 1:].split("?")[0]
        if path == "/":
            return route.fulfill(path=str(STATIC / "index.html"), content_type="text/html")
        if path.startswith("/static/"):
            f = STATIC / path[len("/static/"):]
            if f.is_file():
                return route.fulfill(path=str(f), content_type=mimetypes.guess_type(f.name)[0])
        if path in api:
            status, body = api[path]
            if isinstance(body, str):
                return route.fulfill(status=status, body=body, content_type="text/event-stream")
            return route.fulfill(status=status, body=json.dumps(body), content_type="application/json")
        return route.fulfill(status=404, body=json.dumps({"error": f"no route {path}", "status": 404}),
                             content_type="application/json")

    page.route(ORIGIN + "**", handle)


def canned(name: str = "lobby") -> dict:
    stream = {"id": 0, "name": name, "kind": "memory", "state": "saved", "frames": 150, "dropped": 0,
              "reconnects": 0, "position": 74.5, "fps": None}
    event = {"id": 1, "stream": 0, "t": 4.0, "event": "entered", "description": XSS, "thumbnail": None,
             "alert": XSS}
    moment = {"t": 4.0, "start": 4.0, "end": 16.0, "score": 1.0, "event": "entered", "description": XSS,
              "thumbnail": None}
    answer = {"stream": 0, "stream_name": name, "question": XSS, "kind": "text", "answer": XSS,
              "intent": "entered", "moments": [moment]}
    return {
        "/health": (200, {"status": "ok", "version": "test", "streams": [stream]}),
        "/memory": (200, {"streams": [{"id": 0, "name": name, "encoder": "classic", "budget_bytes": 1,
                                       "bytes": 1, "position": 74.5, "first_t": 0.0, "last_t": 74.5,
                                       "frames": 150, "segments": 1, "events": 1, "sources": []}]}),
        "/events": (200, {"events": [event], "last_id": 1}),
        "/events/stream": (200, ": nothing more\n\n"),  # ends at once: the page reconnects
        "/ask": (200, {"question": XSS, "answers": [answer]}),
    }


def test_times_are_formatted_like_the_cli(browser):
    p = browser()
    route_api(p.page, canned())
    p.page.goto(ORIGIN)
    p.page.wait_for_function("() => window.streamvid && window.streamvid.fmtTime")
    values = [0, 0.04, 0.05, 0.15, 0.25, 0.35, 1.05, 4, 12.5, 59.95, 59.96, 83.25, 3599.95, 3600, 86399.99,
              360000.1, -3, 0.1 + 0.2]
    got = p.page.evaluate("vs => vs.map(v => window.streamvid.fmtTime(v))", values)
    assert got == [fmt_time(v) for v in values]
    moments = [{"t": 4, "start": 4, "end": 4.04}, {"t": 4, "start": 4, "end": 16},
               {"t": 10, "start": 4, "end": 16}]
    got = p.page.evaluate("ms => ms.map(m => window.streamvid.fmtMoment(m))", moments)
    assert got == ["00:00:04.0", "00:00:04.0–00:00:16.0", "00:00:10.0 (00:00:04.0–00:00:16.0)"]
    assert_clean(p)


def test_server_strings_are_text_not_html(browser):
    p = browser()
    route_api(p.page, canned(name=XSS))
    p.page.goto(ORIGIN)
    p.page.wait_for_selector("#events .event")
    ask(p.page, "who entered?")
    p.page.wait_for_selector(".answer .moment")
    assert p.page.locator(".answer-text").first.text_content() == XSS
    assert p.page.locator(".moment .moment-description").first.text_content() == XSS
    assert p.page.locator("#events .event .event-description").first.text_content() == XSS
    assert XSS in p.page.locator("#status").text_content()
    assert p.page.locator(".tl-marker").count() == 1
    p.page.wait_for_timeout(200)
    assert p.page.evaluate("() => window.__xss") is None
    assert p.page.locator("img[src='x'], #answers script, #events script").count() == 0
    assert_clean(p)


def test_unauthorized_api_shows_how_to_open_the_page(browser):
    p = browser()
    api = {path: (401, {"error": "unauthorized", "status": 401}) for path in canned()}
    route_api(p.page, api)
    p.page.goto(ORIGIN)
    p.page.wait_for_selector("#notice:not([hidden])")
    assert "/?token=" in p.page.locator("#notice").text_content()
    assert_clean(p)


# ---------------------------------------------------------------------- slow: the real server

@pytest.mark.slow
def test_lobby_who_entered(lobby_server, browser):
    p = browser()
    page = p.page
    page.goto(lobby_server.url)
    page.wait_for_function(f"() => document.querySelectorAll('#events .event').length >= {len(ENTRIES + EXITS)}")

    ask(page, "who entered?")
    assert page.locator("#ask-error").is_hidden(), page.locator("#ask-error").text_content()
    answer = page.locator("#answers .answer").first
    assert answer.locator(".answer-text").text_content().strip()
    stamps = [parse_time(t) for text in answer.locator(".moment-time").all_text_contents()
              for t in TIME_RE.findall(text)]
    for t in ENTRIES:
        assert near(stamps, t), f"no moment near {t} s among {stamps}"
    page.wait_for_function("""() => [...document.querySelectorAll('#answers .answer')[0]
                                   .querySelectorAll('.moment img')].some(i => i.complete && i.naturalWidth > 0)""")

    # the memory's pinned entries and exits, listed and marked on the timeline
    shown = events_shown(page)
    for kind, times in (("entered", ENTRIES), ("left", EXITS)):
        assert all(near([t for t, k, _ in shown if k == kind], t) for t in times), (kind, shown)
    assert [t for t, _, _ in shown] == sorted((t for t, _, _ in shown), reverse=True), "not newest first"
    assert page.locator("#timeline .tl-marker").count() == len(shown)

    # a moment, clicked, is highlighted on the timeline
    answer.locator(".moment").first.click()
    page.wait_for_selector("#timeline-highlight:not([hidden])")
    assert answer.locator(".moment.selected").count() == 1
    page.screenshot(path="/tmp/streamvid_page.png", full_page=True)

    # an image question (a thumbnail of the answer) gets an answer too
    src = answer.locator(".moment img").first.get_attribute("src")
    jpeg = page.request.get(lobby_server.url.rstrip("/") + src).body()
    groups = page.locator("#answers .qa").count()
    page.set_input_files("#ask-image", files=[{"name": "query.jpg", "mimeType": "image/jpeg", "buffer": jpeg}])
    page.wait_for_function("n => document.querySelectorAll('#answers .qa').length > n "
                           "|| !document.getElementById('ask-error').hidden", arg=groups)
    assert page.locator("#ask-error").is_hidden(), page.locator("#ask-error").text_content()
    assert page.locator("#answers .answer").first.locator(".answer-text").text_content().strip()
    assert_clean(p)


@pytest.mark.slow
def test_lobby_bad_question_shows_the_error_inline(lobby_server, browser):
    p = browser(width=390, height=844)  # a phone: the page must work narrow too
    page = p.page
    page.goto(lobby_server.url)
    page.wait_for_selector("#events .event")
    expected = page.request.post(lobby_server.url + "ask", data={"question": ""})
    assert 400 <= expected.status < 500, f"empty question answered {expected.status}"
    message = expected.json()["error"]

    ask(page, "")
    error = page.locator("#ask-error")
    assert error.is_visible()
    assert message in error.text_content()
    assert page.locator("#answers .answer").count() == 0
    assert page.locator("#ask").is_enabled()  # not stuck busy
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"page is {width}px wide on a 390px screen"
    assert_clean(p)


@pytest.mark.slow
def test_token_cookie(token_server, browser):
    p = browser()
    page = p.page
    resp = page.goto(token_server.url)
    if resp.status != 401:  # the page itself may be public; then its API calls are refused
        page.wait_for_selector("#notice:not([hidden])")
        assert "/?token=" in page.locator("#notice").text_content()

    resp = page.goto(token_server.url + "?token=secret")
    assert resp.status == 200
    page.wait_for_selector("#events .event")
    assert "token" not in page.url  # the cookie carries it from here on
    assert page.locator("#notice").is_hidden()
    ask(page, "who entered?")
    assert page.locator("#ask-error").is_hidden(), page.locator("#ask-error").text_content()
    assert page.locator("#answers .answer-text").first.text_content().strip()
    assert_clean(p)


@pytest.mark.slow
def test_live_stream_updates_the_page(live_server, browser):
    p = browser()
    page = p.page
    page.goto(live_server.url)
    # a real frame, refreshed more than once (SSE frame events), and events appended without a reload
    page.wait_for_function("""() => { const f = document.getElementById('frame');
        return !f.hidden && f.complete && f.naturalWidth > 0 && /[?&]_=([2-9]|\\d\\d+)/.test(f.src); }""")
    page.wait_for_selector("#events .event")
    page.wait_for_selector("#timeline .tl-marker")
    shown = events_shown(page)
    assert all(k in {"entered", "left", "motion", "scene_change", "match"} for _, k, _ in shown), shown
    # the status line follows the stream (SSE status) to its end: the file lasts 7.5 s at speed 10
    status = page.locator("#status .stream-status").first
    status.locator(".badge", has_text=re.compile(r"^ended$")).wait_for(timeout=30_000)
    # ... and comes to show the stream's final counts (at the latest with the next periodic status)
    deadline = time.monotonic() + 15
    while True:
        final = page.request.get(live_server.url + "health").json()["streams"][0]
        want = f"frames {final['frames']} dropped {final['dropped']} position {fmt_time(final['position'])}"
        shown = status.text_content()
        if want in shown:
            break
        assert time.monotonic() < deadline, f"status line {shown!r} does not show {want!r} (/health: {final})"
        time.sleep(0.5)
    assert final["state"] == "ended" and final["frames"] > 0, final
    assert_clean(p)
