"""Consistency checker throughput (issue 6): frames per second of ``streamvid consistency`` on CPU.

    python scripts/bench_consistency.py [--video V] [--configs classic classic+vbench clip+vbench dino+clip]
                                        [--frames N] [--repeat R] [--markdown]

Each configuration runs in its own child process over the same video (default: the generated
``story_scene("subject")``, 24 s of 320x240 at 10 fps, written to a temporary file; or ``--video``),
decoding every frame with :class:`FileSource` and feeding :class:`ConsistencyMonitor` in chunks.
Model loading is excluded; decoding is included (it is what the CLI does).

- ``classic``: drift only (``--no-vbench``), classic encoder;
- ``classic+vbench``: the drift and the three scores on the classic encoder's global vectors (the
  fallback when no CLIP weights exist: not VBench-comparable, but what such a machine runs);
- ``clip+vbench``: CLIP ViT-B-32 as the drift encoder and as the background features (random
  weights: their values do not change the cost);
- ``dino+clip``: as ``clip+vbench`` plus DINO ViT-B/16 (random weights) for subject consistency.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _child(cfg: str, video: str, frames: int | None) -> dict:
    import torch

    from streamvid.consistency import vbench
    from streamvid.consistency.monitor import ConsistencyMonitor
    from streamvid.models.classic import ClassicEncoder
    from streamvid.sources import FileSource

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    if cfg.startswith("classic"):
        enc = ClassicEncoder()
        feats = vbench.ClassicGlobalFeatures(enc) if cfg == "classic+vbench" else None
        subject = background = feats
    else:
        from streamvid.models.clip import ClipEncoder

        enc = ClipEncoder("ViT-B-32", pretrained=None)
        background = vbench.ClipImageFeatures(enc)
        subject = background
        if cfg == "dino+clip":
            from streamvid.models.dino import DinoFeatures

            subject = DinoFeatures(pretrained=False)
    load_s = time.perf_counter() - t0
    mon = ConsistencyMonitor(enc, subject=subject, background=background)
    n = 0

    def src():
        nonlocal n
        for f in FileSource(video, fps=None):
            if frames is not None and n >= frames:
                return
            n += 1
            yield f

    t0 = time.perf_counter()
    mon.feed(src())
    mon.finish()
    dt = time.perf_counter() - t0
    rep = mon.report()
    return {"config": cfg, "frames": n, "seconds": round(dt, 2), "fps": round(n / dt, 2), "load_s": round(load_s, 1),
            "drifts": len(rep["drifts"]), "shots": len(rep["shots"])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video")
    p.add_argument("--configs", nargs="+", default=["classic", "classic+vbench", "clip+vbench", "dino+clip"])
    p.add_argument("--frames", type=int, default=None, help="at most this many frames per run")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        cfg, video, frames = a.child
        print(json.dumps(_child(cfg, video, None if frames == "none" else int(frames))))
        return 0
    tmp = None
    video = a.video
    if video is None:
        from streamvid import synth

        tmp = tempfile.TemporaryDirectory()
        video = os.path.join(tmp.name, "story_subject.mp4")
        synth.write_video(video, synth.story_scene("subject"))
    rows = []
    for cfg in a.configs:
        runs = []
        for _ in range(a.repeat):
            out = subprocess.run([sys.executable, __file__, "--child", cfg, video, str(a.frames or "none")],
                                 capture_output=True, text=True, cwd=REPO)
            if out.returncode:
                raise SystemExit(f"{cfg} failed: {out.stderr[-2000:]}")
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        best = max(runs, key=lambda r: r["fps"])
        best["fps_median"] = round(statistics.median(r["fps"] for r in runs), 2)
        rows.append(best)
        print(f"{cfg}: {best['fps']} fps ({best['frames']} frames in {best['seconds']} s; {best['drifts']} drift)",
              file=sys.stderr)
    load = os.getloadavg()[0]
    cmd = " ".join(["python", "scripts/bench_consistency.py", *sys.argv[1:]])
    if a.markdown:
        print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load {load:.2f} after the runs; `{cmd}`\n")
        print("| configuration | frames | fps (best of runs) | median fps | drifts found | model load (s) |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['config']} | {r['frames']} | {r['fps']} | {r['fps_median']} | {r['drifts']} | {r['load_s']} |")
    else:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
