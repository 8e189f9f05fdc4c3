"""Ingest throughput benchmark (issue 2): how fast does ``streamvid watch`` get through a video?

    python scripts/bench_ingest.py [--videos V ...] [--encoders classic clip] [--fps 2] [--repeat N]
                                   [--max-frames N] [--markdown] [--json OUT]

For every video it measures decode-only throughput (iterating :class:`FileSource` alone), and for
every (video, encoder) pair the end-to-end ``Watcher.ingest`` throughput with a per-stage
breakdown, the realtime factor and the peak RSS. Each measurement runs in its own child process,
so that the peak RSS (``resource.getrusage``) belongs to that measurement alone.

The stage timings come from wrappers made here, not from the library: the frame iterator is
wrapped (decode wait: time blocked on the next frame from the decode thread), the encoder, the
event detector and the memory are proxies that time ``encode_frames``, ``prepare`` (on the
encoder's thread), ``update``/``finish`` and ``update``, and a ``Watcher`` subclass times ``_pin``
(description, crop embedding, thumbnail and ``memory.pin`` of each entry/exit; ``describe`` and
``encode_image`` are also timed on their own, inside the pins). The encoder and ``prepare`` run on
the encoder's thread, the memory update and the pins on the memory's thread; whatever the main
thread's ``ingest`` spends outside the decode wait and the detector is "other" (mostly waiting for
the other two).
The memory update includes the JPEG thumbnail it asks for when a segment opens.

Model loading (the encoder's constructor) is timed separately and excluded from ingest. The
``clip`` encoder is CLIP ViT-B-32 with random weights (``pretrained=None``) unless ``--pretrained``
or ``--weights`` is given: weight values do not change its cost. Its colour-prompt bank, built on
the first ``describe()``, is cleared before every run, so each run pays it as ``streamvid watch``
does. ``--max-frames`` caps the frames
each measurement ingests (and decodes); the tables say so when it is set.

``--no-detector`` runs the ingest without the event detector (a stand-in that reports no events and
constant signals, with no ``prepare``): what the encoder and the memory alone add to decoding, a
floor for the pipeline's cost on the machine. ``watch`` always runs the detector.

Default videos: ``samples/lobby.mp4`` and, when the shared data folder exists next to the repo,
``../shared/data/vtest.avi``. Relative video paths are taken from the repository root.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VIDEOS = ["samples/lobby.mp4"]
SHARED_VIDEO = "../shared/data/vtest.avi"
ENCODERS = ("classic", "clip")
STAGES = ("decode", "encoder", "prep", "detector", "memory", "pins")
THREAD_STAGES = ("encoder", "prep", "memory", "pins")  # on the encoder's and the memory's threads
STAGE_TITLES = {"decode": "decode wait", "encoder": "encoder (own thread)",
                "prep": "detector prepare (encoder's thread)", "detector": "detector",
                "memory": "memory update (own thread)", "pins": "pins (memory's thread)",
                "other": "other (incl. waits for the encoder and the memory)"}


# ---------------------------------------------------------------------- timing wrappers
class StageClock:
    """Seconds and call counts per stage (plus the slowest single call), read from ``clock``: wall
    time by default; ``time.thread_time`` gives the CPU time of the calling thread."""

    def __init__(self, clock=time.perf_counter) -> None:
        self.clock = clock
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.slowest: dict[str, float] = defaultdict(float)

    def add(self, stage: str, dt: float) -> None:
        self.seconds[stage] += dt
        self.calls[stage] += 1
        self.slowest[stage] = max(self.slowest[stage], dt)

    def wrap(self, stage: str, fn):
        def timed(*args, **kwargs):
            t0 = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(stage, self.clock() - t0)

        return timed


class Timed:
    """A proxy for ``target`` that times the methods named in ``methods`` (name → stage)."""

    def __init__(self, target, clock: StageClock, methods: dict[str, str]) -> None:
        self._target = target
        self._clock = clock
        self._methods = methods

    def __getattr__(self, name: str):
        attr = getattr(self._target, name)
        stage = self._methods.get(name)
        return self._clock.wrap(stage, attr) if stage else attr


def timed_frames(frames, clock: StageClock):
    """Yield from ``frames``, timing each wait for the next frame as the decode stage."""
    it = iter(frames)
    while True:
        t0 = time.perf_counter()
        try:
            frame = next(it)
        except StopIteration:
            clock.add("decode", time.perf_counter() - t0)
            return
        clock.add("decode", time.perf_counter() - t0)
        yield frame


def peak_rss_mib() -> float:
    """Peak RSS of this process in MiB (``ru_maxrss``, KiB on Linux).

    Linux carries the parent's RSS at fork/exec time into a child's ``ru_maxrss``, so the parent
    of the measurements imports nothing heavy (it stays at a few tens of MiB).
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def process_cpu_s() -> float:
    """CPU seconds this process has used so far, all its threads (user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def vm_hwm_mib() -> float | None:
    """The kernel's own high-water mark of this process's RSS (``VmHWM``), a cross-check."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def torch_info() -> dict:
    import torch

    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(), "cuda": torch.cuda.is_available()}


def _video_seconds(info, last_t: float | None, fps: float | None) -> float:
    """Seconds of video covered by frames up to ``last_t`` (one sampling step after the last frame)."""
    if last_t is None:
        return 0.0
    step = 1.0 / fps if fps else (1.0 / info.fps if info.fps else 0.0)
    covered = last_t + step
    return min(covered, info.duration) if info.duration else covered


# ---------------------------------------------------------------------- worker jobs
def _source(job: dict):
    """The job's video as ``watch`` reads it (every frame decoded with ``--decode-all``)."""
    from streamvid.sources import FileSource

    return FileSource(job["video"], fps=job["fps"], max_side=job["max_side"], skip_unwanted=not job.get("decode_all"))


def job_decode(job: dict) -> dict:
    runs = []
    for _ in range(job["repeat"]):
        src = _source(job)
        frames, last_t = 0, None
        t0, c0 = time.perf_counter(), process_cpu_s()
        for frame in itertools.islice(src, job["max_frames"]):
            frames += 1
            last_t = frame.t
        seconds = time.perf_counter() - t0
        runs.append({"frames": frames, "seconds": seconds, "fps": frames / seconds, "cpu_s": process_cpu_s() - c0,
                     "video_seconds": _video_seconds(src.info, last_t, job["fps"]),
                     "decoded": src.decoded})
    best = _median_run(runs)
    info = src.info
    return {**best, "runs_fps": [r["fps"] for r in runs], "peak_rss_mib": peak_rss_mib(),
            "vm_hwm_mib": vm_hwm_mib(), **torch_info(), "video_info": {"duration": info.duration, "fps": info.fps, "width": info.width,
                           "height": info.height, "codec": info.codec},
            "frame_size": list(src._out_size())}


def _make_encoder(job: dict):
    if job["encoder"] == "classic":
        from streamvid.models.classic import ClassicEncoder

        return ClassicEncoder()
    from streamvid.models.clip import ClipEncoder

    return ClipEncoder(job["model"], pretrained=job["pretrained"], weights=job["weights"],
                       device=job["device"])


class NullDetector:
    """``--no-detector``: the detector's interface without its work (no events; motion, person and
    face 0, brightness 0.5; no ``prepare``, so the encoder's thread runs the encoder alone)."""

    def __init__(self) -> None:
        from streamvid.events import DetectorOutput, FrameSignals

        self._output, self._signals = DetectorOutput, FrameSignals(0.0, 0.0, 0.0, 0.5, 0.0)

    def update(self, frame, prepared=None):
        return self._output(self._signals, [], boundary=False)

    def finish(self) -> list:
        return []


def job_ingest(job: dict) -> dict:
    from streamvid.events import EventDetector
    from streamvid.memory import DeltaMem, MemoryLayout
    from streamvid.pipeline import Watcher

    has_pin = hasattr(Watcher, "_pin")

    class TimedWatcher(Watcher):
        clock: StageClock

        def _pin(self, det, stats):  # entries/exits: description, embedding, thumbnail, memory.pin
            t0 = time.perf_counter()
            try:
                return super()._pin(det, stats)
            finally:
                self.clock.add("pins", time.perf_counter() - t0)

    t0 = time.perf_counter()
    encoder = _make_encoder(job)
    load_s = time.perf_counter() - t0
    from streamvid.pipeline import configure_threads

    configure_threads(encoder)  # the thread pools as `streamvid watch` sets them for this encoder
    if job.get("torch_threads"):  # ... unless --torch-threads says otherwise
        import torch

        torch.set_num_threads(job["torch_threads"])
    import cv2

    if job.get("cv_threads"):  # ... or --cv-threads
        cv2.setNumThreads(job["cv_threads"])
    cv_threads = cv2.getNumThreads()
    rss_after_load = peak_rss_mib()

    runs = []
    for _ in range(job["repeat"]):
        clock = StageClock()
        if hasattr(encoder, "_colour_bank"):  # clip builds its colour prompts on the first describe():
            encoder._colour_bank = None  # every run pays it, as one `streamvid watch` does
        src = _source(job)
        layout = MemoryLayout.from_budget(int(job["memory_mb"] * 2**20), encoder.dim)
        memory = DeltaMem(layout)
        watcher = TimedWatcher(
            Timed(encoder, clock, {"encode_frames": "encoder", "describe": "describe",
                                   "encode_image": "embed"}),  # the last two: parts of pins
            Timed(memory, clock, {"update": "memory"}),
            Timed(NullDetector() if job.get("no_detector") else EventDetector(), clock,
                  {"prepare": "prep", "update": "detector", "finish": "detector"}),
            batch_size=job["batch_size"],
        )
        watcher.clock = clock
        frames = timed_frames(itertools.islice(src, job["max_frames"]), clock)
        t1, c1 = time.perf_counter(), process_cpu_s()
        stats = watcher.ingest(frames)
        wall, cpu_s = time.perf_counter() - t1, process_cpu_s() - c1
        stages = {s: clock.seconds.get(s, 0.0) for s in STAGES}
        # the encoder and the detector's prepare run one batch ahead on their own thread, the memory
        # update and the pins behind on another: their time overlaps the main thread's stages (decode
        # wait, detector), and the main thread's waits for them are "other"
        stages["other"] = max(0.0, stats.seconds - sum(v for k, v in stages.items() if k not in THREAD_STAGES))
        video_s = _video_seconds(src.info, stats.last_t, job["fps"])
        runs.append({
            "frames": stats.frames, "seconds": stats.seconds, "wall": wall, "fps": stats.fps, "cpu_s": cpu_s,
            "video_seconds": video_s, "realtime": video_s / stats.seconds if stats.seconds else 0.0,
            "stages": stages, "calls": dict(clock.calls), "slowest": dict(clock.slowest),
            "seconds_by_call": dict(clock.seconds),
            "entered": stats.entered, "left": stats.left,
        })
    best = _median_run(runs)
    return {**best, "runs_fps": [r["fps"] for r in runs], "load_s": load_s,
            "rss_after_load_mib": rss_after_load, "peak_rss_mib": peak_rss_mib(),
            "vm_hwm_mib": vm_hwm_mib(), "pins_timed": has_pin, "encoder_config": encoder.config(),
            "cv_threads": cv_threads, **torch_info()}


def _median_run(runs: list[dict]) -> dict:
    """The run with the median throughput (the lower middle one for an even count)."""
    order = sorted(runs, key=lambda r: r["fps"])
    return order[(len(order) - 1) // 2]


def worker_main(spec: str) -> int:
    job = json.loads(spec)
    if job.get("torch_threads"):
        import torch

        torch.set_num_threads(job["torch_threads"])
    result = job_decode(job) if job["kind"] == "decode" else job_ingest(job)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def run_job(job: dict) -> dict:
    """Run ``job`` in a child process (its own peak RSS); stderr goes through."""
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)],
                          stdout=subprocess.PIPE, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"bench_ingest: {job['kind']} job failed ({proc.returncode}): {job}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- machine and report
def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {}  # from the installed metadata: importing torch here would raise the children's
    for name, dist in (("av", "av"), ("cv2", "opencv-python-headless"),  # peak RSS (see peak_rss_mib)
                       ("open_clip", "open_clip_torch"), ("numpy", "numpy")):
        try:
            versions[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable,
            "python": platform.python_version(), "versions": versions}


class Table:
    def __init__(self, header: list[str]) -> None:
        self.header, self.rows = header, []

    def add(self, *cells) -> None:
        self.rows.append([str(c) for c in cells])

    def render(self, markdown: bool) -> str:
        if markdown:
            lines = ["| " + " | ".join(self.header) + " |",
                     "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.header))) + "|"]
            lines += ["| " + " | ".join(r) + " |" for r in self.rows]
            return "\n".join(lines)
        widths = [max(len(r[i]) for r in [self.header, *self.rows]) for i in range(len(self.header))]
        fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(r, widths)))
        return "\n".join([fmt(self.header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in self.rows])


def report(args, machine: dict, decode: dict, ingest: dict, command: str) -> str:
    md = args.markdown
    out = []
    m = machine
    t = next(iter(decode.values()))  # torch as the measurements saw it
    v = m["versions"]
    out.append(f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
               f"{'CUDA available' if t['cuda'] else 'no GPU'}; Python {m['python']}, "
               f"torch {t['torch']} ({t['torch_threads']} threads"
               f"{'' if args.torch_threads else ', its default; ingest uses 1 with classic, at most 4 with clip on a GPU, as `watch` does'}; "
               + (f"OpenCV {args.cv_threads} threads in ingest, where `watch` uses 1), " if args.cv_threads
                  else "OpenCV 1 thread in ingest, as in `watch`), ") +
               f"PyAV {v.get('av', '?')}, "
               f"OpenCV {v.get('cv2', '?')}, open_clip {v.get('open_clip', '?')}.")
    cap = f", at most {args.max_frames} frames per run" if args.max_frames else ""
    clip = (f"; clip = {args.model} on {args.device or 'the default device'} with "
            f"{args.weights or args.pretrained or 'random weights'}" if "clip" in args.encoders else "")
    out.append(f"Settings: sampled at {args.fps:g} fps, frames scaled to at most {args.max_side} px, "
               f"batch {args.batch_size}, memory {args.memory_mb:g} MiB, median of {args.repeat} run(s){cap}"
               f"{clip}{'; every frame decoded (--decode-all)' if args.decode_all else ''}"
               f"{'; **no event detector** (--no-detector: not what `watch` runs)' if args.no_detector else ''}.")
    out.append("Load average (1 min) before / after the run: "
               f"{m['load_before'][0]:.2f} / {m['load_after'][0]:.2f} (other processes share the cores: "
               f"a load above {m['usable_cores']} means contention); whole run {m['total_s']:.0f} s.")
    out.append(f"Command: `{command}`" if md else f"Command: {command}")
    out.append("")

    t = Table(["video", "encoder", "frames", "decode-only fps", "ingest fps", "ingest ÷ decode", "realtime ×",
               "ingest s", "model load s", "peak RSS MiB (after load)"])
    for (video, enc), r in ingest.items():
        d = decode[video]
        t.add(Path(video).name, enc, r["frames"], f"{d['fps']:.1f}", f"{r['fps']:.1f}",
              f"{d['fps'] / r['fps']:.2f}×" if r["fps"] else "–",
              f"{r['realtime']:.1f}", f"{r['seconds']:.2f}", f"{r['load_s']:.2f}",
              f"{r['peak_rss_mib']:.0f} ({r['rss_after_load_mib']:.0f})")
    out.append(t.render(md))
    out.append("")
    cores = m["usable_cores"]
    ct = Table(["video", "encoder", "decode-only CPU ms/frame (cores busy)", "ingest CPU ms/frame (cores busy)",
                f"ingest CPU ÷ {cores} cores, ms/frame", "as × decode-only wall"])
    for (video, enc), r in ingest.items():
        d = decode[video]
        if "cpu_s" not in r or "cpu_s" not in d or not r["frames"] or not d["frames"]:
            continue
        packed = 1000 * r["cpu_s"] / r["frames"] / cores
        ct.add(Path(video).name, enc, f"{1000 * d['cpu_s'] / d['frames']:.2f} ({d['cpu_s'] / d['seconds']:.2f})",
               f"{1000 * r['cpu_s'] / r['frames']:.2f} ({r['cpu_s'] / r['seconds']:.2f})", f"{packed:.2f}",
               f"{packed / (1000 * d['seconds'] / d['frames']):.2f}×")
    out.append(f"CPU of the whole process (all threads: FFmpeg's, decoding, encoder, detector, memory) per frame. "
               f"Spread perfectly over the {cores} usable cores, the ingest's CPU would take the next-to-last "
               "column per frame: the last is the least end-to-end ÷ decode that this CPU allows without "
               "spending less of it:")
    out.append("")
    out.append(ct.render(md))
    out.append("")
    dt = Table(["video", "frames", "size", "decode-only fps", "realtime ×", "peak RSS MiB"])
    for video, d in decode.items():
        dt.add(Path(video).name, d["frames"], "×".join(map(str, d["frame_size"])), f"{d['fps']:.1f}",
               f"{d['video_seconds'] / d['seconds']:.1f}", f"{d['peak_rss_mib']:.0f}")
    out.append("Decode only (FileSource iteration, its own process):")
    out.append("")
    out.append(dt.render(md))
    out.append("")

    names = [*STAGES, "other"]
    st = Table(["video", "encoder", *[f"{STAGE_TITLES[s]} ms/frame (%)" for s in names]])
    for (video, enc), r in ingest.items():
        n = max(r["frames"], 1)
        cells = []
        for s in names:
            sec = r["stages"][s]
            pct = 100.0 * sec / r["seconds"] if r["seconds"] else 0.0
            cells.append("n/a" if s == "pins" and not r["pins_timed"] else f"{1000 * sec / n:.1f} ({pct:.0f}%)")
        st.add(Path(video).name, enc, *cells)
    out.append("Per-stage breakdown of ingest (wall time inside Watcher.ingest, per ingested frame; the "
               "encoder with the detector's prepare, and the memory update with the pins, work on threads "
               "of their own, so their shares overlap the others and the shares add up to more than 100 %):")
    out.append("")
    out.append(st.render(md))
    out.append("")
    notes = []
    for (video, enc), r in ingest.items():
        pins = r["calls"].get("pins", 0)
        if pins:
            sec, calls, slow = r["stages"]["pins"], r["calls"], r["slowest"]
            desc = (f"; of which describe() {r['seconds_by_call'].get('describe', 0.0):.2f} s in "
                    f"{calls.get('describe', 0)} call(s) (slowest {1000 * slow.get('describe', 0.0):.0f} ms), "
                    f"crop embedding {r['seconds_by_call'].get('embed', 0.0):.2f} s")
            notes.append(f"{Path(video).name}/{enc}: {pins} pins ({r['entered']} entered, {r['left']} left) "
                         f"took {sec:.2f} s{desc}")
        if len(r["runs_fps"]) > 1:
            notes.append(f"{Path(video).name}/{enc}: ingest fps per run "
                         + ", ".join(f"{x:.1f}" for x in r["runs_fps"]))
    if notes:
        out.append("Notes:")
        out.append("")
        out += [f"- {n}" for n in notes]
    return "\n".join(out)


# ---------------------------------------------------------------------- main
def default_videos() -> list[str]:
    videos = list(DEFAULT_VIDEOS)
    if (REPO / SHARED_VIDEO).parent.is_dir() and (REPO / SHARED_VIDEO).is_file():
        videos.append(SHARED_VIDEO)
    return videos


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", nargs="+", default=None, metavar="VIDEO",
                   help="videos (relative to the repo root); default: samples/lobby.mp4 "
                        f"plus {SHARED_VIDEO} when it exists")
    p.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=ENCODERS)
    p.add_argument("--fps", type=float, default=2.0, help="sampled frames per second (default: 2)")
    p.add_argument("--repeat", type=int, default=1, help="runs per measurement; the median is reported")
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="ingest (and decode) at most N frames per run (default: the whole video)")
    p.add_argument("--max-side", type=int, default=640, help="FileSource max_side (default: 640)")
    p.add_argument("--batch-size", type=int, default=8, help="Watcher batch size (default: 8)")
    p.add_argument("--memory-mb", type=float, default=4.0, help="memory budget in MiB (default: 4)")
    p.add_argument("--model", default="ViT-B-32", help="CLIP model (default: ViT-B-32)")
    p.add_argument("--pretrained", default=None, help="CLIP pretrained tag (default: random weights)")
    p.add_argument("--weights", default=None, help="CLIP weights file (default: random weights)")
    p.add_argument("--device", default="cpu", help="CLIP device (default: cpu)")
    p.add_argument("--torch-threads", type=int, default=None, metavar="N",
                   help="torch.set_num_threads(N) in each measurement (default: what `watch` uses: "
                        "1 with classic, torch's own choice with clip on the CPU, at most 4 with clip on a GPU)")
    p.add_argument("--cv-threads", type=int, default=None, metavar="N",
                   help="cv2.setNumThreads(N) in each ingest (default: 1, what `watch` uses)")
    p.add_argument("--decode-all", action="store_true",
                   help="decode every frame, also the non-reference ones sampling skips "
                        "(FileSource(skip_unwanted=False), as before that option existed)")
    p.add_argument("--no-detector", action="store_true",
                   help="ingest without the event detector (no events): what the encoder and the memory "
                        "alone add to decoding; `watch` always runs it")
    p.add_argument("--markdown", action="store_true", help="print markdown tables")
    p.add_argument("--json", metavar="OUT", help="also write the raw measurements to OUT")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.max_frames is not None and args.max_frames < 1:
        p.error("--max-frames must be at least 1")
    if args.fps <= 0:
        p.error("--fps must be positive")
    for name in ("torch_threads", "cv_threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv])
    videos = args.videos or default_videos()
    for v in videos:
        if not (REPO / v).is_file():
            raise SystemExit(f"bench_ingest: no such video: {v}")
    base = {"fps": args.fps, "max_side": args.max_side, "max_frames": args.max_frames, "repeat": args.repeat,
            "torch_threads": args.torch_threads, "cv_threads": args.cv_threads, "decode_all": args.decode_all,
            "no_detector": args.no_detector}
    machine = machine_info()
    machine["load_before"] = os.getloadavg()
    decode, ingest = {}, {}
    t_start = time.perf_counter()
    for video in videos:
        print(f"bench_ingest: decode-only {video}", file=sys.stderr, flush=True)
        decode[video] = run_job({**base, "kind": "decode", "video": video})
        for enc in args.encoders:
            print(f"bench_ingest: ingest {video} with {enc}", file=sys.stderr, flush=True)
            ingest[(video, enc)] = run_job({
                **base, "kind": "ingest", "video": video, "encoder": enc, "batch_size": args.batch_size,
                "memory_mb": args.memory_mb, "model": args.model, "pretrained": args.pretrained,
                "weights": args.weights, "device": args.device})
    machine["load_after"] = os.getloadavg()
    machine["total_s"] = time.perf_counter() - t_start
    print(f"bench_ingest: done in {machine['total_s']:.0f} s", file=sys.stderr, flush=True)
    print(report(args, machine, decode, ingest, command))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": machine, "command": command, "args": vars(args),
                       "decode": decode, "ingest": [{"video": v, "encoder": e, **r}
                                                    for (v, e), r in ingest.items()]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
