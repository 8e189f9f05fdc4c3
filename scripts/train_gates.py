"""Train the optional learned merge gate (``streamvid.models.gates.GateNet``) on CPU, in minutes.

    python scripts/train_gates.py --out /tmp/gate.safetensors   # defaults: ~3 min on a laptop CPU

Data (generated, seeded; no video decoding): synthetic token streams. A stream is ``T`` frames
at 1 fps made of short *episodes* (``--episode`` frames each). Every episode shows two objects,
each ``normalise(p + 0.8 r)`` for a prototype ``p`` drawn from a small pool (so content recurs
partly and competes for slots) and a fresh random ``r``; a frame has ``N`` tokens, noisy copies of
its episode's objects (noise ``σ``).

Objective (self-supervised recall): after the ``T`` frames, query with held-out embeddings of
earlier frames (fresh noisy copies of a random frame's objects, never written) and recover their
times. Each slot carries a mean time merged with the same gate as its vector
(``τ_j ← τ_j + g_j (t − τ_j)``); the answer is the slot attention of :meth:`DeltaMem.read`,
``a = softmax(q·k/temperature + log count)``, and the loss is
``−log Σ_j a_j exp(−(τ_j − t)² / 2)`` (the attention mass on slots whose time is within about a
second). Training runs a differentiable re-implementation of the memory's slot tier
(:class:`Surrogate`: nearest-slot assignment, leader claims of novel tokens, eviction of the
lowest-count slot folded count-weighted into its nearest neighbour, the gated merge), with gates
from the GateNet and autograd through ``k`` and ``τ``; the discrete choices are not differentiated.

Evaluation on held-out streams runs THE REAL ``DeltaMem`` (reference kernels) with the closed-form
gate, an untrained GateNet (must equal the closed form) and the trained one. The real memory
keeps no per-slot mean time, so the script tracks it beside the memory: it wraps
``dispatch.delta_merge`` (the same gate the merge used: the given one, else the closed form) and
the memory's ``_evict`` (count-weighted fold of times). Reported: hit@±1 s of the attention-
weighted time, hit@±1 s of the top slot's time, and the mean absolute error in seconds. The
memory's default stays the closed form unless this evaluation is clearly better.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamvid.kernels import dispatch  # noqa: E402
from streamvid.memory.deltamem import DeltaMem  # noqa: E402
from streamvid.memory.layout import CHANNELS, MemoryLayout  # noqa: E402
from streamvid.models.gates import GateNet, slot_features  # noqa: E402
from streamvid.types import Encoded  # noqa: E402

# --------------------------------------------------------------------------------------- data


def make_stream(seed: int, *, T: int, N: int, D: int, episode: int, pool: int, sigma: float, queries: int):
    """Frames ``[T, N, D]``, times ``[T]`` and held-out queries ``[Q, D]`` with their times ``[Q]``."""
    g = torch.Generator().manual_seed(seed)

    def unit(*shape):
        v = torch.randn(*shape, generator=g)
        return v / v.norm(dim=-1, keepdim=True)

    protos = unit(pool, D)
    n_ep = math.ceil(T / episode)
    pick = torch.randint(0, pool, (n_ep, 2), generator=g)
    objs = protos[pick] + 0.8 * unit(n_ep, 2, D)
    objs = objs / objs.norm(dim=-1, keepdim=True)  # [E, 2, D]

    def noisy(o):
        v = o + sigma * torch.randn(o.shape, generator=g) / math.sqrt(D)
        return v / v.norm(dim=-1, keepdim=True)

    ep = torch.arange(T) // episode
    frames = noisy(objs[ep][:, torch.arange(N) % 2])  # [T, N, D]
    times = torch.arange(T, dtype=torch.float32)
    qt = torch.randint(0, T, (queries,), generator=g)
    which = torch.randint(0, 2, (queries,), generator=g)
    q = noisy(objs[ep[qt], which])
    return frames, times, q, qt.float()


# ------------------------------------------------------------------------- training surrogate


class Surrogate:
    """Differentiable slot tier of ``DeltaMem`` for one stream (see the module docstring)."""

    def __init__(self, M: int, D: int, gate: GateNet | None, *, threshold: float, g_min: float,
                 max_claims: int, decay: float = 0.999) -> None:
        self.M, self.gate, self.thr, self.g_min, self.max_claims, self.decay = M, gate, threshold, g_min, max_claims, decay
        self.k = torch.zeros(M, D)
        self.tm = torch.zeros(M)
        self.count = torch.zeros(M, dtype=torch.int64)
        self.imp = torch.zeros(M)
        self.used = torch.zeros(M, dtype=torch.bool)

    def update(self, t: float, x: torch.Tensor) -> None:
        self.imp = self.imp * self.decay
        with torch.no_grad():
            kd = self.k.detach()
            sim = (x @ kd.T).masked_fill(~self.used, -math.inf)
            bsim, best = sim.max(dim=1)
            nov = (1.0 - bsim).clamp(0.0, 2.0)
            target = torch.where(self.used.any(), best, torch.full_like(best, -1))
        novel = (nov > self.thr).nonzero().squeeze(1)
        if len(novel):
            target = self._claim(x, target, nov, novel)
        self._merge(t, x, target, nov)

    def _claim(self, x, target, nov, novel):
        target = target.clone()
        order = novel[torch.argsort(-nov[novel], stable=True)]
        leaders: list[int] = []  # token index of each claimed slot's first token
        slots: list[int] = []
        keep = torch.zeros(self.M, dtype=torch.bool)
        non_novel = target[(nov <= self.thr) & (target >= 0)]
        keep[non_novel] = True
        for i in order.tolist():
            if leaders:
                s = x[i] @ x[leaders].T
                j = int(s.argmax())
                if s[j] >= 1.0 - self.thr:
                    target[i] = slots[j]
                    continue
            if len(leaders) >= self.max_claims:
                continue
            free = (~self.used).nonzero().squeeze(1)
            if len(free):
                slot = int(free[0])
            else:
                cand = self.count.masked_fill(keep, torch.iinfo(torch.int64).max)
                if int(self.used.sum()) < 2 or bool((cand == torch.iinfo(torch.int64).max).all()):
                    continue
                slot = int(cand.argmin())
                self._fold(slot, keep)
                target[target == slot] = -2  # re-routed below
            keep[slot] = True
            self.used[slot] = True
            self.count[slot] = 0
            self.k = torch.index_put(self.k, (torch.tensor([slot]),), torch.zeros(1, self.k.shape[1]))
            self.tm = torch.index_put(self.tm, (torch.tensor([slot]),), torch.zeros(1))
            self.imp = torch.index_put(self.imp, (torch.tensor([slot]),), torch.zeros(1))
            leaders.append(i)
            slots.append(slot)
            target[i] = slot
        lost = (target == -2).nonzero().squeeze(1)
        if len(lost):  # tokens whose best slot was just evicted: nearest used slot
            with torch.no_grad():
                s = (x[lost] @ self.k.detach().T).masked_fill(~self.used, -math.inf)
            target[lost] = s.argmax(dim=1)
        return target

    def _fold(self, v: int, keep: torch.Tensor) -> None:
        """Fold slot ``v`` into its nearest other used slot, count-weighted (k and mean time)."""
        with torch.no_grad():
            s = (self.k.detach() @ self.k.detach()[v]).masked_fill(~self.used, -math.inf)
            s[v] = -math.inf
            d = int(s.argmax())
        cd, cv = float(self.count[d]), float(self.count[v])
        new = cd * self.k[d] + cv * self.k[v]
        idx = torch.tensor([d])
        self.k = torch.index_put(self.k, (idx,), (new / new.norm().clamp_min(1e-12))[None])
        tm = (cd * self.tm[d] + cv * self.tm[v]) / max(cd + cv, 1.0)
        self.tm = torch.index_put(self.tm, (idx,), tm[None])
        self.count[d] += self.count[v]
        self.used[v] = False

    def _merge(self, t, x, target, nov):
        ok = target >= 0
        tgt = target[ok]
        if not len(tgt):
            return
        hit, inv, n = torch.unique(tgt, return_inverse=True, return_counts=True)
        sums = torch.zeros(len(hit), x.shape[1]).index_add(0, inv, x[ok])
        nov_sum = torch.zeros(len(hit)).index_add(0, inv, nov[ok])
        feats = slot_features(n, self.count[hit], nov_sum, self.imp[hit].detach())
        if self.gate is None:
            g = feats[:, 0].clamp_min(self.g_min)
        else:
            g = self.gate(feats, self.g_min)
        old = self.k[hit]
        new = old + g[:, None] * (sums / n[:, None] - old)
        self.k = torch.index_put(self.k, (hit,), new / new.norm(dim=-1, keepdim=True).clamp_min(1e-12))
        self.tm = torch.index_put(self.tm, (hit,), self.tm[hit] + g * (t - self.tm[hit]))
        self.count[hit] += n
        self.imp = torch.index_put(self.imp, (hit,), self.imp[hit] + g.detach() * nov_sum / n)


def recall(q, qt, k, tm, count, used, temperature):
    """Loss, soft hit@±1 s, top-slot hit@±1 s, mean |error| (s) of queries ``q`` over slots."""
    rows = used.nonzero().squeeze(1)
    logits = (q @ k[rows].T) / temperature + torch.log(count[rows].float())
    a = torch.softmax(logits, dim=-1)
    tr = tm[rows]
    close = torch.exp(-0.5 * (tr[None, :] - qt[:, None]) ** 2)
    loss = -torch.log((a * close).sum(-1) + 1e-6).mean()
    pred = (a * tr[None, :]).sum(-1).detach()
    top = tr[a.argmax(-1)].detach()
    err = (pred - qt).abs()
    return loss, float((err <= 1.0).float().mean()), float(((top - qt).abs() <= 1.0).float().mean()), float(err.mean())


# ------------------------------------------------------------------- evaluation, real memory


def run_real(frames, times, q, qt, args, gate):
    """Feed a stream through the real ``DeltaMem``; recall as in :func:`recall`, times tracked beside it."""
    D = frames.shape[-1]
    layout = MemoryLayout(dim=D, slots=args.slots, segments=8, events=2, thumbs=2)
    mem = DeltaMem(layout, novelty_threshold=args.threshold, gate_floor=args.g_min,
                   temperature=args.temperature, gate=gate)
    tm = torch.zeros(args.slots, dtype=torch.float64)
    now = [0.0]
    orig_merge, orig_evict = dispatch.delta_merge, mem._evict

    def merge(x, idx, k, count, importance, novelty, g_min, gate=None):
        c0 = count[0].clone()
        n = orig_merge(x, idx, k, count, importance, novelty, g_min, gate=gate)
        hit = (n[0] > 0).nonzero().squeeze(1)
        nf = n[0, hit].float()
        g = (nf / (c0[hit].float() + nf)).clamp_min(g_min)
        if gate is not None:
            given = gate[0, hit]
            g = torch.where(torch.isnan(given), g, given)
        tm[hit] += g.double() * (now[0] - tm[hit])
        return n

    def evict(t, n, eligible):
        c0 = mem.slot_count.clone().double()
        victims, dests = orig_evict(t, n, eligible)
        acc = (c0 * tm).index_add(0, dests, c0[victims] * tm[victims])
        ud = torch.unique(dests)
        tm[ud] = acc[ud] / mem.slot_count[ud].double().clamp_min(1)
        return victims, dests

    mem._evict = evict
    dispatch.delta_merge = merge
    try:
        ch = [0.0] * len(CHANNELS)
        for x, t in zip(frames, times.tolist(), strict=True):
            now[0] = t
            mem.update(t, Encoded(x, x.mean(0) / x.mean(0).norm()), ch)
    finally:
        dispatch.delta_merge = orig_merge
    with torch.no_grad():
        return recall(q, qt, mem.slot_k, tm.float(), mem.slot_count, mem.slot_used, args.temperature)


def run_surrogate(frames, times, q, qt, args, gate):
    s = Surrogate(args.slots, frames.shape[-1], gate, threshold=args.threshold, g_min=args.g_min,
                  max_claims=max(2, args.slots // 8))
    for x, t in zip(frames, times.tolist(), strict=True):
        s.update(t, x)
    return recall(q, qt, s.k, s.tm, s.count, s.used, args.temperature)


def stream(seed, args):
    return make_stream(seed, T=args.frames, N=args.tokens, D=args.dim, episode=args.episode,
                       pool=args.pool, sigma=args.sigma, queries=args.queries)


def train(args) -> GateNet:
    torch.manual_seed(args.seed)
    net = GateNet(hidden=args.hidden, g_min=args.g_min)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    t0 = time.time()
    for step in range(args.steps):
        opt.zero_grad()
        total = 0.0
        for b in range(args.batch):
            frames, times, q, qt = stream(args.seed * 100_003 + step * args.batch + b, args)
            loss = run_surrogate(frames, times, q, qt, args, net)[0] / args.batch
            loss.backward()
            total += float(loss.detach())
        opt.step()
        if step % max(1, args.steps // 10) == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {total:.4f}  ({time.time() - t0:.0f} s)", flush=True)
    return net


def evaluate(args, nets: dict[str, GateNet | None]) -> dict[str, dict[str, tuple[float, ...]]]:
    seeds = [10_000_000 + args.seed * 1000 + i for i in range(args.eval_streams)]
    out: dict[str, dict[str, tuple[float, ...]]] = {}
    for name, net in nets.items():
        for where, fn in (("real DeltaMem", run_real), ("surrogate", run_surrogate)):
            rows = []
            for s in seeds:
                frames, times, q, qt = stream(s, args)
                with torch.no_grad():
                    r = fn(frames, times, q, qt, args, net)
                rows.append((float(r[0]), r[1], r[2], r[3]))
            out.setdefault(where, {})[name] = tuple(np.mean(rows, axis=0).tolist())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="write the trained gate here (safetensors)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=2, help="streams per step")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=48, help="T, frames per stream (1 fps)")
    p.add_argument("--tokens", type=int, default=8, help="N, tokens per frame")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--slots", type=int, default=16)
    p.add_argument("--episode", type=int, default=3, help="frames per episode")
    p.add_argument("--pool", type=int, default=12, help="prototypes the episodes' objects lean on")
    p.add_argument("--sigma", type=float, default=0.3, help="token noise")
    p.add_argument("--queries", type=int, default=32)
    p.add_argument("--threshold", type=float, default=0.2, help="the memory's novelty threshold")
    p.add_argument("--g-min", type=float, default=0.02, help="the gate floor")
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--eval-streams", type=int, default=10)
    args = p.parse_args(argv)

    untrained = GateNet(hidden=args.hidden, g_min=args.g_min)
    net = train(args)
    net.eval()
    if args.out:
        net.save(args.out)
        print(f"wrote {args.out}")
    res = evaluate(args, {"closed form": None, "GateNet untrained": untrained, "GateNet trained": net})
    print(f"\nheld-out: {args.eval_streams} streams x {args.queries} queries, T={args.frames}, "
          f"M={args.slots}, N={args.tokens}, D={args.dim}")
    print(f"| {'memory':<13} | {'gate':<17} | {'loss':>6} | {'hit@1s soft':>11} | {'hit@1s top':>10} | {'MAE s':>6} |")
    print(f"|{'-' * 15}|{'-' * 19}|{'-' * 8}|{'-' * 13}|{'-' * 12}|{'-' * 8}|")
    for where, rows in res.items():
        for name, (loss, soft, top, mae) in rows.items():
            print(f"| {where:<13} | {name:<17} | {loss:6.3f} | {soft:11.3f} | {top:10.3f} | {mae:6.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
