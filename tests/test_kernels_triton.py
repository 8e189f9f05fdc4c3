"""The Triton Δ-Mem kernels against their PyTorch references, on awkward sizes.

On a machine without a GPU they run in Triton's CPU interpreter (``TRITON_INTERPRET=1``, set by
``conftest.py`` before any kernel module is imported: the kernels are imported inside fixtures, never
at the top of this file). Shapes are tiny; tile sizes are forced small where a test needs several
tiles, chunks or slot splits. Outputs start as NaN (or a bogus index) so an element the kernel
forgets to write shows up; every kernel runs twice and must give bitwise-equal results.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from kernel_inputs import assign_inputs, unit
from script_modules import registered_script

from streamvid.kernels import dispatch, triton_interpreting
from streamvid.kernels.delta_assign import delta_assign_ref
from streamvid.kernels.delta_merge import delta_merge_ref

REPO = Path(__file__).resolve().parent.parent
TOL = {torch.float32: 1e-5, torch.float16: 1e-3}
BOGUS = -7  # fills int outputs before a run


@pytest.fixture(scope="module")
def device() -> str:
    pytest.importorskip("triton")
    if triton_interpreting():
        return "cpu"
    if not torch.cuda.is_available():
        pytest.skip("Triton kernels need a CUDA GPU or TRITON_INTERPRET=1")
    return "cuda"


@pytest.fixture(scope="module")
def assign_mod(device):
    from streamvid.kernels.delta_assign import triton as mod

    return mod


@pytest.fixture(scope="module")
def merge_mod(device):
    from streamvid.kernels.delta_merge import triton as mod

    return mod


def rel_rms(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double(), want.double()
    return float((got - want).pow(2).mean().sqrt() / want.pow(2).mean().sqrt().clamp_min(1e-30))


# ------------------------------------------------------------------------------------ delta_assign


def _assign_inputs(device: str, dtype: torch.dtype):
    x, k, valid, x_mask = assign_inputs()
    x_mask[2, 7] = False
    return [t.to(device) for t in (x.to(dtype), k.to(dtype), valid, x_mask)]


def _nan_outputs(B: int, N: int, device: str):
    return (
        torch.full((B, N), BOGUS, dtype=torch.int64, device=device),
        torch.full((B, N), float("nan"), device=device),
        torch.full((B, N), float("nan"), device=device),
    )


def _check_assign(got, want, tol: float) -> dict[str, float]:
    idx, best, second = got
    r_idx, r_best, r_second = want
    assert idx.dtype == torch.int64 and best.dtype == second.dtype == torch.float32
    errs = {}
    for name, g, w in (("best_sim", best, r_best), ("second_sim", second, r_second)):
        assert not g.isnan().any(), f"{name}: unwritten elements"
        assert torch.equal(g.isinf(), w.isinf()) and torch.equal(g[g.isinf()], w[w.isinf()]), name
        fin = w.isfinite()
        errs[name] = rel_rms(g[fin], w[fin]) if fin.any() else 0.0
        assert errs[name] <= tol, (name, errs[name])
    assert torch.equal(idx == -1, r_idx == -1)
    clear = (r_best - r_second > 10 * tol) | (r_idx == -1) | r_second.isinf()  # not tied within tol
    assert torch.equal(idx[clear], r_idx[clear])
    # wherever the indices differ, the kernel's pick is (within tolerance) as good
    assert ((best - r_best).abs() <= 10 * tol)[r_idx >= 0].all()
    return errs


# tiles: the defaults, and small ones that force several slot tiles, D chunks (100 = 3*32 + 4) and
# two slot ranges folded by the combine kernel
ASSIGN_TILES = [{}, {"block_m": 16, "block_d": 32, "splits": 2}]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("tiles", ASSIGN_TILES, ids=["default", "split"])
def test_delta_assign_matches_reference(assign_mod, device, dtype, tiles):
    x, k, valid, x_mask = _assign_inputs(device, dtype)
    B, N, _ = x.shape
    want = delta_assign_ref(x, k, valid, x_mask)
    runs = []
    for _ in range(2):
        out = _nan_outputs(B, N, device)
        runs.append(assign_mod.delta_assign_fwd(x, k, valid, x_mask, out=out, **tiles))
        assert all(a is b for a, b in zip(runs[-1], out))
    errs = _check_assign(runs[0], want, TOL[dtype])
    print(f"delta_assign {dtype} {tiles or 'default'}: rel-RMS {errs}")
    for a, b in zip(*runs):
        assert torch.equal(a, b)  # bitwise reproducible
    # the public function (fresh outputs, no x_mask) agrees as well
    got = assign_mod.delta_assign_triton(x, k, valid)
    _check_assign(got, delta_assign_ref(x, k, valid), TOL[dtype])


def test_delta_assign_ties_empty_and_mixed_dtypes(assign_mod, device):
    f = assign_mod.delta_assign_fwd
    # ties → lowest index, also across slot tiles (16 | 16) and slot ranges
    D = 20
    x = torch.zeros(1, 2, D, device=device)
    x[0, 0, 0] = 1.0
    x[0, 1, 1] = 1.0
    k = torch.zeros(1, 40, D, device=device)
    k[0, :, 2] = 1.0
    for j in (3, 20, 33):
        k[0, j] = x[0, 0]
    k[0, 25] = x[0, 1]
    k[0, 39] = x[0, 1]
    valid = torch.ones(1, 40, dtype=torch.bool, device=device)
    for tiles in ({}, {"block_m": 16, "block_d": 16}, {"block_m": 16, "block_d": 16, "splits": 3}):
        idx, best, second = f(x, k, valid, out=_nan_outputs(1, 2, device), **tiles)
        assert idx.tolist() == [[3, 25]] and best.tolist() == [[1.0, 1.0]] and second.tolist() == [[1.0, 1.0]]
    valid[0, 3] = False
    idx, _, second = f(x, k, valid, block_m=16, block_d=16, splits=3)
    assert idx.tolist() == [[20, 25]] and second[0, 0].item() == 1.0
    # no valid slot, and no slot at all
    inf = float("-inf")
    for kk, vv in ((k, torch.zeros_like(valid)), (k[:, :0], valid[:, :0])):
        idx, best, second = f(x, kk, vv, out=_nan_outputs(1, 2, device))
        assert idx.tolist() == [[-1, -1]] and best.tolist() == second.tolist() == [[inf, inf]]
    # fp16 tokens against fp32 slots: multiplied as float32
    x16, k32, valid3, _ = _assign_inputs(device, torch.float16)
    k32 = k32.float()
    _check_assign(f(x16, k32, valid3), delta_assign_ref(x16, k32, valid3), TOL[torch.float32])


def test_delta_assign_triton_checks_arguments(assign_mod, device):
    f = assign_mod.delta_assign_triton
    x, k = torch.zeros(1, 4, 8, device=device), torch.zeros(1, 5, 8, device=device)
    valid = torch.ones(1, 5, dtype=torch.bool, device=device)
    with pytest.raises(ValueError, match="valid"):
        f(x, k, valid[:, :4])
    with pytest.raises(TypeError, match="valid"):
        f(x, k, valid.int())
    with pytest.raises(ValueError, match="k"):
        f(x, torch.zeros(1, 5, 7, device=device), valid)
    with pytest.raises(TypeError):
        f(x.double(), k, valid)
    with pytest.raises(ValueError, match="best_sim"):
        f(x, k, valid, out=(torch.empty(1, 4, dtype=torch.int64, device=device), torch.empty(1, 3, device=device),
                            torch.empty(1, 4, device=device)))


# ------------------------------------------------------------------------------------ delta_merge


def _merge_inputs(device: str, dtype: torch.dtype, count_dtype: torch.dtype):
    gen = torch.Generator().manual_seed(1)
    B, N, M, D = 3, 63, 17, 100
    x = unit(B, N, D, gen=gen).to(dtype)
    k = unit(B, M, D, gen=gen)
    count = torch.randint(0, 50, (B, M), generator=gen).to(count_dtype)
    count[0, :3] = 0  # empty slots take the mean
    count[1, 16] = 10**6  # a long history: the gate floor applies
    importance = torch.rand(B, M, generator=gen)
    novelty = torch.rand(B, N, generator=gen).to(dtype)
    idx = torch.randint(-1, M, (B, N), generator=gen)
    idx[1, 40:] = -1  # skipped tail
    idx[1, :20] = 16
    idx[2, 5:50] = 3  # one slot receives many tokens
    idx[2, 50:] = -1
    return [t.to(device) for t in (x, idx, k, count, importance, novelty)]


# one D chunk; four chunks (two-pass normalise); one chunk with tiles of 4 tokens (the sorted runs summed 4 at a time)
MERGE_TILES = [{}, {"block_d": 32, "block_t": 4}, {"block_t": 4}]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("tiles", MERGE_TILES, ids=["default", "chunked", "narrow"])
@pytest.mark.parametrize("grouping", ["sort", "scan"])
def test_delta_merge_matches_reference(merge_mod, device, dtype, tiles, grouping):
    count_dtype = torch.int64 if dtype == torch.float32 else torch.int32
    x, idx, k, count, importance, novelty = _merge_inputs(device, dtype, count_dtype)
    g_min = 0.05
    want = [k.clone(), count.clone(), importance.clone()]
    want_n = delta_merge_ref(x, idx, *want, novelty, g_min)
    runs = []
    for _ in range(2):
        state = [k.clone(), count.clone(), importance.clone()]
        out = torch.full(want_n.shape, BOGUS, dtype=torch.int64, device=device)
        n = merge_mod.delta_merge_fwd(x, idx, *state, novelty, g_min, out=out, grouping=grouping, **tiles)
        assert n is out
        runs.append((*state, n))
    got_k, got_count, got_imp, got_n = runs[0]
    assert torch.equal(got_n, want_n)
    assert torch.equal(got_count, want[1]) and got_count.dtype == count_dtype
    hit = want_n > 0
    assert torch.equal(got_k[~hit], k[~hit]) and torch.equal(got_imp[~hit], importance[~hit])  # untouched
    errs = {"k": rel_rms(got_k[hit], want[0][hit]), "importance": rel_rms(got_imp, want[2])}
    print(f"delta_merge {dtype} {tiles or 'default'} {grouping}: rel-RMS {errs}")
    assert errs["k"] <= TOL[dtype] and errs["importance"] <= TOL[dtype], errs
    for a, b in zip(*runs):
        assert torch.equal(a, b)  # bitwise reproducible


def test_delta_merge_scan_grouping_limits(merge_mod, device):
    x, idx, k, count, importance, novelty = _merge_inputs(device, torch.float32, torch.int64)
    with pytest.raises(ValueError, match="grouping"):
        merge_mod.delta_merge_triton(x, idx, k, count, importance, novelty, 0.02, grouping="hash")
    n_max = merge_mod.SCAN_MAX_N
    big = torch.zeros(1, n_max + 1, 8, device=device)
    with pytest.raises(ValueError, match=str(n_max)):
        merge_mod.delta_merge_triton(big, torch.full((1, n_max + 1), -1, device=device), k[:1, :, :8].contiguous(),
                                     count[:1].contiguous(), importance[:1].contiguous(),
                                     torch.zeros(1, n_max + 1, device=device), 0.02, grouping="scan")


def test_delta_merge_default_grouping_is_scan_up_to_its_limit(merge_mod, device, monkeypatch):
    """``grouping=None``: the scan (one launch; faster on the GPU in every measured case) for frames
    of up to SCAN_MAX_N tokens, the sort beyond; the two differ in float32 rounding, so the default's
    result is bitwise equal to exactly one of them."""
    x, idx, k, count, importance, novelty = _merge_inputs(device, torch.float32, torch.int64)

    def run(grouping):
        state = [k.clone(), count.clone(), importance.clone()]
        merge_mod.delta_merge_fwd(x, idx, *state, novelty, 0.05, grouping=grouping)
        return state[0]

    scan, sort = run("scan"), run("sort")
    assert not torch.equal(scan, sort)  # else this test could not tell them apart
    assert torch.equal(run(None), scan)
    monkeypatch.setattr(merge_mod, "SCAN_MAX_N", x.shape[1] - 1)
    assert torch.equal(run(None), sort)


def test_delta_merge_triton_public_function(merge_mod, device):
    x, idx, k, count, importance, novelty = _merge_inputs(device, torch.float32, torch.int64)
    want = [k.clone(), count.clone(), importance.clone()]
    want_n = delta_merge_ref(x, idx, *want, novelty, 0.02)
    n = merge_mod.delta_merge_triton(x, idx, k, count, importance, novelty, 0.02)
    assert torch.equal(n, want_n) and torch.equal(count, want[1])
    assert rel_rms(k, want[0]) <= 1e-5
    bad = idx.clone()
    bad[0, 0] = 17
    with pytest.raises(IndexError, match="idx"):
        merge_mod.delta_merge_triton(x, bad, k, count, importance, novelty, 0.02)
    before = k.clone()
    skip = torch.full_like(idx, -1)
    skip[0, 0] = 17  # unchecked, an out-of-range index is skipped, never written out of bounds
    n = merge_mod.delta_merge_triton(x, skip, k, count, importance, novelty, 0.02, check_idx=False)
    assert not n.any() and torch.equal(k, before)
    with pytest.raises(ValueError, match="contiguous"):
        merge_mod.delta_merge_triton(x, idx, k.transpose(0, 1).contiguous().transpose(0, 1),
                                     count, importance, novelty, 0.02)
    with pytest.raises(ValueError, match="g_min"):
        merge_mod.delta_merge_triton(x, idx, k, count, importance, novelty, -0.1)


# ------------------------------------------------------------------------------------ GPU code

_COMPILE = r"""
import os, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from streamvid.kernels.delta_assign import triton as A
from streamvid.kernels.delta_merge import triton as Mg

def build(fn, types, consts, ones, div16, **opts):
    consts = {**consts, **{o: 1 for o in ones}}  # unit strides: what the JIT specialises at launch
    sig = {n: "constexpr" if n in consts else types.get(n, "i32") for n in fn.arg_names}
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in div16}
    k = triton.compile(ASTSource(fn, sig, constexprs=consts, attrs=attrs),
                       target=GPUTarget("cuda", int(sys.argv[1]), 32), options=opts)
    assert k.asm.get("cubin"), fn.__name__

out = {"best_ptr": "*fp32", "idx_ptr": "*i64", "second_ptr": "*fp32", "valid_ptr": "*u8", "xmask_ptr": "*u8"}
for xd, kd, f32, bn, bd, nw, final in (("fp16", "fp16", False, 128, 64, 8, True),
                                       ("fp16", "fp32", True, 64, 32, 4, False)):
    consts = dict(HAS_XMASK=not final, FINAL=final, F32_DOT=f32, PRECISION="tf32x3",
                  BLOCK_N=bn, BLOCK_M=64, BLOCK_D=bd)
    build(A._delta_assign_kernel, {"x_ptr": "*" + xd, "k_ptr": "*" + kd, **out}, consts,
          ["sxd", "skd", "svm", "smn"], ["x_ptr", "k_ptr", "sxn", "skm"], num_warps=nw, num_stages=3)
build(A._delta_assign_combine_kernel, {"pbest_ptr": "*fp32", "pidx_ptr": "*i64", "psecond_ptr": "*fp32",
      "best_ptr": "*fp32", "idx_ptr": "*i64", "second_ptr": "*fp32"}, {"BLOCK_N": 256}, [], [], num_warps=4)
for xd, cnt, bt, bd, one in (("fp16", "*i32", 8, 512, True), ("fp32", "*i64", 16, 128, False)):
    types = {"x_ptr": "*" + xd, "nov_ptr": "*" + xd, "order_ptr": "*i64", "sorted_ptr": "*i64",
             "ends_ptr": "*i64", "k_ptr": "*fp32", "count_ptr": cnt, "imp_ptr": "*fp32", "n_ptr": "*i64",
             "gate_ptr": "*fp32", "g_min": "fp32"}
    build(Mg._delta_merge_kernel, types, {"BLOCK_T": bt, "BLOCK_D": bd, "ONE_CHUNK": one, "HAS_GATE": one},
          ["sxd"], ["x_ptr"],
          num_warps=4)
    types = {**types, "idx_ptr": "*i64"}
    build(Mg._delta_merge_scan_kernel, types,
          {"BLOCK_S": 64, "BLOCK_D": bd, "ONE_CHUNK": one, "HAS_GATE": not one},
          ["sxd", "sin"], ["x_ptr"], num_warps=1)
print("compiled")
"""


@pytest.mark.parametrize("cap", [90])
def test_kernels_compile_to_gpu_code(cap, tmp_path):
    """The kernels compile down to a cubin (Triton's compiler and the bundled ptxas; no GPU needed),
    with the constexpr combinations the host wrappers use: catches what the interpreter lets through."""
    import subprocess

    triton = pytest.importorskip("triton")
    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("this triton has no bundled ptxas")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-c", _COMPILE, str(cap)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "compiled" in r.stdout, r.stderr[-3000:]


# ------------------------------------------------------------------------------------ dispatch


def test_dispatch_backend_rules(monkeypatch):
    t = torch.zeros(1)
    monkeypatch.setenv("STREAMVID_KERNELS", "reference")
    assert not dispatch._use_triton(t)
    monkeypatch.delenv("STREAMVID_KERNELS")
    assert not dispatch._use_triton(t)  # auto: CPU tensors take the reference
    monkeypatch.setenv("STREAMVID_KERNELS", "cuda-please")
    with pytest.raises(ValueError, match="STREAMVID_KERNELS"):
        dispatch._use_triton(t)
    monkeypatch.setenv("STREAMVID_KERNELS", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        dispatch._use_triton(t)


def test_dispatch_works_without_triton():
    """Where triton is missing, the package imports and runs the references; forcing Triton says why not."""
    import subprocess

    code = (
        "import sys; sys.modules['triton'] = None\n"  # `import triton` now raises ImportError
        "import os, torch\n"
        "from streamvid.kernels import dispatch\n"
        "import streamvid.memory\n"
        "x = torch.nn.functional.normalize(torch.randn(1, 5, 8), dim=-1)\n"
        "idx, best, _ = dispatch.delta_assign(x, x, torch.ones(1, 5, dtype=torch.bool))\n"
        "assert idx.tolist() == [[0, 1, 2, 3, 4]]\n"
        "os.environ['STREAMVID_KERNELS'] = 'triton'\n"
        "try:\n"
        "    dispatch.delta_assign(x, x, torch.ones(1, 5, dtype=torch.bool))\n"
        "except RuntimeError as e:\n"
        "    assert 'cannot be imported' in str(e), e\n"
        "    print('ok')\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env.pop("STREAMVID_KERNELS", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


def _counting(kernels, calls: list[str]) -> tuple:
    """``kernels`` (the dispatch's Triton functions) wrapped to append their names to ``calls``."""

    def counted(f):
        def run(*a, **kw):
            calls.append(f.__name__)
            return f(*a, **kw)

        return run

    return tuple(counted(f) for f in kernels)


def test_deltamem_update_triton_matches_reference(device, monkeypatch):
    from streamvid.memory import DeltaMem, MemoryLayout
    from streamvid.memory.layout import CHANNELS
    from streamvid.types import Encoded

    if device == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    D = 32
    layout = MemoryLayout(dim=D, slots=12, segments=6, events=4, thumbs=4, thumb_bytes=256)
    gen = torch.Generator().manual_seed(3)
    bank = unit(20, D, gen=gen)  # recurring patterns (merges) among fresh tokens (claims, evictions)
    frames = []
    for f in range(6):
        noisy = bank[torch.randint(0, 20, (10,), generator=gen)] + 0.05 * torch.randn(10, D, generator=gen)
        tokens = torch.cat([noisy, unit(3 + f % 3, D, gen=gen)])
        frames.append(Encoded(tokens / tokens.norm(dim=-1, keepdim=True), unit(D, gen=gen)))

    calls = []
    monkeypatch.setenv("STREAMVID_KERNELS", "triton")
    monkeypatch.setattr(dispatch, "_kernels", _counting(dispatch._load_kernels(), calls))
    mems = {}
    for backend in ("reference", "triton"):
        monkeypatch.setenv("STREAMVID_KERNELS", backend)
        mem = DeltaMem(layout, device=device)
        for f, enc in enumerate(frames):
            mem.update(0.5 * f, enc, [0.0] * len(CHANNELS))
        mems[backend] = mem
    ref, tri = mems["reference"], mems["triton"]
    assert calls.count("delta_merge_triton") == len(frames) and "delta_assign_triton" in calls
    assert int(ref.slot_used.sum()) == layout.slots  # the run filled the slots and evicted
    assert torch.equal(ref.slot_used, tri.slot_used)
    assert torch.equal(ref.slot_count, tri.slot_count)
    assert torch.equal(ref.slot_t_last, tri.slot_t_last)
    torch.testing.assert_close(tri.slot_k, ref.slot_k, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tri.slot_importance, ref.slot_importance, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------ benchmark script


@pytest.fixture(scope="module")
def bench():
    with registered_script("bench_kernels") as mod:
        yield mod


def test_bench_arguments(bench):
    a = bench.parse_args([])
    assert a.M == [256, 1024, 4096, 16384] and a.B == [1, 8, 64] and a.D == 512
    assert a.dtypes == ["fp16", "fp32"] and a.budget > 0
    a = bench.parse_args(["--M", "300", "--B", "2", "--N", "64", "--dtypes", "fp32", "--no-graphs"])
    assert a.M == [300] and a.B == [2] and a.N == [64] and a.dtypes == ["fp32"] and not a.graphs
    with pytest.raises(SystemExit):
        bench.parse_args(["--dtypes", "fp8"])


def test_bench_without_cuda_exits_cleanly(bench, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main(["--M", "256"]) == 0
    assert "CUDA" in capsys.readouterr().err


def test_bench_table(bench):
    rows = [bench.Row("fp16", 1, 64, 256, 512, 12.5, 100.0, 3.5, 40.0, 5e-7, 20.0),
            bench.Row("fp32", 1, 64, 256, 512, 12.5, 100.0, 3.5, 40.0, 5e-7, 20.0, 900.0, 2.25, 9.75,
                      scan_merge_gbs=500.0)]
    table = bench.markdown_table(rows, card="Some GPU", copy_gbs=2000.0)
    assert "Some GPU" in table and "| fp16 |" in table and "2000" in table
    assert "| 3.5 | 40 | 20.0 | – | – | – | – | – | – |" in table  # no scan timings, no reference
    assert "| 3.5 | 40 | 20.0 | 2.2 | 500 | 25% | 9.8 | 900.0 | 92.3× |" in table  # speed-up over the scan frame


@pytest.mark.slow
def test_watch_gives_the_same_answers_through_the_triton_backend(device, monkeypatch, tmp_path, capsys):
    """The whole `watch` path with the memory's kernels on Triton (the interpreter here) answers as
    with the reference: same events, same times, scores within tolerance."""
    import json

    if device == "cuda":  # `watch` keeps its memory on the CPU, where forcing Triton needs the interpreter
        pytest.skip("the interpreter's check; on a GPU see test_memory_on_a_gpu_answers_as_the_cpu_reference")

    from streamvid import synth
    from streamvid.cli import main

    video = tmp_path / "v.mp4"
    synth.write_video(video, synth.crossing_scene(width=160, height=120, duration=5.0, t_in=0.5, t_out=4.0))
    docs = {}
    for backend in ("reference", "triton"):
        monkeypatch.setenv("STREAMVID_KERNELS", backend)
        code = main(["watch", str(video), "--encoder", "classic", "--fps", "2", "--ask", "who entered?",
                     "--ask", "red", "--json", "--out", str(tmp_path / backend)])
        out, err = capsys.readouterr()
        assert code == 0, err
        docs[backend] = json.loads(out)
    ref, tri = docs["reference"], docs["triton"]
    assert tri["memory"]["slots_used"] == ref["memory"]["slots_used"]
    for a, b in zip(ref["answers"], tri["answers"], strict=True):
        assert [(m["event"], m["t"], m["start"], m["end"]) for m in a["moments"]] == \
            [(m["event"], m["t"], m["start"], m["end"]) for m in b["moments"]]
        for ma, mb in zip(a["moments"], b["moments"], strict=True):
            assert ma["score"] == pytest.approx(mb["score"], abs=1e-3)


@pytest.mark.slow
def test_memory_on_a_gpu_answers_as_the_cpu_reference(tmp_path, monkeypatch):
    """On a CUDA GPU, a memory whose buffers live there runs its kernels on Triton (the dispatch's
    ``auto`` rule, no environment variable); ingesting a video into it gives the memory and the
    answers of the same ingest into a memory on the CPU (the PyTorch references). Skipped without CUDA."""
    if not torch.cuda.is_available() or triton_interpreting():
        pytest.skip("needs a CUDA GPU (and TRITON_INTERPRET unset)")
    from streamvid import synth
    from streamvid.models.classic import ClassicEncoder
    from streamvid.pipeline import ingest_file, new_memory
    from streamvid.query import answer_image, answer_text
    from streamvid.sources import FileSource, SamplingGrid

    assert dispatch.backend() == "auto"
    video = tmp_path / "v.mp4"
    synth.write_video(video, synth.crossing_scene(width=320, height=240, duration=8.0, t_in=1.0, t_out=6.0))
    enc = ClassicEncoder()
    calls = []
    real = dispatch._load_kernels()
    assert real is not None, dispatch._import_error
    monkeypatch.setattr(dispatch, "_kernels", _counting(real, calls))  # the CPU memory does not call them
    mems = {}
    for device in ("cpu", "cuda"):
        mem = new_memory(enc, 256 * 1024, device=device)
        ingest_file(FileSource(str(video), fps=4.0), SamplingGrid(0.0, 4.0), enc, mem)
        mems[device] = mem
    cpu, gpu = mems["cpu"], mems["cuda"]
    assert "delta_assign_triton" in calls and "delta_merge_triton" in calls  # the GPU memory used them
    assert int(cpu.slot_used.sum()) > 0
    assert torch.equal(cpu.slot_used, gpu.slot_used.cpu())
    assert torch.equal(cpu.slot_count, gpu.slot_count.cpu())
    torch.testing.assert_close(gpu.slot_k.cpu(), cpu.slot_k, rtol=1e-4, atol=1e-5)
    probe = cpu.slot_k[cpu.slot_used][0]
    for ask in (lambda m: answer_text(m, "who entered?", enc.encode_text, encoder_name=enc.name),
                lambda m: answer_text(m, "red", enc.encode_text, encoder_name=enc.name),
                lambda m: answer_image(m, "probe", probe)):
        a, b = ask(cpu), ask(gpu)
        assert a.intent == b.intent and len(a.moments) == len(b.moments)
        for ma, mb in zip(a.moments, b.moments, strict=True):
            assert (ma.event, ma.t, ma.start, ma.end) == (mb.event, mb.t, mb.start, mb.end)
            assert ma.score == pytest.approx(mb.score, abs=1e-3)
