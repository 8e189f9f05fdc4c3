"""VBench-compatible consistency scores (streamvid.consistency.vbench) and DINO features (no network)."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamvid.consistency import vbench as V
from streamvid.consistency.vbench import (
    Flicker,
    PairwiseConsistency,
    aggregate_consistency,
    aggregate_flickering,
    background_features,
    subject_consistency,
    subject_features,
    temporal_flickering,
    vbench_features,
)
from streamvid.models import dino as D
from streamvid.models.base import EncoderError
from streamvid.models.dino import DinoFeatures

try:
    from .tiny_clip import write_tiny_config, write_tiny_weights
except ImportError:  # tests/ is not a package: pytest puts this folder on sys.path
    from tiny_clip import write_tiny_config, write_tiny_weights

timm = pytest.importorskip("timm")

TINY_VIT = "vit_tiny_patch16_224"
TINY_KW = {"depth": 2}  # 2 of vit_tiny's 12 blocks: D = 192, fast on a CPU


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """No network at all, and empty caches (HF hub, torch.hub, VBench's, open_clip's ~/.cache/clip)."""
    import huggingface_hub.constants as hf_constants

    def no_network(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("STREAMVID_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(home / "vbench"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(home / "hf_hub"))
    return home


# ----------------------------------------------------------------------------------------------
# the formulas, by hand
# ----------------------------------------------------------------------------------------------

# four 2-D features; f1 is not unit length (the score normalises)
#   cos(f0, f1) = 0.6   cos(f1, f2) = 0.8   cos(f0, f2) = 0
#   cos(f2, f3) = -0.6 → 0 (clipped)        cos(f0, f3) = 0.8
HAND = torch.tensor([[1.0, 0.0], [3.0, 4.0], [0.0, 1.0], [0.8, -0.6]], dtype=torch.float64)
# s_1 = (0.6 + 0.6) / 2 = 0.6;  s_2 = (0.8 + 0) / 2 = 0.4;  s_3 = (0 + 0.8) / 2 = 0.4
HAND_S = [0.6, 0.4, 0.4]
HAND_SCORE = (0.6 + 0.4 + 0.4) / 3


def test_consistency_by_hand():
    acc = PairwiseConsistency()
    s = acc.update(HAND)
    assert s.tolist() == pytest.approx(HAND_S, abs=1e-12)
    assert acc.score == pytest.approx(HAND_SCORE, abs=1e-12)
    assert (acc.count, acc.frames) == (3, 4)
    assert subject_consistency(HAND) == pytest.approx(HAND_SCORE, abs=1e-12)
    assert V.background_consistency(HAND.numpy()) == pytest.approx(HAND_SCORE, abs=1e-12)


def test_consistency_negative_first_cosine_is_clipped():
    # f1 opposite to f0: both terms clip to 0; f2 = f1: prev term 1, first term -1 → 0
    f = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [-2.0, 0.0]])
    acc = PairwiseConsistency()
    assert acc.update(f).tolist() == pytest.approx([0.0, 0.5])
    assert acc.score == pytest.approx(0.25)


def test_consistency_needs_two_frames():
    acc = PairwiseConsistency()
    assert acc.score is None
    assert acc.update(torch.zeros(0, 2)).numel() == 0
    assert acc.update(HAND[:1]).numel() == 0
    assert acc.score is None
    assert subject_consistency(HAND[:1]) is None
    acc.update(HAND[1:2])
    assert acc.score == pytest.approx(0.6)
    acc.reset()
    assert acc.score is None and acc.frames == 0
    with pytest.raises(ValueError):
        acc.update(torch.zeros(2, 3, 4))


def test_consistency_feature_size_must_not_change():
    acc = PairwiseConsistency()
    acc.update(HAND)
    with pytest.raises(ValueError, match="feature size"):
        acc.update(torch.ones(1, 3))


def _flicker_frames() -> list[np.ndarray]:
    # three 1 x 2 pixel RGB frames
    x0 = np.zeros((1, 2, 3), np.uint8)
    x1 = np.array([[[10, 20, 30], [0, 0, 0]]], np.uint8)
    x2 = np.array([[[5, 20, 30], [255, 255, 255]]], np.uint8)
    return [x0, x1, x2]


# |x1 - x0| = 10, 20, 30, 0, 0, 0        → MAE 60 / 6 = 10
# |x2 - x1| = 5, 0, 0, 255, 255, 255     → MAE 770 / 6   (5 = |5 - 10|: no uint8 wrap-around)
FLICKER_MAES = [10.0, 770 / 6]
FLICKER_SCORE = (255 - (10.0 + 770 / 6) / 2) / 255  # = 2230 / 3060


def test_flickering_by_hand():
    frames = _flicker_frames()
    acc = Flicker()
    assert acc.update(frames).tolist() == pytest.approx(FLICKER_MAES)
    assert acc.score == pytest.approx(FLICKER_SCORE)
    assert FLICKER_SCORE == pytest.approx(2230 / 3060)
    assert temporal_flickering(np.stack(frames)) == pytest.approx(FLICKER_SCORE)
    assert temporal_flickering(frames[:1]) is None
    assert temporal_flickering(np.stack([frames[1]] * 4)) == 1.0  # a still video does not flicker


def test_flickering_input_checks():
    acc = Flicker()
    acc.update(np.zeros((1, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="shape changed"):
        acc.update(np.zeros((1, 4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        Flicker().update(np.zeros((2, 4, 4, 3), np.float32))


def test_flickering_keeps_its_own_copy_of_the_last_frame():
    buf = np.zeros((1, 2, 2, 3), np.uint8)
    acc = Flicker()
    acc.update(buf)
    buf[:] = 255  # the caller reuses its buffer
    acc.update(np.zeros((1, 2, 2, 3), np.uint8))
    assert acc.score == 1.0


# ----------------------------------------------------------------------------------------------
# streaming = one-shot
# ----------------------------------------------------------------------------------------------

CHUNKINGS = [[17], [1] * 17, [1, 5, 0, 3, 8], [2, 15], [16, 1]]


def _chunks(x, sizes):
    start = 0
    for n in sizes:
        yield x[start : start + n]
        start += n
    assert start == len(x)


@pytest.mark.parametrize("sizes", CHUNKINGS)
def test_consistency_streaming_equals_one_shot(sizes):
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(17, 8, generator=g)  # random: many negative cosines
    feats[5] = 0.0  # a zero vector: cosine 0
    whole = subject_consistency(feats)
    acc = PairwiseConsistency()
    per_frame = torch.cat([acc.update(c) for c in _chunks(feats, sizes)])
    assert acc.score == pytest.approx(whole, abs=1e-12)
    assert (acc.count, acc.frames, per_frame.numel()) == (16, 17, 16)
    # the per-frame values are VBench's loop, written out
    f = F.normalize(feats.double(), dim=-1)
    expect = [(max(0.0, float(f[i - 1] @ f[i])) + max(0.0, float(f[0] @ f[i]))) / 2 for i in range(1, 17)]
    assert per_frame.tolist() == pytest.approx(expect, abs=1e-12)
    assert whole == pytest.approx(sum(expect) / 16, abs=1e-12)


@pytest.mark.parametrize("sizes", CHUNKINGS)
def test_flickering_streaming_equals_one_shot(sizes):
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, (17, 6, 7, 3), dtype=np.uint8)
    whole = temporal_flickering(frames)
    acc = Flicker()
    maes = np.concatenate([acc.update(c) for c in _chunks(frames, sizes)])
    assert acc.score == pytest.approx(whole, abs=1e-12)
    expect = [np.abs(frames[i].astype(int) - frames[i + 1]).mean() for i in range(16)]
    assert maes == pytest.approx(expect)
    assert whole == pytest.approx((255 - np.mean(expect)) / 255)


def test_aggregates_follow_vbench():
    a, b = PairwiseConsistency(), PairwiseConsistency()
    a.update(HAND)  # 3 terms, sum 1.4
    b.update(HAND[:2])  # 1 term, 0.6
    assert aggregate_consistency([a, b]) == pytest.approx((1.4 + 0.6) / 4)  # frame-weighted
    assert aggregate_consistency([PairwiseConsistency()]) is None
    f1, f2 = Flicker(), Flicker()
    f1.update(_flicker_frames())
    f2.update(np.zeros((3, 1, 2, 3), np.uint8))
    assert aggregate_flickering([f1, f2, Flicker()]) == pytest.approx((FLICKER_SCORE + 1.0) / 2)


# ----------------------------------------------------------------------------------------------
# DINO features (a tiny random timm ViT, loaded through weights=)
# ----------------------------------------------------------------------------------------------


def _tiny_vit(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(TINY_VIT, pretrained=False, num_classes=0, **TINY_KW).eval()


@pytest.fixture(scope="module")
def tiny_vit_file(tmp_path_factory) -> Path:
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("dino") / "tiny_vit.safetensors"
    save_file({k: v.contiguous() for k, v in _tiny_vit(0).state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def dino(tiny_vit_file) -> DinoFeatures:
    return DinoFeatures(TINY_VIT, weights=tiny_vit_file, model_kwargs=TINY_KW, device="cpu", batch_size=2)


def _frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_dino_features_are_unit_vectors_and_deterministic(dino, tiny_vit_file):
    frames = _frames(3, 40, 60)
    f = dino.encode(frames)
    assert f.shape == (3, 192) and f.dtype == torch.float32 and f.device.type == "cpu"
    assert torch.allclose(f.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.equal(f, dino.encode(frames))
    again = DinoFeatures(TINY_VIT, weights=tiny_vit_file, model_kwargs=TINY_KW, device="cpu")
    assert torch.allclose(again.encode(list(frames)), f, atol=1e-6)
    assert dino.encode(np.zeros((0, 8, 8, 3), np.uint8)).shape == (0, 192)
    assert dino.weights == str(tiny_vit_file.resolve())
    assert not dino.vbench_model and "random init" not in dino.features_name


def test_dino_uses_the_checkpoint(dino):
    """Square frames: the DINO forward equals timm's own forward of the saved model; another
    random model gives other features."""
    frames = _frames(2, 50, 50, seed=1)
    x = dino.preprocess(list(frames))
    assert x.shape == (2, 3, 224, 224)
    with torch.no_grad():
        ref = F.normalize(_tiny_vit(0)(x), dim=-1)
        other = F.normalize(_tiny_vit(1)(x), dim=-1)
    f = dino.encode(frames)
    assert torch.allclose(f, ref, atol=1e-5)
    assert not torch.allclose(f, other, atol=1e-3)


def test_dino_preprocessing_is_vbench_dino_transform(dino):
    """Resize(224) of the shortest side (no crop), /255, ImageNet normalisation."""
    frames = _frames(1, 48, 96)
    x = dino.preprocess(list(frames))
    assert x.shape == (1, 3, 224, 448)
    flat = np.full((1, 30, 40, 3), (0, 128, 255), np.uint8)
    y = dino.preprocess(list(flat))
    assert y.shape == (1, 3, 224, 298)  # int(224 * 40 / 30)
    expect = [(v / 255 - m) / s for v, m, s in zip((0, 128, 255), D.IMAGENET_MEAN, D.IMAGENET_STD)]
    assert y.mean(dim=(0, 2, 3)).tolist() == pytest.approx(expect, abs=1e-5)


def test_dino_non_square_and_mixed_shapes(dino):
    frames = [_frames(1, 60, 100)[0], _frames(1, 100, 60)[0], _frames(1, 60, 100, seed=2)[0]]
    f = dino.encode(frames)
    assert f.shape == (3, 192)
    assert torch.allclose(f.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(f[0], dino.encode(frames[:1])[0], atol=1e-6)


def test_dino_loads_original_training_checkpoints(tmp_path, dino):
    """{"teacher": {"backbone.*": ..., "head.*": ...}} (a DINO training checkpoint), read weights-only."""
    sd = {f"backbone.{k}": v for k, v in _tiny_vit(0).state_dict().items()}
    sd["head.mlp.0.weight"] = torch.zeros(4, 192)
    path = tmp_path / "checkpoint.pth"
    torch.save({"teacher": sd, "epoch": 3}, path)
    enc = DinoFeatures(TINY_VIT, weights=path, model_kwargs=TINY_KW, device="cpu")
    frames = _frames(2, 32, 32)
    assert torch.allclose(enc.encode(frames), dino.encode(frames), atol=1e-6)


def test_dino_weights_errors(tmp_path):
    with pytest.raises(EncoderError, match="not found"):
        DinoFeatures(TINY_VIT, weights=tmp_path / "nope.safetensors", model_kwargs=TINY_KW)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(EncoderError, match="cannot read DINO weights"):
        DinoFeatures(TINY_VIT, weights=bad, model_kwargs=TINY_KW)
    wrong = tmp_path / "wrong.pth"
    torch.save({"cls_token": torch.zeros(1, 1, 192)}, wrong)
    with pytest.raises(EncoderError, match="do not load"):
        DinoFeatures(TINY_VIT, weights=wrong, model_kwargs=TINY_KW)


def test_dino_never_downloads(offline):
    assert D.cached_dino_weights() is None
    with pytest.raises(EncoderError) as e:
        DinoFeatures()  # DINO ViT-B/16, pretrained, nothing cached
    assert "not found in the Hugging Face cache (timm/vit_base_patch16_224.dino)" in str(e.value)
    assert "--dino-weights PATH" in str(e.value)
    assert D.dino_status() == (False, "DINO weights not found in the Hugging Face cache (timm/vit_base_patch16_224.dino)")


def test_dino_from_the_hub_cache(offline, tiny_vit_file, dino):
    """A timm checkpoint in the Hugging Face cache layout is found (try_to_load_from_cache) and loaded."""
    name = f"{TINY_VIT}.augreg_in21k"
    repo = D.hub_repo_id(name)
    assert repo == f"timm/{name}"
    cache = offline / "hf_hub"
    snap = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "model.safetensors").write_bytes(tiny_vit_file.read_bytes())
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("abc123")
    assert D.cached_dino_weights(name) == str(snap / "model.safetensors")
    enc = DinoFeatures(name, model_kwargs=TINY_KW, device="cpu")
    frames = _frames(2, 32, 32)
    assert torch.allclose(enc.encode(frames), dino.encode(frames), atol=1e-6)


def test_dino_original_checkpoint_in_the_torch_hub_cache(offline):
    """Where VBench's torch.hub.load(facebookresearch/dino) leaves the weights is a cache too."""
    path = offline / "torch" / "hub" / "checkpoints" / "dino_vitbase16_pretrain.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    assert D.cached_dino_weights() == str(path)
    assert D.cached_dino_weights(TINY_VIT) is None  # only for DINO ViT-B/16


# ----------------------------------------------------------------------------------------------
# choosing the features
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from streamvid.models.clip import ClipEncoder

    d = tmp_path_factory.mktemp("clip")
    cfg = write_tiny_config(d)
    weights = write_tiny_weights(d / "tiny.safetensors", cfg, seed=1)
    return ClipEncoder(model=str(cfg), weights=str(weights), device="cpu")


def test_clip_image_features_wrap_the_encoder(tiny_clip):
    ex = V.ClipImageFeatures(tiny_clip)
    assert ex.visual is tiny_clip.visual  # nothing loaded twice
    frames = _frames(3, 40, 72)
    f = ex.encode(frames)
    assert f.shape == (3, 16)
    assert torch.allclose(f.norm(dim=-1), torch.ones(3), atol=1e-5)
    x = ex.preprocess(list(frames))
    assert x.shape == (3, 3, 32, 32)  # Resize(32) of the shortest side, CenterCrop(32)
    with torch.no_grad():
        ref = F.normalize(tiny_clip.visual(x)[0], dim=-1)
    assert torch.allclose(f, ref, atol=1e-5)
    assert not ex.vbench_model and ex.features_name == "CLIP tiny_clip (weights tiny.safetensors)"


def test_subject_falls_back_to_clip_without_dino(tiny_clip, monkeypatch):
    from streamvid.models import clip as C

    monkeypatch.setattr(C, "cached_pretrained_file", lambda *a, **k: None)
    subject, background = vbench_features(encoder=tiny_clip)
    assert background.kind == "clip" and not background.vbench_comparable
    assert "VBench uses CLIP ViT-B-32 (openai)" in background.note
    assert subject.kind == "clip" and not subject.vbench_comparable
    assert subject.extractor is background.extractor  # encode once
    assert subject.note.startswith("subject consistency uses CLIP tiny_clip (weights tiny.safetensors) image features")
    assert "DINO weights not found in the Hugging Face cache (timm/vit_base_patch16_224.dino)" in subject.note
    assert "--dino-weights PATH" in subject.note
    assert subject.describe()["features"] == "CLIP tiny_clip (weights tiny.safetensors)"
    assert subject.encode(_frames(2, 32, 32)).shape == (2, 16)


def test_everything_falls_back_to_classic_without_weights(monkeypatch):
    from streamvid.models import clip as C

    monkeypatch.setattr(C, "cached_pretrained_file", lambda *a, **k: None)
    background = background_features()
    assert background.kind == "classic" and not background.vbench_comparable
    assert "NOT VBench-comparable" in background.note
    assert "not cached and downloads are disabled" in background.note
    subject = subject_features(background=background)
    assert subject.kind == "classic" and subject.extractor is background.extractor
    assert "DINO weights not found" in subject.note and "NOT VBench-comparable" in subject.note
    f = subject.encode(_frames(3, 48, 64))
    assert f.shape == (3, 40) and torch.allclose(f.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert subject.describe() == {
        "features": "classic encoder global vector (OpenCV colour/texture histograms)",
        "kind": "classic",
        "vbench_comparable": False,
        "note": subject.note,
    }
    with pytest.raises(EncoderError, match="not cached"):
        background_features(classic_fallback=False)


def test_subject_uses_dino_when_given_weights(tmp_path, tiny_clip):
    # full-depth vit_tiny (subject_features builds the named timm model as is)
    torch.manual_seed(0)
    model = timm.create_model(TINY_VIT, pretrained=False, num_classes=0)
    path = tmp_path / "vit_tiny.pth"
    torch.save(model.state_dict(), path)
    choice = subject_features(dino_weights=path, dino_model=TINY_VIT, encoder=tiny_clip, device="cpu")
    assert choice.kind == "dino" and isinstance(choice.extractor, DinoFeatures)
    assert not choice.vbench_comparable and "VBench uses DINO ViT-B/16" in choice.note
    assert choice.encode(_frames(2, 24, 32)).shape == (2, 192)
    with pytest.raises(EncoderError):  # the user asked for that file: no silent fallback
        subject_features(dino_weights=tmp_path / "missing.pth", encoder=tiny_clip)
