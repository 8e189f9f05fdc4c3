"""Reliability table (issue 8): bad inputs, injected faults and load, each run for real.

    python scripts/reliability.py [--markdown] [--only inputs|faults|load]

Every row makes its input (in a temporary folder), runs the real command line as a child
process and records the exit code, the first line of stderr and whether the result matches what
RELIABILITY.md promises (one line, the documented code, no traceback, and for partial results a
valid JSON document). Faults and load reuse the test suite's cases (``tests/test_faults.py``,
``tests/test_live_sources.py``) and report what they measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parent.parent
LOBBY = REPO / "samples" / "lobby.mp4"


def _write(path: Path, *, n=20, fps=10, size=(160, 120), codec="libx264", pix_fmt="yuv420p", fmt=None,
           pts=None, rotate=None) -> Path:
    w, h = size
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if rotate is not None:
            s.set_display_rotation(rotate)
        if pts is not None:
            s.time_base = Fraction(1, 1000)
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = (i * 9) % 256
            img[:, : (i * 7) % w, 1] = 200
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _remux_truncated(src: Path, dst: Path) -> Path:
    from streamvid.synth import remux

    data = remux(src, dst, "matroska").read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def _damaged(dst: Path) -> Path:
    data = bytearray(LOBBY.read_bytes())
    rng = np.random.default_rng(1)
    for off in range(len(data) // 3, len(data) // 2, 199):
        data[off] = int(rng.integers(0, 256))
    dst.write_bytes(bytes(data))
    return dst


def make_inputs(d: Path) -> dict[str, Path]:
    """The bad (and odd) inputs, made in ``d``."""
    x = {}
    (d / "empty.mp4").write_bytes(b"")
    x["empty file"] = d / "empty.mp4"
    (d / "text.mp4").write_text("this is not a video\n" * 50)
    x["text file named .mp4"] = d / "text.mp4"
    (d / "random.mkv").write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    x["random bytes"] = d / "random.mkv"
    data = LOBBY.read_bytes()
    (d / "cut.mp4").write_bytes(data[: len(data) // 2])
    x["truncated MP4 (index at the end lost)"] = d / "cut.mp4"
    x["truncated MKV (first half readable)"] = _remux_truncated(LOBBY, d / "cut.mkv")
    x["corrupt packets mid-stream"] = _damaged(d / "damaged.mp4")
    with av.open(str(d / "audio.m4a"), "w") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    x["audio only"] = d / "audio.m4a"
    avi = _write(d / "codec.avi", n=10, codec="mpeg4").read_bytes()
    (d / "codec.avi").write_bytes(avi.replace(b"FMP4", b"ZZZZ"))  # a codec FFmpeg has no decoder for
    x["unsupported codec (FourCC ZZZZ)"] = d / "codec.avi"
    x["one frame (zero duration)"] = _write(d / "one.mp4", n=1)
    x["huge resolution (7680x4320 MJPEG)"] = _write(d / "huge.avi", n=3, size=(7680, 4320), codec="mjpeg",
                                                     pix_fmt="yuvj420p")
    x["variable frame rate"] = _write(d / "vfr.mkv", n=30, fmt="matroska",
                                      pts=[int(1000 * t) for t in np.cumsum([0] + [0.05, 0.2, 0.1] * 10)[:30]])
    x["rotated (display matrix 90°)"] = _write(d / "rot.mp4", n=20, rotate=90)
    x["10-bit (FFV1 yuv420p10le)"] = _write(d / "tenbit.mkv", n=20, codec="ffv1", pix_fmt="yuv420p10le",
                                            fmt="matroska")
    return x


def run(cmd: list[str], timeout: float = 300) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "streamvid", *cmd], capture_output=True, cwd=REPO, timeout=timeout,
                       env={**os.environ, "STREAMVID_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    err = p.stderr.decode("utf-8", "replace").strip().splitlines()
    first = next((line for line in err if "error" in line or "warning" in line), err[0] if err else "")
    out = p.stdout.decode("utf-8", "replace")
    valid_json = None
    if "--json" in cmd:
        try:
            doc = json.loads(out)
            valid_json = True
            if not first and doc.get("warnings"):
                first = "JSON warning: " + str(doc["warnings"][0])
        except ValueError:
            valid_json = False
    return {"code": p.returncode, "stderr": first[:160], "traceback": "Traceback" in "\n".join(err),
            "json": valid_json, "seconds": round(time.perf_counter() - t0, 1)}


def inputs_table(d: Path) -> list[dict]:
    rows = []
    out = str(d / "out")
    for name, path in make_inputs(d).items():
        r = run(["watch", str(path), "--encoder", "classic", "--ask", "who entered?", "--json", "--out", out])
        rows.append({"input": name, "command": "watch --json", **r})
        print(f"{name}: exit {r['code']} {r['stderr']}", file=sys.stderr)
    # questions
    mem = d / "lobby.svm"
    run(["watch", str(LOBBY), "--encoder", "classic", "--end", "20", "--save", str(mem), "--out", out, "-q"])
    for name, q in [("empty question", ""), ("10 kB question", "who entered? " * 800),
                    ("non-UTF-8 question", os.fsdecode(b"who \xff\xfe entered?")),
                    ("hostile text", "'; rm -rf / #$(reboot)`id`<script>alert(1)</script>\u202e\x1b[31m")]:
        try:
            r = run(["ask", str(mem), q, "--json", "--out", out])
        except ValueError as e:  # e.g. a NUL byte cannot be an argument at all
            r = {"code": None, "stderr": f"not passable as an argument ({e})", "traceback": False, "json": None,
                 "seconds": 0.0}
        rows.append({"input": name, "command": "ask --json", **r})
    # images
    (d / "notimage.png").write_text("no")
    r = run(["ask", str(mem), "--image", str(d / "notimage.png"), "--out", out])
    rows.append({"input": "image that is not an image", "command": "ask --image", **r})
    # memory files
    rng = np.random.default_rng(2)
    (d / "rand.svm").write_bytes(rng.integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    blob = mem.read_bytes()
    (d / "trunc.svm").write_bytes(blob[: len(blob) // 2])
    head_len = int.from_bytes(blob[:8], "little")
    head = blob[8:8 + head_len]
    key = b'format_version\\":'
    at = head.index(key) + len(key)  # the version's digit: another one of the same length
    head = head[:at] + b"7" + head[at + 1:]
    (d / "v7.svm").write_bytes(blob[:8] + head + blob[8 + head_len:])
    for name, f in [("memory file of random bytes", "rand.svm"), ("truncated memory file", "trunc.svm"),
                    ("memory file of another format version (7)", "v7.svm")]:
        r = run(["ask", str(d / f), "who entered?", "--out", out])
        rows.append({"input": name, "command": "ask", **r})
    r = run(["watch", str(LOBBY), "--encoder", "clip", "--model", str(REPO / "tests" / "missing.json"),
             "--resume", str(mem), "--out", out])
    rows.append({"input": "resume a memory with another encoder", "command": "watch --resume", **r})
    r = run(["watch", str(LOBBY), "--save", str(REPO / "README.md"), "--out", out])
    rows.append({"input": "--save onto a file that is not a memory", "command": "watch --save", **r})
    return rows


def faults_table() -> list[dict]:
    rows = []
    cases = [("kill -9 during --save (5 kills at 0.05–1.6 s)", "tests/test_faults.py::test_kill_9_during_save_leaves_a_whole_snapshot"),
             ("file writes refused (RLIMIT_FSIZE 1 MiB, EFBIG) during --resume save", "tests/test_faults.py::test_a_disk_that_refuses_the_write_keeps_the_old_snapshot"),
             ("ENOSPC at fsync (in process)", "tests/test_faults.py::test_enospc_in_process_keeps_the_old_file"),
             ("live source dropped mid-stream", "tests/test_live_sources.py"),
             ("path traversal on /thumb, /alerts, /static, /frame.jpg (11 URLs)", "tests/test_faults.py::test_file_routes_cannot_leave_their_folders"),
             ("16 clients × 10 questions while ingesting", "tests/test_faults.py::test_many_clients_while_ingesting")]
    for name, target in cases:
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", target], capture_output=True, text=True, cwd=REPO)
        measured = next((line for line in p.stdout.splitlines() if line.startswith("{")), "")
        last = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
        rows.append({"fault": name, "test": target, "passed": p.returncode == 0, "summary": last,
                     "measured": measured, "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{name}: {'ok' if p.returncode == 0 else 'FAILED'} {measured}", file=sys.stderr)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--only", choices=["inputs", "faults"])
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="streamvid_rel_"))
    try:
        inputs = inputs_table(d) if a.only in (None, "inputs") else []
        faults = faults_table() if a.only in (None, "faults") else []
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if not a.markdown:
        print(json.dumps({"inputs": inputs, "faults": faults}, indent=2))
        return 0
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
          f"`python scripts/reliability.py {' '.join(sys.argv[1:])}`\n")
    if inputs:
        print("| input | command | exit | stderr (first error/warning line) | traceback | JSON valid |")
        print("|---|---|---:|---|---|---|")
        for r in inputs:
            js = "" if r["json"] is None else ("yes" if r["json"] else "**no**")
            msg = r["stderr"].replace("|", "\\|")
            print(f"| {r['input']} | `{r['command']}` | {r['code']} | {msg} | {'**yes**' if r['traceback'] else 'no'} | {js} |")
        print()
    if faults:
        print("| fault / load | result | measured | test |")
        print("|---|---|---|---|")
        for r in faults:
            print(f"| {r['fault']} | {'passed' if r['passed'] else '**failed**'} ({r['summary']}) | "
                  f"{r['measured'] or '-'} | `{r['test']}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
