"""CPU time per pipeline stage, one thread, decoding excluded (issue 7's throughput work).

    python scripts/bench_stages.py VIDEO [--fps 2] [--max-side 640] [--start S] [--end S]
                                         [--repeat 3] [--budget-mib 4]

``bench_ingest`` measures what ``watch`` does end to end, with decoding, the encoder's thread and
the main thread sharing the cores, so its stage times include waiting for a core. This script
answers the other question: how much CPU does each stage itself cost per frame? It decodes the
sampled frames first (not timed), then runs the classic encoder, the event detector, the memory
update and the pins one after the other on the main thread, exactly as ``Watcher`` calls them
(``_step``), timing each with ``time.thread_time`` (CPU time of this thread). OpenCV and torch are
set to one thread, as ``watch`` sets them with the classic encoder. It prints a Markdown table of
the best of ``--repeat`` runs (the least disturbed by other work on the machine) and the detector's
largest parts.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import StageClock  # noqa: E402

log = logging.getLogger("bench_stages")

DETECTOR_PARTS = ("_count_faces", "_hog_person", "_foreground", "_blobs", "_track", "_learn",
                  "_scene_checks", "_is_ghost", "_appearance")


def run_once(frames, budget_mib: float) -> tuple[float, dict[str, float], int]:
    """One pass over ``frames`` → (CPU seconds in all, CPU seconds per stage, frames)."""
    from streamvid.events import EventDetector
    from streamvid.models.factory import create_encoder
    from streamvid.pipeline import IngestStats, Watcher, configure_threads, new_memory

    enc, _ = create_encoder("classic", pretrained=None)
    configure_threads(enc)
    mem = new_memory(enc, int(budget_mib * (1 << 20)))
    det = EventDetector()
    clock = StageClock(time.thread_time)  # CPU time of this thread
    det.update = clock.wrap("detector", det.update)
    mem.update = clock.wrap("memory update", mem.update)
    for name in DETECTOR_PARTS:
        setattr(det, name, clock.wrap(f"detector: {name.lstrip('_')}", getattr(det, name)))
    watcher = Watcher(enc, mem, det)
    watcher._pin = clock.wrap("pins", watcher._pin)
    # the batch call is timed, not enc.encode_frames itself: the pins' crop embeddings call it too
    # and count as pins
    encode = clock.wrap("encoder", enc.encode_frames)
    stats = IngestStats()
    t0 = time.thread_time()
    first = True
    for i in range(0, len(frames), watcher.batch_size):  # encode a batch, then step its frames
        batch = frames[i:i + watcher.batch_size]
        encoded = encode([f.rgb for f in batch])
        for frame, e in zip(batch, encoded):
            watcher._step(frame, e, stats, boundary=first)
            first = False
    watcher.finish(stats)
    return time.thread_time() - t0, clock.seconds, len(frames)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("video")
    p.add_argument("--fps", type=float, default=2.0, help="sampling rate (default 2, as watch)")
    p.add_argument("--max-side", type=int, default=640, help="frames scaled to at most this (default 640)")
    p.add_argument("--start", type=float, default=0.0, help="first second of the video to use (default 0)")
    p.add_argument("--end", type=float, default=None, help="last second of the video to use (default: the end)")
    p.add_argument("--repeat", type=int, default=3, help="runs; the best is reported (default 3)")
    p.add_argument("--budget-mib", type=float, default=4.0, help="memory budget (default 4 MiB)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="bench_stages: %(message)s")
    log.setLevel(logging.INFO)  # this script's progress; the library's own INFO lines stay quiet
    from streamvid.errors import one_line
    from streamvid.sources import FileSource

    try:
        frames = list(FileSource(args.video, fps=args.fps, max_side=args.max_side, start=args.start,
                                 end=args.end))
    except Exception as e:  # a missing or undecodable video: one line, not a traceback
        print(f"bench_stages: {one_line(e)}", file=sys.stderr)
        return 2
    if not frames:
        print(f"bench_stages: no frames in {args.video}", file=sys.stderr)
        return 2
    log.info("%d frames of %s decoded (%dx%d)", len(frames), args.video, frames[0].rgb.shape[1],
             frames[0].rgb.shape[0])
    load = os.getloadavg()[0]
    best = None
    for r in range(args.repeat):
        total, clock, n = run_once(frames, args.budget_mib)
        log.info("run %d: %.2f ms of CPU per frame", r + 1, 1000 * total / n)
        if best is None or total < best[0]:
            best = (total, clock, n)
    total, clock, n = best
    span = f", {args.start:g}–{frames[-1].t:.0f} s" if args.start or args.end is not None else ""
    print(f"{n} frames of `{args.video}`{span} ({frames[0].rgb.shape[1]}×{frames[0].rgb.shape[0]}, "
          f"{args.fps:g} fps), classic encoder, {args.budget_mib:g} MiB memory; best of {args.repeat} runs; "
          f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after.\n")
    print("| stage | CPU ms per frame |\n|---|---:|")
    main_stages = ("encoder", "detector", "memory update", "pins")
    for key in main_stages:
        print(f"| {key} | {1000 * clock[key] / n:.2f} |")
    other = total - sum(clock[k] for k in main_stages)
    print(f"| other (the watcher's own work) | {1000 * other / n:.2f} |")
    print(f"| **all** | **{1000 * total / n:.2f}** |")
    parts = sorted((k for k in clock if k.startswith("detector: ")), key=lambda k: -clock[k])
    print("\n| detector part (nested: track includes HOG, ghost test, appearance) | CPU ms per frame |\n|---|---:|")
    for key in parts:
        print(f"| {key.removeprefix('detector: ')} | {1000 * clock[key] / n:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
