"""Baseline memories from the literature, behind the retention benchmark's interface (issue 7).

Each class implements :class:`~streamvid.memory.retention.RetentionMemory` (``name``, ``nbytes``,
``update(t, enc)``, ``search(query, top_k)``) and is small and honest: its capacity is computed up
front from ``budget_bytes``, ``tokens_per_frame`` (``N``) and ``dim`` (``D``) and it never holds
more (except :class:`KeepAll`, the unbounded upper bound).

Every method sees a frame as ``N + 1`` vectors of dimension ``D``: the encoder's ``N`` tokens and its
global vector (``tokens [N, D]`` and ``global_ [D]`` of :class:`~streamvid.types.Encoded`).

Counting bytes (the same for every method)
------------------------------------------
- every stored vector value costs **4 bytes** (float32; it is stored as float32);
- every stored entry costs **8 bytes of bookkeeping**: a float64 time for an entry that is one
  frame or one token (keep-all, uniform, fifo, timechat-online), a float32 count-weighted mean time
  and a float32 count for an entry that merges several (moviechat, ma-lmm, kmeans);
- timechat-online also holds the previous frame (``(N + 1) * D * 4`` bytes) to compare with.

The 8 bytes leave a merged entry its mean time and count but not its time span (start, end): the
mean time is what search reports, and it always lies within the span, so none is needed.

``nbytes`` is exactly the bytes of the entries held now (so it grows until the memory is full, then
stays constant); the tensors are allocated once at the capacity, which is ``<= budget_bytes``. Not
counted: a few scalar counters per memory, and for the merging memories (moviechat, ma-lmm) two
indexes recomputable from what is counted — the entries' time order (it is the order of their mean
times) and the cosine of each time-adjacent pair — kept only so that an update costs ``O(N·D)``.

Searching (the same for every method)
-------------------------------------
Every stored entry gets ``score = cos(query, vector)``; an entry holding several vectors (a frame or
a merged frame: its ``N`` tokens and its global vector) scores the **max** over them. Merged vectors
are count-weighted means (not re-normalised), so the cosine divides by their norm. An entry's time
is the frame's time, or for a merged entry its count-weighted mean time (which lies within the span
of the frames merged into it). ``search`` returns the ``top_k`` best, best first, with
non-maximum suppression in time: a hit within ``min_gap`` seconds of a better one already taken is
skipped.

The methods
-----------
``keep-all`` :class:`KeepAll` · ``uniform`` :class:`UniformSampling` · ``fifo`` :class:`FifoWindow` ·
``moviechat`` :class:`MovieChatMerge` · ``ma-lmm`` :class:`MALMMMerge` ·
``timechat-online`` :class:`DifferentialTokenDrop` · ``kmeans`` :class:`WeightedKMeans`, and
``delta-mem`` (:class:`~streamvid.memory.retention.DeltaMemRetention`). :func:`make_memory` builds
any of them by name. Everything is deterministic.
"""

from __future__ import annotations

import torch

from streamvid.memory.retention import DeltaMemRetention, Hit, RetentionMemory
from streamvid.types import Encoded

VALUE_BYTES = 4  # float32 per stored vector value
ENTRY_BYTES = 8  # bookkeeping per stored entry
DEFAULT_MIN_GAP = 1.0
_EPS = 1e-12


def _frame_bytes(n: int, d: int) -> int:
    """Bytes of one stored frame entry: ``N + 1`` vectors and its bookkeeping."""
    return (n + 1) * d * VALUE_BYTES + ENTRY_BYTES


def _check_dims(tokens_per_frame: int, dim: int) -> None:
    if tokens_per_frame < 1 or dim < 1:
        raise ValueError(f"tokens_per_frame and dim must be >= 1, got {tokens_per_frame} and {dim}")


def _too_small(name: str, budget_bytes: int, need: int, what: str) -> ValueError:
    return ValueError(f"{name}: a budget of {budget_bytes} bytes cannot hold {what} ({need} bytes)")


def _frame_vectors(enc: Encoded, n: int, d: int) -> torch.Tensor:
    """``[N + 1, D]``: the frame's tokens then its global vector (float32)."""
    tokens, glob = enc.tokens, enc.global_
    if tokens.shape != (n, d) or glob.shape != (d,):
        raise ValueError(f"expected tokens [{n}, {d}] and global_ [{d}], got {tuple(tokens.shape)} "
                         f"and {tuple(glob.shape)}")
    return torch.cat([tokens.reshape(n, d), glob.reshape(1, d)]).to(torch.float32)


def _cos_scores(vectors: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Cosine of ``query [D]`` with each ``vectors [..., D]`` row."""
    q = query.reshape(-1).to(torch.float32)
    q = q / q.norm().clamp_min(_EPS)
    return (vectors @ q) / vectors.norm(dim=-1).clamp_min(_EPS)


def _pair_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of ``a [..., D]`` and ``b [..., D]``."""
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(_EPS)


def _top_hits(scores: torch.Tensor, times: torch.Tensor, top_k: int, min_gap: float) -> list[Hit]:
    """The ``top_k`` best ``(time, score)`` pairs, best first, with non-maximum suppression in time."""
    scores, times = scores.reshape(-1), times.reshape(-1)
    n = scores.numel()
    if n == 0 or top_k <= 0:
        return []
    order = torch.sort(scores, descending=True, stable=True).indices
    taken: list[Hit] = []
    start, chunk = 0, max(64, 16 * top_k)
    while start < n and len(taken) < top_k:  # in chunks: most of the sorted list is never looked at
        idx = order[start:start + chunk]
        for s, t in zip(scores[idx].tolist(), times[idx].tolist()):
            if all(abs(t - h.t) >= min_gap for h in taken):
                taken.append(Hit(float(t), float(s)))
                if len(taken) == top_k:
                    break
        start += chunk
        chunk *= 4
    return taken


class KeepAll:
    """Every frame's tokens and global vector, each with its float64 time: the upper bound.

    Unbounded: ``nbytes = frames * ((N + 1) * D * 4 + 8)`` grows with the stream (the budget is
    ignored). Frames are appended to blocks of ``block`` frames, so an update costs ``O(N·D)``; the
    unused tail of the last block is allocation slack, not counted.
    """

    name = "keep-all"

    def __init__(self, budget_bytes: int | None, dim: int, tokens_per_frame: int, *,
                 min_gap: float = DEFAULT_MIN_GAP, block: int = 512) -> None:
        _check_dims(tokens_per_frame, dim)
        self.dim, self.tokens_per_frame, self.min_gap, self.block = dim, tokens_per_frame, min_gap, block
        self._blocks: list[torch.Tensor] = []  # [block, N + 1, D] each
        self._times: list[torch.Tensor] = []  # [block] float64 each
        self._frames = 0

    @property
    def nbytes(self) -> int:
        return self._frames * _frame_bytes(self.tokens_per_frame, self.dim)

    def update(self, t: float, enc: Encoded) -> None:
        v = _frame_vectors(enc, self.tokens_per_frame, self.dim)
        i = self._frames % self.block
        if i == 0:
            self._blocks.append(torch.empty(self.block, *v.shape))
            self._times.append(torch.empty(self.block, dtype=torch.float64))
        self._blocks[-1][i] = v
        self._times[-1][i] = t
        self._frames += 1

    def search(self, query: torch.Tensor, top_k: int = 5) -> list[Hit]:
        if self._frames == 0:
            return []
        last = self._frames - (len(self._blocks) - 1) * self.block
        scores = [_cos_scores(b, query).amax(1) for b in self._blocks[:-1]]
        scores.append(_cos_scores(self._blocks[-1][:last], query).amax(1))
        times = torch.cat(self._times[:-1] + [self._times[-1][:last]])
        return _top_hits(torch.cat(scores), times, top_k, self.min_gap)


class _FrameBuffer:
    """``K`` frame entries (``[K, N + 1, D]`` vectors, float64 times), allocated once."""

    def __init__(self, name: str, budget_bytes: int, dim: int, tokens_per_frame: int) -> None:
        _check_dims(tokens_per_frame, dim)
        per = _frame_bytes(tokens_per_frame, dim)
        self.capacity = budget_bytes // per
        if self.capacity < 1:
            raise _too_small(name, budget_bytes, per, f"one frame of {tokens_per_frame} tokens + 1 global "
                             f"of dim {dim}")
        self.per = per
        self.vectors = torch.zeros(self.capacity, tokens_per_frame + 1, dim)
        self.times = torch.zeros(self.capacity, dtype=torch.float64)

    def search(self, used: int, query: torch.Tensor, top_k: int, min_gap: float) -> list[Hit]:
        """The best of the first ``used`` entries (any of a frame's vectors may match)."""
        scores = _cos_scores(self.vectors[:used], query).amax(1)
        return _top_hits(scores, self.times[:used], top_k, min_gap)


class UniformSampling:
    """``K = budget // ((N + 1) * D * 4 + 8)`` frames spread uniformly over the stream so far.

    Online: frame ``i`` (counting updates from 0) is kept when ``i % s == 0`` (the stride ``s``
    starts at 1); when a frame is to be kept and the ``K`` slots are full, ``s`` doubles and every
    other kept frame is dropped (those at odd multiples of the old stride), repeatedly until the
    frame fits or is no longer a multiple of ``s``. The kept frames are always frames
    ``0, s, 2s, ...`` in order, ``ceil(K / 2)`` to ``K`` of them once the stream is longer than ``K``.
    """

    name = "uniform"

    def __init__(self, budget_bytes: int, dim: int, tokens_per_frame: int, *,
                 min_gap: float = DEFAULT_MIN_GAP) -> None:
        self._buf = _FrameBuffer(self.name, budget_bytes, dim, tokens_per_frame)
        self.capacity = self._buf.capacity
        self.dim, self.tokens_per_frame, self.min_gap = dim, tokens_per_frame, min_gap
        self.stride = 1
        self._used = 0
        self._frames = 0  # frames seen

    @property
    def nbytes(self) -> int:
        return self._used * self._buf.per

    def update(self, t: float, enc: Encoded) -> None:
        i = self._frames
        self._frames += 1
        if i % self.stride:
            return
        v = _frame_vectors(enc, self.tokens_per_frame, self.dim)
        while self._used == self.capacity and i % self.stride == 0:
            keep = torch.arange(0, self._used, 2)  # the frames at even multiples of the stride
            self._buf.vectors[: len(keep)] = self._buf.vectors[keep]
            self._buf.times[: len(keep)] = self._buf.times[keep]
            self._used = len(keep)
            self.stride *= 2
        if i % self.stride == 0:
            self._buf.vectors[self._used] = v
            self._buf.times[self._used] = t
            self._used += 1

    def search(self, query: torch.Tensor, top_k: int = 5) -> list[Hit]:
        return self._buf.search(self._used, query, top_k, self.min_gap)


class FifoWindow:
    """The last ``K = budget // ((N + 1) * D * 4 + 8)`` frames (a ring buffer): older ones are
    forgotten, by design."""

    name = "fifo"

    def __init__(self, budget_bytes: int, dim: int, tokens_per_frame: int, *,
                 min_gap: float = DEFAULT_MIN_GAP) -> None:
        self._buf = _FrameBuffer(self.name, budget_bytes, dim, tokens_per_frame)
        self.capacity = self._buf.capacity
        self.dim, self.tokens_per_frame, self.min_gap = dim, tokens_per_frame, min_gap
        self._frames = 0

    @property
    def nbytes(self) -> int:
        return min(self._frames, self.capacity) * self._buf.per

    def update(self, t: float, enc: Encoded) -> None:
        i = self._frames % self.capacity
        self._buf.vectors[i] = _frame_vectors(enc, self.tokens_per_frame, self.dim)
        self._buf.times[i] = t
        self._frames += 1

    def search(self, query: torch.Tensor, top_k: int = 5) -> list[Hit]:
        return self._buf.search(min(self._frames, self.capacity), query, top_k, self.min_gap)


class _AdjacentMergeBank:
    """``R`` independent time-ordered lists of at most ``K`` entries (``payload [P]`` float32, a
    float32 mean time and a float32 count each). Adding one entry per row to a full row merges, in
    each row, the time-adjacent pair (the new entry included, as the last) whose key vectors
    (``payload[key]``) have the highest cosine: count-weighted mean of payloads and times, counts
    summed — as if the new entry were appended and the most similar adjacent pair merged.

    Entries live in fixed slots; ``order [R, K]`` (the slots in time order) and ``adj [R, K]``
    (``adj[r, k]`` = cosine of the keys at order positions ``k`` and ``k + 1``) are indexes derived
    from the stored entries, updated in ``O(R·P)`` per add.
    """

    def __init__(self, rows: int, capacity: int, width: int, key: slice) -> None:
        self.R, self.K, self.key = rows, capacity, key
        self.payload = torch.zeros(rows, capacity, width)
        self.tmean = torch.zeros(rows, capacity)
        self.count = torch.zeros(rows, capacity)
        self.order = torch.arange(capacity).repeat(rows, 1)
        self.adj = torch.full((rows, capacity), -2.0)
        self.used = 0
        self._rows = torch.arange(rows)
        self._base = self._rows * capacity  # flat index of each row's slot 0
        # flat views: an entry (row r, slot s) is row r * K + s (index_select/index_copy_ are fast)
        self._pf = self.payload.view(rows * capacity, width)
        self._tf = self.tmean.view(-1)
        self._cf = self.count.view(-1)

    def _key_at(self, flat: torch.Tensor) -> torch.Tensor:
        return self._pf.index_select(0, flat)[:, self.key]

    def _refresh(self, pos: torch.Tensor) -> None:
        """Recompute ``adj[r, pos[r]]`` for every row (``pos`` clamped to the valid pairs)."""
        if self.used < 2:
            return
        pos = pos.clamp(0, self.used - 2)[:, None]
        left = self._base + self.order.gather(1, pos)[:, 0]
        right = self._base + self.order.gather(1, pos + 1)[:, 0]
        self.adj.scatter_(1, pos, _pair_cos(self._key_at(left), self._key_at(right))[:, None])

    def add(self, t: float, x: torch.Tensor) -> None:
        """Add ``x [R, P]`` at time ``t`` (one entry per row)."""
        K = self.K
        if self.used < K:
            slot = self.used
            self.payload[:, slot] = x
            self.tmean[:, slot] = t
            self.count[:, slot] = 1.0
            self.used += 1
            if slot > 0:
                self._refresh(torch.full((self.R,), slot - 1))
            return
        tail = self._base + self.order[:, K - 1]  # flat
        tail_vec = self._pf.index_select(0, tail)
        s_new = _pair_cos(tail_vec[:, self.key], x[:, self.key])
        cand = torch.cat([self.adj[:, : K - 1], s_new[:, None]], 1)
        j = cand.argmax(1)  # pair (j, j + 1) in time order; j == K - 1: (tail, new)
        new_last = j == K - 1
        if bool(new_last.any()):  # merge the new entry into the tail
            r = new_last.nonzero()[:, 0]
            s = tail.index_select(0, r)
            w = self._cf.index_select(0, s)
            self._pf.index_copy_(0, s, (tail_vec.index_select(0, r) * w[:, None] + x.index_select(0, r))
                                 / (w + 1.0)[:, None])
            self._tf.index_copy_(0, s, (self._tf.index_select(0, s) * w + t) / (w + 1.0))
            self._cf.index_copy_(0, s, w + 1.0)
        inner = ~new_last
        if bool(inner.any()):  # merge pair (j, j + 1) into j's slot; the new entry takes j + 1's slot
            r = inner.nonzero()[:, 0]
            jr = j.index_select(0, r)[:, None]
            order_r = self.order.index_select(0, r)
            b_slot = order_r.gather(1, jr + 1)[:, 0]
            a = self._base.index_select(0, r) + order_r.gather(1, jr)[:, 0]
            b = self._base.index_select(0, r) + b_slot
            wa, wb = self._cf.index_select(0, a), self._cf.index_select(0, b)
            tot = wa + wb
            merged = (self._pf.index_select(0, a) * wa[:, None] + self._pf.index_select(0, b) * wb[:, None])
            self._pf.index_copy_(0, a, merged / tot[:, None])
            self._tf.index_copy_(0, a, (self._tf.index_select(0, a) * wa + self._tf.index_select(0, b) * wb) / tot)
            self._cf.index_copy_(0, a, tot)
            self._pf.index_copy_(0, b, x.index_select(0, r))
            self._tf.index_fill_(0, b, t)
            self._cf.index_fill_(0, b, 1.0)
            pos = torch.arange(K)[None, :]
            src = (pos + (pos > jr).long()).clamp_max(K - 1)  # drop order position j + 1
            order_r = order_r.gather(1, src)
            order_r[:, K - 1] = b_slot
            self.order.index_copy_(0, r, order_r)
            self.adj.index_copy_(0, r, self.adj.index_select(0, r).gather(1, src))
        self._refresh(j - 1)
        self._refresh(j)
        self._refresh(torch.full((self.R,), K - 2))


class MovieChatMerge:
    """MovieChat-style memory consolidation: ``K = budget // ((N + 1) * D * 4 + 8)`` entries, each a
    frame's ``N`` tokens and global vector (or a merge of adjacent frames), with a float32 mean time
    and count. When a new frame does not fit, the time-adjacent pair of entries (the new frame
    included, as the last) whose global vectors have the highest cosine is merged into one entry:
    count-weighted mean of tokens and global, count-weighted mean time, counts summed. One merge per
    frame keeps it at ``K`` entries.
    """

    name = "moviechat"

    def __init__(self, budget_bytes: int, dim: int, tokens_per_frame: int, *,
                 min_gap: float = DEFAULT_MIN_GAP) -> None:
        _check_dims(tokens_per_frame, dim)
        self.per = _frame_bytes(tokens_per_frame, dim)
        self.capacity = budget_bytes // self.per
        if self.capacity < 1:
            raise _too_small(self.name, budget_bytes, self.per, "one frame entry")
        self.dim, self.tokens_per_frame, self.min_gap = dim, tokens_per_frame, min_gap
        width = (tokens_per_frame + 1) * dim
        self._bank = _AdjacentMergeBank(1, self.capacity, width, slice(width - dim, width))

    @property
    def nbytes(self) -> int:
        return self._bank.used * self.per

    def update(self, t: float, enc: Encoded) -> None:
        self._bank.add(t, _frame_vectors(enc, self.tokens_per_frame, self.dim).reshape(1, -1))

    def search(self, query: torch.Tensor, top_k: int = 5) -> list[Hit]:
        used = self._bank.used
        vectors = self._bank.payload[0, :used].reshape(used, self.tokens_per_frame + 1, self.dim)
        scores = _cos_scores(vectors, query).amax(1)
        return _top_hits(scores, self._bank.tmean[0, :used], top_k, self.min_gap)


class MALMMMerge:
    """MA-LMM-style memory bank compression: for each of the ``N + 1`` positions (the ``N`` token
    positions and the global vector) a time-ordered list of ``K = budget // ((N + 1) * (D * 4 + 8))``
    entries ``[D]`` with a float32 mean time and count. Each frame appends one entry per position;
    at each full position the time-adjacent pair (the new entry included) with the highest cosine is
    merged (count-weighted mean of vectors and times, counts summed) — positions merge independently,
    so an entry's time differs from position to position. Every entry is a search candidate.
    """

    name = "ma-lmm"

    def __init__(self, budget_bytes: int, dim: int, tokens_per_frame: int, *,
                 min_gap: float = DEFAULT_MIN_GAP) -> None:
        _check_dims(tokens_per_frame, dim)
        self.per = dim * VALUE_BYTES + ENTRY_BYTES
        rows = tokens_per_frame + 1
        self.capacity = budget_bytes // (rows * self.per)  # entries per position
        if self.capacity < 1:
            raise _too_small(self.name, budget_bytes, rows * self.per, f"one entry at each of {rows} positions")
        self.dim, self.tokens_per_frame, self.min_gap = dim, tokens_per_frame, min_gap
        self._bank = _AdjacentMergeBank(rows, self.capacity, dim, slice(0, dim))

    @property
    def nbytes(self) -> int:
        return self._bank.used * (self.tokens_per_frame + 1) * self.per

    def update(self, t: float, enc: Encoded) -> None:
        self._bank.add(t, _frame_vectors(enc, self.tokens_per_frame, self.dim))

    def search(self, query: torch.Tensor, top_k: int = 5) -> list[Hit]:
        used = self._bank.used
        scores = _cos_scores(self._bank.payload[:, :used], query)
        return _top_hits(scores, self._bank.tmean[:, :used], top_k, self.min_gap)


class DifferentialTokenDrop:
    """TimeChat-Online-style Differential Token Drop: of each frame's ``N + 1`` vectors (tokens and
    global), one is stored only when its cosine with the same position of the previous frame is
    below ``tau`` (the first frame stores all). Stored vectors (each with its float64 time) go into a
    ring buffer of ``C = (budget - (N + 1) * D * 4) // (D * 4 + 8)`` entries (the previous frame,
    which it compares with, is held too and counted): when it is full the oldest are evicted (FIFO).
    ``C >= N + 1`` (one whole frame) is required.

    ``tau`` depends on the encoder. Measured at 2 fps with the classic encoder (``N = 48, D = 40``) on
    vtest.avi, tree.avi and samples/lobby.mp4: ``tau = 0.9`` stores ~4 % of the vectors, 0.99 stores
    13-18 %. Search scores each stored vector alone (several hits at one time collapse under NMS).
    """

    name = "timechat-online"

    def __init__(self, budget_bytes: int, dim: int, tokens_per_frame: int, *, tau: float = 0.9,
                 min_gap: float = DEFAULT_MIN_GAP) -> None:
        _check_dims(tokens_per_frame, dim)
        rows = tokens_per_frame + 1
        self.per = dim * VALUE_BYTES + ENTRY_BYTES
        self.ref_bytes = rows * dim * VALUE_BYTES
        self.capacity = (budget_bytes - self.ref_bytes) // self.per
        if self.capacity < rows:
            need = self.ref_bytes + rows * self.per
            raise _too_small(self.name, budget_bytes, need, "the previous frame and one whole frame")
        self.dim, self.tokens_per_frame, self.tau, self.min_gap = dim, tokens_per_frame, tau, min_gap
        self.vectors = torch.zeros(self.capacity, dim)
        self.times = torch.zeros(self.capacity, dtype=torch.float64)
        self._prev: torch.Tensor | None = None
        self._head = 0  # next slot to write
        self._stored = 0  # vectors stored so far (all time)

    @property
    def nbytes(self) -> int:
        ref = self.ref_bytes if self._prev is not None else 0
        return ref + min(self._stored, self.capacity) * self.per

    @property
    def stored_total(self) -> int:
        """Vectors stored so far, evicted ones included (``(N + 1) * frames`` without any drop)."""
        return self._stored

    def update(self, t: float, enc: Encoded) -> None:
        v = _frame_vectors(enc, self.tokens_per_frame, self.dim)
        keep = v if self._prev is None else v[_pair_cos(v, self._prev) < self.tau]
        self._prev = v
        k = keep.shape[0]
        if k:
            idx = (self._head + torch.arange(k)) % self.capacity
            self.vectors[idx] = keep
            self.times[idx] = t
            self._head = (self._head + k) % self.capacity
            self._stored += k

    def search(self, query: torch.Tensor, top_k: int = 5) -> list[Hit]:
        used = min(self._stored, self.capacity)
        return _top_hits(_cos_scores(self.vectors[:used], query), self.times[:used], top_k, self.min_gap)


class WeightedKMeans:
    """Flash-VStream-style temporal memory: at most ``K = budget // ((N + 1) * D * 4 + 8)`` entries,
    each a frame-shaped centroid (``N`` tokens + global, ``[N + 1, D]``) with a float32 weight (frames
    in it) and weighted mean time. A new frame enters as a weight-1 point (the frame's ``N + 1``
    vectors as one point); when one does not fit, weighted k-means over the entries and the new frame
    reduces them to ``K - max(1, K // 4)`` centroids (so the clustering runs every ``~K / 4``
    frames): deterministic init (greedy weighted k-means++: the heaviest point first, then
    repeatedly the point maximising ``weight * squared distance`` to the chosen ones), then
    ``iters`` Lloyd iterations with weighted means; weights add, times are weight-averaged; a
    cluster left empty is dropped. Distances are squared Euclidean over the flattened vectors.
    """

    name = "kmeans"

    def __init__(self, budget_bytes: int, dim: int, tokens_per_frame: int, *, iters: int = 5,
                 min_gap: float = DEFAULT_MIN_GAP) -> None:
        _check_dims(tokens_per_frame, dim)
        self.per = _frame_bytes(tokens_per_frame, dim)
        self.capacity = budget_bytes // self.per
        if self.capacity < 1:
            raise _too_small(self.name, budget_bytes, self.per, "one frame entry")
        self.target = max(1, self.capacity - max(1, self.capacity // 4))
        self.dim, self.tokens_per_frame, self.iters, self.min_gap = dim, tokens_per_frame, iters, min_gap
        self.points = torch.zeros(self.capacity, (tokens_per_frame + 1) * dim)
        self.weight = torch.zeros(self.capacity)
        self.tmean = torch.zeros(self.capacity)
        self.used = 0

    @property
    def nbytes(self) -> int:
        return self.used * self.per

    def update(self, t: float, enc: Encoded) -> None:
        x = _frame_vectors(enc, self.tokens_per_frame, self.dim).reshape(-1)
        if self.used < self.capacity:
            self.points[self.used], self.weight[self.used], self.tmean[self.used] = x, 1.0, t
            self.used += 1
            return
        pts = torch.cat([self.points, x[None]])
        w = torch.cat([self.weight, torch.ones(1)])
        tm = torch.cat([self.tmean, torch.tensor([t], dtype=torch.float32)])
        cent, cw, ct = weighted_kmeans(pts, w, tm, self.target, self.iters)
        k = cent.shape[0]
        self.points[:k], self.weight[:k], self.tmean[:k] = cent, cw, ct
        self.points[k:], self.weight[k:], self.tmean[k:] = 0.0, 0.0, 0.0
        self.used = k

    def search(self, query: torch.Tensor, top_k: int = 5) -> list[Hit]:
        vectors = self.points[: self.used].reshape(self.used, self.tokens_per_frame + 1, self.dim)
        scores = _cos_scores(vectors, query).amax(1)
        return _top_hits(scores, self.tmean[: self.used], top_k, self.min_gap)


def weighted_kmeans(x: torch.Tensor, w: torch.Tensor, tm: torch.Tensor, k: int,
                    iters: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted k-means of points ``x [P, F]`` with weights ``w [P]`` and times ``tm [P]`` into at most
    ``k`` clusters: ``(centroids [k', F], weights [k'], weighted mean times [k'])``, in the order of
    their mean time; empty clusters are dropped. Deterministic (see :class:`WeightedKMeans`).

    Every centroid is a weighted mean of points, so the iterations run on the Gram matrix
    ``x xᵀ [P, P]`` (one matmul) and cost ``O(P²·k)``; the centroids are formed once at the end.
    """
    p = x.shape[0]
    if p <= k:
        order = torch.argsort(tm, stable=True)
        return x[order].clone(), w[order].clone(), tm[order].clone()
    gram = x @ x.T
    sq = gram.diagonal()
    pair = (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min(0.0)  # squared distances between points
    chosen = [int(torch.argmax(w))]
    best = pair[chosen[0]].clone()
    for _ in range(k - 1):
        i = int(torch.argmax(w * best))
        chosen.append(i)
        torch.minimum(best, pair[i], out=best)
    dist = pair[:, chosen]  # [P, k] to the initial centroids (points)
    rows = torch.arange(p)
    for _ in range(iters):
        assign = dist.argmin(1)
        cw = torch.zeros(k).index_add_(0, assign, w)
        a = torch.zeros(k, p)
        a[assign, rows] = w / cw[assign]  # centroid c = sum_i a[c, i] x_i
        ga = gram @ a.T  # [P, k] = x · centroid
        cc = (a * ga.T).sum(1)  # |centroid|²
        dist = (sq[:, None] - 2.0 * ga + cc[None, :]).clamp_min(0.0)
        dist[:, cw == 0] = float("inf")  # an emptied cluster (e.g. a duplicate initial point) is gone
    assign = dist.argmin(1)
    cw = torch.zeros(k).index_add_(0, assign, w)
    sums = torch.zeros(k, x.shape[1]).index_add_(0, assign, x * w[:, None])
    ct = torch.zeros(k).index_add_(0, assign, tm * w)
    alive = cw > 0
    cent, cw, ct = sums[alive] / cw[alive][:, None], cw[alive], ct[alive] / cw[alive]
    order = torch.argsort(ct, stable=True)
    return cent[order], cw[order], ct[order]


METHODS: dict[str, type] = {
    DeltaMemRetention.name: DeltaMemRetention,
    KeepAll.name: KeepAll,
    UniformSampling.name: UniformSampling,
    FifoWindow.name: FifoWindow,
    MovieChatMerge.name: MovieChatMerge,
    MALMMMerge.name: MALMMMerge,
    DifferentialTokenDrop.name: DifferentialTokenDrop,
    WeightedKMeans.name: WeightedKMeans,
}
"""Every memory the retention benchmark compares, by name."""


def make_memory(name: str, budget_bytes: int, *, dim: int, tokens_per_frame: int, **kwargs) -> RetentionMemory:
    """The memory ``name`` (a key of :data:`METHODS`) within ``budget_bytes`` for frames of
    ``tokens_per_frame`` tokens of dimension ``dim``; ``kwargs`` go to its constructor (e.g.
    ``min_gap``, ``tau``). Δ-Mem does not need ``tokens_per_frame``. Raises ``ValueError`` for an
    unknown name or a budget too small for the method."""
    cls = METHODS.get(name)
    if cls is None:
        raise ValueError(f"unknown memory {name!r}; known: {', '.join(METHODS)}")
    if cls is DeltaMemRetention:
        return cls(budget_bytes, dim, **kwargs)
    return cls(budget_bytes, dim, tokens_per_frame, **kwargs)
