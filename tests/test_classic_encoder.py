"""The OpenCV-only encoder: shapes, determinism, colour text and clothing descriptions."""

import numpy as np
import pytest
import torch

from streamvid import synth
from streamvid.models.base import Encoder
from streamvid.models.classic import ClassicEncoder, dominant_colour


@pytest.fixture(scope="module")
def enc():
    return ClassicEncoder()


def test_protocol_shapes_and_normalisation(enc):
    assert isinstance(enc, Encoder)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((360, 640), (120, 160), (97, 203))]
    out = enc.encode_frames(frames)
    assert len(out) == 3
    for e in out:
        assert e.tokens.shape == (enc.tokens_per_frame, enc.dim) and e.tokens.dtype == torch.float32
        assert e.global_.shape == (enc.dim,)
        assert torch.allclose(e.tokens.norm(dim=1), torch.ones(enc.tokens_per_frame), atol=1e-5)
        assert e.global_.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert enc.encode_image(frames[0]).shape == (enc.dim,)
    assert enc.config()["name"] == "classic"


def test_deterministic_and_batch_independent(enc):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(4)]
    a = enc.encode_frames(frames)
    b = [enc.encode_frames([f])[0] for f in frames]
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.tokens, y.tokens) and torch.equal(x.global_, y.global_)


def test_similar_frames_are_closer_than_different_scenes(enc):
    lobby = synth.Scene(320, 240, 10, 1.0, 0, ["lobby"], noise_sigma=3.0)
    street = synth.Scene(320, 240, 10, 1.0, 0, ["street"], noise_sigma=3.0)
    a, b = synth.render_frame(lobby, 0), synth.render_frame(lobby, 5)
    c = synth.render_frame(street, 0)
    ga, gb, gc = (enc.encode_image(x) for x in (a, b, c))
    assert float(ga @ gb) > 0.99 > float(ga @ gc)


def test_text_embeds_colour_names_only(enc):
    red = np.zeros((120, 160, 3), np.uint8)
    red[:] = (200, 30, 30)
    blue = np.zeros_like(red)
    blue[:] = (30, 50, 200)
    q = enc.encode_text("someone in red")
    assert q is not None and q.shape == (enc.dim,)
    assert float(q @ enc.encode_image(red)) > float(q @ enc.encode_image(blue)) + 0.3
    assert enc.encode_text("what is the meaning of life?") is None


@pytest.mark.parametrize("name", sorted(synth.COLOURS))
def test_palette_colours_are_named(name):
    img = np.zeros((8, 8, 3), np.uint8)
    img[:] = synth.COLOURS[name]
    assert dominant_colour(img) == name


def test_describes_clothing_of_a_rendered_person(enc):
    fig = synth.Figure(1, "green", "black", [(0.0, 0.5, 0.9), (5.0, 0.5, 0.9)], height=0.7)
    scene = synth.Scene(320, 240, 10, 1.0, 0, ["office"], figures=[fig])
    rgb = synth.render_frame(scene, 0)
    x, y, w, h = (int(round(v)) for v in synth.figure_box(scene, fig, 0.0))
    crop = rgb[max(0, y):y + h, max(0, x):x + w]
    assert enc.describe(crop) == "person in green top and black trousers" == fig.description


def test_large_frames_are_halved_before_the_last_resize():
    """A frame of twice the token image or more is halved first (fast exact 2 × 2 means); the
    result is the area-averaged image all the same, and smaller frames are resized straight."""
    import cv2

    from streamvid.models.classic import SIZE, _fit

    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8), (0, 0), 3)
    direct = cv2.resize(big, SIZE, interpolation=cv2.INTER_AREA).astype(float)
    out = _fit(big)
    assert out.shape == (SIZE[1], SIZE[0], 3) and out.dtype == np.uint8
    assert np.abs(out - direct).mean() < 0.6  # the same picture to within resampling (nearest: 1.7)
    odd = np.ascontiguousarray(big[:359, :639])  # odd sizes drop the last row/column when halving
    assert _fit(odd).shape == (SIZE[1], SIZE[0], 3)
    small = big[:240, :320]
    assert np.array_equal(_fit(small), cv2.resize(small, SIZE, interpolation=cv2.INTER_AREA))


def _reference_tokens(rgb: np.ndarray) -> np.ndarray:
    """The encoder's histograms written plainly (float tables, one bincount each, ``% π``)."""
    import cv2

    from streamvid.models import classic as C

    img = C._fit(rgb)
    cells, n = C._CELLS, C._N
    u8 = np.arange(256) / 255.0

    def hist(bins, weights, nbins):
        flat = np.bincount(cells * nbins + bins, weights=weights, minlength=n * nbins)
        return flat.reshape(n, nbins).astype(np.float64)

    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).reshape(-1, 3)
    hue, val = hsv[:, 0], hsv[:, 2]
    chroma = C._CHROMA_S[hsv[:, 1]] * C._CHROMA_V[val]
    hue_bin = np.minimum(np.arange(256) * C.N_HUE // 180, C.N_HUE - 1)[hue]
    val_bin = np.minimum((u8 * C.N_VAL).astype(np.int64), C.N_VAL - 1)[val]
    achro_bin = np.minimum((u8 * C.N_ACHRO).astype(np.int64), C.N_ACHRO - 1)[val]
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3).ravel()
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3).ravel()
    mag = np.sqrt(gx * gx + gy * gy).astype(np.float64)
    strong = mag > 40.0
    ori = ((np.arctan2(gy[strong], gx[strong]) % np.pi) / np.pi * C.N_ORI).astype(np.int64) % C.N_ORI
    level = (mag >= 40.0).astype(np.int64) + (mag >= 120.0) + (mag >= 300.0)
    ori_h = np.bincount(cells[strong] * C.N_ORI + ori, weights=mag[strong], minlength=n * C.N_ORI)
    blocks = [
        hist(hue_bin, chroma, C.N_HUE),
        hist(achro_bin, 1.0 - chroma, C.N_ACHRO),
        hist(val_bin, None, C.N_VAL),
        np.concatenate([ori_h.reshape(n, C.N_ORI), hist(level, None, 4) * 255.0], axis=1),
    ]
    out = np.concatenate([wt * C._hellinger(b) for wt, b in zip(C._WEIGHTS, blocks)], axis=1)
    return out.astype(np.float32)


def test_tokens_equal_the_plain_histograms_bit_for_bit(enc):
    """The encoder's shortcuts (uint8 bins, one (s, v) chroma table, a joint value/level count,
    "+ π below 0" for "mod π") change no bit of the tokens."""
    rng = np.random.default_rng(2)
    frames = [synth.render_frame(synth.Scene(320, 240, 10, 1.0, 0, [name], noise_sigma=3.0), 2)
              for name in ("lobby", "street", "office")]
    frames += [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((360, 640), (97, 203))]
    frames += [np.full((120, 160, 3), v, np.uint8) for v in (0, 51, 255)]
    frames.append((rng.integers(0, 2, (192, 256, 1)) * 255).repeat(3, axis=2).astype(np.uint8))
    for rgb in frames:
        assert np.array_equal(enc._tokens(rgb), _reference_tokens(rgb))


def test_orientation_fold_matches_mod_pi():
    """``a + π`` below 0 gives the same 8 orientation bins as ``a % π``: on every possible Sobel
    gradient of a uint8 image and on the float32s around each bin edge in [-π, π]."""
    pi = np.float32(np.pi)
    r = np.arange(-1020, 1021, dtype=np.float32)
    a = np.arctan2(np.repeat(r, r.size), np.tile(r, r.size))
    edges = (np.arange(1, 9) * pi / 8).astype(np.float32)  # and the 4096 float32s either side
    near = (edges[:, None].view(np.int32) + np.arange(-4096, 4097, dtype=np.int32)).view(np.float32)
    near = np.concatenate([near[near <= pi], [0.0, 1e-45, 1e-30]])
    a = np.concatenate([a, near, -near]).astype(np.float32)
    expected = ((a % np.pi) / np.pi * 8).astype(np.int64) % 8
    folded = a.copy()
    np.add(folded, pi, out=folded, where=folded < 0)
    assert np.array_equal((folded / pi * 8).astype(np.intp) & 7, expected)
