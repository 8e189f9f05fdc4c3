"""The ``classic`` encoder: OpenCV and NumPy only, nothing to download.

A frame is resized to ``[192, 256]`` and cut into a ``6 × 8`` grid; each cell becomes one token of
``D = 40`` numbers in four blocks, each block a histogram that is L1-normalised, square-rooted
(Hellinger) and weighted, so that the cosine of two tokens is a similarity of their histograms:

- colour ``[18]``: hue histogram (20° bins), each pixel weighted by its chroma;
- achromatic ``[5]``: black, dark gray, gray, light gray, white, weighted by 1 − chroma;
- value ``[5]``: brightness distribution;
- texture ``[12]``: gradient orientation (8 unsigned bins, magnitude-weighted), a flat bin and three
  gradient-strength bins.

The global vector is the normalised mean token. Text embeds only what these histograms can
express: colour names (``encode_text("red")`` puts weight on the red hue bins); other concepts
(person, face, motion, brightness, scene change) come from the event detector's signals.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from streamvid.models.base import l2n
from streamvid.types import Encoded

GRID_ROWS, GRID_COLS = 6, 8
CELL = 32
SIZE = (GRID_COLS * CELL, GRID_ROWS * CELL)  # (width, height) for cv2.resize

N_HUE, N_ACHRO, N_VAL, N_ORI = 18, 5, 5, 8
N_TEX = N_ORI + 4
BLOCKS = (N_HUE, N_ACHRO, N_VAL, N_TEX)
DIM = sum(BLOCKS)
_OFF = np.cumsum((0,) + BLOCKS)
# block weights: colour and achromatic dominate, texture tells flat walls from people and plants
_WEIGHTS = (1.0, 0.8, 0.5, 0.6)

# Colour names → (hue range in OpenCV degrees [0, 180), or None for achromatic bins)
COLOUR_HUES = {
    "red": [(170, 180), (0, 8)],
    "orange": [(8, 20)],
    "brown": [(8, 20)],
    "yellow": [(20, 33)],
    "green": [(33, 85)],
    "cyan": [(85, 100)],
    "blue": [(100, 130)],
    "purple": [(130, 150)],
    "pink": [(150, 170)],
}
ACHROMATIC = {"black": 0, "gray": 2, "grey": 2, "white": 4}
COLOUR_WORDS = sorted(set(COLOUR_HUES) | set(ACHROMATIC))


def _cell_index(h: int, w: int) -> np.ndarray:
    ys = np.arange(h) // CELL
    xs = np.arange(w) // CELL
    return (ys[:, None] * GRID_COLS + xs[None, :]).ravel()


_CELLS = _cell_index(SIZE[1], SIZE[0])
_N = GRID_ROWS * GRID_COLS
_N_LVL = 4  # gradient levels: flat, weak, medium, strong
# Each histogram is one bincount over ``cell · nbins + bin``; the cell parts are made once.
_CELLS_HUE = _CELLS * N_HUE
_CELLS_VAL = _CELLS * N_VAL
_CELLS_ORI = _CELLS * N_ORI
_CELLS_VAL_LVL = _CELLS * (N_VAL * _N_LVL)  # joint (value bin, gradient level) pixel counts
_PI32 = np.float32(np.pi)


def _hist(index: np.ndarray, weights: np.ndarray | None, nbins: int) -> np.ndarray:
    """Per-cell histogram ``[N, nbins]`` from ``cell · nbins + bin`` indices (``weights=None``
    counts pixels). ``np.bincount`` adds each bin's weights in pixel order."""
    return np.bincount(index, weights=weights, minlength=_N * nbins).reshape(_N, nbins)


# Chroma weight = f(saturation) · g(value), as a table over both uint8 values: [v · 256 + s]
_U8 = np.arange(256, dtype=np.float64) / 255.0
_CHROMA_S = np.clip((_U8 - 0.15) / 0.35, 0, 1)
_CHROMA_V = np.clip((_U8 - 0.12) / 0.2, 0, 1)
_CHROMA_VS = (_CHROMA_S[None, :] * _CHROMA_V[:, None]).ravel()
# Bins of uint8 HSV values in uint8 arithmetic: hue ⌊h / 10⌋ (20° bins of OpenCV's [0, 180) hue),
# value min(⌊v / 51⌋, 4) = min(⌊v / 255 · 5⌋, 4); the achromatic bins are the value bins.
_HUE_DIV, _VAL_DIV = 180 // N_HUE, 255 // N_VAL
assert N_ACHRO == N_VAL


def _fit(rgb: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` → ``[192, 256, 3]``, area-averaged.

    A frame twice the size or more is first halved (an exact 2 × 2 mean, OpenCV's fast path) for
    as long as the half still covers 90 % of the target in both directions; only the last, small
    step is a general resize. OpenCV's area resize at a fractional ratio is slow: a 640 × 360 frame
    took 0.93 ms straight to the target, a third of the encoder's time, and 0.1 ms halved first.
    """
    tw, th = SIZE
    while rgb.shape[1] // 2 >= 0.9 * tw and rgb.shape[0] // 2 >= 0.9 * th:
        h2, w2 = rgb.shape[0] // 2, rgb.shape[1] // 2
        rgb = cv2.resize(rgb[:2 * h2, :2 * w2], (w2, h2), interpolation=cv2.INTER_AREA)
    return cv2.resize(rgb, SIZE, interpolation=cv2.INTER_AREA)


def _hellinger(h: np.ndarray) -> np.ndarray:
    s = h.sum(axis=-1, keepdims=True)
    return np.sqrt(h / np.maximum(s, 1e-9))


def colour_name_map(rgb: np.ndarray) -> np.ndarray:
    """Name every pixel's colour: ``[H, W, 3]`` uint8 RGB → ``[H, W]`` indices into COLOUR_NAMES."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    h = hsv[..., 0].astype(np.int16)
    s = hsv[..., 1].astype(np.int16)
    v = hsv[..., 2].astype(np.int16)
    out = np.full(h.shape, COLOUR_NAMES.index("gray"), np.uint8)
    chroma = (s >= 60) & (v >= 50)
    out[~chroma & (v >= 185)] = COLOUR_NAMES.index("white")
    out[v < 50] = COLOUR_NAMES.index("black")
    for name, ranges in COLOUR_HUES.items():
        if name == "brown":
            continue
        sel = np.zeros(h.shape, bool)
        for lo, hi in ranges:
            sel |= (h >= lo) & (h < hi)
        out[chroma & sel] = COLOUR_NAMES.index(name)
    # brown is dark, less saturated orange; dimming the lights lowers V but keeps S
    orange = out == COLOUR_NAMES.index("orange")
    out[orange & ((v < 120) | ((s < 200) & (v < 190)))] = COLOUR_NAMES.index("brown")
    red = out == COLOUR_NAMES.index("red")
    out[red & (s < 130) & (v >= 170)] = COLOUR_NAMES.index("pink")
    return out


COLOUR_NAMES = ["red", "orange", "brown", "yellow", "green", "cyan", "blue", "purple", "pink",
                "black", "gray", "white"]


def dominant_colour(rgb: np.ndarray, mask: np.ndarray | None = None) -> str | None:
    """The most frequent colour name among the (masked) pixels, or None when there are none."""
    names = colour_name_map(rgb)
    sel = names[mask] if mask is not None else names.ravel()
    if sel.size == 0:
        return None
    counts = np.bincount(sel, minlength=len(COLOUR_NAMES))
    return COLOUR_NAMES[int(counts.argmax())]


def describe_person(crop: np.ndarray, mask: np.ndarray | None = None) -> str:
    """``"person in red top and blue trousers"`` from the colours of the upper and lower body.

    ``crop`` ``[h, w, 3]`` RGB of the subject's box, ``mask`` ``[h, w]`` bool foreground (or None:
    the central part of the box is used). The head (top ~18 %) and feet (bottom ~8 %) are skipped.
    """
    h, w = crop.shape[:2]
    if h < 8 or w < 4:
        return "person"
    if mask is None or mask.sum() < 0.1 * h * w:
        mask = np.zeros((h, w), bool)
        mask[:, w // 5: w - w // 5] = True
    top = slice(int(0.20 * h), int(0.52 * h))
    bottom = slice(int(0.58 * h), int(0.92 * h))
    up = dominant_colour(crop[top], mask[top])
    low = dominant_colour(crop[bottom], mask[bottom])
    if up and low:
        return f"person in {up} top and {low} trousers"
    return f"person in {up or low}" if (up or low) else "person"


class ClassicEncoder:
    """Colour/texture grid descriptors as visual tokens (see the module docstring)."""

    name = "classic"
    dim = DIM
    tokens_per_frame = _N
    # Histogram tokens of different content still have cosines around 0.9, so the memory should
    # call a token novel sooner than with CLIP's tokens (measured on samples/lobby.mp4: 0.2 used
    # 25 slots for the whole video, 0.05 used 115).
    novelty_threshold = 0.05
    # Global vectors of different views of one room still reach cosines of ~0.9 (0.66–0.81 between
    # rooms, ≥ 0.99 in one view with people moving): a new segment shares the last one's thumbnail
    # only above this.
    scene_threshold = 0.98

    def config(self) -> dict:
        return {"name": self.name, "dim": self.dim, "tokens_per_frame": self.tokens_per_frame,
                "grid": [GRID_ROWS, GRID_COLS], "version": 1}

    def _tokens(self, rgb: np.ndarray) -> np.ndarray:
        img = _fit(rgb)
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hue, _, val = (c.ravel() for c in cv2.split(hsv))
        # (s, v) of every pixel read as one little-endian uint16 v · 256 + s: one table lookup
        sv = np.ndarray((hue.size,), dtype="<u2", buffer=hsv, offset=1, strides=(3,))
        chroma = np.take(_CHROMA_VS, sv)
        val_bin = np.minimum(val // _VAL_DIV, N_VAL - 1)
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3).ravel()
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3).ravel()
        mag = np.sqrt(gx * gx + gy * gy)  # float32: bincount widens the weights to float64 exactly
        strong = np.flatnonzero(mag > 40.0)  # only strong gradients vote for an orientation
        # orientation bin ⌊(atan2 mod π) / π · 8⌋ mod 8 in float32; on atan2's [-π, π] "mod π" is
        # "+ π below 0", and cheaper (the same bin for every float32 there); & 7 is mod 8
        ori = np.arctan2(np.take(gy, strong), np.take(gx, strong))
        np.add(ori, _PI32, out=ori, where=ori < 0)
        ori /= _PI32
        ori *= N_ORI
        ori_h = _hist(np.take(_CELLS_ORI, strong) + (ori.astype(np.intp) & (N_ORI - 1)),
                      np.take(mag, strong), N_ORI)
        level = (mag >= 40.0).view(np.uint8)  # flat, weak, medium, strong
        level += mag >= 120.0
        level += mag >= 300.0
        # value and level histograms are both plain counts: one joint count, summed exactly
        joint = _hist(_CELLS_VAL_LVL + (val_bin * _N_LVL + level), None, N_VAL * _N_LVL)
        joint = joint.reshape(_N, N_VAL, _N_LVL)
        blocks = [
            _hist(_CELLS_HUE + np.minimum(hue // _HUE_DIV, N_HUE - 1), chroma, N_HUE),
            _hist(_CELLS_VAL + val_bin, 1.0 - chroma, N_ACHRO),
            joint.sum(axis=2).astype(np.float64),
            np.concatenate([ori_h, joint.sum(axis=1) * 255.0], axis=1),
        ]
        out = np.concatenate([wt * _hellinger(b) for wt, b in zip(_WEIGHTS, blocks)], axis=1)
        return out.astype(np.float32)

    def encode_frames(self, frames: Sequence[np.ndarray]) -> list[Encoded]:
        result = []
        for rgb in frames:
            tok = l2n(torch.from_numpy(self._tokens(rgb)))
            result.append(Encoded(tokens=tok, global_=l2n(tok.mean(0))))
        return result

    def encode_image(self, rgb: np.ndarray) -> torch.Tensor:
        return self.encode_frames([rgb])[0].global_

    def encode_text(self, text: str) -> torch.Tensor | None:
        """Colour words → a ``[D]`` vector on the colour/achromatic bins; anything else → None."""
        words = [w for w in re.findall(r"[a-z]+", text.lower()) if w in COLOUR_WORDS]
        if not words:
            return None
        v = np.zeros(DIM, np.float32)
        for w in words:
            if w in ACHROMATIC:
                v[_OFF[1] + ACHROMATIC[w]] = 1.0
                continue
            for lo, hi in COLOUR_HUES[w]:
                b0, b1 = lo * N_HUE // 180, max(lo * N_HUE // 180 + 1, hi * N_HUE // 180)
                v[_OFF[0] + b0:_OFF[0] + b1] = 1.0
        return l2n(torch.from_numpy(v))

    def describe(self, crop: np.ndarray, mask: np.ndarray | None = None) -> str:
        return describe_person(crop, mask)
