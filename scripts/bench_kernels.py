"""Benchmark of the Triton Δ-Mem kernels (``delta_assign``, ``delta_merge``) on a CUDA GPU.

    python scripts/bench_kernels.py [--M 256 1024 4096 16384] [--B 1 8 64] [--N 64 256] [--D 512]
                                    [--dtypes fp16 fp32] [--no-graphs] [--budget 420] [--json OUT]

For every (dtype, B, N, M) case, on random L2-normalised tokens ``x [B, N, D]`` and slots
``k [B, M, D]`` (all valid):

1. correctness first: the kernels against the PyTorch references (``naive.py``) — relative RMS
   error of ``best_sim``/``second_sim`` and of the merged slots, the indices (where not tied within
   the tolerance) and the per-slot counts must agree; a failing case is marked in the table and the
   script exits with status 1;
2. the time of ``delta_assign`` alone (``x`` and ``k`` in the case's dtype), of ``delta_merge``
   alone (``k`` float32, the memory's layout; tokens to their nearest slot) and of one frame of the
   memory's loop — assign, novelty, merge, with ``x`` in the case's dtype against float32 slots —
   each captured once in a CUDA graph and replayed (``--no-graphs``: eager calls), median of
   ``triton.testing.do_bench`` with the L2 cache flushed before every run; the reference frame is
   timed eagerly for comparison. The merge and the frame are timed with ``grouping="sort"`` and,
   where ``N <= SCAN_MAX_N``, with ``grouping="scan"`` too (no sort; checked against the reference
   too; the default there, chosen by this benchmark);
3. achieved bandwidth: the bytes that must move (assign: read ``x``, ``k``, ``valid``, write the
   three ``[B, N]`` outputs; merge: read ``x``, ``idx``, ``novelty``, read + write the hit slot rows
   and their count/importance, write ``n``) over the time, against the card's device-to-device copy
   bandwidth (``dst.copy_(src)`` of a 1 GiB buffer: 2 GiB moved).

It prints a markdown table with the card's name. The whole default run stays well under 8 minutes
(``--budget`` seconds, default 420, stops starting new cases; those left out are listed). Without
CUDA it says so and exits with status 0.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

import torch

DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
TOL = {"fp16": 1e-3, "fp32": 1e-5}
G_MIN = 0.02


@dataclass
class Row:
    dtype: str
    B: int
    N: int
    M: int
    D: int
    assign_us: float
    assign_gbs: float
    merge_us: float
    merge_gbs: float
    err: float  # worst relative RMS error against the reference
    frame_us: float  # assign + novelty + merge, one frame (merge_us, frame_us: grouping="sort")
    ref_frame_us: float | None = None
    scan_merge_us: float | None = None  # delta_merge with grouping="scan" (N <= SCAN_MAX_N)
    scan_frame_us: float | None = None
    ok: bool = True
    note: str = ""
    scan_merge_gbs: float | None = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_kernels.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--M", type=int, nargs="+", default=[256, 1024, 4096, 16384], help="slots per stream")
    p.add_argument("--B", type=int, nargs="+", default=[1, 8, 64], help="streams")
    p.add_argument("--N", type=int, nargs="+", default=[64, 256], help="tokens per frame")
    p.add_argument("--D", type=int, default=512, help="token dimension")
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp16", "fp32"])
    p.add_argument("--no-graphs", dest="graphs", action="store_false",
                   help="time eager calls instead of CUDA graph replays")
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="skip timing the reference frame (the correctness check still runs)")
    p.add_argument("--rep-ms", type=int, default=60, help="do_bench repetition time per measurement")
    p.add_argument("--budget", type=float, default=420.0,
                   help="seconds after which no new case starts (the default run needs far less)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="OUT", help="also write the rows as JSON")
    a = p.parse_args(argv)
    for name in ("M", "B", "N"):
        if any(v <= 0 for v in getattr(a, name)):
            p.error(f"--{name} values must be positive")
    if a.D <= 0:
        p.error("--D must be positive")
    return a


# ---------------------------------------------------------------------------------------- timing


def _bench(fn, rep_ms: int) -> float:
    """Median milliseconds of ``fn()`` (L2 flushed before each run)."""
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=10, rep=rep_ms, return_mode="median"))


def _graphed(fn):
    """``fn`` captured once in a CUDA graph (after a warm-up on a side stream); returns ``(replay, graph)``."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    torch.cuda.synchronize()
    return g.replay, g


def copy_bandwidth(rep_ms: int) -> float:
    """GB/s of a device-to-device ``copy_`` of 1 GiB (2 GiB read + written)."""
    n = (1 << 30) // 4
    src = torch.empty(n, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    ms = _bench(lambda: dst.copy_(src), rep_ms)
    nbytes = 2 * src.numel() * src.element_size()
    return nbytes / (ms * 1e-3) / 1e9


# ---------------------------------------------------------------------------------------- one case


def _unit(*shape: int, gen: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    x = torch.randn(*shape, generator=gen, device="cuda")
    return (x / x.norm(dim=-1, keepdim=True)).to(dtype)


def _rel_rms(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double(), want.double()
    return float((got - want).pow(2).mean().sqrt() / want.pow(2).mean().sqrt().clamp_min(1e-30))


def run_case(dtype_name: str, B: int, N: int, M: int, D: int, args: argparse.Namespace) -> Row:
    from streamvid.kernels.delta_assign import delta_assign_ref, delta_assign_triton
    from streamvid.kernels.delta_merge import delta_merge_ref, delta_merge_triton
    from streamvid.kernels.delta_merge.triton import SCAN_MAX_N

    dtype, tol = DTYPES[dtype_name], TOL[dtype_name]
    gen = torch.Generator(device="cuda").manual_seed(args.seed)
    x = _unit(B, N, D, gen=gen, dtype=dtype)
    k = _unit(B, M, D, gen=gen)  # float32: the memory's slots
    kd = k.to(dtype)
    valid = torch.ones(B, M, dtype=torch.bool, device="cuda")
    count = torch.randint(0, 100, (B, M), generator=gen, device="cuda")
    importance = torch.rand(B, M, generator=gen, device="cuda")
    notes = []

    # 1. correctness
    r_idx, r_best, r_second = delta_assign_ref(x, kd, valid)
    idx, best, second = delta_assign_triton(x, kd, valid)
    err_a = max(_rel_rms(best, r_best), _rel_rms(second, r_second))
    clear = r_best - r_second > 10 * tol
    idx_ok = bool(torch.equal(idx[clear], r_idx[clear]))
    novelty = (1.0 - r_best).clamp(0.0, 2.0)
    want = [k.clone(), count.clone(), importance.clone()]
    r_n = delta_merge_ref(x, r_idx, *want, novelty, G_MIN)
    hit = r_n > 0
    scan = N <= SCAN_MAX_N
    err_m, counts_ok = 0.0, True
    for grouping in ("sort", "scan") if scan else ("sort",):
        got = [k.clone(), count.clone(), importance.clone()]
        n = delta_merge_triton(x, r_idx, *got, novelty, G_MIN, grouping=grouping)
        err_m = max(err_m, _rel_rms(got[0][hit], want[0][hit]), _rel_rms(got[2], want[2]))
        counts_ok = counts_ok and bool(torch.equal(n, r_n) and torch.equal(got[1], want[1]))
    err = max(err_a, err_m)
    ok = idx_ok and counts_ok and err <= tol
    if not idx_ok:
        notes.append("indices differ")
    if not counts_ok:
        notes.append("counts differ")
    if err > tol:
        notes.append(f"error > {tol:g}")
    hits = int(hit.sum())
    del want, got, r_second, clear

    # 2. timings
    es = x.element_size()
    assign_out = (torch.empty(B, N, dtype=torch.int64, device="cuda"),
                  torch.empty(B, N, device="cuda"), torch.empty(B, N, device="cuda"))
    merge_out = torch.empty(B, M, dtype=torch.int64, device="cuda")
    k_work, c_work, i_work = k.clone(), count.clone(), importance.clone()

    def assign():
        delta_assign_triton(x, kd, valid, out=assign_out)

    def merge(grouping="sort"):
        delta_merge_triton(x, r_idx, k_work, c_work, i_work, novelty, G_MIN, out=merge_out, check_idx=False,
                           grouping=grouping)

    frame_idx = (torch.empty(B, N, dtype=torch.int64, device="cuda"),
                 torch.empty(B, N, device="cuda"), torch.empty(B, N, device="cuda"))

    def frame(grouping="sort"):
        f_idx, f_best, _ = delta_assign_triton(x, k_work, valid, out=frame_idx)
        nov = (1.0 - f_best).clamp_(0.0, 2.0)
        delta_merge_triton(x, f_idx, k_work, c_work, i_work, nov, G_MIN, out=merge_out, check_idx=False,
                           grouping=grouping)

    graphs = []
    times = {}
    cases = [("assign", assign), ("merge", merge), ("frame", frame)]
    if scan:
        cases += [("scan_merge", lambda: merge("scan")), ("scan_frame", lambda: frame("scan"))]
    for name, fn in cases:
        if args.graphs:
            replay, g = _graphed(fn)
            graphs.append(g)
            times[name] = _bench(replay, args.rep_ms)
        else:
            times[name] = _bench(fn, args.rep_ms)
    ref_ms = None
    if args.reference:
        k_ref, c_ref, i_ref = k.clone(), count.clone(), importance.clone()

        def ref_frame():
            f_idx, f_best, _ = delta_assign_ref(x, k_ref, valid)
            delta_merge_ref(x, f_idx, k_ref, c_ref, i_ref, (1.0 - f_best).clamp_(0.0, 2.0), G_MIN)

        ref_ms = _bench(ref_frame, args.rep_ms)
        del k_ref, c_ref, i_ref

    # 3. bytes that must move
    assign_bytes = x.numel() * es + kd.numel() * es + valid.numel() + B * N * (8 + 4 + 4)
    merge_bytes = (x.numel() * es + B * N * (8 + es)  # x, idx, novelty
                   + hits * (2 * D * 4 + 2 * (8 + 4))  # hit rows, count, importance: read + write
                   + B * M * 8)  # n
    row = Row(
        dtype_name, B, N, M, D,
        assign_us=times["assign"] * 1e3,
        assign_gbs=assign_bytes / (times["assign"] * 1e-3) / 1e9,
        merge_us=times["merge"] * 1e3,
        merge_gbs=merge_bytes / (times["merge"] * 1e-3) / 1e9,
        err=err,
        frame_us=times["frame"] * 1e3,
        ref_frame_us=None if ref_ms is None else ref_ms * 1e3,
        scan_merge_us=times["scan_merge"] * 1e3 if scan else None,
        scan_frame_us=times["scan_frame"] * 1e3 if scan else None,
        scan_merge_gbs=merge_bytes / (times["scan_merge"] * 1e-3) / 1e9 if scan else None,
        ok=ok,
        note="; ".join(notes),
    )
    del graphs
    return row


# ---------------------------------------------------------------------------------------- report


def _us(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def _gbs(v: float | None, copy_gbs: float) -> str:
    return "– | –" if v is None else f"{v:.0f} | {100 * v / copy_gbs:.0f}%"


def markdown_table(rows: list[Row], card: str, copy_gbs: float, graphs: bool = True) -> str:
    how = "CUDA graph replay" if graphs else "eager calls"
    lines = [
        f"### Δ-Mem Triton kernels on {card}",
        "",
        f"Device-to-device copy bandwidth: {copy_gbs:.0f} GB/s. Times: median, L2 flushed, {how}. "
        "Frame = assign + novelty + merge (x in the row's dtype, slots float32). Merge grouped by a sort "
        "(`grouping=\"sort\"`) or by a scan (`grouping=\"scan\"`, no sort; N ≤ SCAN_MAX_N, where it is "
        "the default). Speed-up: the reference frame over the default's frame.",
        "",
        "| dtype | B | N | M | D | assign µs | assign GB/s | % of copy | merge µs (sort) | merge GB/s (sort) "
        "| frame µs (sort) | merge µs (scan) | merge GB/s (scan) | % of copy (scan merge) | frame µs (scan) "
        "| reference frame µs | speed-up | max rel-RMS | ok |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in rows:
        ref = f"{r.ref_frame_us:.1f}" if r.ref_frame_us is not None else "–"
        default = r.scan_frame_us if r.scan_frame_us is not None else r.frame_us
        speed = f"{r.ref_frame_us / default:.1f}×" if r.ref_frame_us is not None and default > 0 else "–"
        ok = "yes" if r.ok else f"**NO** ({r.note})"
        lines.append(
            f"| {r.dtype} | {r.B} | {r.N} | {r.M} | {r.D} | {r.assign_us:.1f} | {r.assign_gbs:.0f} "
            f"| {100 * r.assign_gbs / copy_gbs:.0f}% | {r.merge_us:.1f} | {r.merge_gbs:.0f} | {r.frame_us:.1f} "
            f"| {_us(r.scan_merge_us)} | {_gbs(r.scan_merge_gbs, copy_gbs)} | {_us(r.scan_frame_us)} "
            f"| {ref} | {speed} | {r.err:.1e} | {ok} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_kernels: CUDA is not available on this machine; the Triton kernels are benchmarked "
              "on a CUDA GPU only. Nothing to do.", file=sys.stderr)
        return 0
    try:
        import triton  # noqa: F401

        from streamvid.kernels.delta_assign import delta_assign_triton  # noqa: F401
        from streamvid.kernels.delta_merge import delta_merge_triton  # noqa: F401
    except Exception as e:
        print(f"bench_kernels: the Triton kernels cannot be imported: {e!r}", file=sys.stderr)
        return 1
    if _interpreting():
        print("bench_kernels: TRITON_INTERPRET is set; unset it to benchmark the GPU.", file=sys.stderr)
        return 1

    t0 = time.monotonic()
    card = torch.cuda.get_device_name()
    copy_gbs = copy_bandwidth(args.rep_ms)
    torch.cuda.empty_cache()
    print(f"{card}: copy {copy_gbs:.0f} GB/s", file=sys.stderr)
    rows: list[Row] = []
    skipped: list[str] = []
    for dtype_name, B, N, M in itertools.product(args.dtypes, args.B, args.N, args.M):
        case = f"{dtype_name} B={B} N={N} M={M}"
        if time.monotonic() - t0 > args.budget:
            skipped.append(case)
            continue
        try:
            row = run_case(dtype_name, B, N, M, args.D, args)
        except torch.cuda.OutOfMemoryError:
            skipped.append(case + " (out of memory)")
            torch.cuda.empty_cache()
            continue
        rows.append(row)
        print(f"{case}: assign {row.assign_us:.1f} µs ({row.assign_gbs:.0f} GB/s), merge {row.merge_us:.1f} µs, "
              f"frame {row.frame_us:.1f} µs, err {row.err:.1e}{'' if row.ok else ' FAILED: ' + row.note}",
              file=sys.stderr, flush=True)
        torch.cuda.empty_cache()

    print(markdown_table(rows, card, copy_gbs, args.graphs))
    if skipped:
        print(f"\nNot run (budget of {args.budget:.0f} s or memory): " + ", ".join(skipped))
    print(f"\nTotal {time.monotonic() - t0:.0f} s.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"card": card, "copy_gbs": copy_gbs, "rows": [asdict(r) for r in rows],
                       "skipped": skipped}, f, indent=1)
    return 0 if all(r.ok for r in rows) else 1


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


if __name__ == "__main__":
    sys.exit(main())
