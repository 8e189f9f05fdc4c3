"""Deterministic synthetic scenes: person-like figures walking through procedurally drawn rooms.

The generator gives the pipeline, its tests and its benchmarks video with an exact ground truth of
who entered and who left the frame, and when. A :class:`Scene` holds everything that decides the
pixels (size, frame rate, seed, background styles, scene cuts, lighting ramps, sensor noise, camera
jitter and the :class:`Figure` s with their paths), so rendering the same scene twice gives the same
frames bit for bit, and :func:`ground_truth` is computed from the geometry alone (no rendering).

Coordinates are normalised: ``x`` runs 0 (left edge) .. 1 (right edge) and may go outside that
range for a figure that is off-screen; ``y`` runs 0 (top) .. 1 (bottom) and is where the figure's
feet touch the floor. Figures shrink towards ``Scene.horizon`` (perspective) and are drawn in ``y``
order, so the one nearer the camera occludes the one behind it.

Typical use::

    from streamvid import synth

    scene = synth.lobby_scene()
    synth.write_video("samples/lobby.mp4", scene)
    gt = synth.ground_truth(scene)          # {"events": [{"t": 4.0, "event": "entered", ...}, ...]}
    for t, rgb in synth.render(synth.simple_scene("crossing")):
        ...
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "BACKGROUND_STYLES",
    "COLOURS",
    "Figure",
    "Scene",
    "background_at",
    "crossing_scene",
    "cut_scene",
    "empty_scene",
    "figure_box",
    "figure_boxes",
    "gain_at",
    "ground_truth",
    "lighting_scene",
    "lobby_scene",
    "render",
    "remux",
    "render_frame",
    "shot_index",
    "simple_scene",
    "standing_scene",
    "story_scene",
    "visible_fraction",
    "write_video",
]

logger = logging.getLogger(__name__)

#: Clothing palette: colour name -> RGB. Figures name their colours from this table.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 32, 36),
    "green": (36, 150, 64),
    "blue": (36, 72, 196),
    "yellow": (236, 206, 40),
    "white": (236, 236, 232),
    "black": (26, 26, 30),
    "gray": (128, 128, 132),
    "orange": (238, 122, 28),
    "purple": (118, 48, 152),
    "brown": (112, 70, 38),
    "pink": (236, 132, 172),
}

#: Background styles :func:`render` can draw.
BACKGROUND_STYLES: tuple[str, ...] = ("lobby", "street", "office")

_SKIN = ((224, 172, 140), (198, 134, 100), (141, 85, 60), (236, 196, 164), (172, 112, 80))
_HAIR = ((40, 28, 20), (90, 60, 30), (20, 18, 18), (150, 110, 60), (70, 40, 24), (110, 110, 110))
_SHOE = (38, 34, 32)

# Body proportions, in units of the figure's height (feet at 0, top of the hair at 1).
_HALF_WIDTH = 0.16  # half width of the body box (torso + swinging arms/legs)
_HIP = 0.48
_SHOULDER = 0.80
_STRIDE = 0.55  # distance (in heights) covered by one full walking cycle (two steps)
_LEG_SWING = 0.30  # radians
_ARM_SWING = 0.30  # radians
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


# ----------------------------------------------------------------------------------------------
# Scene description
# ----------------------------------------------------------------------------------------------


@dataclass
class Figure:
    """A person-like figure that follows a piecewise-linear path.

    Attributes:
        id: Unique id within its scene (reported as ``figure`` in the ground truth).
        top: Colour name (a key of :data:`COLOURS`) of the top and sleeves.
        bottom: Colour name of the trousers.
        path: Waypoints ``[(t, x, y), ...]`` in seconds and normalised frame coordinates; ``(x, y)``
            is the point between the feet. Before the first waypoint the figure waits at the first
            one, after the last it waits at the last; between two waypoints at the same place it
            stands still, otherwise it walks (legs and arms swing).
        height: Height as a fraction of the frame height when the feet are at the bottom edge
            (``y = 1``); further up the figure is smaller, shrinking to nothing at the horizon.
        scene: Index of the shot (0 = before the first cut, ``i`` = after the ``i``-th cut) that the
            figure belongs to; it is only drawn during that shot. ``None``: drawn in every shot.
    """

    id: int
    top: str
    bottom: str
    path: list[tuple[float, float, float]]
    height: float = 0.55
    scene: int | None = None

    def __post_init__(self) -> None:
        for name in (self.top, self.bottom):
            if name not in COLOURS:
                raise ValueError(f"unknown colour {name!r}; choose from {sorted(COLOURS)}")
        if not self.path:
            raise ValueError(f"figure {self.id}: empty path")
        self.path = sorted((float(t), float(x), float(y)) for t, x, y in self.path)
        if self.height <= 0:
            raise ValueError(f"figure {self.id}: height must be positive")

    @property
    def description(self) -> str:
        """Words for the clothing, e.g. ``"person in red top and blue trousers"``."""
        return f"person in {self.top} top and {self.bottom} trousers"

    def position(self, t: float) -> tuple[float, float]:
        """Normalised ``(x, y)`` of the feet at time ``t`` (linear between waypoints)."""
        p = self.path
        if t <= p[0][0]:
            return p[0][1], p[0][2]
        for (t0, x0, y0), (t1, x1, y1) in zip(p, p[1:], strict=False):
            if t <= t1:
                a = 0.0 if t1 <= t0 else (t - t0) / (t1 - t0)
                return x0 + a * (x1 - x0), y0 + a * (y1 - y0)
        return p[-1][1], p[-1][2]


@dataclass
class Scene:
    """Everything that decides a synthetic video.

    Attributes:
        width, height: Frame size in pixels (even numbers, for yuv420p).
        fps: Frames per second; frame ``i`` is at ``t = i / fps``.
        duration: Seconds; the video has ``round(duration * fps)`` frames.
        seed: Seed of every random choice (background details, noise, jitter).
        backgrounds: Background styles (see :data:`BACKGROUND_STYLES`); index 0 is shown first.
        cuts: ``[(t, background_index)]``: at ``t`` the view switches instantly to that background
            (a scene cut). Times must be inside ``(0, duration)``.
        lighting: ``[(t0, t1, gain)]``: global brightness ramps linearly from the gain in effect at
            ``t0`` (1.0 at the start) to ``gain`` at ``t1`` and stays there.
        noise_sigma: Standard deviation of per-pixel Gaussian sensor noise (0..255 scale), fresh
            for every frame.
        jitter_px: Each frame the whole picture is shifted by a random integer in
            ``[-jitter_px, jitter_px]`` in x and in y (border filled by edge replication).
        figures: The people.
        name: Used for the ``video`` field of the ground truth (``f"{name}.mp4"``).
        horizon: Normalised y of the horizon: figures standing there would have zero height.
        repaints: ``[(background_index, (x0, y0, x1, y1), colour)]``: that background is drawn
            with the normalised box painted in a colour of :data:`COLOURS` (its shading kept) —
            a room that looks different when the story returns to it (list the same style twice
            in ``backgrounds``, and repaint one of them).
    """

    width: int = 320
    height: int = 240
    fps: float = 10.0
    duration: float = 5.0
    seed: int = 0
    backgrounds: list[str] = field(default_factory=lambda: ["lobby"])
    cuts: list[tuple[float, int]] = field(default_factory=list)
    lighting: list[tuple[float, float, float]] = field(default_factory=list)
    noise_sigma: float = 0.0
    jitter_px: int = 0
    figures: list[Figure] = field(default_factory=list)
    name: str = "synthetic"
    horizon: float = 0.25
    repaints: list[tuple[int, tuple[float, float, float, float], str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ValueError(f"frame size must be positive and even, got {self.width}x{self.height}")
        if self.fps <= 0 or self.duration <= 0:
            raise ValueError("fps and duration must be positive")
        if not self.backgrounds:
            raise ValueError("at least one background is needed")
        for style in self.backgrounds:
            if style not in BACKGROUND_STYLES:
                raise ValueError(f"unknown background {style!r}; choose from {BACKGROUND_STYLES}")
        self.cuts = sorted((float(t), int(i)) for t, i in self.cuts)
        for t, i in self.cuts:
            if not 0 < t < self.duration:
                raise ValueError(f"cut at {t} s is outside (0, {self.duration})")
            if not 0 <= i < len(self.backgrounds):
                raise ValueError(f"cut to background {i}, but there are {len(self.backgrounds)}")
        self.lighting = sorted((float(a), float(b), float(g)) for a, b, g in self.lighting)
        for t0, t1, g in self.lighting:
            if t1 < t0 or g < 0:
                raise ValueError(f"bad lighting ramp {(t0, t1, g)}")
        ids = [f.id for f in self.figures]
        if len(set(ids)) != len(ids):
            raise ValueError(f"figure ids must be unique, got {ids}")
        if self.noise_sigma < 0 or self.jitter_px < 0:
            raise ValueError("noise_sigma and jitter_px must be >= 0")
        if not 0 <= self.horizon < 1:
            raise ValueError("horizon must be in [0, 1)")
        for i, box, colour in self.repaints:
            if not 0 <= i < len(self.backgrounds) or colour not in COLOURS or len(box) != 4:
                raise ValueError(f"bad repaint {(i, box, colour)}")

    @property
    def n_frames(self) -> int:
        """Number of frames: ``round(duration * fps)``."""
        return max(1, int(round(self.duration * self.fps)))

    def frame_time(self, index: int) -> float:
        """Presentation time of frame ``index`` in seconds."""
        return index / self.fps


# ----------------------------------------------------------------------------------------------
# Geometry (shared by the renderer and the ground truth)
# ----------------------------------------------------------------------------------------------


def shot_index(scene: Scene, t: float) -> int:
    """Index of the shot at time ``t``: 0 before the first cut, ``i`` after the ``i``-th cut."""
    return sum(1 for ct, _ in scene.cuts if ct <= t + 1e-9)


def background_at(scene: Scene, t: float) -> int:
    """Index into ``scene.backgrounds`` of the background shown at time ``t``."""
    k = shot_index(scene, t)
    return 0 if k == 0 else scene.cuts[k - 1][1]


def gain_at(scene: Scene, t: float) -> float:
    """Global brightness gain at time ``t`` (1.0 unless a lighting ramp changed it)."""
    gain = 1.0
    for t0, t1, g in scene.lighting:
        if t >= t1:
            gain = g
        elif t > t0:
            return gain + (g - gain) * (t - t0) / (t1 - t0)
        else:
            break
    return gain


def _active(scene: Scene, fig: Figure, t: float) -> bool:
    return fig.scene is None or fig.scene == shot_index(scene, t)


def _height_px(scene: Scene, fig: Figure, y: float) -> float:
    depth = (y - scene.horizon) / (1.0 - scene.horizon)
    return max(fig.height * depth, 0.02) * scene.height


def figure_box(scene: Scene, fig: Figure, t: float) -> tuple[float, float, float, float]:
    """Body box ``(x, y, w, h)`` in pixels (may extend outside the frame) at time ``t``.

    Camera jitter is not included: the box is where the figure stands in the nominal view.
    """
    x, y = fig.position(t)
    h = _height_px(scene, fig, y)
    cx, fy = x * scene.width, y * scene.height
    return cx - _HALF_WIDTH * h, fy - h, 2 * _HALF_WIDTH * h, h


def visible_fraction(scene: Scene, fig: Figure, t: float) -> float:
    """Fraction of the figure's body box inside the frame at ``t`` (0 when not in this shot)."""
    if not _active(scene, fig, t):
        return 0.0
    x, y, w, h = figure_box(scene, fig, t)
    iw = max(0.0, min(x + w, scene.width) - max(x, 0.0))
    ih = max(0.0, min(y + h, scene.height) - max(y, 0.0))
    return iw * ih / (w * h)


def figure_boxes(scene: Scene, t: float) -> dict[int, tuple[int, int, int, int]]:
    """Integer boxes ``{figure id: (x, y, w, h)}``, clipped to the frame, of figures in view at ``t``.

    A figure counts as in view when at least half of its body box is inside the frame (the same rule
    as the entry/exit ground truth).
    """
    out: dict[int, tuple[int, int, int, int]] = {}
    for fig in scene.figures:
        if visible_fraction(scene, fig, t) < 0.5 - 1e-9:
            continue
        x, y, w, h = figure_box(scene, fig, t)
        x0, y0 = max(0, int(math.floor(x))), max(0, int(math.floor(y)))
        x1 = min(scene.width, int(math.ceil(x + w)))
        y1 = min(scene.height, int(math.ceil(y + h)))
        out[fig.id] = (x0, y0, x1 - x0, y1 - y0)
    return out


@dataclass
class _Pose:
    cx: float  # pixels
    fy: float  # pixels
    h: float  # pixels
    phase: float  # walking phase, radians
    moving: bool
    facing: int  # +1 right, -1 left


def _pose(scene: Scene, fig: Figure, t: float) -> _Pose:
    W, H = scene.width, scene.height
    p = fig.path
    x, y = fig.position(t)
    h = _height_px(scene, fig, y)
    dist = 0.0  # pixel distance walked so far
    moving = False
    facing = 0
    first_facing = 0
    for (t0, x0, y0), (t1, x1, y1) in zip(p, p[1:], strict=False):
        seg = math.hypot((x1 - x0) * W, (y1 - y0) * H)
        dx = x1 - x0
        if seg > 1e-6 and abs(dx) * W > 1e-6 and first_facing == 0:
            first_facing = 1 if dx > 0 else -1
        if t1 <= t:
            dist += seg
            if abs(dx) * W > 1e-6:
                facing = 1 if dx > 0 else -1
            continue
        if t > t0 and t1 > t0:
            dist += seg * (t - t0) / (t1 - t0)
            if seg > 1e-6:
                moving = True
                if abs(dx) * W > 1e-6:
                    facing = 1 if dx > 0 else -1
        break
    if facing == 0:
        facing = first_facing or 1
    phase = 2 * math.pi * dist / (_STRIDE * max(h, 1.0))
    return _Pose(x * W, y * H, h, phase, moving, facing)


# ----------------------------------------------------------------------------------------------
# Drawing helpers (RGB uint8 images, sub-pixel anti-aliased primitives)
# ----------------------------------------------------------------------------------------------


def _p(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def _col(c: Sequence[float], k: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, round(v * k)))) for v in c)  # type: ignore[return-value]


def _poly(img: np.ndarray, pts: Sequence[tuple[float, float]], colour: Sequence[float]) -> None:
    arr = np.array([_p(x, y) for x, y in pts], dtype=np.int32)
    cv2.fillPoly(img, [arr], _col(colour), cv2.LINE_AA, _SHIFT)


def _circle(img: np.ndarray, c: tuple[float, float], r: float, colour: Sequence[float]) -> None:
    cv2.circle(img, _p(*c), max(1, int(round(r * _ONE))), _col(colour), -1, cv2.LINE_AA, _SHIFT)


def _ellipse(
    img: np.ndarray,
    c: tuple[float, float],
    axes: tuple[float, float],
    colour: Sequence[float],
    angle: float = 0.0,
    start: float = 0.0,
    end: float = 360.0,
    thickness: int = -1,
) -> None:
    ax = (max(1, int(round(axes[0] * _ONE))), max(1, int(round(axes[1] * _ONE))))
    cv2.ellipse(img, _p(*c), ax, angle, start, end, _col(colour), thickness, cv2.LINE_AA, _SHIFT)


def _limb(
    img: np.ndarray,
    a: tuple[float, float],
    b: tuple[float, float],
    ra: float,
    rb: float,
    colour: Sequence[float],
) -> None:
    """A tapered capsule from ``a`` (radius ``ra``) to ``b`` (radius ``rb``)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = math.hypot(dx, dy)
    if n > 1e-6:
        nx, ny = -dy / n, dx / n
        _poly(
            img,
            [
                (a[0] + nx * ra, a[1] + ny * ra),
                (b[0] + nx * rb, b[1] + ny * rb),
                (b[0] - nx * rb, b[1] - ny * rb),
                (a[0] - nx * ra, a[1] - ny * ra),
            ],
            colour,
        )
    _circle(img, a, ra, colour)
    _circle(img, b, rb, colour)


def _rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour: Sequence[float]) -> None:
    _poly(img, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], colour)


def _line(
    img: np.ndarray,
    a: tuple[float, float],
    b: tuple[float, float],
    colour: Sequence[float],
    thickness: int = 1,
) -> None:
    cv2.line(img, _p(*a), _p(*b), _col(colour), max(1, thickness), cv2.LINE_AA, _SHIFT)


def _soft_shadow(img: np.ndarray, cx: float, fy: float, h: float, strength: float = 0.45) -> None:
    """Darken an ellipse under the feet, blurred so its edge is soft."""
    H, W = img.shape[:2]
    rx, ry = 0.24 * h, 0.05 * h
    pad = int(math.ceil(0.08 * h)) + 2
    x0, x1 = int(cx - rx) - pad, int(cx + rx) + pad + 1
    y0, y1 = int(fy - ry) - pad, int(fy + ry) + pad + 1
    cx0, cx1, cy0, cy1 = max(x0, 0), min(x1, W), max(y0, 0), min(y1, H)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.float32)
    _ellipse(mask, (cx + 0.04 * h - x0, fy - y0), (rx, ry), (1.0, 1.0, 1.0))
    sigma = max(0.6, 0.03 * h)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    m = mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0, None]
    roi = img[cy0:cy1, cx0:cx1].astype(np.float32)
    img[cy0:cy1, cx0:cx1] = (roi * (1.0 - strength * m) + 0.5).astype(np.uint8)


def _draw_figure(img: np.ndarray, fig: Figure, pose: _Pose, seed: int) -> None:
    """Draw one person: shadow, legs, shoes, torso with arms, neck, head with hair."""
    h, cx, fy, d = pose.h, pose.cx, pose.fy, pose.facing
    if h < 4:
        return
    top, bottom = COLOURS[fig.top], COLOURS[fig.bottom]
    pick = zlib.crc32(f"{seed}:{fig.id}".encode())
    skin = _SKIN[pick % len(_SKIN)]
    hair = _HAIR[(pick // 7) % len(_HAIR)]

    s = math.sin(pose.phase) if pose.moving else 0.0
    bob = 0.012 * h * abs(math.cos(pose.phase)) if pose.moving else 0.0
    base = fy - bob  # the body rises a little when the legs pass each other

    _soft_shadow(img, cx, fy, h)

    hip_y = base - _HIP * h
    leg_len = _HIP * h
    leg_r0, leg_r1 = 0.050 * h, 0.034 * h

    def leg(side: float, angle: float, shade: float) -> None:
        hx = cx + side * 0.045 * h
        fx = hx + d * leg_len * math.sin(angle)
        fyy = hip_y + leg_len * math.cos(angle)
        # a little knee bend on the leg that swings backwards
        kx = (hx + fx) / 2 + d * 0.02 * h * max(0.0, -math.sin(angle) * 3)
        ky = (hip_y + fyy) / 2
        _limb(img, (hx, hip_y), (kx, ky), leg_r0, 0.040 * h, _col(bottom, shade))
        _limb(img, (kx, ky), (fx, fyy - 0.02 * h), 0.040 * h, leg_r1, _col(bottom, shade))
        _ellipse(img, (fx + d * 0.03 * h, fyy - 0.018 * h), (0.058 * h, 0.024 * h), _col(_SHOE, shade))

    def arm(side: float, angle: float, shade: float) -> None:
        sx, sy = cx + side * 0.115 * h, base - (_SHOULDER - 0.025) * h
        out = 0.06 * side  # arms hang slightly outwards
        ex = sx + 0.17 * h * math.sin(d * angle + out)
        ey = sy + 0.17 * h * math.cos(angle)
        fa = angle * 1.35  # forearm swings a little further
        hx = ex + 0.16 * h * math.sin(d * fa + out)
        hy = ey + 0.16 * h * math.cos(fa)
        sleeve = _col(top, shade)
        _limb(img, (sx, sy), (ex, ey), 0.036 * h, 0.031 * h, sleeve)
        _limb(img, (ex, ey), (hx, hy), 0.031 * h, 0.026 * h, sleeve)
        _circle(img, (hx + d * 0.005 * h, hy + 0.022 * h), 0.028 * h, _col(skin, shade))

    # far side first, then near side over it
    arm(-d, -_ARM_SWING * s, 0.78)
    leg(-d * 1.0, -_LEG_SWING * s, 0.80)
    leg(d * 1.0, _LEG_SWING * s, 1.0)

    # pelvis / trouser top joins the legs under the torso
    _poly(
        img,
        [
            (cx - 0.100 * h, base - 0.53 * h),
            (cx + 0.100 * h, base - 0.53 * h),
            (cx + 0.090 * h, hip_y + 0.03 * h),
            (cx - 0.090 * h, hip_y + 0.03 * h),
        ],
        bottom,
    )
    # torso: shoulders wider than the waist, rounded shoulders, a darker side for volume
    sh_y, waist_y = base - _SHOULDER * h, base - 0.50 * h
    torso = [
        (cx - 0.125 * h, sh_y + 0.02 * h),
        (cx - 0.090 * h, sh_y),
        (cx + 0.090 * h, sh_y),
        (cx + 0.125 * h, sh_y + 0.02 * h),
        (cx + 0.100 * h, waist_y),
        (cx - 0.100 * h, waist_y),
    ]
    _poly(img, torso, top)
    _circle(img, (cx - 0.090 * h, sh_y + 0.035 * h), 0.038 * h, top)
    _circle(img, (cx + 0.090 * h, sh_y + 0.035 * h), 0.038 * h, top)
    dark = -d  # the side away from the walking direction is in shade
    _poly(
        img,
        [
            (cx + dark * 0.060 * h, sh_y + 0.01 * h),
            (cx + dark * 0.120 * h, sh_y + 0.025 * h),
            (cx + dark * 0.100 * h, waist_y),
            (cx + dark * 0.055 * h, waist_y),
        ],
        _col(top, 0.82),
    )
    # belt line
    _line(
        img, (cx - 0.098 * h, waist_y), (cx + 0.098 * h, waist_y), _col(bottom, 0.6), max(1, int(0.012 * h))
    )

    # neck and head
    _rect(img, cx - 0.025 * h, sh_y - 0.05 * h, cx + 0.025 * h, sh_y + 0.01 * h, _col(skin, 0.9))
    head_c = (cx + d * 0.008 * h, base - 0.905 * h)
    _ellipse(img, head_c, (0.056 * h, 0.070 * h), skin)
    # hair: a cap over the top and the back of the head
    _ellipse(
        img, (head_c[0] - d * 0.006 * h, head_c[1] - 0.012 * h), (0.060 * h, 0.064 * h), hair, 0, 180, 360
    )
    _ellipse(
        img,
        (head_c[0] - d * 0.030 * h, head_c[1] + 0.004 * h),
        (0.030 * h, 0.052 * h),
        hair,
    )
    # near arm over the torso
    arm(d, _ARM_SWING * s, 1.0)


# ----------------------------------------------------------------------------------------------
# Backgrounds
# ----------------------------------------------------------------------------------------------


def _texture(rng: np.random.Generator, h: int, w: int, coarse: float, fine: float) -> np.ndarray:
    """Static texture: blurred low-frequency blotches plus fine grain, float32 [h, w, 1]."""
    gh, gw = max(2, h // 12), max(2, w // 12)
    low = cv2.resize(rng.standard_normal((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    grain = rng.standard_normal((h, w)).astype(np.float32)
    return (low * coarse + grain * fine)[..., None]


def _apply_texture(img: np.ndarray, tex: np.ndarray, y0: int, y1: int) -> None:
    part = img[y0:y1].astype(np.float32) + tex[y0:y1]
    img[y0:y1] = np.clip(part + 0.5, 0, 255).astype(np.uint8)


def _perspective_floor(
    img: np.ndarray,
    rng: np.random.Generator,
    y_top: float,
    horizon: float,
    colours: Sequence[Sequence[float]],
    grout: Sequence[float],
    n_cols: int,
    depth_step: float,
    jitter: float = 6.0,
) -> None:
    """Tiles on the floor below ``y_top`` (pixels), converging to a vanishing point at the horizon."""
    H, W = img.shape[:2]
    vx, vy = W * (0.5 + rng.uniform(-0.05, 0.05)), horizon
    _rect(img, 0, y_top, W, H, colours[0])
    # rows: equally spaced in depth z ~ 1 / (y - vy)
    rows = [y_top]
    z = 1.0 / max(y_top - vy, 1e-3)
    while rows[-1] < H:
        z_next = z / (1.0 + depth_step)
        y = vy + 1.0 / z_next
        rows.append(y)
        z = z_next
    # columns: lines from the vanishing point through evenly spaced points on the bottom edge
    span = W * 2.4
    xs_bottom = [vx + (j - n_cols / 2) * span / n_cols for j in range(n_cols + 1)]

    def col_x(j: int, y: float) -> float:
        return vx + (xs_bottom[j] - vx) * (y - vy) / (H - vy)

    for r in range(len(rows) - 1):
        ya, yb = rows[r], rows[r + 1]
        for j in range(n_cols):
            c = colours[(r + j) % len(colours)]
            c = _col(c, 1.0 + rng.uniform(-jitter, jitter) / 255.0)
            _poly(
                img,
                [(col_x(j, ya), ya), (col_x(j + 1, ya), ya), (col_x(j + 1, yb), yb), (col_x(j, yb), yb)],
                c,
            )
    for y in rows:
        _line(img, (0, y), (W, y), grout)
    for j in range(n_cols + 1):
        _line(img, (col_x(j, y_top), y_top), (col_x(j, H), H), grout)


def _ceiling_lights(img: np.ndarray, y0: float, y1: float, n: int, colour: Sequence[float]) -> None:
    W = img.shape[1]
    for i in range(n):
        cx = (i + 0.5) * W / n
        _rect(img, cx - W * 0.05, y0, cx + W * 0.05, y1, colour)


def _poster(img: np.ndarray, rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float) -> None:
    frame = (50, 46, 42)
    _rect(img, x0, y0, x1, y1, frame)
    b = max(1.0, 0.06 * (x1 - x0))
    paper = _col((236, 232, 220), rng.uniform(0.95, 1.0))
    _rect(img, x0 + b, y0 + b, x1 - b, y1 - b, paper)
    palette = [COLOURS[k] for k in ("red", "blue", "yellow", "green", "orange", "purple")]
    # shapes are drawn into a view of the paper so they cannot spill over the frame
    ix0, iy0 = int(math.ceil(x0 + b)), int(math.ceil(y0 + b))
    ix1, iy1 = int(math.floor(x1 - b)), int(math.floor(y1 - b))
    if ix1 - ix0 < 2 or iy1 - iy0 < 2:
        return
    sub = img[iy0:iy1, ix0:ix1]
    pw, ph = ix1 - ix0, iy1 - iy0
    for _ in range(3):
        c = palette[int(rng.integers(len(palette)))]
        kind = int(rng.integers(3))
        px, py = rng.uniform(0.2, 0.8) * pw, rng.uniform(0.15, 0.65) * ph
        r = rng.uniform(0.12, 0.28) * pw
        if kind == 0:
            _circle(sub, (px, py), r, c)
        elif kind == 1:
            _rect(sub, px - r, py - r / 3, px + r, py + r / 3, c)
        else:
            _poly(sub, [(px, py - r), (px + r, py + r * 0.7), (px - r, py + r * 0.7)], c)
    # title lines
    for k in range(2):
        ty = y1 - b - (k + 1) * 0.08 * (y1 - y0)
        _line(img, (x0 + 2 * b, ty), (x0 + 2 * b + (0.6 - 0.2 * k) * (x1 - x0 - 4 * b), ty), (60, 60, 60))


def _plant(img: np.ndarray, rng: np.random.Generator, cx: float, base: float, size: float) -> None:
    pot_top = base - 0.35 * size
    _poly(
        img,
        [
            (cx - 0.22 * size, pot_top),
            (cx + 0.22 * size, pot_top),
            (cx + 0.16 * size, base),
            (cx - 0.16 * size, base),
        ],
        (168, 86, 52),
    )
    _rect(
        img, cx - 0.24 * size, pot_top - 0.05 * size, cx + 0.24 * size, pot_top + 0.02 * size, (140, 70, 44)
    )
    for _ in range(14):
        ang = rng.uniform(-150, -30)
        ln = rng.uniform(0.4, 0.8) * size
        a = math.radians(ang)
        tip = (cx + ln * math.cos(a), pot_top + ln * math.sin(a))
        mid = ((cx + tip[0]) / 2, (pot_top + tip[1]) / 2)
        g = _col((46, 120, 52), rng.uniform(0.7, 1.25))
        _ellipse(img, mid, (ln / 2, 0.07 * size), g, angle=ang)


def _door(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, glass: bool) -> None:
    frame = (70, 72, 78)
    _rect(img, x0 - 3, y0 - 3, x1 + 3, y1, frame)
    if glass:
        _rect(img, x0, y0, x1, y1, (120, 150, 170))
        for k in range(3):
            ox = x0 + (0.15 + 0.3 * k) * (x1 - x0)
            _line(
                img,
                (ox, y1 - 0.1 * (y1 - y0)),
                (ox + 0.25 * (x1 - x0), y0 + 0.1 * (y1 - y0)),
                (170, 196, 210),
                2,
            )
        mx = (x0 + x1) / 2
        _line(img, (mx, y0), (mx, y1), frame, 2)
        _rect(
            img,
            mx - 0.08 * (x1 - x0),
            (y0 + y1) / 2,
            mx - 0.03 * (x1 - x0),
            (y0 + y1) / 2 + 0.15 * (y1 - y0),
            (200, 200, 200),
        )
    else:
        _rect(img, x0, y0, x1, y1, (150, 100, 60))
        inset = 0.12 * (x1 - x0)
        _rect(img, x0 + inset, y0 + inset, x1 - inset, (y0 + y1) / 2 - inset / 2, (140, 92, 55))
        _rect(img, x0 + inset, (y0 + y1) / 2 + inset / 2, x1 - inset, y1 - inset, (140, 92, 55))
        _circle(img, (x1 - 1.4 * inset, (y0 + y1) / 2), max(1.0, 0.05 * (x1 - x0)), (210, 190, 120))


def _lobby(W: int, H: int, rng: np.random.Generator, horizon: float) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    ceil_y, floor_y = 0.07 * H, 0.55 * H
    wall = _col((222, 208, 184), rng.uniform(0.96, 1.03))
    _rect(img, 0, 0, W, ceil_y, (180, 176, 168))
    _ceiling_lights(img, 0.015 * H, 0.04 * H, 4, (252, 248, 226))
    _rect(img, 0, ceil_y, W, floor_y, wall)
    # wall panels
    for k in range(1, 8):
        x = k * W / 8 + rng.uniform(-3, 3)
        _line(img, (x, ceil_y), (x, floor_y), _col(wall, 0.93))
    _rect(img, 0, ceil_y, W, ceil_y + 0.012 * H, _col(wall, 0.8))
    # floor: polished marble tiles
    _perspective_floor(
        img,
        rng,
        floor_y,
        horizon * H,
        [(196, 190, 178), (160, 156, 150)],
        (120, 116, 110),
        n_cols=14,
        depth_step=0.32,
    )
    _rect(img, 0, floor_y - 0.018 * H, W, floor_y, (110, 96, 80))  # skirting
    # glass door on the right
    dx0 = rng.uniform(0.68, 0.74) * W
    _door(img, dx0, 0.27 * H, dx0 + 0.13 * W, floor_y - 0.018 * H, glass=True)
    _rect(img, dx0 - 0.005 * W, 0.20 * H, dx0 + 0.135 * W, 0.25 * H, (60, 64, 70))  # exit sign panel
    _rect(img, dx0 + 0.04 * W, 0.21 * H, dx0 + 0.09 * W, 0.24 * H, (40, 170, 80))
    # posters and a clock
    _poster(img, rng, 0.47 * W, 0.15 * H, 0.57 * W, 0.35 * H)
    _poster(img, rng, 0.88 * W, 0.16 * H, 0.97 * W, 0.34 * H)
    _circle(img, (0.62 * W, 0.15 * H), 0.035 * H, (60, 60, 60))
    _circle(img, (0.62 * W, 0.15 * H), 0.029 * H, (245, 245, 240))
    _line(img, (0.62 * W, 0.15 * H), (0.62 * W, 0.125 * H), (30, 30, 30))
    _line(img, (0.62 * W, 0.15 * H), (0.635 * W, 0.155 * H), (30, 30, 30))
    # reception desk: top, front with panels, a monitor and a logo strip
    x0, x1 = 0.13 * W, 0.41 * W
    _rect(img, x0 + 0.06 * W, 0.34 * H, x0 + 0.12 * W, 0.42 * H, (30, 32, 38))  # monitor
    _rect(img, x0 + 0.085 * W, 0.42 * H, x0 + 0.095 * W, 0.44 * H, (50, 50, 55))
    _poly(
        img,
        [(x0 + 0.01 * W, 0.43 * H), (x1 - 0.01 * W, 0.43 * H), (x1, 0.45 * H), (x0, 0.45 * H)],
        (214, 196, 170),
    )
    _rect(img, x0, 0.45 * H, x1, 0.60 * H, (128, 84, 50))
    for k in range(1, 5):
        x = x0 + k * (x1 - x0) / 5
        _line(img, (x, 0.46 * H), (x, 0.59 * H), (104, 66, 38))
    _rect(img, x0, 0.49 * H, x1, 0.505 * H, (200, 170, 90))
    _rect(img, x0, 0.59 * H, x1, 0.60 * H, (80, 52, 30))
    # bench on the right, plant on the left
    _rect(img, 0.86 * W, 0.52 * H, 0.99 * W, 0.555 * H, (90, 60, 40))
    _rect(img, 0.87 * W, 0.555 * H, 0.88 * W, 0.60 * H, (60, 60, 60))
    _rect(img, 0.97 * W, 0.555 * H, 0.98 * W, 0.60 * H, (60, 60, 60))
    _plant(img, rng, 0.06 * W, 0.66 * H, 0.22 * H)
    tex = _texture(rng, H, W, coarse=3.0, fine=2.0)
    _apply_texture(img, tex, 0, H)
    return img


def _street(W: int, H: int, rng: np.random.Generator, horizon: float) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    floor_y = 0.56 * H
    for y in range(int(0.2 * H)):  # sky gradient
        k = y / max(1, 0.2 * H)
        img[y] = _col((150 + 40 * k, 190 + 25 * k, 230 + 10 * k))
    # facades
    x = 0.0
    while x < W:
        bw = rng.uniform(0.22, 0.36) * W
        top = rng.uniform(0.04, 0.16) * H
        base = [(170, 90, 70), (200, 186, 160), (150, 150, 156), (186, 150, 110)][int(rng.integers(4))]
        _rect(img, x, top, x + bw, floor_y, _col(base, rng.uniform(0.9, 1.05)))
        _rect(img, x, top, x + bw, top + 0.015 * H, _col(base, 0.7))
        nx = max(2, int(bw / (0.07 * W)))
        for r in range(3):
            wy = top + 0.05 * H + r * 0.1 * H
            if wy + 0.07 * H > floor_y - 0.14 * H:
                break
            for c in range(nx):
                wx = x + (c + 0.25) * bw / nx
                _rect(img, wx - 1, wy - 1, wx + 0.5 * bw / nx + 1, wy + 0.07 * H + 1, (235, 230, 220))
                _rect(
                    img, wx, wy, wx + 0.5 * bw / nx, wy + 0.07 * H, _col((70, 90, 110), rng.uniform(0.8, 1.2))
                )
        # shop front or door at street level
        if rng.uniform() < 0.5:
            _door(img, x + 0.35 * bw, floor_y - 0.16 * H, x + 0.55 * bw, floor_y, glass=False)
        else:
            _rect(img, x + 0.1 * bw, floor_y - 0.13 * H, x + 0.9 * bw, floor_y - 0.01 * H, (90, 120, 140))
            awn = [(200, 40, 40), (40, 110, 60), (40, 70, 160)][int(rng.integers(3))]
            _poly(
                img,
                [
                    (x + 0.06 * bw, floor_y - 0.16 * H),
                    (x + 0.94 * bw, floor_y - 0.16 * H),
                    (x + 0.98 * bw, floor_y - 0.125 * H),
                    (x + 0.02 * bw, floor_y - 0.125 * H),
                ],
                awn,
            )
        x += bw
    _perspective_floor(
        img,
        rng,
        floor_y,
        horizon * H,
        [(150, 148, 144), (138, 136, 132)],
        (100, 98, 96),
        n_cols=22,
        depth_step=0.2,
    )
    _rect(img, 0, floor_y - 0.008 * H, W, floor_y + 0.004 * H, (110, 108, 104))  # building base
    # a street lamp and a tree
    lx = rng.uniform(0.25, 0.4) * W
    _rect(img, lx - 0.006 * W, 0.12 * H, lx + 0.006 * W, 0.62 * H, (50, 54, 58))
    _ellipse(img, (lx + 0.02 * W, 0.12 * H), (0.03 * W, 0.012 * H), (50, 54, 58))
    _ellipse(img, (lx + 0.025 * W, 0.135 * H), (0.015 * W, 0.008 * H), (250, 240, 190))
    tx = rng.uniform(0.75, 0.9) * W
    _rect(img, tx - 0.01 * W, 0.30 * H, tx + 0.01 * W, 0.63 * H, (90, 64, 40))
    for _ in range(10):
        _circle(
            img,
            (tx + rng.uniform(-0.07, 0.07) * W, rng.uniform(0.12, 0.3) * H),
            rng.uniform(0.04, 0.08) * H,
            _col((60, 130, 60), rng.uniform(0.75, 1.2)),
        )
    tex = _texture(rng, H, W, coarse=4.0, fine=3.0)
    _apply_texture(img, tex, 0, H)
    return img


def _office(W: int, H: int, rng: np.random.Generator, horizon: float) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    ceil_y, floor_y = 0.06 * H, 0.54 * H
    wall = _col((200, 208, 214), rng.uniform(0.96, 1.03))
    _rect(img, 0, 0, W, ceil_y, (210, 210, 206))
    _ceiling_lights(img, 0.01 * H, 0.035 * H, 3, (250, 250, 244))
    _rect(img, 0, ceil_y, W, floor_y, wall)
    # carpet (large, low-contrast carpet tiles)
    _perspective_floor(
        img,
        rng,
        floor_y,
        horizon * H,
        [(92, 100, 116), (86, 94, 110)],
        (80, 86, 100),
        n_cols=10,
        depth_step=0.45,
        jitter=3.0,
    )
    _rect(img, 0, floor_y - 0.012 * H, W, floor_y, (70, 74, 80))
    # windows with blinds
    for wx in (0.05, 0.27):
        x0, x1 = wx * W, (wx + 0.17) * W
        _rect(img, x0 - 2, 0.14 * H - 2, x1 + 2, 0.40 * H + 2, (240, 240, 240))
        _rect(img, x0, 0.14 * H, x1, 0.40 * H, (176, 206, 230))
        y = 0.14 * H
        while y < 0.30 * H:
            _line(img, (x0, y), (x1, y), (220, 220, 214))
            y += max(2.0, 0.012 * H)
    # whiteboard, door, desk with monitor and chair, plant
    _rect(img, 0.50 * W, 0.16 * H, 0.68 * W, 0.34 * H, (120, 120, 124))
    _rect(img, 0.505 * W, 0.168 * H, 0.675 * W, 0.332 * H, (246, 246, 244))
    for k in range(3):
        y = (0.2 + 0.04 * k) * H
        _line(img, (0.52 * W, y), ((0.58 + 0.03 * k) * W, y + rng.uniform(-3, 3)), (40, 80, 180))
    _door(img, 0.80 * W, 0.26 * H, 0.90 * W, floor_y - 0.012 * H, glass=False)
    dx = rng.uniform(0.1, 0.2) * W
    _rect(img, dx, 0.44 * H, dx + 0.24 * W, 0.46 * H, (200, 190, 170))
    _rect(img, dx + 0.01 * W, 0.46 * H, dx + 0.02 * W, 0.58 * H, (90, 90, 90))
    _rect(img, dx + 0.22 * W, 0.46 * H, dx + 0.23 * W, 0.58 * H, (90, 90, 90))
    _rect(img, dx + 0.08 * W, 0.35 * H, dx + 0.15 * W, 0.43 * H, (28, 30, 36))
    _rect(img, dx + 0.085 * W, 0.36 * H, dx + 0.145 * W, 0.42 * H, (60, 90, 140))
    _rect(img, dx + 0.11 * W, 0.43 * H, dx + 0.12 * W, 0.44 * H, (40, 40, 40))
    _rect(img, dx + 0.09 * W, 0.47 * H, dx + 0.15 * W, 0.52 * H, (40, 40, 46))  # chair back
    _plant(img, rng, 0.94 * W, 0.64 * H, 0.2 * H)
    tex = _texture(rng, H, W, coarse=2.5, fine=1.5)
    _apply_texture(img, tex, 0, H)
    return img


_BACKGROUND_DRAWERS = {"lobby": _lobby, "street": _street, "office": _office}


@lru_cache(maxsize=16)
def _background(style: str, width: int, height: int, seed: int, horizon: float) -> np.ndarray:
    rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(style.encode())])
    img = _BACKGROUND_DRAWERS[style](width, height, rng, horizon)
    img.setflags(write=False)
    return img


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def render_frame(scene: Scene, index: int) -> np.ndarray:
    """Render frame ``index`` (0-based) as RGB uint8 ``[H, W, 3]``; independent of other frames."""
    if not 0 <= index < scene.n_frames:
        raise IndexError(f"frame {index} outside 0..{scene.n_frames - 1}")
    t = scene.frame_time(index)
    bg = background_at(scene, t)
    style = scene.backgrounds[bg]
    img = _background(style, scene.width, scene.height, scene.seed, scene.horizon).copy()
    for i, (x0, y0, x1, y1), colour in scene.repaints:
        if i == bg:
            _repaint(img, (x0, y0, x1, y1), COLOURS[colour])

    poses = [(_pose(scene, f, t), f) for f in scene.figures if _active(scene, f, t)]
    poses.sort(key=lambda pf: (pf[0].fy, pf[1].id))  # far (higher up) first: near ones occlude them
    for pose, fig in poses:
        margin = 0.3 * pose.h
        if pose.cx + margin < 0 or pose.cx - margin > scene.width or pose.fy - pose.h > scene.height:
            continue
        _draw_figure(img, fig, pose, scene.seed)

    rng = np.random.default_rng([scene.seed & 0xFFFFFFFF, 0x5EED, index])
    j = scene.jitter_px
    if j > 0:
        dx, dy = (int(v) for v in rng.integers(-j, j + 1, size=2))
        if dx or dy:
            padded = cv2.copyMakeBorder(img, j, j, j, j, cv2.BORDER_REPLICATE)
            img = np.ascontiguousarray(padded[j - dy : j - dy + scene.height, j - dx : j - dx + scene.width])

    gain = gain_at(scene, t)
    if gain != 1.0 or scene.noise_sigma > 0:
        f = img.astype(np.float32)
        if gain != 1.0:
            f *= gain
        if scene.noise_sigma > 0:
            f += rng.standard_normal(f.shape, dtype=np.float32) * np.float32(scene.noise_sigma)
        img = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    return img


def _repaint(img: np.ndarray, box: tuple[float, float, float, float], colour: Sequence[int]) -> None:
    """Paint the normalised ``box`` of ``img`` in ``colour``, keeping its shading (luma ratio)."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = (int(round(v * n)) for v, n in zip(box, (w, h, w, h)))
    region = img[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)]
    if region.size == 0:
        return
    luma = region.astype(np.float32).mean(axis=2, keepdims=True)
    shade = luma / max(float(luma.mean()), 1.0)
    region[:] = np.clip(shade * np.asarray(colour, np.float32), 0, 255).astype(np.uint8)


def render(scene: Scene) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(t, rgb)`` for every frame; ``rgb`` is ``[H, W, 3]`` uint8 in RGB order."""
    for i in range(scene.n_frames):
        yield scene.frame_time(i), render_frame(scene, i)


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def write_video(
    path: str | Path,
    scene: Scene,
    crf: int = 23,
    codec: str = "libx264",
    preset: str = "medium",
) -> None:
    """Encode the scene to ``path`` with PyAV (yuv420p, one pts tick per frame: time base 1/fps)."""
    import av  # imported here so the rest of the module works without PyAV

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = _rate(scene.fps)
    options = {}
    if path.suffix.lower() in (".mp4", ".mov", ".m4v"):
        options["video_track_timescale"] = str(rate.numerator)  # pts stay in 1/fps ticks in the file
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = scene.width, scene.height
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / rate
        stream.codec_context.time_base = 1 / rate
        if codec in ("libx264", "libx265"):
            stream.options = {"crf": str(crf), "preset": preset}
        for i, (_, rgb) in enumerate(render(scene)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    logger.info(
        "wrote %s: %d frames %dx%d @ %s fps, %.1f KiB",
        path,
        scene.n_frames,
        scene.width,
        scene.height,
        rate,
        path.stat().st_size / 1024,
    )


# ----------------------------------------------------------------------------------------------
# Ground truth
# ----------------------------------------------------------------------------------------------


def _r(v: float, nd: int = 3) -> float:
    return round(float(v), nd)


def ground_truth(scene: Scene, video: str | None = None) -> dict:
    """Entry/exit events and the scene description, computed from the geometry (nothing rendered).

    A figure *is in view* at a frame when at least half of its body box is inside the frame. It
    ``entered`` at the first frame of a run of in-view frames and ``left`` at the last one (times are
    frame times rounded to 0.1 s). A run that starts at the first frame of the figure's shot (the
    first frame of the video, or a cut) is not an entry, and a run that lasts to the end of the shot
    is not an exit: figures never cross scene cuts.
    """
    n = scene.n_frames
    times = [scene.frame_time(i) for i in range(n)]
    shots = [shot_index(scene, t) for t in times]
    events: list[dict] = []
    figures: list[dict] = []
    for fig in scene.figures:
        # frames during which the figure exists: the whole video, or the frames of its own shot
        frames = [i for i in range(n) if fig.scene is None or shots[i] == fig.scene]
        seen = [visible_fraction(scene, fig, times[i]) >= 0.5 - 1e-9 for i in frames]
        intervals: list[list[float]] = []
        k = 0
        while k < len(frames):
            if not seen[k]:
                k += 1
                continue
            first = k
            while k + 1 < len(frames) and seen[k + 1]:
                k += 1
            last = k
            t0, t1 = times[frames[first]], times[frames[last]]
            intervals.append([_r(t0), _r(t1)])
            if first > 0:
                events.append(_event(t0, "entered", fig))
            if last < len(frames) - 1:
                events.append(_event(t1, "left", fig))
            k += 1
        figures.append(
            {
                "id": fig.id,
                "top": fig.top,
                "bottom": fig.bottom,
                "description": fig.description,
                "height": fig.height,
                "scene": fig.scene,
                "path": [[_r(t), _r(x, 4), _r(y, 4)] for t, x, y in fig.path],
                "visible": intervals,
            }
        )
    events.sort(key=lambda e: (e["t"], e["event"] != "left", e["figure"]))
    return {
        "video": video if video is not None else f"{scene.name}.mp4",
        "width": scene.width,
        "height": scene.height,
        "fps": scene.fps,
        "duration": scene.duration,
        "n_frames": n,
        "seed": scene.seed,
        "backgrounds": list(scene.backgrounds),
        "events": events,
        "figures": figures,
        "lighting": [[_r(a), _r(b), _r(g)] for a, b, g in scene.lighting],
        "cuts": [[_r(t), i] for t, i in scene.cuts],
        "noise_sigma": scene.noise_sigma,
        "jitter_px": scene.jitter_px,
    }


def _event(t: float, kind: str, fig: Figure) -> dict:
    return {"t": round(t, 1), "event": kind, "figure": fig.id, "description": fig.description}


# ----------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------


def _crossing_path(
    t_in: float, t_out: float, y0: float, y1: float, left_to_right: bool = True, margin: float = 0.12
) -> list[tuple[float, float, float]]:
    """Waypoints of a straight walk whose centre crosses one edge at ``t_in`` and the other at ``t_out``."""
    v = 1.0 / (t_out - t_in)
    dt = margin / v
    a, b = (0.0, 1.0) if left_to_right else (1.0, 0.0)
    s = 1.0 if left_to_right else -1.0
    return [
        (t_in - dt, a - s * margin, y0),
        (t_in, a, y0),
        (t_out, b, y1),
        (t_out + dt, b + s * margin, y1),
    ]


def lobby_scene(
    width: int = 640,
    height: int = 360,
    fps: float = 10.0,
    duration: float = 75.0,
    seed: int = 2024,
    noise_sigma: float = 2.5,
    jitter_px: int = 1,
) -> Scene:
    """The committed sample ``samples/lobby.mp4``: five people in a lobby, a lighting dip at 34 s.

    1. red/blue walks left to right (in ≈ 4 s, out ≈ 16 s);
    2. yellow/black comes in from the right ≈ 12 s, stands in the middle ≈ 22–37 s, leaves left ≈ 45 s;
    3. green/gray crosses left to right ≈ 30–42 s, passing in front of person 2;
    4. orange/brown comes in from the right ≈ 50 s, turns round and goes back out ≈ 62 s;
    5. purple/blue comes in from the left ≈ 60 s and is still there at the end.
    """
    figs = [
        Figure(1, "red", "blue", _crossing_path(4.0, 16.0, 0.88, 0.84), height=0.56),
        Figure(
            2,
            "yellow",
            "black",
            [
                (10.0, 1.12, 0.82),
                (12.0, 1.00, 0.82),
                (17.0, 0.70, 0.69),
                (22.0, 0.50, 0.72),
                (37.0, 0.50, 0.72),
                (40.5, 0.30, 0.84),
                (45.0, 0.00, 0.86),
                (46.8, -0.12, 0.86),
            ],
            height=0.53,
        ),
        Figure(3, "green", "gray", _crossing_path(30.0, 42.0, 0.80, 0.79), height=0.57),
        Figure(
            4,
            "orange",
            "brown",
            [
                (48.4, 1.12, 0.90),
                (50.0, 1.00, 0.89),
                (55.6, 0.58, 0.80),
                (56.4, 0.58, 0.80),
                (62.0, 1.00, 0.87),
                (63.6, 1.12, 0.88),
            ],
            height=0.55,
        ),
        Figure(
            5,
            "purple",
            "blue",
            [
                (58.4, -0.12, 0.80),
                (60.0, 0.00, 0.79),
                (66.5, 0.45, 0.66),
                (70.0, 0.45, 0.66),
                (75.0, 0.62, 0.72),
            ],
            height=0.54,
        ),
    ]
    return Scene(
        width=width,
        height=height,
        fps=fps,
        duration=duration,
        seed=seed,
        backgrounds=["lobby"],
        lighting=[(33.5, 34.5, 0.75)],
        noise_sigma=noise_sigma,
        jitter_px=jitter_px,
        figures=figs,
        name="lobby",
    )


def crossing_scene(
    width: int = 160,
    height: int = 120,
    fps: float = 10.0,
    duration: float = 4.0,
    t_in: float = 1.0,
    t_out: float = 3.0,
    left_to_right: bool = True,
    top: str = "red",
    bottom: str = "blue",
    y: float = 0.85,
    figure_height: float = 0.6,
    background: str = "lobby",
    noise_sigma: float = 0.0,
    jitter_px: int = 0,
    seed: int = 0,
) -> Scene:
    """One person crossing the frame: enters at ``t_in``, leaves at ``t_out`` (edge crossings)."""
    fig = Figure(1, top, bottom, _crossing_path(t_in, t_out, y, y, left_to_right), height=figure_height)
    return Scene(
        width,
        height,
        fps,
        duration,
        seed,
        [background],
        noise_sigma=noise_sigma,
        jitter_px=jitter_px,
        figures=[fig],
        name="crossing",
    )


def standing_scene(
    width: int = 160,
    height: int = 120,
    fps: float = 10.0,
    duration: float = 6.0,
    t_in: float = 1.0,
    stand: tuple[float, float] = (2.5, 4.0),
    t_out: float = 5.5,
    top: str = "green",
    bottom: str = "black",
    seed: int = 0,
    noise_sigma: float = 0.0,
    jitter_px: int = 0,
) -> Scene:
    """One person walks in from the left, stands still in the middle during ``stand``, walks out right."""
    y = 0.82
    v_in = 0.5 / (stand[0] - t_in)
    v_out = 0.5 / (t_out - stand[1])
    path = [
        (t_in - 0.12 / v_in, -0.12, y),
        (t_in, 0.0, y),
        (stand[0], 0.5, y),
        (stand[1], 0.5, y),
        (t_out, 1.0, y),
        (t_out + 0.12 / v_out, 1.12, y),
    ]
    fig = Figure(1, top, bottom, path, height=0.6)
    return Scene(
        width,
        height,
        fps,
        duration,
        seed,
        ["lobby"],
        noise_sigma=noise_sigma,
        jitter_px=jitter_px,
        figures=[fig],
        name="standing",
    )


def cut_scene(
    width: int = 160,
    height: int = 120,
    fps: float = 10.0,
    duration: float = 4.0,
    cut_t: float = 2.0,
    backgrounds: Sequence[str] = ("lobby", "street"),
    seed: int = 0,
    noise_sigma: float = 0.0,
) -> Scene:
    """Nobody around; the view cuts from ``backgrounds[0]`` to ``backgrounds[1]`` at ``cut_t``."""
    return Scene(
        width,
        height,
        fps,
        duration,
        seed,
        list(backgrounds),
        cuts=[(cut_t, 1)],
        noise_sigma=noise_sigma,
        name="cut",
    )


def empty_scene(
    width: int = 160,
    height: int = 120,
    fps: float = 10.0,
    duration: float = 3.0,
    background: str = "lobby",
    seed: int = 0,
    noise_sigma: float = 0.0,
    jitter_px: int = 0,
) -> Scene:
    """A static background with nobody in it (sensor noise and jitter optional)."""
    return Scene(
        width,
        height,
        fps,
        duration,
        seed,
        [background],
        noise_sigma=noise_sigma,
        jitter_px=jitter_px,
        name="empty",
    )


def lighting_scene(
    width: int = 160,
    height: int = 120,
    fps: float = 10.0,
    duration: float = 4.0,
    ramp: tuple[float, float, float] = (1.5, 2.5, 0.6),
    background: str = "lobby",
    seed: int = 0,
    noise_sigma: float = 0.0,
) -> Scene:
    """Nobody around; the lights change by the ramp ``(t0, t1, gain)``."""
    return Scene(
        width,
        height,
        fps,
        duration,
        seed,
        [background],
        lighting=[ramp],
        noise_sigma=noise_sigma,
        name="lighting",
    )


_SIMPLE = {
    "crossing": crossing_scene,
    "standing": standing_scene,
    "cut": cut_scene,
    "empty": empty_scene,
    "lighting": lighting_scene,
}


STORY_SHOT = 6.0  # seconds per shot of :func:`story_scene`
STORY_DRIFTS = ("subject", "scene")


def story_scene(
    drift: str | None = None,
    width: int = 320,
    height: int = 240,
    fps: float = 10.0,
    shot: float = STORY_SHOT,
    seed: int = 0,
    noise_sigma: float = 1.5,
) -> Scene:
    """A generated-video-like story in four shots of ``shot`` seconds, for consistency checks.

    Shot 0: the lobby, a person in red top and blue trousers standing by the door (in view from
    the first frame, swaying a little); shot 1: the street, someone walking across; shot 2: back
    in the lobby, the same person at the same place; shot 3: an office (a new scene). ``drift``:
    ``None`` (the control: shot 2 shows what shot 0 showed), ``"subject"`` (in shot 2 the person
    wears a green top) or ``"scene"`` (in shot 2 a part of the lobby's wall is painted yellow).
    The drift, when there is one, starts with shot 2, at ``2 * shot`` seconds.
    """
    if drift not in (None, *STORY_DRIFTS):
        raise ValueError(f"unknown drift {drift!r}; choose from {STORY_DRIFTS} or None")
    y = 0.86
    sway = [(k * 0.5, 0.42 + (0.006 if k % 2 else 0.0), y) for k in range(int(4 * shot / 0.5) + 1)]
    hero = Figure(1, "red", "blue", sway, height=0.62, scene=0)
    back = Figure(3, "green" if drift == "subject" else "red", "blue", sway, height=0.62, scene=2)
    walker = Figure(2, "yellow", "black", [(shot, -0.15, 0.8), (2 * shot, 1.15, 0.8)], height=0.5, scene=1)
    backgrounds = ["lobby", "street", "office", "lobby"]
    repaints = [(3, (0.70, 0.10, 0.95, 0.45), "yellow")] if drift == "scene" else []
    return Scene(
        width, height, fps, 4 * shot, seed, backgrounds,
        cuts=[(shot, 1), (2 * shot, 3 if drift == "scene" else 0), (3 * shot, 2)],
        noise_sigma=noise_sigma, figures=[hero, walker, back], name=f"story_{drift or 'control'}",
        repaints=repaints,
    )


def simple_scene(kind: str = "crossing", **kwargs: object) -> Scene:
    """Small test scenes by name: ``crossing``, ``standing``, ``cut``, ``empty`` or ``lighting``.

    Keyword arguments go to the matching constructor (:func:`crossing_scene`, ...).
    """
    try:
        make = _SIMPLE[kind]
    except KeyError:
        raise ValueError(f"unknown simple scene {kind!r}; choose from {sorted(_SIMPLE)}") from None
    return make(**kwargs)  # type: ignore[arg-type]


def remux(src: str | Path, dst: str | Path, fmt: str) -> Path:
    """Copy the video stream of ``src`` into a ``fmt`` container at ``dst`` without re-encoding
    (e.g. an MP4 into Matroska, to test what a truncated file of another container gives)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt) as out:
        s = inp.streams.video[0]
        o = out.add_stream_from_template(s)
        for p in inp.demux(s):
            if p.dts is None:  # the flush packet
                continue
            p.stream = o
            out.mux(p)
    return Path(dst)
