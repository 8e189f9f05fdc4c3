"""Watcher.ingest: the encoder works one batch ahead on its own thread, frames stay in order."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import torch

from streamvid.events import EventDetector
from streamvid.models.classic import ClassicEncoder
from streamvid.pipeline import Watcher, configure_threads, new_memory
from streamvid.types import Frame


def _frames(n: int) -> list[Frame]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        rgb = base.copy()
        rgb[:, (i * 7) % 160:(i * 7) % 160 + 12] = (200, 30, 30)  # a bar that moves
        out.append(Frame(t=0.5 * i, rgb=rgb, index=i))
    return out


class RecordingEncoder(ClassicEncoder):
    """Classic, recording which thread encoded which frames, and when."""

    def __init__(self, log: list, seen: list) -> None:
        self.log, self.seen = log, seen

    def encode_frames(self, frames):  # (thread, batch size, frames already in the memory)
        self.log.append((threading.current_thread().name, len(frames), len(self.seen)))
        return super().encode_frames(frames)


def test_encoder_runs_a_batch_ahead_on_its_own_thread_and_frames_stay_in_order():
    log: list = []
    seen: list[float] = []
    enc = RecordingEncoder(log, seen)
    memory = new_memory(enc, 1 << 20)
    update = memory.update

    def recording_update(t, *a, **k):
        seen.append(t)
        return update(t, *a, **k)

    memory.update = recording_update
    frames = _frames(20)
    stats = Watcher(enc, memory, EventDetector(), batch_size=4).ingest(frames)

    assert stats.frames == 20
    assert seen == [f.t for f in frames]  # every frame, in order
    assert [n for _, n, _ in log] == [4, 4, 4, 4, 4]
    assert all(name.startswith("streamvid-encode") for name, _, _ in log)  # not the caller's thread
    # batch k is encoded after batch k - 2 is in the memory (one batch ahead, no more) and before
    # any frame of batch k is
    for k, (_, _, done) in enumerate(log):
        assert 4 * max(0, k - 1) <= done <= 4 * k, (k, done)
    # the same memory as encoding every frame in line: the thread changes when, not what
    serial = new_memory(enc, 1 << 20)
    w = Watcher(ClassicEncoder(), serial, EventDetector(), batch_size=4)
    for f in frames:
        w._step(f, ClassicEncoder().encode_frames([f.rgb])[0], stats)
    w.finish(stats)
    ours, theirs = memory.buffers(), serial.buffers()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)


def test_an_encoder_error_reaches_the_caller():
    class Broken(ClassicEncoder):
        calls = 0

        def encode_frames(self, frames):
            Broken.calls += 1
            if Broken.calls == 2:
                raise RuntimeError("encoder failed on batch 2")
            return super().encode_frames(frames)

    enc = Broken()
    memory = new_memory(enc, 1 << 20)
    with pytest.raises(RuntimeError, match="batch 2"):
        Watcher(enc, memory, EventDetector(), batch_size=4).ingest(_frames(12))


def test_configure_threads_for_classic():
    cv_before, torch_before = cv2.getNumThreads(), torch.get_num_threads()
    try:
        configure_threads(ClassicEncoder())
        assert cv2.getNumThreads() == 1 and torch.get_num_threads() == 1
    finally:
        cv2.setNumThreads(cv_before)
        torch.set_num_threads(torch_before)
