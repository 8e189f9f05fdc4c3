"""ClipEncoder and the encoder factory, on a tiny random-init open_clip model (no network)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from streamvid.models import clip as C
from streamvid.models.base import Encoder, EncoderError
from streamvid.models.clip import ClipEncoder
from streamvid.models.factory import clip_weights_status, create_encoder

try:
    from .tiny_clip import write_tiny_config, write_tiny_weights
except ImportError:  # tests/ is not a package: pytest puts this folder on sys.path
    from tiny_clip import write_tiny_config, write_tiny_weights

D, N = 16, 16  # tiny config: embed_dim 16, 32 px / 8 px patches → 4x4 grid


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """No network, and empty caches: HF hub cache and open_clip's ~/.cache/clip point to tmp."""
    import huggingface_hub.constants as hf_constants

    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("STREAMVID_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(home / "hf_hub"))
    return home


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory) -> Path:
    return write_tiny_config(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny_weights(tiny_cfg, tmp_path_factory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors", tiny_cfg, seed=1)


@pytest.fixture(scope="module")
def enc(tiny_cfg, tiny_weights) -> ClipEncoder:
    return ClipEncoder(model=str(tiny_cfg), weights=str(tiny_weights), device="cpu", batch_size=4)


def frames(n: int = 5, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(48, 64), (64, 48), (20, 20), (48, 64), (90, 33), (32, 32), (7, 50)]
    return [rng.integers(0, 256, (*shapes[i % len(shapes)], 3), dtype=np.uint8) for i in range(n)]


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


# -- the encoder -------------------------------------------------------------------------------


def test_shapes_and_normalisation(enc):
    assert isinstance(enc, Encoder)
    assert (enc.name, enc.dim, enc.tokens_per_frame) == ("clip", D, N)
    out = enc.encode_frames(frames(7))
    assert len(out) == 7
    for e in out:
        assert e.tokens.shape == (N, D) and e.global_.shape == (D,)
        assert e.tokens.dtype == torch.float32 and e.global_.dtype == torch.float32
        assert e.tokens.device.type == "cpu"
        torch.testing.assert_close(e.tokens.norm(dim=-1), torch.ones(N))
        torch.testing.assert_close(e.global_.norm(), torch.tensor(1.0))
    e = out[0]
    e.tokens.mul_(2)  # ordinary tensors (not inference-mode ones): in-place use works
    assert enc.encode_frames([]) == []


def test_config(enc, tiny_cfg, tiny_weights):
    cfg = enc.config()
    assert cfg == {
        "name": "clip",
        "model": str(tiny_cfg),
        "pretrained": None,
        "weights": str(tiny_weights.resolve()),
        "dim": D,
        "tokens_per_frame": N,
        "device": "cpu",
        "precision": "fp32",
    }


def test_deterministic(enc):
    fs = frames(5, seed=3)
    a, b = enc.encode_frames(fs), enc.encode_frames(fs)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.tokens, y.tokens) and torch.equal(x.global_, y.global_)
    assert torch.equal(enc.encode_text("a red car"), enc.encode_text("a red car"))


def test_batching_matches_one_by_one(enc):
    fs = frames(7, seed=4)  # batch_size 4: two chunks, mixed frame sizes inside a chunk
    batched = enc.encode_frames(fs)
    single = [enc.encode_frames([f])[0] for f in fs]
    for x, y in zip(batched, single, strict=True):
        torch.testing.assert_close(x.tokens, y.tokens, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(x.global_, y.global_, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(enc.encode_image(fs[2]), single[2].global_)


def test_preprocess_matches_open_clip_transform(enc):
    """Batched torch preprocessing ≈ open_clip's own PIL pipeline (resize, centre crop, normalise)."""
    import open_clip
    from PIL import Image

    pp = open_clip.transform.image_transform_v2(
        open_clip.transform.PreprocessCfg(**enc.visual.preprocess_cfg), is_train=False
    )
    rng = np.random.default_rng(5)
    # smooth images (like video), big and small, portrait and landscape
    for h, w in [(240, 320), (300, 200), (20, 24), (33, 90)]:
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (h + w))], axis=-1)
        img = np.clip(img + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
        ours = enc.preprocess([img])[0]
        ref = pp(Image.fromarray(img))
        assert ours.shape == ref.shape == (3, 32, 32)
        diff = (ours - ref).abs()
        assert diff.mean() < 0.01 and diff.max() < 0.1, (h, w, diff.mean(), diff.max())


def test_patch_tokens_in_joint_space(enc):
    fs = frames(3, seed=6)
    out = enc.encode_frames(fs)
    # tokens = patch tokens after ln_post, projected with visual.proj (open_clip's public API)
    with torch.no_grad():
        inter = enc.visual.forward_intermediates(
            enc.preprocess(fs), indices=1, normalize_intermediates=True, output_fmt="NLC"
        )
        ref = inter["image_intermediates"][-1] @ enc.visual.proj
        ref_global = inter["image_features"]
    for i, e in enumerate(out):
        torch.testing.assert_close(e.tokens, ref[i] / ref[i].norm(dim=-1, keepdim=True), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(e.global_, ref_global[i] / ref_global[i].norm(), atol=1e-5, rtol=1e-5)
    pooled = torch.stack([e.tokens.mean(0) for e in out])
    assert pooled.shape == (3, D) and torch.isfinite(pooled).all() and (pooled.norm(dim=-1) > 0).all()
    text = enc.encode_text("a person walking a dog")
    image = enc.encode_image(fs[0])
    assert text.shape == image.shape == (D,)
    torch.testing.assert_close(text.norm(), torch.tensor(1.0))
    sims = out[0].tokens @ text  # a text query compares with every patch
    assert sims.shape == (N,) and (sims.abs() <= 1 + 1e-5).all()


def test_describe(enc):
    rng = np.random.default_rng(7)
    crop = rng.integers(0, 256, (40, 20, 3), dtype=np.uint8)
    pattern = re.compile(r"^person in (\w+) top and (\w+) trousers$")
    m = pattern.match(enc.describe(crop))
    assert m and m.group(1) in C.COLOURS and m.group(2) in C.COLOURS
    mask = np.zeros((40, 20), dtype=bool)
    mask[5:38, 4:16] = True
    assert pattern.match(enc.describe(crop, mask))
    assert pattern.match(enc.describe(crop[:1]))  # one row: both halves are the whole crop
    assert enc._colour_bank is not None and enc._colour_bank["top"].shape == (len(C.COLOURS), D)


# -- weights -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".bin"])
def test_weights_round_trip(tiny_cfg, tmp_path, suffix):
    torch.manual_seed(11)
    a = ClipEncoder(model=str(tiny_cfg), pretrained=None, device="cpu")  # random init
    path = tmp_path / f"a{suffix}"
    sd = {k: v.contiguous() for k, v in a.model.state_dict().items()}
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save(
            {"state_dict": {f"module.{k}": v for k, v in sd.items()}} if suffix == ".bin" else sd, path
        )
    torch.manual_seed(12)  # a different random init underneath, overwritten by the file
    b = ClipEncoder(model=str(tiny_cfg), weights=str(path), device="cpu")
    fs = frames(3, seed=8)
    for x, y in zip(a.encode_frames(fs), b.encode_frames(fs), strict=True):
        assert torch.equal(x.tokens, y.tokens) and torch.equal(x.global_, y.global_)
    assert torch.equal(a.encode_text("a blue bag"), b.encode_text("a blue bag"))


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_bad_weights_raise_encoder_error(tiny_cfg, tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00\x01 not a safetensors file" * 10)
    with pytest.raises(EncoderError) as ei:
        ClipEncoder(model=str(tiny_cfg), weights=str(corrupt), device="cpu")
    assert "corrupt.safetensors" in one_line_error(ei)

    other_cfg = write_tiny_config(tmp_path, stem="tiny_wide", embed_dim=24, vision_cfg={"width": 48})
    mismatched = write_tiny_weights(tmp_path / "wide.safetensors", other_cfg)
    with pytest.raises(EncoderError) as ei:
        ClipEncoder(model=str(tiny_cfg), weights=str(mismatched), device="cpu")
    one_line_error(ei)

    evil = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, evil)
    with pytest.raises(EncoderError) as ei:  # weights-only: the object is never unpickled
        ClipEncoder(model=str(tiny_cfg), weights=str(evil), device="cpu")
    one_line_error(ei)

    with pytest.raises(EncoderError) as ei:
        ClipEncoder(model=str(tiny_cfg), weights=str(tmp_path / "missing.safetensors"), device="cpu")
    assert "not found" in one_line_error(ei)


def test_model_and_tag_errors(tiny_cfg, tmp_path):
    with pytest.raises(EncoderError) as ei:
        ClipEncoder(model="ViT-Nope-99", device="cpu")
    assert "unknown CLIP model" in one_line_error(ei)
    with pytest.raises(EncoderError):
        ClipEncoder(model=str(tmp_path / "absent.json"), device="cpu")
    bad = tmp_path / "bad.json"
    bad.write_text('{"embed_dim": 16}')
    with pytest.raises(EncoderError):
        ClipEncoder(model=str(bad), device="cpu")
    with pytest.raises(EncoderError) as ei:  # the custom model has no such pretrained tag
        ClipEncoder(model=str(tiny_cfg), pretrained="laion2b_s34b_b79k", device="cpu")
    assert "--weights" in one_line_error(ei)
    t = time.monotonic()
    with pytest.raises(EncoderError) as ei:  # real model, uncached tag, offline: fails fast
        ClipEncoder(model="ViT-B-32", pretrained="laion2b_s34b_b79k", device="cpu")
    assert time.monotonic() - t < 1.0
    msg = one_line_error(ei)
    assert "not cached" in msg and "OFFLINE=1" in msg


# -- cache lookup and the factory --------------------------------------------------------------


def _fake_hf_cache(home: Path, repo_id: str, filename: str) -> Path:
    repo = home / "hf_hub" / ("models--" + repo_id.replace("/", "--"))
    sha = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True)
    (snap / filename).write_bytes(b"weights")
    return snap / filename


def test_cached_weights_are_found(offline):
    path = _fake_hf_cache(offline, "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "open_clip_model.safetensors")
    assert C.cached_pretrained_file("ViT-B-32", "laion2b_s34b_b79k") == str(path)
    ok, why = clip_weights_status("ViT-B-32", "laion2b_s34b_b79k", timeout=1.0)
    assert ok and "cached" in why
    # open_clip's own URL cache (~/.cache/clip/<basename>) counts too
    url = C.pretrained_cfg("RN50", "openai")["url"]
    target = C.openclip_url_cache_file(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"state dict")
    assert Path(C.cached_pretrained_file("RN50", "openai")) == target


def test_status_offline_and_unknown(tiny_cfg):
    ok, why = clip_weights_status("ViT-B-32", "laion2b_s34b_b79k", timeout=1.0)
    assert not ok and "not cached" in why and "OFFLINE=1" in why
    ok, why = clip_weights_status("ViT-B-32", "no-such-tag", timeout=1.0)
    assert not ok and "no-such-tag" in why
    ok, why = clip_weights_status(str(tiny_cfg), "laion2b_s34b_b79k", timeout=1.0)
    assert not ok


def test_status_probe_respects_deadline(monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("STREAMVID_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: time.sleep(5))
    t = time.monotonic()
    ok, why = clip_weights_status("ViT-B-32", "laion2b_s34b_b79k", timeout=0.5)
    assert time.monotonic() - t < 1.0
    assert not ok and "unreachable" in why

    calls = []
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, **k: calls.append(url))
    ok, why = clip_weights_status("ViT-B-32", "laion2b_s34b_b79k", timeout=0.5)
    assert ok and "downloaded" in why
    assert calls and calls[0].endswith(
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K/resolve/main/open_clip_model.safetensors"
    )


def test_factory_auto_offline_falls_back_to_classic():
    classic = pytest.importorskip("streamvid.models.classic")
    t = time.monotonic()
    encoder, note = create_encoder("auto", timeout=3.0)
    assert time.monotonic() - t < 3.0
    assert isinstance(encoder, classic.ClassicEncoder)
    assert note and "\n" not in note
    assert "ViT-B-32/laion2b_s34b_b79k" in note and "classic" in note
    assert "create_model_and_transforms('ViT-B-32', pretrained='laion2b_s34b_b79k')" in note
    assert "--weights PATH" in note


def test_factory_auto_with_weights_picks_clip(tiny_cfg, tiny_weights):
    encoder, note = create_encoder("auto", model=str(tiny_cfg), weights=str(tiny_weights), device="cpu")
    assert isinstance(encoder, ClipEncoder) and note is None
    assert encoder.config()["weights"] == str(tiny_weights.resolve())


def test_factory_names(tiny_cfg, tiny_weights, tmp_path):
    encoder, note = create_encoder("clip", model=str(tiny_cfg), weights=str(tiny_weights), device="cpu")
    assert isinstance(encoder, ClipEncoder) and note is None
    with pytest.raises(EncoderError):  # explicit clip: errors propagate
        create_encoder("clip", model=str(tiny_cfg), device="cpu")
    with pytest.raises(EncoderError):  # auto with a bad --weights file: the error propagates too
        create_encoder("auto", model=str(tiny_cfg), weights=str(tmp_path / "nope.pt"))
    with pytest.raises(EncoderError):
        create_encoder("resnet")


def test_auto_falls_back_when_cached_weights_do_not_load(offline):
    classic = pytest.importorskip("streamvid.models.classic")
    _fake_hf_cache(offline, "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "open_clip_model.safetensors")
    encoder, note = create_encoder("auto", device="cpu")  # the cached file is garbage
    assert isinstance(encoder, classic.ClassicEncoder)
    assert note and "\n" not in note and "CLIP could not be loaded" in note


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_an_encoder_error(tiny_cfg, tiny_weights):
    with pytest.raises(EncoderError) as ei:
        ClipEncoder(model=str(tiny_cfg), weights=str(tiny_weights), device="cuda")
    assert "CUDA" in one_line_error(ei)
