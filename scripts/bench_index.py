"""Scale-out benchmark (issue 9): videos indexed per minute by ``streamvid index``, in-process and
on a local Ray cluster with 1 and 2 workers.

    python scripts/bench_index.py [--videos 8] [--seconds 9] [--fps 10] [--workers 1 2]
                                  [--source auto|vtest|synth] [--work DIR] [--markdown] [--json OUT]

The videos: with ``--source vtest`` (the default when ``../shared/data/vtest.avi`` exists) the
first ``videos × seconds`` seconds of OpenCV's pedestrian clip (768×576, 10 fps) cut into
``--videos`` clips of ``--seconds`` each (re-encoded with x264, so each is a separate file with
its own content); with ``--source synth``, generated lobby scenes (``streamvid.synth.lobby_scene``,
640×360, 10 fps) with a different seed each.

Each configuration indexes all the videos into a fresh catalog with the classic encoder at
``--fps``, running ``python -m streamvid index ... --json`` as its own process: ``in-process``
(no ``--ray``: one video after the other, torch and OpenCV free to use every core), then
``--ray local --workers N`` for each N (a local cluster of N CPUs, one actor per worker, each
limited to one thread of torch and OpenCV). Reported: the wall time of the indexing as the command
measures it (for Ray: starting the cluster and its workers included; the cluster's start alone
is its own column), videos per minute from it, the wall time of the whole process (interpreter
and imports included), and the range of the time each video took where it was indexed. The machine: CPU
model, cores, and the load average before and after (other work may share the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import cpu_model  # noqa: E402

SHARED_VIDEO = REPO.parent / "shared" / "data" / "vtest.avi"


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def cut_vtest(src: Path, out: Path, count: int, seconds: float) -> list[Path]:
    """The first ``count × seconds`` seconds of ``src``, as ``count`` x264 clips."""
    import av

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"vtest_{i:02d}.mp4" for i in range(count)]
    writers: dict[int, tuple] = {}
    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        rate = stream.average_rate or 10
        for frame in inp.decode(stream):
            t = float(frame.pts * stream.time_base) if frame.pts is not None else 0.0
            k = int(t // seconds)
            if k >= count:
                break
            if k not in writers:
                c = av.open(str(paths[k]), mode="w")
                s = c.add_stream("libx264", rate=rate)
                s.width, s.height, s.pix_fmt = frame.width, frame.height, "yuv420p"
                s.options = {"crf": "23", "preset": "veryfast"}
                writers[k] = (c, s, 0)
            c, s, n = writers[k]
            img = frame.reformat(format="yuv420p")
            img.pts = n
            for packet in s.encode(img):
                c.mux(packet)
            writers[k] = (c, s, n + 1)
    for c, s, _ in writers.values():
        for packet in s.encode():
            c.mux(packet)
        c.close()
    missing = [p for k, p in enumerate(paths) if k not in writers]
    if missing:
        raise SystemExit(f"{src} is too short for {count} clips of {seconds:g} s")
    return paths


def synth_videos(out: Path, count: int, seconds: float) -> list[Path]:
    sys.path.insert(0, str(REPO))
    from streamvid import synth

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = out / f"lobby_{i:02d}.mp4"
        synth.write_video(p, synth.lobby_scene(duration=seconds, seed=100 + i), preset="veryfast")
        paths.append(p)
    return paths


def run_index(videos: list[Path], catalog: Path, fps: float, workers: int | None) -> dict:
    cmd = [sys.executable, "-m", "streamvid", "index", *map(str, videos), "--catalog", str(catalog),
           "--encoder", "classic", "--fps", str(fps), "--json", "-q"]
    if workers is not None:
        cmd += ["--ray", "local", "--workers", str(workers)]
    load_before = load_average()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(catalog.parent))
    wall = time.perf_counter() - t0
    load_after = load_average()
    if proc.returncode != 0:
        raise SystemExit(f"index failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    doc = json.loads(proc.stdout)
    if doc["indexed"] != len(videos):
        raise SystemExit(f"expected {len(videos)} videos indexed, got {doc['indexed']}")
    frames = sum(v["frames"] for v in doc["videos"])
    return {"config": "in-process" if workers is None else f"ray local, {workers} worker{'s' * (workers != 1)}",
            "workers": workers, "videos": len(videos), "frames": frames, "seconds": doc["seconds"],
            "videos_per_minute": len(videos) / doc["seconds"] * 60, "process_seconds": wall,
            "ray_start_seconds": doc["ray_start_seconds"], "load_before": load_before, "load_after": load_after,
            "per_video_seconds": sorted(v["seconds"] for v in doc["videos"])}


def _load(avg) -> str:
    return f"{avg[0]:.2f}" if avg else "?"


def markdown(rows: list[dict]) -> str:
    base = next((r for r in rows if r["workers"] == 1), None)
    out = ["| configuration | videos | sampled frames | indexing wall (s) | of which Ray start (s) | videos / min "
           "| speed-up vs 1 worker | process wall (s) | per-video time, min–max (s) | load avg (1 min) before → after |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        sp = f"{base['seconds'] / r['seconds']:.2f}×" if base is not None else "–"
        pv = r["per_video_seconds"]
        out.append(f"| {r['config']} | {r['videos']} | {r['frames']} | {r['seconds']:.1f} | "
                   f"{r['ray_start_seconds']:.1f} | {r['videos_per_minute']:.1f} | {sp} | {r['process_seconds']:.1f} "
                   f"| {pv[0]:.1f}–{pv[-1]:.1f} | {_load(r['load_before'])} → {_load(r['load_after'])} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=8, help="how many videos (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=9.0, help="length of each video (default: %(default)s)")
    p.add_argument("--fps", type=float, default=10.0, help="frames sampled per second (default: %(default)s)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts (default: 1 2)")
    p.add_argument("--no-in-process", action="store_true", help="skip the in-process run")
    p.add_argument("--source", choices=["auto", "vtest", "synth"], default="auto")
    p.add_argument("--work", type=Path, default=None, help="folder for the videos and catalogs (default: a temp dir)")
    p.add_argument("--markdown", action="store_true", help="print the markdown table")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON to this file")
    args = p.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_index_"))
    work.mkdir(parents=True, exist_ok=True)
    source = args.source
    if source == "auto":
        source = "vtest" if SHARED_VIDEO.is_file() else "synth"
    t0 = time.perf_counter()
    if source == "vtest":
        videos = cut_vtest(SHARED_VIDEO, work / "videos", args.videos, args.seconds)
    else:
        videos = synth_videos(work / "videos", args.videos, args.seconds)
    print(f"{len(videos)} videos of {args.seconds:g} s ({source}) in {time.perf_counter() - t0:.1f} s, under {work}",
          file=sys.stderr)

    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
               "load_before": load_average()}
    print(f"machine: {machine['cpu']}, {machine['cores']} cores; load average before {machine['load_before']}",
          file=sys.stderr)
    rows = []
    configs = ([] if args.no_in_process else [None]) + list(args.workers)
    for w in configs:
        name = "inproc" if w is None else f"ray{w}"
        row = run_index(videos, work / f"catalog_{name}", args.fps, w)
        rows.append(row)
        print(f"{row['config']}: {row['videos']} videos in {row['seconds']:.1f} s = "
              f"{row['videos_per_minute']:.1f} videos/min (process {row['process_seconds']:.1f} s)", file=sys.stderr)
    machine["load_after"] = load_average()
    print(f"load average after {machine['load_after']}", file=sys.stderr)
    doc = {"machine": machine, "source": source, "videos": len(videos), "seconds_each": args.seconds,
           "fps": args.fps, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))
    if args.markdown:
        print(markdown(rows))
    else:
        print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
