"""Δ-Mem benchmarks: update time vs slots M and streams B, and the footprint over long inputs.

    python scripts/bench_memory.py sweep       # update time per frame vs M and B (reference, CPU)
    python scripts/bench_memory.py footprint   # peak RSS + snapshot bytes: 6 vs 48 min of video, 10 h of tokens
    python scripts/bench_memory.py bank        # B streams' full updates: one MemoryBank vs B DeltaMems
    python scripts/bench_memory.py all --markdown

``sweep`` times one frame's update — ``delta_assign`` + ``delta_merge`` through the dispatch module
(the reference on CPU; with ``--device cuda`` the Triton kernels, timed up to a device sync) — for
``B`` streams in one call, on random unit tokens, with every slot valid. ``footprint`` runs each case in its own process (so peak RSS is that case's alone):

- ``video``: ``streamvid watch``'s ingest (classic encoder, 2 fps, 4 MiB) over a video looped to
  6 and to 48 minutes (the loop continues the timestamps), then saves the memory;
- ``tokens``: 10 hours at 2 fps (72,000 frames) of a synthetic CLIP-sized token stream (49
  tokens of D=512 per frame, scenes that recur and drift) straight into ``DeltaMem.update``.

It prints peak RSS, RSS after ingest and the snapshot's bytes for each case.

``bank`` times whole per-frame memory updates (timeline, claims, evictions and both kernels) of
``B`` streams of CLIP-sized tokens at a 4 MiB budget each: one :class:`MemoryBank` update (one
``delta_assign`` and one ``delta_merge`` launch for all B) against B :meth:`DeltaMem.update` calls,
the memories on ``--device`` (default cpu).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    cpu = cpu_model()
    import torch

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), load average {load}")


# ---------------------------------------------------------------------------------------- sweep
def _sync(device: str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously) before reading a clock."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def sweep(ms: list[int], bs: list[int], n: int, d: int, repeat: int, device: str = "cpu") -> list[dict]:
    import torch

    from streamvid.kernels import dispatch

    torch.manual_seed(0)
    rows = []
    for B in bs:
        for M in ms:
            k = torch.nn.functional.normalize(torch.randn(B, M, d), dim=-1).to(device)
            count = torch.ones(B, M, dtype=torch.int64, device=device)
            imp = torch.zeros(B, M, device=device)
            valid = torch.ones(B, M, dtype=torch.bool, device=device)
            frames = [torch.nn.functional.normalize(torch.randn(B, n, d), dim=-1).to(device) for _ in range(4)]
            times = []
            for r in range(repeat + 2):  # the first two rounds warm up (CUDA: kernel compilation)
                x = frames[r % len(frames)]
                _sync(device)
                t0 = time.perf_counter()
                idx, sim, _ = dispatch.delta_assign(x, k, valid)
                dispatch.delta_merge(x, idx, k, count, imp, (1 - sim).clamp(0, 2), 0.02)
                _sync(device)
                if r > 1:
                    times.append(time.perf_counter() - t0)
            times.sort()
            ms_frame = 1000 * times[len(times) // 2]
            rows.append({"B": B, "M": M, "N": n, "D": d, "device": device, "ms_per_frame": ms_frame,
                         "ms_per_stream": ms_frame / B})
            print(f"B={B:3d} M={M:6d}: {ms_frame:8.2f} ms/frame ({ms_frame / B:.3f} ms per stream)", file=sys.stderr)
    return rows


# ----------------------------------------------------------------------------------------- bank
def bank(bs: list[int], frames: int, n: int = 49, d: int = 512, budget_mib: float = 4.0,
         device: str = "cpu") -> list[dict]:
    import torch

    from streamvid.memory import DeltaMem, MemoryLayout
    from streamvid.memory.bank import FrameUpdate, MemoryBank
    from streamvid.types import CHANNELS, Encoded

    layout = MemoryLayout.from_budget(int(budget_mib * 2**20), d)
    quiet = [0.0] * len(CHANNELS)
    rows = []
    for B in bs:
        gen = torch.Generator().manual_seed(B)
        scenes = torch.nn.functional.normalize(torch.randn(8, n, d, generator=gen), dim=-1)
        stream = []  # recurring scenes with drift: claims, merges and (past M) evictions
        for f in range(frames):
            x = scenes[(f // 20) % 8] + 0.15 * torch.randn(B, n, d, generator=gen)
            x = torch.nn.functional.normalize(x, dim=-1)
            x = x.to(device)
            stream.append([Encoded(x[b], torch.nn.functional.normalize(x[b].mean(0), dim=-1)) for b in range(B)])
        timing = {}
        for mode in ("bank", "single"):
            if mode == "bank":
                mb = MemoryBank(layout, B, device=device)
                def step(t, encs, mb=mb):
                    mb.update({b: FrameUpdate(t, e, quiet) for b, e in enumerate(encs)})
            else:
                mems = [DeltaMem(layout, device=device) for _ in range(B)]

                def step(t, encs, mems=mems):
                    for m, e in zip(mems, encs):
                        m.update(t, e, quiet)
            times = []
            for f, encs in enumerate(stream):
                _sync(device)
                t0 = time.perf_counter()
                step(0.5 * f, encs)
                _sync(device)
                if f >= 5:  # warm-up
                    times.append(time.perf_counter() - t0)
            times.sort()
            timing[mode] = 1000 * times[len(times) // 2]
        rows.append({"B": B, "M": layout.slots, "N": n, "D": d, "frames": frames, "device": device,
                     "bank_ms": timing["bank"],
                     "single_ms": timing["single"]})
        print(f"B={B:3d}: bank {timing['bank']:.2f} ms/step, one at a time {timing['single']:.2f} ms/step",
              file=sys.stderr)
    return rows


# ------------------------------------------------------------------------------------ footprint
def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mib() -> float:
    return _status_mib("VmRSS")


def _peak_mib() -> float:
    """Peak RSS of this process image. ``VmHWM`` starts afresh at exec; ``ru_maxrss`` would carry
    the parent's peak over into a child started with fork + exec."""
    peak = _status_mib("VmHWM")
    return peak if peak == peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def case_video(video: str, minutes: float, out: str) -> dict:
    """Ingest ``video`` looped to ``minutes`` of stream time; save the memory to ``out``."""
    from streamvid.events import EventDetector
    from streamvid.memory import save
    from streamvid.models.classic import ClassicEncoder
    from streamvid.pipeline import Watcher, new_memory
    from streamvid.sources import FileSource, probe
    from streamvid.types import Frame

    duration = probe(video).duration
    loops = int(minutes * 60 // duration) + 1
    target = minutes * 60

    def looped():
        index = 0
        for i in range(loops):
            for f in FileSource(video, fps=2):
                t = i * duration + f.t
                if t >= target:
                    return
                yield Frame(t=t, rgb=f.rgb, index=index)
                index += 1

    enc = ClassicEncoder()
    mem = new_memory(enc, 4 * 2**20)
    start_rss = _rss_mib()
    t0 = time.perf_counter()
    stats = Watcher(enc, mem, EventDetector()).ingest(looped())
    wall = time.perf_counter() - t0
    save(mem, out, {"encoder": enc.config(), "position": stats.last_t})
    return {"case": f"video {minutes:g} min", "frames": stats.frames, "stream_s": stats.last_t, "wall_s": wall,
            "rss_before_mib": start_rss, "rss_after_mib": _rss_mib(), "peak_rss_mib": _peak_mib(),
            "memory_bytes": mem.nbytes, "snapshot_bytes": os.path.getsize(out),
            "entered": stats.entered, "left": stats.left, "loops": loops}


def case_tokens(hours: float, out: str, n: int = 49, d: int = 512) -> dict:
    """``hours`` at 2 fps of synthetic tokens: 40 recurring scenes, each a set of 49 patterns
    that drift slowly, with per-frame noise."""
    import torch

    from streamvid.memory import DeltaMem, MemoryLayout, save
    from streamvid.types import Encoded

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    scenes = torch.nn.functional.normalize(torch.randn(40, n, d, generator=g), dim=-1)
    mem = DeltaMem(MemoryLayout.from_budget(4 * 2**20, d))
    frames = int(hours * 3600 * 2)
    start_rss = _rss_mib()
    t0 = time.perf_counter()
    for i in range(frames):
        s = (i // 120) % len(scenes)  # a new scene every minute, recurring
        if i % 120 == 0:
            scenes[s] = torch.nn.functional.normalize(scenes[s] + 0.05 * torch.randn(n, d, generator=g), dim=-1)
        tok = torch.nn.functional.normalize(scenes[s] + 0.1 * torch.randn(n, d, generator=g), dim=-1)
        mem.update(i * 0.5, Encoded(tok, torch.nn.functional.normalize(tok.mean(0), dim=0)),
                   [0.0, 0.0, 0.0, 0.5, 0.0], boundary=i % 120 == 0)
    wall = time.perf_counter() - t0
    save(mem, out, {"encoder": {"name": "synthetic", "dim": d}, "position": (frames - 1) * 0.5})
    return {"case": f"tokens {hours:g} h", "frames": frames, "stream_s": (frames - 1) * 0.5, "wall_s": wall,
            "rss_before_mib": start_rss, "rss_after_mib": _rss_mib(), "peak_rss_mib": _peak_mib(),
            "memory_bytes": mem.nbytes, "snapshot_bytes": os.path.getsize(out)}


def footprint(video: str, minutes: list[float], hours: list[float]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = [["video", video, str(m)] for m in minutes] + [["tokens", str(h)] for h in hours]
        for i, case in enumerate(cases):
            out = os.path.join(tmp, f"case{i}.mem")
            cmd = [sys.executable, __file__, "_case", *case, out]
            print("running", " ".join(case), file=sys.stderr)
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr)
    return rows


# ------------------------------------------------------------------------------------------ main
def markdown(sweep_rows: list[dict], foot_rows: list[dict]) -> str:
    out = []
    if sweep_rows:
        bs = sorted({r["B"] for r in sweep_rows})
        ms = sorted({r["M"] for r in sweep_rows})
        r0 = sweep_rows[0]
        out.append(f"Update time per frame (ms; assign + merge of N={r0['N']} tokens, D={r0['D']}, "
                   f"all B streams in one call, on {r0.get('device', 'cpu')}):\n")
        out.append("| M \\ B | " + " | ".join(str(b) for b in bs) + " |")
        out.append("|---:|" + "---:|" * len(bs))
        cell = {(r["B"], r["M"]): r["ms_per_frame"] for r in sweep_rows}
        for m in ms:
            out.append(f"| {m} | " + " | ".join(f"{cell[(b, m)]:.2f}" for b in bs) + " |")
        out.append("")
    if foot_rows:
        out.append("| case | frames | stream time | wall s | RSS before MiB | RSS after MiB | peak RSS MiB "
                   "| memory bytes | snapshot bytes |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in foot_rows:
            out.append(f"| {r['case']} | {r['frames']} | {r['stream_s'] / 60:.1f} min | {r['wall_s']:.0f} | "
                       f"{r['rss_before_mib']:.0f} | {r['rss_after_mib']:.0f} | {r['peak_rss_mib']:.0f} | "
                       f"{r['memory_bytes']:,} | {r['snapshot_bytes']:,} |")
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_case":  # internal: one footprint case in this process
        kind, *rest = sys.argv[2:]
        row = case_video(rest[0], float(rest[1]), rest[2]) if kind == "video" else case_tokens(float(rest[0]), rest[1])
        print(json.dumps(row))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["sweep", "footprint", "bank", "all"])
    p.add_argument("--frames", type=int, default=200, help="frames per stream (bank)")
    p.add_argument("--slots", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    p.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--tokens", type=int, default=49, help="N, tokens per frame (sweep)")
    p.add_argument("--dim", type=int, default=512, help="D (sweep)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--video", default=str(ROOT / "samples" / "lobby.mp4"))
    p.add_argument("--minutes", type=float, nargs="+", default=[6, 48])
    p.add_argument("--hours", type=float, nargs="+", default=[10])
    p.add_argument("--device", default="cpu",
                   help="torch device of the memory for sweep and bank (default: cpu; cuda: the Triton kernels)")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    from streamvid.models.base import EncoderError, resolve_device

    try:
        args.device = str(resolve_device(args.device))  # the encoders' check: a bad name, no CUDA
    except EncoderError as e:
        p.error(f"--device {args.device}: {e}")
    print(f"machine: {machine()}", file=sys.stderr)
    s = sweep(args.slots, args.streams, args.tokens, args.dim, args.repeat, args.device) if args.what in ("sweep", "all") else []
    f = footprint(args.video, args.minutes, args.hours) if args.what in ("footprint", "all") else []
    bk = bank(args.streams, args.frames, device=args.device) if args.what in ("bank", "all") else []
    if args.markdown:
        print(f"Machine: {machine()}\n\nCommand: python scripts/bench_memory.py {' '.join(sys.argv[1:])}\n")
        print(markdown(s, f))
        if bk:
            r0 = bk[0]
            print(f"\nWhole memory update per step (ms, median; N={r0['N']}, D={r0['D']}, M={r0['M']}, "
                  f"{r0['frames']} frames, on {r0['device']}):\n")
            print("| B | MemoryBank (2 launches) | B × DeltaMem.update (2B launches) |\n|---:|---:|---:|")
            for r in bk:
                print(f"| {r['B']} | {r['bank_ms']:.2f} | {r['single_ms']:.2f} |")
    else:
        print(json.dumps({"sweep": s, "footprint": f, "bank": bk}, indent=2))


if __name__ == "__main__":
    main()
