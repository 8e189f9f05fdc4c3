"""Live benchmark (issue 5): alert latency and the highest input rate ingested without drops.

    python scripts/bench_live.py [--encoders classic clip] [--video samples/lobby.mp4]
                                 [--latency-speed 4] [--window 12] [--rates 5 10 20 ...]
                                 [--streams 1] [--markdown] [--json OUT]

Two measurements per encoder, each in its own child process, through the same code as
``streamvid live`` (:func:`streamvid.live.open_streams` and :class:`streamvid.engine.Engine`):

- **latency** — the video is played as a camera (``RealtimeFileSource``, paced at
  ``--latency-speed`` × its own rate — by default 4 for classic and 1 for clip, input rates each
  sustains — ``--fps 2`` sampling, the default 8-frame buffer) with the
  alerts ``"a person enters"`` and ``"motion"``. For every frame: *ingest latency*, from the
  moment the frame was decoded and queued (``Frame.arrived``) to the moment it is in the memory.
  For every alert hit: *alert latency*, from the arrival of the frame that fired it to the moment
  its JSON line is emitted; and the *detection delay* in stream time, from the event's time (when
  the person appeared) to the stream time of that frame (the detector's confirmation window,
  which is algorithmic, not a cost of the machine).
- **sustained rate** — every frame of the video is an input (no ``--fps`` sampling) at
  ``rate`` frames/s (the video looped), with the default 8-frame buffer, for ``--window``
  seconds after a 3-second warm-up. The highest rate in ``--rates`` with no dropped frame after
  the warm-up is the sustained rate; the first rate that drops stops the ladder.

``--streams N`` plays N copies of the video at once (one memory each, batched), and rates are per
stream. The clip encoder is CLIP ViT-B-32 with random weights (the cost does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
WARMUP = 3.0


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    i = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[i]


def _encoder(name: str):
    from streamvid.models.factory import create_encoder

    enc, _ = create_encoder(name, pretrained=None) if name == "clip" else create_encoder(name)
    return enc


def _args(**kw) -> SimpleNamespace:
    base = dict(memory_mb=4.0, fps=2.0, max_side=640, buffer=8, speed=1.0, loop=True, duration=None,
                alert=[], alert_threshold=None, out="/tmp/streamvid_bench_live")
    base.update(kw)
    return SimpleNamespace(**base)


def _run(job: dict) -> dict:
    """One measurement (in a child process)."""
    import torch

    from streamvid.engine import Engine
    from streamvid.live import open_streams

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    enc = _encoder(job["encoder"])
    video = job["video"]
    n = job["streams"]
    hits: list[dict] = []
    if job["kind"] == "latency":
        args = _args(speed=job["speed"], alert=["a person enters", "motion"], loop=False)
    else:
        # every frame is an input: the file's own rate times speed is the input rate
        from streamvid.sources.file import probe

        native = probe(video).fps
        args = _args(speed=job["rate"] / native, fps=native, alert=[], loop=True)  # fps = native: no sampling
    box: list = []

    def emit(doc: dict) -> None:  # note the stream time of the frame that fired it
        frame = box[0][doc.get("stream", 0)].alerts.frame if box else None
        doc["frame_t"] = frame.t if frame is not None else None
        hits.append(doc)

    streams, bank, engines = open_streams([video] * n, ["file"] * n, args, enc, emit=emit)
    box.append({s.id: s for s in streams})
    ingest_lat: list[float] = []
    delays: list[float] = []
    alert_lat: list[float] = []

    def on_frame(s, f) -> None:
        if f.arrived is not None:
            ingest_lat.append(time.monotonic() - f.arrived)

    engine = Engine(enc, streams, bank=bank, on_frame=on_frame)
    t0 = time.monotonic()
    if job["kind"] == "latency":
        engine.run()
    else:
        engine.start()
        time.sleep(WARMUP)
        drops0 = sum(s.source.dropped for s in streams)
        frames0 = sum(s.stats.frames for s in streams)
        time.sleep(job["window"])
        drops = sum(s.source.dropped for s in streams) - drops0
        frames = sum(s.stats.frames for s in streams) - frames0
        engine.stop()
        engine.join(30)
        fps_in = frames / job["window"]
        # sustained: nothing dropped, and ingestion kept pace (else the buffer is only filling up)
        return {**job, "dropped": drops, "frames": frames, "ingested_fps": round(fps_in, 2),
                "ok": drops == 0 and fps_in >= 0.95 * job["rate"] * job["streams"]}
    wall = time.monotonic() - t0
    for h in hits:
        if "latency" in h:
            alert_lat.append(h["latency"])
    for h in hits:  # the stream time of the frame that fired each entry alert, minus the entry's time
        if h["event"] == "entered" and h.get("frame_t") is not None:
            delays.append(h["frame_t"] - h["t"])
    ms = lambda v: None if v is None else round(1000 * v, 1)  # noqa: E731
    return {**job, "wall_s": round(wall, 2), "frames": sum(s.stats.frames for s in streams),
            "dropped": sum(s.source.dropped for s in streams),
            "ingest_ms": {"n": len(ingest_lat), "p50": ms(_pct(ingest_lat, 50)), "p95": ms(_pct(ingest_lat, 95)),
                          "max": ms(max(ingest_lat) if ingest_lat else None)},
            "alert_ms": {"n": len(alert_lat), "p50": ms(_pct(alert_lat, 50)), "p95": ms(_pct(alert_lat, 95)),
                         "max": ms(max(alert_lat) if alert_lat else None)},
            "alerts": [{k: h.get(k) for k in ("t", "event", "alert", "latency")} for h in hits],
            "entry_delay_s": {"n": len(delays), "median": round(statistics.median(delays), 2) if delays else None}}


def _child(job: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(job)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0:
        raise RuntimeError(f"child failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoders", nargs="+", default=["classic", "clip"])
    p.add_argument("--video", default="samples/lobby.mp4")
    p.add_argument("--latency-speed", type=float, default=None,
                   help="pace of the latency run (default: 4 for classic, 1 for clip: an input rate each sustains)")
    p.add_argument("--window", type=float, default=12.0)
    p.add_argument("--rates", type=float, nargs="+", default=None)
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--skip-ladder", action="store_true", help="latency only")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", metavar="OUT")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(_run(json.loads(a.child))))
        return 0
    video = str((REPO / a.video).resolve()) if not os.path.isabs(a.video) else a.video
    default_rates = {"classic": [5, 10, 15, 20, 25, 30, 40, 50, 60], "clip": [1, 2, 3, 4, 5, 6, 8, 10, 12]}
    results = []
    for enc in a.encoders:
        row = {"encoder": enc, "streams": a.streams}
        if not a.skip_latency:
            speed = a.latency_speed or (4.0 if enc == "classic" else 1.0)
            lat = _child({"kind": "latency", "encoder": enc, "video": video, "speed": speed,
                          "streams": a.streams})
            row["latency"] = lat
            print(f"{enc}: ingest p50/p95 {lat['ingest_ms']['p50']}/{lat['ingest_ms']['p95']} ms, alerts "
                  f"p50/p95 {lat['alert_ms']['p50']}/{lat['alert_ms']['p95']} ms (n={lat['alert_ms']['n']}), "
                  f"dropped {lat['dropped']}", file=sys.stderr)
        ladder = []
        for rate in [] if a.skip_ladder else a.rates or default_rates.get(enc, default_rates["clip"]):
            r = _child({"kind": "rate", "encoder": enc, "video": video, "rate": rate, "window": a.window,
                        "streams": a.streams})
            ladder.append(r)
            print(f"{enc}: {rate:g} fps/stream x {a.streams}: ingested {r['ingested_fps']} fps, dropped "
                  f"{r['dropped']}", file=sys.stderr)
            if not r["ok"]:
                break
        row["ladder"] = ladder
        passing = [r["rate"] for r in ladder if r["ok"]]
        row["sustained_fps"] = max(passing) if passing else None
        results.append(row)
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "load": os.getloadavg(), "python": platform.python_version(), "video": a.video,
            "command": " ".join(["python", "scripts/bench_live.py", *sys.argv[1:]])}
    if a.json:
        Path(a.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    if a.markdown:
        print(f"Machine: {meta['machine']}, {meta['cpus']} CPUs, load {meta['load'][0]:.2f} at start; "
              f"`{meta['command']}`\n")
        print("| encoder | streams | ingest latency p50 / p95 (ms) | alert latency p50 / p95 (ms), n | "
              "sustained input (fps per stream, 0 drops) | first rate with drops |")
        print("|---|---|---|---|---|---|")
        for r in results:
            lat = r.get("latency")
            il = f"{lat['ingest_ms']['p50']} / {lat['ingest_ms']['p95']}" if lat else "-"
            al = f"{lat['alert_ms']['p50']} / {lat['alert_ms']['p95']}, {lat['alert_ms']['n']}" if lat else "-"
            if not r["ladder"]:
                fail = "not run"
            else:
                fail = next((f"{x['rate']:g} ({x['dropped']} dropped, {x['ingested_fps']} fps ingested)"
                             for x in r["ladder"] if not x["ok"]), "none tried")
            print(f"| {r['encoder']} | {r['streams']} | {il} | {al} | {r['sustained_fps']} | {fail} |")
    else:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
