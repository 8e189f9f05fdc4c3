"""Property-based fuzzing (Hypothesis) of the three places user bytes come in: the snapshot loader,
the source layer and the question parser (and the server's image decoder).

CI runs the ``ci`` profile (derandomized: the same examples every run, a few dozen per target);
``python scripts/fuzz.py --minutes N`` runs the ``long`` profile (random, thousands of examples).
The property is always the same: a clear, expected error or a valid result — never anything else.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamvid.memory import DeltaMem, MemoryLayout, SnapshotError, load, save
from streamvid.query import answer_text
from streamvid.sources import FileSource, SourceError
from streamvid.types import CHANNELS, Encoded

settings.register_profile("ci", max_examples=40, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("long", max_examples=int(os.environ.get("STREAMVID_FUZZ_EXAMPLES", "5000")), deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("STREAMVID_FUZZ_PROFILE", "ci"))

D = 16


def _memory() -> DeltaMem:
    mem = DeltaMem(MemoryLayout(dim=D, slots=8, segments=4, events=4, thumbs=4, thumb_bytes=256))
    gen = torch.Generator().manual_seed(0)
    for f in range(6):
        x = torch.nn.functional.normalize(torch.randn(4, D, generator=gen), dim=-1)
        mem.update(0.5 * f, Encoded(x, torch.nn.functional.normalize(x.mean(0), dim=0)), [0.0] * len(CHANNELS),
                   thumb=lambda: b"\xff\xd8jpeg")
    mem.pin(1.0, "entered", torch.nn.functional.normalize(torch.ones(D), dim=0), "person in red top", b"\xff\xd8x",
            score=0.9)
    return mem


@pytest.fixture(scope="module")
def snapshot_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fz") / "m.svm"
    save(_memory(), path, metadata={"encoder": {"name": "classic"}})
    return path.read_bytes()


@pytest.fixture(scope="module")
def video_bytes() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="avi") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(12):
            img = np.full((48, 64, 3), (i * 20) % 256, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def _mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for pos, val in flips:
        b[pos % len(b)] = val
    return bytes(b[:cut] if cut is not None else b)


mutations = st.tuples(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=12),
                      st.one_of(st.none(), st.integers(0, 1 << 16)))


# -- the snapshot loader --------------------------------------------------------------------------
@given(data=st.binary(max_size=4096))
def test_random_bytes_are_never_a_snapshot(tmp_path, data):
    path = tmp_path / "r.svm"
    path.write_bytes(data)
    with pytest.raises(SnapshotError):
        load(path)


@given(m=mutations)
def test_damaged_snapshots_load_or_fail_cleanly(tmp_path, snapshot_bytes, m):
    path = tmp_path / "d.svm"
    path.write_bytes(_mutate(snapshot_bytes, *m))
    try:
        mem, meta = load(path)
    except SnapshotError:
        return
    # it loaded (the damage hit padding or tensor values): the memory is usable
    assert isinstance(meta, dict)
    mem.stats()
    mem.events()
    mem.read(torch.nn.functional.normalize(torch.ones(D), dim=0))


# -- the source layer -----------------------------------------------------------------------------
def _read_all(path: Path) -> int:
    n = 0
    for f in FileSource(str(path), fps=None, max_side=64):
        assert f.rgb.ndim == 3 and f.rgb.shape[2] == 3 and f.rgb.dtype == np.uint8
        n += 1
        if n > 200:
            break
    return n


@given(data=st.binary(max_size=4096))
def test_random_bytes_are_not_video(tmp_path, data):
    path = tmp_path / "r.mp4"
    path.write_bytes(data)
    with pytest.raises(SourceError):
        _read_all(path)


@given(m=mutations)
def test_damaged_video_decodes_or_fails_cleanly(tmp_path, video_bytes, m):
    path = tmp_path / "d.avi"
    path.write_bytes(_mutate(video_bytes, *m))
    try:
        _read_all(path)
    except SourceError:
        pass


# -- the question parser --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def memory() -> DeltaMem:
    return _memory()


text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1000, max_size=10_000),
    st.sampled_from(["", " ", "\x00", "who entered?" * 900, "\udcff\udcfe who left", "'; DROP TABLE x; --",
                     "<script>alert(1)</script> who entered?", "at 99999:99:99", "at -5 s", "what happened at 1e308?",
                     "how many people" + "?" * 5000, "\u202ewho entered\u202c", "red " * 2000]),
)


@given(q=text)
def test_any_question_gets_an_answer(memory, q):
    def embed(s: str):
        return torch.nn.functional.normalize(torch.ones(D), dim=0) if s.strip() else None

    a = answer_text(memory, q, embed, encoder_name="classic", top_k=3)
    assert isinstance(a.answer, str) and a.answer
    for m in a.moments:
        assert np.isfinite(m.t) and m.start <= m.t + 1e-6 and m.t <= m.end + 1e-6
    a.to_json()


# -- the server's image decoder -------------------------------------------------------------------
@given(data=st.binary(max_size=2048))
def test_uploaded_bytes_decode_or_get_a_4xx(data):
    from streamvid.server.app import ApiError, _decode_image

    try:
        rgb = _decode_image(data)
    except ApiError as e:
        assert 400 <= e.status < 500
    else:
        assert rgb.ndim == 3 and rgb.shape[2] == 3
