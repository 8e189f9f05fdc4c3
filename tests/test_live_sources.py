"""Live sources: pacing, drops, HTTP MJPEG, reconnects with gaps, persistent failure, dispatch.

Everything runs on 127.0.0.1 with short retry delays; every test is bounded in time.
"""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from streamvid import synth
from streamvid.errors import EXIT_BAD_INPUT
from streamvid.sources import (
    AVSource,
    CaptureSource,
    LiveSource,
    MJPEGSource,
    RealtimeFileSource,
    SourceError,
    open_live,
    resolve,
)

FAST = dict(retry_delay=0.05, retry_cap=0.2)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 2 s, 10 fps synthetic clip (20 frames at t = i / 10)."""
    path = tmp_path_factory.mktemp("live") / "clip.mp4"
    synth.write_video(path, synth.crossing_scene(width=160, height=120, duration=2), preset="ultrafast")
    return str(path)


# -- a test MJPEG server ----------------------------------------------------------------------
def _jpeg(value: int) -> bytes:
    img = np.full((48, 64, 3), value, np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


class MJPEGServer:
    """``multipart/x-mixed-replace`` JPEG frames at ``fps``; frame k is a flat grey of (k*10) % 250.

    ``script`` decides per connection: an int n serves n frames then closes the connection,
    ``"503"`` answers an error, ``None`` serves until the server stops.
    """

    def __init__(self, script=(None,), fps=40.0, length=True, ctype="multipart/x-mixed-replace"):
        self.script = list(script)
        self.fps, self.length, self.ctype = fps, length, ctype
        self.connections = 0
        self.sent = 0
        self.closing = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def serve(self, h):
        i = self.connections
        self.connections += 1
        step = self.script[min(i, len(self.script) - 1)]
        if step == "503":
            h.send_error(503)
            return
        h.send_response(200)
        h.send_header("Content-Type", f"{self.ctype}; boundary=frame")
        h.end_headers()
        n = 0
        try:
            while not self.closing.is_set() and (step is None or n < step):
                data = _jpeg((self.sent * 10) % 250)
                head = b"--frame\r\nContent-Type: image/jpeg\r\n"
                if self.length:
                    head += b"Content-Length: %d\r\n" % len(data)
                h.wfile.write(head + b"\r\n" + data + b"\r\n")
                h.wfile.flush()
                self.sent += 1
                n += 1
                time.sleep(1 / self.fps)
        except OSError:
            pass
        h.close_connection = True

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- realtime files ---------------------------------------------------------------------------
def test_realtime_file_is_paced_at_speed_with_video_times(clip):
    src = RealtimeFileSource(clip, speed=4.0, maxsize=64)
    t0 = time.monotonic()
    frames = list(src)
    took = time.monotonic() - t0
    assert [f.t for f in frames] == pytest.approx([i / 10 for i in range(20)], abs=1e-3)
    assert [f.index for f in frames] == list(range(20))
    assert 0.4 <= took <= 1.0, took  # 1.9 s of video / 4 = 0.475 s
    assert frames[0].rgb.shape == (120, 160, 3) and frames[0].rgb.dtype == np.uint8
    assert src.dropped == 0 and src.error is None


def test_sample_fps_and_loop(clip):
    src = RealtimeFileSource(clip, speed=20.0, loop=True, sample_fps=2, maxsize=64)
    got = []
    for f in src:
        got.append(f.t)
        if len(got) == 6:
            src.stop()
    assert got == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], abs=1e-3)  # 2nd pass goes on at 2.0 s


def test_slow_consumer_drops_oldest_and_keeps_newest(clip):
    src = RealtimeFileSource(clip, speed=10.0, maxsize=3)  # 20 frames in ~0.19 s
    seen, sizes = [], []
    for f in src:
        seen.append(f.t)
        sizes.append(src.buffered)
        time.sleep(0.08)  # slower than the source
    assert max(sizes) <= 3
    assert src.dropped > 0
    assert src.emitted + src.dropped == src.sampled == 20
    assert seen == sorted(seen)
    assert seen[-3:] == pytest.approx([1.7, 1.8, 1.9], abs=1e-3)  # the newest frames survive
    assert [f for f in seen if f < 1.0] != [i / 10 for i in range(10)]  # older ones were dropped


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(SourceError) as e:
        RealtimeFileSource(str(tmp_path / "nope.mp4"))
    assert e.value.exit_code == EXIT_BAD_INPUT


# -- HTTP MJPEG -------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [True, False], ids=["content-length", "boundary-scan"])
def test_mjpeg_stream_decodes_frames(length):
    with MJPEGServer(length=length) as srv:
        src = open_live(srv.url, max_side=None, **FAST)
        assert isinstance(src, MJPEGSource)
        frames = []
        with src:
            for f in src:
                frames.append(f)
                if len(frames) == 8:
                    break
    assert [f.index for f in frames] == list(range(8))
    assert all(f.rgb.shape == (48, 64, 3) for f in frames)
    ts = [f.t for f in frames]
    assert ts == sorted(ts) and ts[0] >= 0
    values = [int(f.rgb.mean().round()) for f in frames]
    assert all(abs(v - round(v / 10) * 10) <= 2 for v in values)  # flat greys of k*10 survive JPEG
    assert src.skipped == 0


def test_mjpeg_reconnects_after_loss_and_records_gap():
    # connection 1: 5 frames then closed; 2: HTTP 503 (a failed retry); 3: streams on
    with MJPEGServer(script=[5, "503", None], fps=40) as srv:
        src = MJPEGSource(srv.url, max_retries=3, retry_delay=0.1, retry_cap=0.4, maxsize=64)
        frames = []
        deadline = time.monotonic() + 10
        with src:
            for f in src:
                frames.append(f)
                if len(frames) == 12 or time.monotonic() > deadline:
                    break
    assert len(frames) == 12
    assert src.reconnects == 1 and src.failures == 2
    assert len(src.gaps) == 1
    g0, g1 = src.gaps[0]
    assert g1 - g0 >= 0.1 + 0.2 - 0.02  # waited 0.1 s then 0.2 s (doubling) before frames came back
    assert frames[4].t == pytest.approx(g0)
    assert frames[5].t == pytest.approx(g1)
    assert all(f.t > g1 - 1e-9 for f in frames[5:])
    assert [f.index for f in frames] == list(range(12))
    assert srv.connections == 3


def test_persistent_failure_ends_with_source_error():
    url = f"http://127.0.0.1:{_free_port()}/stream.mjpg"
    src = MJPEGSource(url, max_retries=2, retry_delay=0.05, retry_cap=1.0, timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(SourceError) as e:
        list(src)
    took = time.monotonic() - t0
    msg = str(e.value)
    assert "\n" not in msg and "gave up after 2 retries" in msg and "cannot open" in msg
    assert e.value.exit_code == EXIT_BAD_INPUT
    assert src.failures == 3 and src.reconnects == 0
    assert 0.15 - 0.02 <= took < 3  # backoff 0.05 + 0.1


def test_loss_without_recovery_keeps_frames_then_fails():
    with MJPEGServer(script=[4, "503"]) as srv:
        src = MJPEGSource(srv.url, max_retries=1, **FAST)
        frames = []
        with pytest.raises(SourceError, match="stream lost"):
            for f in src:
                frames.append(f)
    assert len(frames) == 4
    assert len(src.gaps) == 1 and src.gaps[0][0] == pytest.approx(frames[-1].t)  # the open gap


def test_stop_ends_iteration_of_an_endless_stream():
    with MJPEGServer(fps=20) as srv:
        src = MJPEGSource(srv.url, **FAST)
        timer = threading.Timer(0.4, src.stop)
        timer.start()
        t0 = time.monotonic()
        n = sum(1 for _ in src)
        assert time.monotonic() - t0 < 2.0
        timer.join(3.0)  # stop() joins the producer
        assert n > 0 and src.error is None
        assert not src._thread.is_alive()


def test_thread_bug_becomes_one_line_source_error():
    class Broken(LiveSource):
        kind = "broken"

        calls = 0

        def _connect(self):
            self.calls += 1
            return object()

        def _read(self, conn):
            if self.calls == 1:  # one frame on the first connection only
                yield None, np.zeros((4, 4, 3), np.uint8)
            raise ValueError("boom")

    src = Broken(max_retries=1, **FAST)
    with pytest.raises(SourceError, match=r"broken: stream lost \(boom\); gave up after 1 retry"):
        list(src)
    assert src.failures == 2


def test_backoff_doubles_to_the_cap():
    src = LiveSource(retry_delay=0.5, retry_cap=4.0)
    assert [src._delay(i) for i in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


# -- other URLs through PyAV ------------------------------------------------------------------
def test_http_video_goes_to_pyav(clip):
    data = open(clip, "rb").read()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        src = open_live(f"http://127.0.0.1:{httpd.server_address[1]}/clip.mp4", max_retries=0, maxsize=64)
        assert isinstance(src, AVSource)
        frames = []
        with pytest.raises(SourceError, match="end of stream"):  # a live stream must not end
            for f in src:
                frames.append(f)
        assert len(frames) == 20
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- dispatch ---------------------------------------------------------------------------------
def test_resolve_and_open_live_dispatch(clip, tmp_path):
    assert resolve("0") == "webcam" and resolve("12") == "webcam"
    assert resolve("/dev/video0") == "v4l2"
    assert resolve("rtsp://cam.local/stream") == "av"
    assert resolve("rtmp://host/app/key") == "av"
    assert resolve("http://host/video.mjpg") == "http"
    assert resolve("HTTPS://host/x") == "http"
    assert resolve(clip) == "file"
    with pytest.raises(SourceError, match="no such file"):
        resolve(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match="not a file"):
        resolve(str(tmp_path))
    cam = open_live("0")  # built, not opened
    assert isinstance(cam, CaptureSource) and cam.device == 0 and cam._thread is None
    v4l = open_live("/dev/video0")
    assert isinstance(v4l, CaptureSource) and v4l.device == "/dev/video0"
    assert isinstance(open_live("rtsp://127.0.0.1:1/x"), AVSource)
    f = open_live(clip, speed=2.0, loop=True)
    assert isinstance(f, RealtimeFileSource) and f.speed == 2.0 and f.loop
    with pytest.raises(SourceError, match="cannot connect"):
        open_live(f"http://127.0.0.1:{_free_port()}/x", timeout=1.0)


def test_bad_settings_are_input_errors(clip):
    for kw in ({"sample_fps": 0}, {"maxsize": 0}, {"max_retries": -1}, {"speed": 0}):
        with pytest.raises(Exception) as e:
            RealtimeFileSource(clip, **kw)
        assert e.value.exit_code == EXIT_BAD_INPUT
