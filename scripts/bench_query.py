"""Query latency on CPU from a loaded memory at the default budget (4 MiB), model load excluded.

    python scripts/bench_query.py                 # 6 min and 10 h synthetic streams, markdown table
    python scripts/bench_query.py --hours 0.1     # only the short one

Each memory is filled like ``scripts/bench_memory.py``'s ``tokens`` case (2 fps, 49 tokens of
D=512 per frame, 40 recurring, drifting scenes, a new one every minute) plus, per scene, detector
channels (a person and motion in every other scene, a darker one every fifth) and one entry and one
exit pinned with a clothing description, so every intent has something to find (the 10 h stream
overflows the event tier: its entries and exits are partly folded into the timeline). The memory
is saved and loaded back (what ``streamvid ask`` does), then a mix of questions is timed through
:func:`streamvid.query.answer_text` / :func:`answer_at` / :func:`attend`. The text encoder is a fixed
random projection (the CLIP text tower's time is excluded, as is model load).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import machine  # noqa: E402

COLOURS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple"]
QUESTIONS = [
    ("count", "how many people entered?"),
    ("entered", "who came in?"),
    ("appeared", "when did the person in red appear?"),
    ("presence", "is there a person?"),
    ("presence", "was there someone in green?"),
    ("concept", "when was there motion?"),
    ("summary", "what happened?"),
    ("retrieval", "a bicycle near the door"),
    ("empty", "?!"),
]


def fill(hours: float, n: int = 49, d: int = 512):
    from streamvid.memory import DeltaMem, MemoryLayout
    from streamvid.types import Encoded

    g = torch.Generator().manual_seed(0)
    scenes = torch.nn.functional.normalize(torch.randn(40, n, d, generator=g), dim=-1)
    mem = DeltaMem(MemoryLayout.from_budget(4 * 2**20, d))
    frames = int(hours * 3600 * 2)
    for i in range(frames):
        s = (i // 120) % len(scenes)
        k = i // 120
        if i % 120 == 0:
            scenes[s] = torch.nn.functional.normalize(scenes[s] + 0.05 * torch.randn(n, d, generator=g), dim=-1)
        tok = torch.nn.functional.normalize(scenes[s] + 0.1 * torch.randn(n, d, generator=g), dim=-1)
        person = 1.0 if k % 2 and 20 <= i % 120 < 100 else 0.0
        ch = [0.02 * person, person, 0.0, 0.2 if k % 5 == 4 else 0.5, 1.0 if i % 120 == 0 and i else 0.0]
        mem.update(i * 0.5, Encoded(tok, torch.nn.functional.normalize(tok.mean(0), dim=0)), ch,
                   boundary=i % 120 == 0)
        if k % 2 and i % 120 in (20, 99):
            desc = f"person in {COLOURS[k % 8]} top and {COLOURS[(k // 8) % 8]} trousers"
            mem.pin(i * 0.5, "entered" if i % 120 == 20 else "left", tok.mean(0), desc, None, 0.9, track_id=k)
    return mem, (frames - 1) * 0.5


def embed_text(d: int):
    def f(text: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(zlib.crc32(text.encode()))
        return torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    return f


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def bench(hours: float, repeat: int, freeze: bool = True) -> list[dict]:
    from streamvid.memory import load, save
    from streamvid.query import answer_at, answer_text, attend

    torch.set_num_threads(1)  # fill and queries single-threaded (a query is one small matmul per tier)
    t0 = time.perf_counter()
    mem, last = fill(hours)
    fill_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.mem")
        save(mem, path, {"encoder": {"name": "synthetic", "dim": 512}})
        mem, _ = load(path)
    emb = embed_text(mem.layout.dim)
    st = mem.stats()
    print(f"{hours:g} h: filled in {fill_s:.0f} s; segments {st['segments_used']}, slots {st['slots_used']}, "
          f"events {st['events_used']}, folded {st['folded']}", file=sys.stderr)
    if freeze:  # as `streamvid serve` does once it has loaded everything
        gc.collect()
        gc.freeze()
    cases = [(i, (lambda q=q: answer_text(mem, q, emb, encoder_name="synthetic"))) for i, q in QUESTIONS]
    cases += [("at", lambda: answer_at(mem, last * 0.37)),
              ("attend [D]", lambda: attend(mem, emb("a red car"), 5)),
              ("attend [8, D]", lambda: attend(mem, torch.stack([emb(f"tok{j}") for j in range(8)]), 5))]
    rows = []
    every: list[float] = []
    for name, fn in cases:
        intent = fn()
        intent = getattr(intent, "intent", name)
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - t))
        every += times
        rows.append({"stream": f"{hours:g} h", "query": name, "intent": intent,
                     "p50_ms": pct(times, 50), "p95_ms": pct(times, 95)})
    rows.append({"stream": f"{hours:g} h", "query": "all (mix)", "intent": "-",
                 "p50_ms": pct(every, 50), "p95_ms": pct(every, 95)})
    if freeze:
        gc.unfreeze()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, nargs="+", default=[0.1, 10.0], help="stream lengths (0.1 h = 6 min)")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--no-gc-freeze", action="store_true",
                    help="leave the process's objects to the cyclic GC (`serve` freezes them once loaded)")
    args = ap.parse_args()
    rows = []
    for h in args.hours:
        rows += bench(h, args.repeat, freeze=not args.no_gc_freeze)
    print(f"Machine: {machine()}; gc.freeze() after loading: {'no' if args.no_gc_freeze else 'yes (as serve)'}\n")
    print("| stream | query | intent | p50 ms | p95 ms |\n|---|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['stream']} | {r['query']} | {r['intent']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} |")


if __name__ == "__main__":
    main()
