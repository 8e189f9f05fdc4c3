r"""VBench-compatible consistency scores: subject consistency, background consistency, temporal flickering.

The definitions are VBench's, as its code computes them (https://github.com/Vchitect/VBench):
`vbench/subject_consistency.py`_, `vbench/background_consistency.py`_,
`vbench/temporal_flickering.py`_, and the transforms in `vbench/utils.py`_.

.. _vbench/subject_consistency.py: https://github.com/Vchitect/VBench/blob/master/vbench/subject_consistency.py
.. _vbench/background_consistency.py: https://github.com/Vchitect/VBench/blob/master/vbench/background_consistency.py
.. _vbench/temporal_flickering.py: https://github.com/Vchitect/VBench/blob/master/vbench/temporal_flickering.py
.. _vbench/utils.py: https://github.com/Vchitect/VBench/blob/master/vbench/utils.py

Subject and background consistency
----------------------------------
For the frames ``x_0 … x_{T-1}`` of a video (VBench uses every decoded frame) with image features
``f_i`` (L2-normalised)::

    s_i   = ( max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i)) ) / 2        for i = 1 … T-1
    score = (s_1 + … + s_{T-1}) / (T - 1)

Each frame is compared with the previous frame and with the first frame; negative cosines count
as 0. VBench's score over several videos is frame-weighted: ``Σ_videos Σ_i s_i / Σ_videos (T - 1)``
(:func:`aggregate_consistency`).

- **subject consistency**: ``f_i`` = DINO ViT-B/16 ``[CLS]`` feature
  (``torch.hub.load("facebookresearch/dino:main", "dino_vitb16")``) of ``dino_transform(224)``:
  ``Resize(224)`` (shortest side → 224, aspect kept, no crop, bilinear), ``/ 255``, ImageNet
  normalisation (mean ``0.485, 0.456, 0.406``, std ``0.229, 0.224, 0.225``). See
  :class:`streamvid.models.dino.DinoFeatures`.
- **background consistency**: ``f_i`` = CLIP ViT-B/32 (OpenAI weights, ``clip.load("ViT-B/32")``)
  ``encode_image`` of ``clip_transform(224)``: ``Resize(224, bicubic)`` (shortest side),
  ``CenterCrop(224)``, ``/ 255``, CLIP normalisation (mean ``0.48145466, 0.4578275, 0.40821073``,
  std ``0.26862954, 0.26130258, 0.27577711``). See :class:`ClipImageFeatures`.

Both transforms run on the float tensor of the uint8 frames; VBench pins ``torchvision<0.16``, where
resizing a tensor does not antialias, so ``antialias=False`` is the default here too.

Temporal flickering
-------------------
On the decoded uint8 frames at their native resolution (VBench reads them with ``cv2``: BGR, which
does not change the score)::

    MAE_i = mean over all pixels and channels of |x_i - x_{i+1}|             for i = 0 … T-2
    score = (255 - (MAE_0 + … + MAE_{T-2}) / (T - 1)) / 255

(``cv2.absdiff`` of the two frames, averaged). 1.0 means identical consecutive frames. VBench's
score over several videos is the plain mean of the per-video scores (:func:`aggregate_flickering`).

All three need at least 2 frames; before that the scores here are ``None``. They depend on the
frame rate: VBench feeds every frame of short generated clips, so feed every frame (not a sampled
subset) to compare with published numbers.

Streaming
---------
:class:`PairwiseConsistency` and :class:`Flicker` keep O(1) state (the first and previous feature,
the previous frame, running sums) and give the score at any time; the one-shot functions
:func:`subject_consistency`, :func:`background_consistency` and :func:`temporal_flickering` are
the same computation on a whole clip. For per-shot scores, use one accumulator per shot (or
``reset()`` at a cut).

Features
--------
:func:`subject_features`, :func:`background_features` and :func:`vbench_features` pick the feature
extractors and say, in a :class:`FeatureChoice`, which features are used, whether the scores are
VBench-comparable, and why not: DINO is loaded from local files only (``--dino-weights PATH`` or a
cache); without it subject consistency falls back to the CLIP image features, and without CLIP
weights both fall back to the classic encoder's global vector (then NOT VBench-comparable).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from streamvid.models.base import EncoderError, l2n, one_line
from streamvid.models.dino import DEFAULT_MODEL as DINO_MODEL
from streamvid.models.dino import DinoFeatures, as_rgb_frames, dino_status, encode_batched

log = logging.getLogger(__name__)

# VBench's background-consistency model (clip.load("ViT-B/32")) under open_clip's names
VBENCH_CLIP_MODEL = "ViT-B-32"
VBENCH_CLIP_PRETRAINED = "openai"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # vbench/utils.py clip_transform
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_SIZE = 224
DINO_HINT = "pass --dino-weights PATH"



# ----------------------------------------------------------------------------------------------
# the scores
# ----------------------------------------------------------------------------------------------


def _as_features(features) -> torch.Tensor:
    if isinstance(features, np.ndarray):
        features = torch.from_numpy(features)
    f = torch.as_tensor(features)
    if f.ndim == 1:
        f = f[None]
    if f.ndim != 2:
        raise ValueError(f"expected features [T, D], got shape {tuple(f.shape)}")
    return f.detach().to("cpu", torch.float64)


class PairwiseConsistency:
    """Streaming subject/background consistency (VBench's formula; see the module docstring).

    ``update(features [T, D])`` with the next frames' features, in order, any chunk size; ``score``
    is the mean of ``s_i`` so far (``None`` before 2 frames). State: the first and the previous
    feature and two running sums.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new video or shot starts)."""
        self._first: torch.Tensor | None = None
        self._prev: torch.Tensor | None = None
        self.total = 0.0  # Σ s_i
        self.count = 0  # number of s_i (frames - 1)
        self.frames = 0

    @property
    def dim(self) -> int | None:
        return None if self._first is None else int(self._first.shape[0])

    def update(self, features) -> torch.Tensor:
        """Add the features of the next frames → their ``s_i`` (float64 ``[T']``; the very first
        frame gets none)."""
        f = _as_features(features)
        if f.shape[0] == 0:
            return torch.zeros(0, dtype=torch.float64)
        if self._first is not None and f.shape[1] != self._first.shape[0]:
            raise ValueError(f"feature size changed from {self._first.shape[0]} to {f.shape[1]}")
        f = F.normalize(f, dim=-1)  # VBench normalises; a zero vector stays zero (cosine 0)
        if self._first is None:
            self._first = f[0].clone()
            prev, cur = f[:-1], f[1:]
        else:
            assert self._prev is not None
            prev, cur = torch.cat([self._prev[None], f[:-1]]), f
        sim_prev = (prev * cur).sum(-1).clamp_min(0.0)
        sim_first = (cur * self._first[None]).sum(-1).clamp_min(0.0)
        s = (sim_prev + sim_first) / 2
        for v in s.tolist():  # summed one by one, in frame order, as VBench does
            self.total += v
        self.count += int(s.shape[0])
        self.frames += int(f.shape[0])
        self._prev = f[-1].clone()
        return s

    @property
    def score(self) -> float | None:
        return self.total / self.count if self.count else None

    def __repr__(self) -> str:
        return f"PairwiseConsistency(frames={self.frames}, score={self.score})"


def consistency(features) -> float | None:
    """VBench's subject/background consistency of one clip from its features ``[T, D]``
    (``None`` when ``T < 2``)."""
    acc = PairwiseConsistency()
    acc.update(features)
    return acc.score


def subject_consistency(features) -> float | None:
    """VBench's subject consistency from per-frame DINO features ``[T, D]`` (``None`` when T < 2)."""
    return consistency(features)


def background_consistency(features) -> float | None:
    """VBench's background consistency from per-frame CLIP image features ``[T, D]`` (``None`` when T < 2)."""
    return consistency(features)


def aggregate_consistency(accumulators: Iterable[PairwiseConsistency]) -> float | None:
    """VBench's score over several videos (or shots): ``Σ total / Σ count`` (frame-weighted)."""
    accs = list(accumulators)
    count = sum(a.count for a in accs)
    return sum(a.total for a in accs) / count if count else None


def _frame_list(frames) -> list[np.ndarray]:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if isinstance(frames, np.ndarray):
        if frames.ndim not in (3, 4):
            raise ValueError(f"expected frames [T, H, W, 3] (or [T, H, W]), got shape {tuple(frames.shape)}")
        return list(frames)
    return [np.asarray(f) for f in frames]


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    """mean(|a - b|) of two uint8 frames, exactly (VBench: np.mean(cv2.absdiff(float32, float32)))."""
    try:
        import cv2

        d = cv2.absdiff(np.ascontiguousarray(a), np.ascontiguousarray(b))
    except ImportError:  # pragma: no cover - opencv is a dependency
        d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float(d.sum(dtype=np.uint64)) / d.size


class Flicker:
    """Streaming temporal flickering (VBench's formula; see the module docstring).

    ``update(frames)`` with the next uint8 frames (``[T, H, W, 3]`` or a sequence of ``[H, W, 3]``,
    at native resolution), in order, any chunk size; ``score`` is ``(255 - mean MAE) / 255`` so far
    (``None`` before 2 frames). State: the previous frame and two running sums. Consecutive frames
    must have the same shape (VBench cannot score such a pair either): a change raises ValueError.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._last: np.ndarray | None = None
        self.total = 0.0  # Σ MAE_i
        self.count = 0  # number of pairs
        self.frames = 0

    def update(self, frames) -> np.ndarray:
        """Add the next frames → the MAE of each new consecutive pair (float64 ``[T']``)."""
        seq = _frame_list(frames)
        maes: list[float] = []
        last = self._last
        for a in seq:
            if a.dtype != np.uint8:
                raise ValueError(f"temporal flickering needs uint8 frames, got {a.dtype}")
            if a.ndim not in (2, 3):
                raise ValueError(f"expected an [H, W, 3] frame, got shape {tuple(a.shape)}")
            if last is not None:
                if a.shape != last.shape:
                    raise ValueError(
                        f"frame shape changed from {tuple(last.shape)} to {tuple(a.shape)}: "
                        "temporal flickering compares same-size consecutive frames (reset() at a change)"
                    )
                mae = _mae(last, a)
                maes.append(mae)
                self.total += mae
                self.count += 1
            last = a
            self.frames += 1
        if seq:
            self._last = np.array(last, copy=True)  # the caller may reuse its buffer
        return np.asarray(maes, dtype=np.float64)

    @property
    def mean_abs_diff(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def score(self) -> float | None:
        m = self.mean_abs_diff
        return None if m is None else (255.0 - m) / 255.0

    def __repr__(self) -> str:
        return f"Flicker(frames={self.frames}, score={self.score})"


def temporal_flickering(frames) -> float | None:
    """VBench's temporal flickering of one clip of uint8 frames (``None`` when fewer than 2)."""
    acc = Flicker()
    acc.update(frames)
    return acc.score


def aggregate_flickering(accumulators: Iterable[Flicker]) -> float | None:
    """VBench's score over several videos: the mean of the per-video scores."""
    scores = [a.score for a in accumulators if a.score is not None]
    return float(np.mean(scores)) if scores else None


# ----------------------------------------------------------------------------------------------
# feature extractors
# ----------------------------------------------------------------------------------------------


def _is_clip_encoder(encoder: Any) -> bool:
    return getattr(encoder, "name", None) == "clip" and getattr(encoder, "visual", None) is not None


class ClipImageFeatures:
    """CLIP global image embeddings ``[T, D]`` with VBench's ``clip_transform``, L2-normalised.

    Wraps the project's :class:`streamvid.models.clip.ClipEncoder` (``encoder``: one already loaded,
    so nothing is loaded twice), or loads one (``model``, ``pretrained``, ``weights``: the same
    loading rules, see ``streamvid/models/clip.py``). ``n_px`` is the model's input size (224 for
    ViT-B-32, as in VBench). With ``weights``, ``pretrained`` names what the file holds (it also
    selects QuickGELU for OpenAI weights).
    """

    name = "clip"

    def __init__(
        self,
        encoder: Any = None,
        *,
        model: str = VBENCH_CLIP_MODEL,
        pretrained: str | None = VBENCH_CLIP_PRETRAINED,
        weights: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        antialias: bool = False,
    ) -> None:
        if encoder is None:
            from streamvid.models.clip import ClipEncoder

            encoder = ClipEncoder(model=model, pretrained=pretrained, weights=weights, device=device)
            self.pretrained = pretrained
        else:
            if not _is_clip_encoder(encoder):
                raise EncoderError(f"not a CLIP encoder: {type(encoder).__name__}")
            self.pretrained = getattr(encoder, "pretrained", None)
        self.encoder = encoder
        self.visual = encoder.visual
        self.device = torch.device(encoder.device)
        self.arch = str(getattr(encoder, "arch", None) or getattr(encoder, "model_arg", "CLIP"))
        self.weights = getattr(encoder, "weights", None)
        self.batch_size = max(1, int(batch_size))
        self.antialias = bool(antialias)
        size = getattr(self.visual, "image_size", CLIP_SIZE)
        self.size = (int(size[0]), int(size[1])) if isinstance(size, (tuple, list)) else (int(size), int(size))
        self.dtype = self.visual.conv1.weight.dtype
        self.dim = int(getattr(encoder, "dim", 0) or self.visual.output_dim)
        self._mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)

    @property
    def vbench_model(self) -> bool:
        """CLIP ViT-B-32 with OpenAI's weights: the features VBench's background consistency uses."""
        return self.arch == VBENCH_CLIP_MODEL and self.pretrained == VBENCH_CLIP_PRETRAINED

    @property
    def features_name(self) -> str:
        if self.pretrained and self.weights:
            tag = f"{self.pretrained}, weights {Path(self.weights).name}"
        elif self.pretrained:
            tag = self.pretrained
        elif self.weights:
            tag = f"weights {Path(self.weights).name}"
        else:
            tag = "random init"
        return f"CLIP {self.arch} ({tag})"

    def preprocess(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Same-shape uint8 frames → model input (VBench's ``clip_transform``)."""
        x = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 3, 1, 2).float()
        x = TF.resize(x, self.size[0], interpolation=InterpolationMode.BICUBIC, antialias=self.antialias)
        x = TF.center_crop(x, list(self.size))
        x = x.float().div(255.0)
        return ((x - self._mean) / self._std).to(self.dtype)

    def encode(self, frames) -> torch.Tensor:
        """Frames → ``[T, D]`` float32 on the CPU, L2-normalised."""

        def forward(batch):
            y = self.visual(self.preprocess(batch))
            return y[0] if isinstance(y, (tuple, list)) else y  # output_tokens → (pooled, tokens)

        return encode_batched(frames, self.dim, self.batch_size, forward)


class ClassicGlobalFeatures:
    """The classic (OpenCV) encoder's global vector ``[T, 40]``: the last resort, NOT VBench-comparable."""

    name = "classic"
    features_name = "classic encoder global vector (OpenCV colour/texture histograms)"
    vbench_model = False

    def __init__(self, encoder: Any = None) -> None:
        if encoder is None:
            from streamvid.models.classic import ClassicEncoder

            encoder = ClassicEncoder()
        self.encoder = encoder
        self.dim = int(encoder.dim)

    def encode(self, frames) -> torch.Tensor:
        rgbs = as_rgb_frames(frames)
        if not rgbs:
            return torch.zeros(0, self.dim)
        return self.from_encoded(self.encoder.encode_frames(rgbs))

    def uses(self, encoder: Any) -> bool:
        """Whether these features are ``encoder``'s own global vectors (same encoder config)."""
        return self.encoder.config() == encoder.config()

    def from_encoded(self, encoded) -> torch.Tensor:
        """The features of frames the same encoder already encoded (``Encoded`` list) → ``[T, D]``."""
        return l2n(torch.stack([e.global_.float() for e in encoded]))


@dataclass
class FeatureChoice:
    """Which features a score uses, and what that means for comparing it with VBench.

    ``kind``: ``"dino"``, ``"clip"`` or ``"classic"``. ``note``: one line for the user when the
    features are not VBench's (why, and how to get VBench's), else ``None``. ``reason``: why the
    preferred model was not used (``None`` when it was).
    """

    extractor: Any
    kind: str
    features_name: str
    vbench_comparable: bool
    note: str | None = None
    reason: str | None = None

    def encode(self, frames) -> torch.Tensor:
        """Frames → ``[T, D]`` float32 L2-normalised features."""
        return self.extractor.encode(frames)

    def describe(self) -> dict:
        """JSON-able summary for a report."""
        return {
            "features": self.features_name,
            "kind": self.kind,
            "vbench_comparable": self.vbench_comparable,
            "note": self.note,
        }


def _clip_choice(ex: ClipImageFeatures, note: str | None = None, reason: str | None = None) -> FeatureChoice:
    return FeatureChoice(ex, "clip", ex.features_name, ex.vbench_model, note, reason)


def _not_vbench_clip(ex: ClipImageFeatures) -> str:
    return (
        f"background consistency uses {ex.features_name} image features; VBench uses CLIP "
        f"{VBENCH_CLIP_MODEL} ({VBENCH_CLIP_PRETRAINED}), so the scores are close to, not exactly, VBench's"
    )


def background_features(
    *,
    encoder: Any = None,
    model: str = VBENCH_CLIP_MODEL,
    pretrained: str | None = VBENCH_CLIP_PRETRAINED,
    weights: str | os.PathLike | None = None,
    device: str | None = None,
    timeout: float = 3.0,
    classic_fallback: bool = True,
) -> FeatureChoice:
    """The features for background consistency: CLIP image embeddings, VBench's model if possible.

    1. ``weights`` → CLIP ``model`` from that file (errors propagate: the user asked for it);
    2. ``encoder`` is a CLIP encoder holding VBench's model (ViT-B-32/openai) → wrapped;
    3. ``encoder`` is another CLIP encoder → VBench's CLIP if its weights are cached, else ``encoder``
       wrapped (with a note: close to, not exactly, VBench's scores);
    4. CLIP ``model``/``pretrained`` under the project's ``auto`` rules
       (:func:`streamvid.models.factory.clip_weights_status`: cached, or downloadable when downloads
       are allowed), else the project's default CLIP (ViT-B-32/laion2b_s34b_b79k) if cached;
    5. the classic encoder's global vector (``encoder`` if it is the classic one), with a note that
       the scores are NOT VBench-comparable; with ``classic_fallback=False`` an EncoderError instead.
    """
    from streamvid.models import clip as C
    from streamvid.models.factory import DEFAULT_MODEL, DEFAULT_PRETRAINED, clip_weights_status

    if weights is not None and str(weights) != "":
        ex = ClipImageFeatures(model=model, pretrained=pretrained, weights=weights, device=device)
        return _clip_choice(ex, None if ex.vbench_model else _not_vbench_clip(ex))

    def load(m: str, p: str | None) -> ClipImageFeatures:
        return ClipImageFeatures(model=m, pretrained=p, device=device)

    def cached(m: str, p: str | None) -> bool:
        try:
            return bool(C.cached_pretrained_file(C.resolve_model_name(m)[0], p))
        except EncoderError:
            return False

    if _is_clip_encoder(encoder):
        ex = ClipImageFeatures(encoder)
        if ex.vbench_model or (model, pretrained) == (ex.arch, ex.pretrained):
            return _clip_choice(ex, None if ex.vbench_model else _not_vbench_clip(ex))
        if cached(model, pretrained):  # VBench's CLIP from the cache: no download next to a working encoder
            try:
                return _clip_choice(load(model, pretrained))
            except EncoderError as e:
                log.info("background consistency: %s/%s not loaded: %s", model, pretrained, e)
        return _clip_choice(ex, _not_vbench_clip(ex), f"CLIP weights for {model}/{pretrained} are not cached")

    ok, why = clip_weights_status(model, pretrained, timeout)
    if ok:
        try:
            ex = load(model, pretrained)
            return _clip_choice(ex, None if ex.vbench_model else _not_vbench_clip(ex))
        except EncoderError as e:
            why = f"CLIP {model}/{pretrained} could not be loaded ({one_line(e)})"
    if (model, pretrained) != (DEFAULT_MODEL, DEFAULT_PRETRAINED) and cached(DEFAULT_MODEL, DEFAULT_PRETRAINED):
        try:
            ex = load(DEFAULT_MODEL, DEFAULT_PRETRAINED)
            return _clip_choice(ex, f"{why}; {_not_vbench_clip(ex)}", why)
        except EncoderError as e:
            log.info("background consistency: %s/%s not loaded: %s", DEFAULT_MODEL, DEFAULT_PRETRAINED, e)

    try:
        known = bool(C.pretrained_cfg(C.resolve_model_name(model)[0], pretrained))
    except EncoderError:
        known = False
    hint = C.download_hint(model, pretrained) if known else "pass --weights PATH"
    if not classic_fallback:
        raise EncoderError(f"{why}; {hint}")
    classic = ClassicGlobalFeatures(encoder if getattr(encoder, "name", None) == "classic" else None)
    note = (
        f"background consistency uses the classic encoder's global vector: {why}; these scores are "
        f"NOT VBench-comparable. For VBench's CLIP features, {hint}"
    )
    return FeatureChoice(classic, "classic", classic.features_name, False, note, why)


def subject_features(
    *,
    dino_weights: str | os.PathLike | None = None,
    dino_model: str = DINO_MODEL,
    background: FeatureChoice | None = None,
    encoder: Any = None,
    clip_model: str = VBENCH_CLIP_MODEL,
    clip_pretrained: str | None = VBENCH_CLIP_PRETRAINED,
    clip_weights: str | os.PathLike | None = None,
    device: str | None = None,
    timeout: float = 3.0,
    dino_cache_dir: str | os.PathLike | None = None,
    classic_fallback: bool = True,
) -> FeatureChoice:
    """The features for subject consistency: DINO ViT-B/16 from local weights if possible.

    1. ``dino_weights`` → DINO from that file (errors propagate: the user asked for it);
    2. DINO weights in a local cache (:func:`streamvid.models.dino.cached_dino_weights`; never
       downloaded) → DINO;
    3. else the background-consistency features (``background``, or :func:`background_features`
       with ``encoder``/``clip_*``): CLIP image features, or the classic global vector when there
       are no CLIP weights either, with a note saying which and why. The extractor is then the
       background one itself, so the frames need encoding only once.
    """
    if dino_weights is not None and str(dino_weights) != "":
        ex = DinoFeatures(dino_model, weights=dino_weights, device=device)
        note = None if ex.vbench_model else (
            f"subject consistency uses {ex.features_name} features; VBench uses DINO ViT-B/16, "
            "so the scores are not VBench's"
        )
        return FeatureChoice(ex, "dino", ex.features_name, ex.vbench_model, note)

    ok, why = dino_status(dino_model, cache_dir=dino_cache_dir)
    if ok:
        try:
            ex = DinoFeatures(dino_model, pretrained=True, device=device, cache_dir=dino_cache_dir)
            return FeatureChoice(ex, "dino", ex.features_name, ex.vbench_model)
        except EncoderError as e:
            why = f"DINO could not be loaded ({one_line(e)})"

    bg = background or background_features(
        encoder=encoder,
        model=clip_model,
        pretrained=clip_pretrained,
        weights=clip_weights,
        device=device,
        timeout=timeout,
        classic_fallback=classic_fallback,
    )
    if bg.kind == "classic":
        note = (
            f"subject consistency uses the classic encoder's global vector: {why}; {DINO_HINT}. "
            f"No CLIP weights either ({bg.reason or 'unavailable'}): these scores are NOT VBench-comparable"
        )
    else:
        note = (
            f"subject consistency uses {bg.features_name} image features: {why}; {DINO_HINT} "
            "(VBench uses DINO ViT-B/16 features: this score is not VBench's)"
        )
    return FeatureChoice(bg.extractor, bg.kind, bg.features_name, False, note, why)


def vbench_features(
    *,
    dino_weights: str | os.PathLike | None = None,
    dino_cache_dir: str | os.PathLike | None = None,
    device: str | None = None,
    **clip: Any,
) -> tuple[FeatureChoice, FeatureChoice]:
    """(subject, background) feature choices; ``clip`` goes to :func:`background_features`
    (``encoder``, ``model``, ``pretrained``, ``weights``, ``timeout``, ``classic_fallback``). When
    subject consistency falls back, both share one extractor (``subject.extractor is
    background.extractor``): encode the frames once."""
    background = background_features(device=device, **clip)
    subject = subject_features(
        dino_weights=dino_weights, background=background, device=device, dino_cache_dir=dino_cache_dir
    )
    return subject, background


__all__ = [
    "ClassicGlobalFeatures",
    "ClipImageFeatures",
    "DinoFeatures",
    "FeatureChoice",
    "Flicker",
    "PairwiseConsistency",
    "aggregate_consistency",
    "aggregate_flickering",
    "background_consistency",
    "background_features",
    "consistency",
    "subject_consistency",
    "subject_features",
    "temporal_flickering",
    "vbench_features",
]
