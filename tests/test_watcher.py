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


def test_encoder_and_memory_run_on_their_own_threads_and_frames_stay_in_order():
    log: list = []
    seen: list[float] = []
    enc = RecordingEncoder(log, seen)
    memory = new_memory(enc, 1 << 20)
    update = memory.update

    writers: set[str] = set()

    def recording_update(t, *a, **k):
        seen.append(t)
        writers.add(threading.current_thread().name)
        return update(t, *a, **k)

    memory.update = recording_update
    frames = _frames(20)
    stats = Watcher(enc, memory, EventDetector(), batch_size=4).ingest(frames)

    assert stats.frames == 20
    assert seen == [f.t for f in frames]  # every frame, in order
    assert [n for _, n, _ in log] == [4, 4, 4, 4, 4]
    assert all(name.startswith("streamvid-encode") for name, _, _ in log)  # not the caller's thread
    # the memory is written on a thread of its own, behind the detector
    assert len(writers) == 1 and writers.pop().startswith("streamvid-memory")
    # batch k is encoded before any of its frames is in the memory, and after batch k - 4 is (the
    # encoder works one batch ahead of the detector, the memory at most two behind it: bounded)
    for k, (_, _, done) in enumerate(log):
        assert 4 * max(0, k - 3) <= done <= 4 * k, (k, done)
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


def test_a_memory_error_reaches_the_caller_and_later_batches_are_not_written():
    enc = ClassicEncoder()
    memory = new_memory(enc, 1 << 20)
    update = memory.update
    seen: list[float] = []

    calls = []

    def failing_update(t, *a, **k):
        calls.append(t)
        if len(calls) == 6:
            raise RuntimeError("memory failed on frame 5")
        seen.append(t)
        return update(t, *a, **k)

    memory.update = failing_update
    with pytest.raises(RuntimeError, match="frame 5"):
        Watcher(enc, memory, EventDetector(), batch_size=4).ingest(_frames(40))
    assert len(seen) == 5 and len(calls) == 6  # the writes stopped there: no frame after it was written


@pytest.fixture
def thread_pools():
    """OpenCV's and torch's thread counts, restored after the test."""
    cv_before, torch_before = cv2.getNumThreads(), torch.get_num_threads()
    yield
    cv2.setNumThreads(cv_before)
    torch.set_num_threads(torch_before)


def test_configure_threads_for_classic(thread_pools):
    configure_threads(ClassicEncoder())
    assert cv2.getNumThreads() == 1 and torch.get_num_threads() == 1


@pytest.mark.parametrize("device, threads", [("cpu", None), ("cuda", 4)])
def test_configure_threads_for_an_encoder_on_a_device(device, threads, thread_pools):
    """A CLIP on the CPU keeps torch's threads for its matrix products; one on a GPU leaves the
    CPU pool only the memory's small updates, which more than a few threads slow down."""
    class Enc:  # what configure_threads reads of an encoder
        name = "clip"

        def __init__(self, device):
            self.device = torch.device(device)

    torch.set_num_threads(8)
    configure_threads(Enc(device))
    assert cv2.getNumThreads() == 1 and torch.get_num_threads() == (threads or 8)
    torch.set_num_threads(2)
    configure_threads(Enc(device))
    assert torch.get_num_threads() == 2  # never more than torch had


def test_detector_prepares_each_frame_on_the_encoder_thread_in_order():
    """The detector's stateless part runs beside the encoder, once per frame and in order; its
    update gets that frame's result. A detector without ``prepare`` is updated as before."""
    calls: list[tuple[str, float, str]] = []

    class RecordingDetector(EventDetector):
        def prepare(self, frame):
            calls.append(("prepare", frame.t, threading.current_thread().name))
            return super().prepare(frame)

        def update(self, frame, prepared=None):
            assert prepared is not None and prepared.small.shape[1] == frame.rgb.shape[1]
            calls.append(("update", frame.t, threading.current_thread().name))
            return super().update(frame, prepared)

    enc = ClassicEncoder()
    frames = _frames(12)
    memory = new_memory(enc, 1 << 20)
    Watcher(enc, memory, RecordingDetector(), batch_size=4).ingest(frames)
    prepared = [(t, name) for kind, t, name in calls if kind == "prepare"]
    updated = [(t, name) for kind, t, name in calls if kind == "update"]
    assert [t for t, _ in prepared] == [t for t, _ in updated] == [f.t for f in frames]
    assert all(name.startswith("streamvid-encode") for _, name in prepared)
    assert all(name == threading.current_thread().name for _, name in updated)
    for f in frames:  # each frame prepared before it is updated
        assert calls.index(("prepare", f.t, prepared[0][1])) < calls.index(("update", f.t, updated[0][1]))

    class Plain:  # the duck-typed detector interface: update(frame) and finish()
        def __init__(self):
            self.inner = EventDetector()

        def update(self, frame):
            return self.inner.update(frame)

        def finish(self):
            return self.inner.finish()

    plain_memory = new_memory(enc, 1 << 20)
    assert Watcher(enc, plain_memory, Plain(), batch_size=4).ingest(frames).frames == 12
    ours, theirs = memory.buffers(), plain_memory.buffers()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
