"""Event grounding at a fixed memory budget (issue 7): entered/left F1 at ±1.5 s on generated video.

    python scripts/bench_events.py --markdown                   # 1 h, budgets 0.25 … 8 MiB
    python scripts/bench_events.py --hours 0.1 --budgets 0.25 4 --markdown

The stream: the generated lobby scene (:func:`streamvid.synth.lobby_scene`, 75 s: five people
entering and leaving, four leaving again, a lighting dip), rendered at ``--size`` and ``--fps`` and
looped until it lasts ``--hours``; the ground truth is :func:`streamvid.synth.ground_truth` of the
scene, repeated, plus what the loop point does: the fifth person, still in the lobby at the end of
the scene, vanishes there (the next frame is the empty lobby of the scene's start), which is an exit
in the looped video (the join is not a cut) though not in the scene alone. (Lobbies of other
seeds joined one after the other are not used: the detector does not see the join between two
look-alike lobbies as a cut, and reports the whole new room as people entering.)

One pass runs the event detector and the encoder over the whole stream (``watch``'s path:
:class:`streamvid.pipeline.Watcher`), recording what they give; every budget then replays those
outputs into a fresh Δ-Mem through the same ``Watcher`` (entries and exits pinned, their crops
encoded and described), so all budgets see identical detections.

What a memory remembers of the events: its pinned events (time, kind) and, once the event tier is
full, the folded events: with their time and kind while the folded-event times have room
(``fold_t``), then as a count in their segment (``seg_folded``), placed at the segment's middle. F1 per kind at ±1.5 s (one-to-one matching in time order)
against the ground truth, and for both kinds together. The reference, ``detector``, is the
detector's own list of every event (no budget): what a memory of unlimited size would hold.
Retention = Δ-Mem's F1 ÷ the reference's.

The token memories of scripts/bench_retention.py (uniform, FIFO, MovieChat, MA-LMM,
TimeChat-Online, k-means) keep visual tokens and no events: they cannot answer "who entered?" at
all (F1 0), so they are not rows here.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass

import numpy as np

TOLERANCE = 1.5
KINDS = ("entered", "left")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Stream:
    frames: list  # unique frames [H, W, 3] uint8, in order
    events: list[dict]  # ground truth of the whole looped stream: {"t", "event"}
    fps: float
    n: int  # frames in the looped stream
    unique_s: float
    variants: int


def build_stream(hours: float, fps: float, size: tuple[int, int], seed: int, variants: int = 1) -> Stream:
    from streamvid import synth

    w, h = size
    frames, events, chunks, t0 = [], [], [], 0.0
    for k in range(variants):
        scene = synth.lobby_scene(width=w, height=h, fps=fps, seed=seed + k)
        for i in range(scene.n_frames):
            frames.append(synth.render_frame(scene, i))
        gt = synth.ground_truth(scene)
        events += [{"t": t0 + e["t"], "event": e["event"]} for e in gt["events"]]
        # who is in view at the chunk's first and last frame: ground_truth() counts no entry or exit
        # there (its video starts and ends), but in the joined stream the next frame may differ
        first_t, last_t = round(scene.frame_time(0), 1), round(scene.frame_time(scene.n_frames - 1), 1)
        chunks.append((t0, {(k, f["id"]) for f in gt["figures"] if any(a == first_t for a, _ in f["visible"])},
                       {(k, f["id"]) for f in gt["figures"] if any(b == last_t for _, b in f["visible"])},
                       last_t))
        t0 += scene.n_frames / fps
    unique_s = t0
    n = int(round(hours * 3600 * fps))
    passes = int(np.ceil(n / len(frames)))
    looped = [{"t": p * unique_s + e["t"], "event": e["event"]} for p in range(passes) for e in events]
    # The joins (scene to scene, and the loop back to the start) are not cuts: whoever is in view at
    # the end of a chunk and not at the start of the next one vanishes there (the detector sees them
    # go: "left" at the chunk's last frame), and the reverse appear ("entered" at the next's first).
    order = [(p, c) for p in range(passes) for c in chunks]
    for (p, (c0, _, at_end, last_t)), (q, (n0, at_start, _, _)) in zip(order, order[1:]):
        looped += [{"t": p * unique_s + c0 + last_t, "event": "left"} for _ in at_end - at_start]
        looped += [{"t": q * unique_s + n0, "event": "entered"} for _ in at_start - at_end]
    looped.sort(key=lambda e: e["t"])
    end = n / fps
    return Stream(frames, [e for e in looped if e["t"] < end], fps, n, unique_s, variants)


class _Recorder:
    """Wraps the encoder and the detector of a first pass, keeping what they return."""

    def __init__(self, encoder, detector) -> None:
        self.encoder, self.detector = encoder, detector
        self.encoded: list = []
        self.outputs: list = []
        self.final: list = []

    def encode_frames(self, images):
        out = self.encoder.encode_frames(images)
        self.encoded += out
        return out

    def update(self, frame):
        out = self.detector.update(frame)
        self.outputs.append(out)
        return out

    def finish(self):
        self.final = self.detector.finish()
        return self.final

    def __getattr__(self, name):  # describe, encode_image, dim, ...
        return getattr(self.encoder, name)


class _Replay:
    """Gives back a recorded pass: the encoder's vectors and the detector's outputs, in order."""

    def __init__(self, rec: _Recorder) -> None:
        self.rec, self._e, self._d = rec, 0, 0

    def encode_frames(self, images):
        out = self.rec.encoded[self._e : self._e + len(images)]
        self._e += len(images)
        return out

    def update(self, frame):
        out = self.rec.outputs[self._d]
        self._d += 1
        return out

    def finish(self):
        return list(self.rec.final)

    def __getattr__(self, name):
        return getattr(self.rec.encoder, name)


def frames_of(stream: Stream):
    from streamvid.types import Frame

    for i in range(stream.n):
        yield Frame(t=i / stream.fps, rgb=stream.frames[i % len(stream.frames)], index=i)


def match_f1(pred: list[float], truth: list[float], tol: float = TOLERANCE) -> tuple[int, int, int]:
    """One-to-one matching in time order (each truth takes the nearest free prediction within
    ``tol``) → ``(true positives, predictions, truths)``."""
    pred = sorted(pred)
    used = [False] * len(pred)
    tp = 0
    lo = 0
    for t in sorted(truth):
        while lo < len(pred) and pred[lo] < t - tol:
            lo += 1
        best, best_d = -1, tol + 1e-9
        j = lo
        while j < len(pred) and pred[j] <= t + tol:
            if not used[j] and abs(pred[j] - t) <= best_d:
                best, best_d = j, abs(pred[j] - t)
            j += 1
        if best >= 0:
            used[best] = True
            tp += 1
    return tp, len(pred), len(truth)


def f1(tp: int, p: int, g: int) -> float:
    return 2 * tp / (p + g) if p + g else 1.0


def remembered(mem) -> dict[str, list[float]]:
    """The event times a Δ-Mem holds: pinned events, folded events whose time is kept, and folded
    events that are only counts at the middle of their segment."""
    out = {k: [ev.t for ev in mem.events(k)] + [t for t, _ in mem.folded_events(k)] for k in KINDS}
    for seg in mem.segments():
        for k in KINDS:
            out[k] += [0.5 * (seg.start + seg.end)] * int(seg.folded.get(k, 0))
    return out


def score(pred: dict[str, list[float]], truth: list[dict]) -> dict:
    row, tot = {}, [0, 0, 0]
    for k in KINDS:
        c = match_f1(pred[k], [e["t"] for e in truth if e["event"] == k])
        row[k] = f1(*c)
        row[k + "_counts"] = c
        tot = [a + b for a, b in zip(tot, c)]
    row["both"] = f1(*tot)
    row["precision"] = tot[0] / tot[1] if tot[1] else 1.0
    row["recall"] = tot[0] / tot[2] if tot[2] else 1.0
    return row


def run(args) -> dict:
    import torch

    from streamvid.events import EventDetector
    from streamvid.models.classic import ClassicEncoder
    from streamvid.pipeline import Watcher, new_memory

    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    stream = build_stream(args.hours, args.fps, size, args.seed)
    log(f"stream: {stream.n} frames ({stream.n / stream.fps / 3600:.2f} h), {len(stream.frames)} unique "
        f"({stream.unique_s / 60:.1f} min, {stream.variants} scenes), {len(stream.events)} true events")
    encoder = ClassicEncoder()
    rec = _Recorder(encoder, EventDetector())
    first = Watcher(rec, new_memory(encoder, int(args.budgets[0] * 2**20)), rec)
    t0 = time.perf_counter()
    first.ingest(frames_of(stream))
    detect_s = time.perf_counter() - t0
    detector = {k: [] for k in KINDS}
    for out in rec.outputs:
        for d in out.detections:
            if d.event in KINDS:
                detector[d.event].append(d.t)
    for d in rec.final:
        if d.event in KINDS:
            detector[d.event].append(d.t)
    ref = score(detector, stream.events)
    ref.update(method="detector", budget_mib=None, pinned=sum(map(len, detector.values())), folded=0)
    log(f"detector pass: {detect_s:.0f} s; detector F1 {ref['both']:.3f}")
    rows = []
    for mib in args.budgets:
        replay = _Replay(rec)
        mem = new_memory(encoder, int(mib * 2**20))
        t0 = time.perf_counter()
        Watcher(replay, mem, replay).ingest(frames_of(stream))
        pred = remembered(mem)
        row = score(pred, stream.events)
        folded = mem.folded_counts()
        row.update(method="delta-mem", budget_mib=mib, nbytes=mem.nbytes, events=mem.layout.events,
                   folds=mem.layout.folds, pinned=len(mem.events()), folded=sum(folded.values()),
                   folded_timed=len(mem.folded_events()), seconds=time.perf_counter() - t0)
        row["retention"] = row["both"] / ref["both"] if ref["both"] else None
        rows.append(row)
        log(f"  {mib:g} MiB: F1 {row['both']:.3f} (entered {row['entered']:.3f}, left {row['left']:.3f}), "
            f"{row['pinned']} pinned of E={row['events']}, {row['folded']} folded ({row['folded_timed']} with time)")
    return {"stream": {"frames": stream.n, "fps": stream.fps, "hours": stream.n / stream.fps / 3600,
                       "unique_s": stream.unique_s, "scenes": stream.variants, "events": len(stream.events),
                       "size": list(size)},
            "reference": ref, "runs": rows, "detect_s": detect_s, "wall_s": time.perf_counter() - t_all}


def markdown(res: dict, argv: list[str]) -> str:
    s, ref = res["stream"], res["reference"]
    load = os.getloadavg()
    lines = [
        f"**Command:** `python scripts/bench_events.py {shlex.join(argv)}`",
        "",
        f"**Stream:** {s['hours']:.2f} h = {s['frames']:,} frames at {s['fps']:g} fps, {s['size'][0]}×{s['size'][1]}: "
        f"the generated lobby scene ({s['unique_s']:.0f} s) looped {s['frames'] / s['fps'] / s['unique_s']:.1f} times; "
        f"{s['events']} true events (entries and exits). Classic encoder. Detector + encoder pass "
        f"{res['detect_s']:.0f} s, whole run {res['wall_s'] / 60:.1f} min; load average now "
        f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}.",
        "",
        "| memory | budget | event tier E | folded times F | pinned | folded (with time) | F1 entered | F1 left "
        "| F1 both | precision | recall | retention |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| detector (every event, no budget) | – | – | – | {ref['pinned']} | 0 | {ref['entered']:.3f} | "
        f"{ref['left']:.3f} | {ref['both']:.3f} | {ref['precision']:.3f} | {ref['recall']:.3f} | 100% |",
    ]
    for r in res["runs"]:
        lines.append(f"| delta-mem | {r['budget_mib']:g} MiB | {r['events']} | {r['folds']} | {r['pinned']} | "
                     f"{r['folded']} ({r['folded_timed']}) | "
                     f"{r['entered']:.3f} | {r['left']:.3f} | {r['both']:.3f} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} | {r['retention']:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=1.0)
    p.add_argument("--fps", type=float, default=2.0)
    p.add_argument("--size", default="640x360", help="the committed sample's size")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.25, 0.5, 1, 2, 4, 8], help="MiB")
    p.add_argument("--seed", type=int, default=2024, help="the lobby scene's seed (2024: the committed sample's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", default=None, help="write the raw results here")
    args = p.parse_args(argv)
    res = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if args.markdown:
        print(markdown(res, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
