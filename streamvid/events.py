"""The event detector beside the memory: who entered or left the view, and cheap per-frame signals.

OpenCV only, so it runs with every encoder. Per sampled frame (``Frame.rgb``, any size):

1. **Scene checks** on a small grey image: a scene cut (the gradient structure and the colour
   histogram both change at once) or a moving camera (phase correlation shift) is a segment
   boundary: the background is learnt anew and nobody "enters" because of it.
2. **Foreground** against a running background model, made robust to
   - lighting changes: a global gain, the median ratio frame/background over background pixels,
     is folded into the background every frame;
   - camera jitter: a pixel is foreground only when it is outside the min/max envelope of the
     background over ± ``jitter_px`` pixels (plus a noise-adaptive threshold on luma and a chroma threshold);
   - sensor noise: blur, a threshold from the measured noise level, morphology, a minimum area;
   - people who stand still: the background is updated only slowly under tracked subjects.
3. **Tracking**: blobs are matched to tracks by predicted position, size and colour; tracks that
   vanish are kept a while so a person hidden by another, or standing still, keeps one identity.
4. **Events**: a track becomes an *entry* once it has been seen ``min_hits`` times, looks like a
   person (upright shape, HOG people detector when it fires) and has either come in over the
   frame border or travelled; its time is when it was first seen. A confirmed track that is lost
   for ``exit_delay`` seconds (and is not re-found) is an *exit* at the time it was last seen.
5. **Signals** for the memory's timeline: motion (foreground fraction), person (visible
   confirmed tracks), face (Haar cascade count on the upper part of the tracks in view, every
   ``face_every`` frames), brightness, scene_change.

Limits, stated plainly: subjects already in view when the video starts (or after a cut) are
learnt as background, so they produce neither an entry nor, later, an exit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from streamvid.types import CHANNELS, Detection, Frame

log = logging.getLogger(__name__)

_FACE_WINDOW = 24  # pixels: the frontal-face Haar cascade's window, the smallest face it finds

@dataclass
class DetectorConfig:
    proc_width: int = 320  # analysis width in pixels
    warmup: int = 2  # frames that only learn the background (after start or a boundary)
    bg_rate: float = 0.10  # background learning rate on background pixels
    bg_rate_fg: float = 0.004  # ... under foreground / tracked subjects (people standing still)
    bg_rate_ghost: float = 0.35  # ... under unconfirmed stationary blobs (ghosts, shadows)
    min_threshold: float = 9.0  # luma difference floor (0-255, after blur)
    noise_k: float = 4.0  # threshold = max(min_threshold, noise_k * noise sigma)
    chroma_threshold: float = 14.0
    min_area_frac: float = 0.0012  # blobs smaller than this fraction of the frame are noise
    motion_on: float = 0.004  # foreground fraction that starts a "motion" period ...
    motion_off: float = 0.002  # ... and the one that ends it
    global_change_frac: float = 0.45  # more foreground than this: lighting jump / unstable view
    cut_edge_corr: float = 0.45  # edge-map correlation below this ...
    cut_hist_dist: float = 0.35  # ... together with a colour histogram distance above this = cut
    jitter_px: int = 2  # camera shake tolerated (analysis pixels): the background envelope radius
    camera_shift_px: float = 2.5  # phase-correlation shift (analysis pixels) = moving camera
    min_hits: int = 3  # sightings before a track can be an entry
    min_person_score: float = 0.45
    travel_frac: float = 0.6  # travel (in box heights) that makes an interior-born track an entry
    border_frac: float = 0.04  # a box this close to the frame edge "touches the border"
    max_coast: float = 2.5  # seconds a track is predicted without a sighting
    border_coast: float = 0.75  # ... when it was last seen at the frame border (it probably left)
    exit_delay: float = 2.0  # seconds a confirmed track must stay lost before it is an exit
    revive_window: float = 6.0  # seconds in which a lost track can be re-found (re-identified)
    dormant_window: float = 180.0  # ... for a track that vanished while standing still
    hog: bool = True
    face_every: int = 4  # run the face detector on every n-th frame (0: never); the count holds between
    face_depth: float = 0.6  # faces are looked for down to this fraction of a track's box height ...
    face_depth_upright: float = 0.35  # ... or of an upright whole body's (see _face_regions)
    upright_aspect: float = 1.8  # height / width from which a box clear of the bottom border is a whole body
    head_frac: float = 0.2  # the largest a face can be on a whole body, as a fraction of its height


@dataclass
class FrameSignals:
    """What the detector says about one frame (see :data:`CHANNELS`)."""

    motion: float
    person: float
    face: float
    brightness: float
    scene_change: float

    def as_list(self) -> list[float]:
        """The values in :data:`~streamvid.types.CHANNELS` order (what the memory takes)."""
        return [getattr(self, name) for name in CHANNELS]


@dataclass
class DetectorOutput:
    signals: FrameSignals
    detections: list[Detection]
    boundary: bool  # a scene cut or an unstable view: the memory should start a new segment
    activity_changed: bool = False  # people came or went, or motion started or stopped


@dataclass
class PreparedFrame:
    """:meth:`EventDetector.prepare`'s result for one frame (what :meth:`~EventDetector.update` takes)."""

    small: np.ndarray  # [h, w, 3] uint8 RGB at the analysis width
    ycc: np.ndarray  # [h, w, 3] float32 YCrCb, blurred
    brightness: float  # mean luma / 255
    cut: bool  # a scene cut since the frame before
    moving: bool  # the camera moved since the frame before
    scale: float  # frame pixels per analysis pixel


@dataclass
class _Track:
    id: int
    box: np.ndarray  # x, y, w, h (analysis pixels, float)
    first_t: float
    last_t: float
    birth_center: np.ndarray
    born_at_border: bool
    hist: np.ndarray  # colour histogram of the subject (appearance for re-identification)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    hits: int = 1
    person: float = 0.0  # running person evidence
    hog_tries: int = 0
    max_travel: float = 0.0
    max_h: float = 0.0  # tallest box seen
    ghost: bool = False  # looks like a hole in the background model rather than an object
    confirmed: bool = False
    announced: bool = False  # its entry has been reported
    still: int = 0  # consecutive sightings without moving
    best_area: float = 0.0
    crop: np.ndarray | None = None
    mask: np.ndarray | None = None
    context: np.ndarray | None = None
    full_box: tuple[int, int, int, int] = (0, 0, 0, 0)
    description: str = ""
    lost_since: float | None = None
    last_border: bool = False

    @property
    def center(self) -> np.ndarray:
        return self.box[:2] + self.box[2:] / 2


class ViewChecker:
    """Scene cuts and camera moves between consecutive frames.

    A **cut**: the edge maps' correlation falls below ``edge_corr`` while the hue/saturation
    histograms' Bhattacharyya distance rises above ``hist_dist`` (both at once: a person walking
    by changes neither enough; a lighting change moves the histogram, not the edges). Otherwise a
    **camera move**: a phase-correlation shift of more than ``shift_px`` pixels.

    The phase correlation runs first at half the resolution (a seventh of the cost: 0.12 against
    0.83 ms at 320×180) and again at full resolution only when the half-size one does not show a
    still view: a clear peak (response above 0.05) less than ``shift_px / 5`` half-size pixels
    from zero. A move the full-size test reports lies at least 0.77 half-size pixels out at
    ``shift_px`` 2.5 (4,515 frame pairs of real, generated and panned, tilted, zoomed and shaken
    real video), and 99.7 % of the still real frames are settled by the half-size test alone.
    """

    def __init__(self, edge_corr: float = 0.45, hist_dist: float = 0.35, shift_px: float = 2.5) -> None:
        self.edge_corr, self.hist_dist, self.shift_px = edge_corr, hist_dist, shift_px
        self._prev_hist: np.ndarray | None = None
        self._prev_gray: np.ndarray | None = None
        self._prev_half: np.ndarray | None = None  # the last frame's luma at half size

    @staticmethod
    def _edges(gray: np.ndarray) -> np.ndarray:
        """The blurred gradient magnitude, mean removed (what the cut test correlates)."""
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
        edges = cv2.GaussianBlur(np.sqrt(gx * gx + gy * gy), (0, 0), 2.0)
        return edges - edges.mean()

    def check(self, small: np.ndarray, gray: np.ndarray, moves: bool = True) -> tuple[bool, bool]:
        """``(cut, moving)`` for this frame (``small``: RGB uint8, ``gray``: float32 luma, same size;
        ``moves=False``: cuts only, ``moving`` is always False)."""
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, [16, 4], [0, 180, 0, 256]).ravel()
        hist /= max(hist.sum(), 1.0)
        cut = moving = False
        half = None
        if moves:
            half = cv2.resize(gray, (max(1, gray.shape[1] // 2), max(1, gray.shape[0] // 2)),
                              interpolation=cv2.INTER_AREA)
        if self._prev_gray is not None and self._prev_gray.shape == gray.shape:
            dist = float(cv2.compareHist(hist, self._prev_hist, cv2.HISTCMP_BHATTACHARYYA))
            corr = 1.0
            if dist > self.hist_dist:  # the edge maps are compared only when the colours changed
                a, b = self._edges(gray), self._edges(self._prev_gray)
                corr = float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-6))
            cut = corr < self.edge_corr and dist > self.hist_dist
            if not cut and half is not None and self._prev_half is not None:
                moving = self._moved(half, gray)
            if cut:
                log.debug("scene cut (edge corr %.2f, hist dist %.2f)", corr, dist)
        self._prev_hist, self._prev_gray, self._prev_half = hist, gray, half
        return cut, moving

    def _moved(self, half: np.ndarray, gray: np.ndarray) -> bool:
        """The camera-move test against the last frame: half size first, full size unless that
        shows a still view (see the class docstring)."""
        (hx, hy), resp = cv2.phaseCorrelate(self._prev_half, half)
        if resp > 0.05 and np.hypot(hx, hy) < self.shift_px / 5:
            return False
        (dx, dy), resp = cv2.phaseCorrelate(self._prev_gray, gray)
        moving = resp > 0.05 and np.hypot(dx, dy) > self.shift_px
        if moving:
            log.debug("camera moved (%.1f, %.1f) px", dx, dy)
        return bool(moving)


class EventDetector:
    """Entries, exits and per-frame signals from a stream of frames (see the module docstring).

    ``update(frame)`` → :class:`DetectorOutput`; ``finish()`` flushes exits still pending at the
    end of the stream. Detections carry an RGB crop and mask of the subject for its description,
    embedding and thumbnail; the caller fills in ``description``.
    """

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.cfg = config or DetectorConfig()
        # morphology kernels, made once: the envelope's (± jitter_px), cleaning, closing, the halo
        self._k_jitter = np.ones((2 * self.cfg.jitter_px + 1,) * 2, np.uint8)
        self._k3 = np.ones((3, 3), np.uint8)
        self._k_close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 9))
        self._k_halo = np.ones((5, 5), np.uint8)
        self._hog: cv2.HOGDescriptor | None = None
        self._faces: cv2.CascadeClassifier | None = None
        self._bg: np.ndarray | None = None  # [h, w, 3] float32 YCrCb
        self._last_fg: np.ndarray | None = None  # [h, w] bool, the last frame's foreground
        self._view = ViewChecker(self.cfg.cut_edge_corr, self.cfg.cut_hist_dist, self.cfg.camera_shift_px)
        self._noise = 2.0
        self._warm = 0
        self._tracks: list[_Track] = []
        self._lost: list[_Track] = []
        self._next_id = 1
        self._frames = 0
        self._faces_seen = 0
        self._activity: tuple[int, bool] = (0, False)  # visible people, motion on
        self._shape: tuple[int, int] | None = None
        self._scale = 1.0
        self.last_t = 0.0

    # ---------------------------------------------------------------- public
    def prepare(self, frame: Frame) -> PreparedFrame:
        """The work on ``frame`` that needs no tracking state: the analysis image, its blurred
        YCrCb, the brightness and the scene checks against the frame before.

        :meth:`update` calls it when it is not given its result. It must see every frame once,
        in order (the scene checks compare consecutive frames), and it may run on another thread,
        ahead of :meth:`update`: :class:`~streamvid.pipeline.Watcher` runs it beside the encoder,
        off the thread that tracks, so the two share the work of a frame.
        """
        rgb = frame.rgb
        h, w = rgb.shape[:2]
        pw = min(self.cfg.proc_width, w)
        ph = max(16, round(h * pw / w))
        small = cv2.resize(rgb, (pw, ph), interpolation=cv2.INTER_AREA) if pw != w else rgb
        ycc = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2YCrCb), (5, 5), 1.2).astype(np.float32)
        gray = ycc[..., 0]
        brightness = float(gray.mean() / 255.0)
        cut, moving = self._scene_checks(small, gray)
        return PreparedFrame(small, ycc, brightness, cut, moving, w / pw)

    def update(self, frame: Frame, prepared: PreparedFrame | None = None) -> DetectorOutput:
        """The detector's step for ``frame`` (``prepared``: :meth:`prepare`'s result for it, or
        None to prepare it here)."""
        p = self.prepare(frame) if prepared is None else prepared
        cfg = self.cfg
        t = frame.t
        self.last_t = t
        small, ycc, brightness = p.small, p.ycc, p.brightness
        if self._shape != small.shape[:2]:
            if self._shape is not None:  # the source changed size: start over
                self._bg = None
            self._shape = small.shape[:2]
        self._scale = p.scale
        faces_due = bool(cfg.face_every) and self._frames % cfg.face_every == 0
        self._frames += 1
        faces = self._faces_seen  # the count holds between face runs, and across boundaries

        cut, moving = p.cut, p.moving
        if cut or moving or self._bg is None:
            self._reset_background(ycc, keep_tracks=not cut)
            signals = FrameSignals(0.0, 0.0, float(faces), brightness, 1.0 if cut else 0.0)
            return DetectorOutput(signals, self._flush_lost(t, force=False), boundary=cut or moving)

        self._y = ycc[..., 0]
        fg = self._foreground(ycc)
        self._last_fg = cv2.dilate(fg.view(np.uint8), self._k_halo) > 0
        motion = float(fg.mean())
        detections: list[Detection] = []
        if motion > cfg.global_change_frac:
            log.debug("t=%.1f: %.0f%% foreground, relearning the background", t, 100 * motion)
            self._reset_background(ycc, keep_tracks=True)
            return DetectorOutput(FrameSignals(motion, 0.0, float(faces), brightness, 0.0),
                                  self._flush_lost(t, force=False), boundary=False)
        if self._warm > 0:
            self._warm -= 1
            self._learn(ycc, np.zeros_like(fg), warm=True)
            return DetectorOutput(FrameSignals(motion, 0.0, float(faces), brightness, 0.0),
                                  self._flush_lost(t, force=False), boundary=False)

        blobs = self._blobs(fg)
        detections += self._track(t, blobs, fg, small, frame.rgb)
        if faces_due:
            self._faces_seen = faces = self._count_faces(frame.rgb)
        detections += self._flush_lost(t, force=False)
        self._learn(ycc, fg)
        persons = sum(1 for tr in self._tracks if tr.confirmed and tr.lost_since is None)
        moving = motion > (cfg.motion_off if self._activity[1] else cfg.motion_on)  # hysteresis
        changed = (persons, moving) != self._activity
        self._activity = (persons, moving)
        return DetectorOutput(FrameSignals(motion, float(persons), float(faces), brightness, 0.0),
                              detections, boundary=False, activity_changed=changed)

    def finish(self) -> list[Detection]:
        """End of stream: exits of tracks that were lost but not yet reported, and of confirmed
        tracks last seen at the border before the final frame (they walked out as it ended)."""
        for tr in self._tracks:
            if tr.confirmed and tr.last_border and tr.last_t < self.last_t:
                tr.lost_since = tr.last_t
                self._lost.append(tr)
        self._tracks = [tr for tr in self._tracks if tr.lost_since is None]
        pending = [self._announce(tr) for tr in self._tracks if tr.confirmed and not tr.announced]
        return pending + self._flush_lost(self.last_t, force=True)

    # ---------------------------------------------------------------- scene
    def _scene_checks(self, small: np.ndarray, gray: np.ndarray) -> tuple[bool, bool]:
        return self._view.check(small, gray)

    def _reset_background(self, ycc: np.ndarray, *, keep_tracks: bool) -> None:
        self._bg = ycc.copy()
        self._last_fg = None
        self._warm = self.cfg.warmup
        if keep_tracks:  # the people are still there: keep them re-findable, report nothing now
            for tr in self._tracks:
                if tr.confirmed:
                    tr.lost_since = tr.last_t
                    tr.still = max(tr.still, 3)
                    self._lost.append(tr)
        else:  # a new scene: whoever was there is not "leaving"
            self._lost.clear()
        self._tracks = []

    # ---------------------------------------------------------------- foreground
    def _relight(self, ycc: np.ndarray) -> None:
        """Fold a global lighting change into the background.

        The gain is the median ratio frame/background over mid-tone pixels that were background in
        the last frame (people do not bias it); the background is scaled by it (luma, and the
        chroma deviations from neutral) and clipped like a camera clips, so highlights that
        saturate after the lights go up are not foreground.
        """
        bg = self._bg
        by, y = bg[..., 0], ycc[..., 0]
        # the median is taken over every other pixel of every other row: a quarter of the cost,
        # still thousands of samples
        sby, sy = by[::2, ::2], y[::2, ::2]
        sel = (sby > 20) & (sby < 235) & (sy < 250)
        if self._last_fg is not None:
            sel &= ~self._last_fg[::2, ::2]
        n = int(np.count_nonzero(sel))
        if n < 0.05 * sel.size:
            return
        # Most frames have no lighting change: when both middle ratios lie inside (0.9965, 1.0035),
        # so does the median, and the gain would be ignored below (within 0.4 % of 1); counting
        # that is a third of the cost of the median, and the 0.05 % margin is far more than the
        # float32 products' rounding.
        low = np.count_nonzero(sel & (sy <= 0.9965 * sby))
        high = np.count_nonzero(sel & (sy >= 1.0035 * sby))
        if low <= (n - 1) // 2 and high <= n - n // 2 - 1:
            return
        gain = float(np.median(sy[sel] / sby[sel]))
        if abs(gain - 1.0) < 0.004:
            return
        bg[..., 0] = np.minimum(by * gain, 255.0)
        bg[..., 1:] = np.clip(128.0 + (bg[..., 1:] - 128.0) * gain, 0.0, 255.0)

    def _foreground(self, ycc: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        bg = self._bg
        self._relight(ycc)
        k = self._k_jitter
        # distance of each channel outside the background's envelope over ± jitter_px ([h, w, 3]);
        # OpenCV erodes and dilates all three channels in one pass
        dev = np.maximum(cv2.erode(bg, k) - ycc, ycc - cv2.dilate(bg, k))
        diff = np.abs(ycc[::2, ::2, 0] - bg[::2, ::2, 0])  # a quarter of the pixels, as in _relight
        core = diff < 3 * max(self._noise, 1.0)
        if core.any():  # noise level from background pixels (MAD → sigma), smoothed
            sigma = 1.4826 * float(np.median(diff[core]))
            self._noise = 0.9 * self._noise + 0.1 * max(sigma, 0.5)
        thr = max(cfg.min_threshold, cfg.noise_k * self._noise)
        fg = dev[..., 0] > thr
        # chroma: outside the envelope, and far from the background itself, in either channel
        # (two-channel maxima written out: NumPy's reduction over a last axis of 2 is slow)
        cdev = np.maximum(dev[..., 1], dev[..., 2])
        cabs = np.maximum(np.abs(ycc[..., 1] - bg[..., 1]), np.abs(ycc[..., 2] - bg[..., 2]))
        fg |= (cdev > cfg.chroma_threshold) & (cabs > cfg.chroma_threshold)
        m = fg.astype(np.uint8)
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, self._k3)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, self._k_close)
        return m.astype(bool)

    def _learn(self, ycc: np.ndarray, fg: np.ndarray, warm: bool = False) -> None:
        cfg = self.cfg
        if warm:
            rate = np.full(fg.shape, 0.5, np.float32)
        else:
            rate = np.where(fg, cfg.bg_rate_fg, cfg.bg_rate).astype(np.float32)
            for tr in self._tracks:
                x, y, w, h = _int_box(tr.box, fg.shape)
                if tr.lost_since is not None:
                    continue
                if tr.ghost:
                    rate[y:y + h, x:x + w] = cfg.bg_rate_ghost  # a ghost or a shadow: absorb it
                elif tr.confirmed:  # a person, maybe standing still: never absorb them
                    rate[y:y + h, x:x + w] = np.where(fg[y:y + h, x:x + w], 0.0, cfg.bg_rate_fg)
                else:
                    rate[y:y + h, x:x + w] = np.minimum(rate[y:y + h, x:x + w], cfg.bg_rate_fg)
        step = ycc - self._bg  # in place from here: the same arithmetic, without two temporaries
        step *= rate[..., None]
        self._bg += step

    def _blobs(self, fg: np.ndarray) -> list[np.ndarray]:
        """Connected foreground regions as boxes ``[x, y, w, h]``; parts of one body are joined."""
        h, w = fg.shape
        # Grana's block-based labelling (BBDT): the same components and statistics as OpenCV's
        # default (Spaghetti) in a third of the time when statistics are asked for (0.14 vs 0.36 ms)
        n, _, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(fg.view(np.uint8), 8, cv2.CV_32S,
                                                                       cv2.CCL_GRANA)
        min_area = self.cfg.min_area_frac * h * w
        boxes = [stats[i, :4].astype(np.float64) for i in range(1, n) if stats[i, 4] >= min_area / 4]
        merged = True
        while merged:  # join boxes that overlap horizontally and nearly touch vertically
            merged = False
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    a, b = boxes[i], boxes[j]
                    ox = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
                    gap = max(a[1], b[1]) - min(a[1] + a[3], b[1] + b[3])
                    if ox > 0.5 * min(a[2], b[2]) and gap < 0.25 * max(a[3], b[3], 8):
                        x0, y0 = min(a[0], b[0]), min(a[1], b[1])
                        x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
                        boxes[i] = np.array([x0, y0, x1 - x0, y1 - y0])
                        boxes.pop(j)
                        merged = True
                        break
                if merged:
                    break
        return [b for b in boxes if b[2] * b[3] >= min_area and fg[_slices(b, fg.shape)].sum() >= min_area]

    # ---------------------------------------------------------------- tracking
    def _appearance(self, small: np.ndarray, fg: np.ndarray, box: np.ndarray) -> np.ndarray:
        sl = _slices(box, fg.shape)
        hsv = cv2.cvtColor(np.ascontiguousarray(small[sl]), cv2.COLOR_RGB2HSV)
        mask = fg[sl].astype(np.uint8)
        hist = cv2.calcHist([hsv], [0, 1, 2], mask if mask.any() else None, [12, 3, 3],
                            [0, 180, 0, 256, 0, 256]).ravel()
        return hist / max(hist.sum(), 1.0)

    def _track(self, t: float, blobs: list[np.ndarray], fg: np.ndarray, small: np.ndarray,
               rgb: np.ndarray) -> list[Detection]:
        cfg = self.cfg
        H, W = fg.shape
        feats = [self._appearance(small, fg, b) for b in blobs]
        live = [tr for tr in self._tracks if tr.lost_since is None]
        pairs = []
        if live and blobs:  # the matching costs of every (track, blob) pair, a track at a time
            B = np.array(blobs)  # [nb, 4]
            centers = B[:, :2] + B[:, 2:] / 2
            F = np.array(feats)  # [nb, bins]
            areas = np.maximum(B[:, 2] * B[:, 3], 1.0)
            for ti, tr in enumerate(live):
                dt = max(t - tr.last_t, 1e-3)
                pred = tr.center + tr.velocity * dt
                d = np.sqrt(((centers - pred) ** 2).sum(axis=1)) / np.maximum(np.maximum(B[:, 3], tr.box[3]), 12.0)
                app = 1.0 - np.minimum(tr.hist, F).sum(axis=1).astype(np.float64)
                size = np.abs(np.log(areas / max(tr.box[2] * tr.box[3], 1)))
                for bi in np.flatnonzero((d < 1.2) & (size < 1.6)):
                    pairs.append((float(d[bi] + 0.8 * app[bi] + 0.2 * size[bi]), ti, int(bi)))
        pairs.sort()
        used_t, used_b = set(), set()
        for _, ti, bi in pairs:
            if ti in used_t or bi in used_b:
                continue
            used_t.add(ti)
            used_b.add(bi)
            self._observe(live[ti], t, blobs[bi], feats[bi], fg, small, rgb)
        for ti, tr in enumerate(live):
            coast = min(cfg.max_coast, cfg.border_coast) if tr.last_border else cfg.max_coast
            if ti not in used_t and t - tr.last_t > coast:
                tr.lost_since = tr.last_t
        detections = []
        for bi, b in enumerate(blobs):
            if bi in used_b:
                continue
            tr = self._revive(t, b, feats[bi])
            if tr is None:
                c = b[:2] + b[2:] / 2
                tr = _Track(id=self._next_id, box=b.copy(), first_t=t, last_t=t, birth_center=c,
                            born_at_border=_at_border(b, W, H, cfg.border_frac), hist=feats[bi])
                self._next_id += 1
                self._tracks.append(tr)
                self._evidence(tr, b, fg, small, rgb)
            else:
                self._observe(tr, t, b, feats[bi], fg, small, rgb)
        for tr in self._tracks:
            if tr.lost_since is None and not tr.confirmed and self._is_entry(tr):
                tr.confirmed = True
            if tr.confirmed and not tr.announced and (tr.best_area > 0 or tr.lost_since is not None):
                detections.append(self._announce(tr))
        still_live = []
        for tr in self._tracks:
            if tr.lost_since is None:
                still_live.append(tr)
            elif tr.confirmed:
                self._lost.append(tr)
        self._tracks = still_live
        return detections

    def _observe(self, tr: _Track, t: float, b: np.ndarray, feat: np.ndarray, fg: np.ndarray,
                 small: np.ndarray, rgb: np.ndarray) -> None:
        H, W = fg.shape
        c_new = b[:2] + b[2:] / 2
        dt = max(t - tr.last_t, 1e-3)
        v = (c_new - tr.center) / dt
        tr.velocity = 0.5 * tr.velocity + 0.5 * v
        moved = np.linalg.norm(c_new - tr.center) > 0.08 * max(tr.box[3], b[3])
        tr.still = 0 if moved else tr.still + 1
        tr.box = b.copy()
        tr.last_t = t
        tr.hits += 1
        tr.hist = 0.7 * tr.hist + 0.3 * feat
        tr.max_travel = max(tr.max_travel, float(np.linalg.norm(c_new - tr.birth_center)))
        tr.last_border = _at_border(b, W, H, self.cfg.border_frac)
        tr.lost_since = None
        self._evidence(tr, b, fg, small, rgb)

    def _revive(self, t: float, b: np.ndarray, feat: np.ndarray) -> _Track | None:
        """Re-find a recently lost (or dormant, still-standing) track that matches this blob."""
        c = b[:2] + b[2:] / 2
        best, best_cost = None, 1e9
        for tr in self._lost:
            gone = t - tr.lost_since
            app = 1.0 - float(np.minimum(tr.hist, feat).sum())
            d = np.linalg.norm(c - tr.center) / max(tr.box[3], b[3], 12.0)
            reach = 1.0 + 0.25 * gone  # how far it may have walked while hidden (box heights)
            if d < reach and app < 0.55 and app + 0.3 * d < best_cost:
                best, best_cost = tr, app + 0.3 * d
        if best is not None:
            self._lost.remove(best)
            best.lost_since = None
            self._tracks.append(best)
            log.debug("t=%.1f: track %d re-found", t, best.id)
        return best

    def _evidence(self, tr: _Track, b: np.ndarray, fg: np.ndarray, small: np.ndarray,
                  rgb: np.ndarray) -> None:
        """Update the person evidence and keep the best view of the subject for its description."""
        H, W = fg.shape
        x, y, w, h = b
        tr.max_h = max(tr.max_h, float(h))
        if not tr.confirmed:
            tr.ghost = self._is_ghost(b, fg)
            if tr.ghost:
                tr.person = 0.0
                return
        aspect = h / max(w, 1.0)
        shape = float(np.clip((aspect - 0.9) / 0.9, 0, 1)) * float(np.clip((4.5 - aspect) / 1.0, 0, 1))
        fill = fg[_slices(b, fg.shape)].mean()
        shape *= float(np.clip((fill - 0.15) / 0.2, 0, 1))
        score = 0.75 * shape
        border = _at_border(b, W, H, self.cfg.border_frac)
        if self.cfg.hog and not border and tr.hog_tries < 4 and tr.person < 0.9:
            tr.hog_tries += 1
            if self._hog_person(rgb, b):
                score = 1.0
        if tr.hits <= 1 or score == 1.0:  # first sight, or HOG saw a person
            tr.person = score
        else:
            tr.person = 0.6 * tr.person + 0.4 * score
        area = w * h
        if (not border and area >= tr.best_area) or tr.crop is None:  # keep the best view
            tr.best_area = area if not border else 0.0
            self._keep_view(tr, b, fg, rgb)

    def _keep_view(self, tr: _Track, b: np.ndarray, fg: np.ndarray, rgb: np.ndarray) -> None:
        """Store the subject's crop and mask (full resolution) and a view with some context."""
        s = self._scale
        H, W = rgb.shape[:2]
        x, y, w, h = (float(v) * s for v in b)
        fx, fy = int(max(0, x)), int(max(0, y))
        fw, fh = max(1, min(W - fx, int(round(w)))), max(1, min(H - fy, int(round(h))))
        tr.crop = rgb[fy:fy + fh, fx:fx + fw].copy()
        m = fg[_slices(b, fg.shape)].astype(np.uint8)
        tr.mask = cv2.resize(m, (fw, fh), interpolation=cv2.INTER_NEAREST) > 0
        tr.full_box = (fx, fy, fw, fh)
        px, py = 0.6 * w + 4, 0.15 * h + 4
        cx0, cy0 = int(max(0, x - px)), int(max(0, y - py))
        cx1, cy1 = int(min(W, x + w + px)), int(min(H, y + h + py))
        tr.context = rgb[cy0:cy1, cx0:cx1].copy()

    def _is_ghost(self, b: np.ndarray, fg: np.ndarray) -> bool:
        """A blob whose outline has edges in the background model but not in the frame is a
        ghost (something that was learnt into the background and has left), not an object."""
        sl = _slices(b, fg.shape)
        m = fg[sl].astype(np.uint8)
        outline = (cv2.dilate(m, self._k3) - cv2.erode(m, self._k3)) > 0
        if outline.sum() < 8:
            return False

        def edges(img: np.ndarray) -> float:
            gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
            gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
            return float(np.sqrt(gx * gx + gy * gy)[outline].mean())

        return edges(np.ascontiguousarray(self._bg[..., 0][sl])) > 1.3 * edges(np.ascontiguousarray(self._y[sl])) + 2.0

    def _is_entry(self, tr: _Track) -> bool:
        cfg = self.cfg
        if tr.hits < cfg.min_hits or tr.person < cfg.min_person_score:
            return False
        return tr.born_at_border or tr.max_travel >= cfg.travel_frac * max(tr.max_h, 1.0)

    def _flush_lost(self, t: float, *, force: bool) -> list[Detection]:
        """Report tracks lost long enough as exits; keep the others re-findable.

        A track that vanished while standing still (and away from the border) was most likely
        absorbed or hidden, not gone: it stays dormant, re-findable, and is never an exit by
        itself. One that vanished at the border is an exit after ``exit_delay``; one that vanished
        in the middle of the view (behind something, through a door) after ``revive_window``.
        """
        cfg = self.cfg
        out, keep = [], []
        for tr in self._lost:
            if tr.confirmed and not tr.announced:  # lost before a full view came: report the entry now
                out.append(self._announce(tr))
            gone = t - tr.lost_since
            if tr.still >= 3 and not tr.last_border:
                if gone <= cfg.dormant_window and not force:
                    keep.append(tr)
                continue
            if force or gone >= (cfg.exit_delay if tr.last_border else cfg.revive_window):
                out.append(self._detection(tr, "left", tr.last_t))
            else:
                keep.append(tr)
        self._lost = keep
        return out

    def _announce(self, tr: _Track) -> Detection:
        """The entry of a confirmed track, reported once a view of it away from the frame border
        exists (for its description and thumbnail); its time stays the time it was first seen."""
        tr.announced = True
        return self._detection(tr, "entered", tr.first_t)

    def _detection(self, tr: _Track, event: str, t: float) -> Detection:
        return Detection(t=t, event=event, track_id=tr.id, bbox=tr.full_box,
                         confidence=round(float(min(1.0, tr.person)), 3), description=tr.description,
                         crop=tr.crop, mask=tr.mask, context=tr.context)

    # ---------------------------------------------------------------- detectors
    def _hog_person(self, rgb: np.ndarray, b: np.ndarray) -> bool:
        if self._hog is None:
            self._hog = cv2.HOGDescriptor()
            self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        s = self._scale
        x, y, w, h = b * s
        pad_x, pad_y = 0.35 * w + 8, 0.15 * h + 8
        x0, y0 = int(max(0, x - pad_x)), int(max(0, y - pad_y))
        x1 = int(min(rgb.shape[1], x + w + pad_x))
        y1 = int(min(rgb.shape[0], y + h + pad_y))
        roi = rgb[y0:y1, x0:x1]
        if roi.shape[0] < 16 or roi.shape[1] < 8:
            return False
        f = 160.0 / roi.shape[0]  # people ~ 96-128 px tall in a 160 px window
        roi = cv2.resize(roi, (max(72, int(roi.shape[1] * f)), 160))
        rects, weights = self._hog.detectMultiScale(cv2.cvtColor(roi, cv2.COLOR_RGB2GRAY),
                                                    winStride=(8, 8), padding=(8, 8), scale=1.1)
        return len(rects) > 0 and float(np.max(weights)) > 0.3

    def _count_faces(self, rgb: np.ndarray) -> int:
        """Faces on the people in view: the cascade runs on the current tracks' regions only
        (:meth:`_face_regions`), not on the whole frame — a face on a poster is not a visitor, and
        the whole 640 px frame cost 34 ms a run (a quarter of the detector's time)."""
        regions = self._face_regions(*rgb.shape[:2])
        if not regions:
            return 0
        if self._faces is None:
            self._faces = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        f = _face_scale(rgb.shape[1])
        found: list[tuple[float, float, float, float]] = []  # faces in frame pixels (x, y, w, h)
        for x0, y0, x1, y1, largest in regions:
            roi = rgb[y0:y1, x0:x1]
            if f < 1.0:
                roi = cv2.resize(roi, (max(1, round(roi.shape[1] * f)), max(1, round(roi.shape[0] * f))),
                                 interpolation=cv2.INTER_AREA)
            if min(roi.shape[:2]) < _FACE_WINDOW:  # the cascade's smallest face
                continue
            gray = cv2.cvtColor(np.ascontiguousarray(roi), cv2.COLOR_RGB2GRAY)
            big = max(_FACE_WINDOW, round(largest * f)) if largest else 0  # 0: no limit
            for fx, fy, fw, fh in self._faces.detectMultiScale(gray, scaleFactor=1.15, minNeighbors=6,
                                                               minSize=(20, 20), maxSize=(big, big)):
                face = (x0 + fx / f, y0 + fy / f, fw / f, fh / f)
                cx, cy = face[0] + face[2] / 2, face[1] + face[3] / 2
                # regions may overlap (see _face_regions): a face whose centre is inside one
                # already found is that face, seen again
                if not any(g[0] <= cx <= g[0] + g[2] and g[1] <= cy <= g[1] + g[3] for g in found):
                    found.append(face)
        return len(found)

    def _face_regions(self, H: int, W: int) -> list[tuple[int, int, int, int, int]]:
        """Full-resolution boxes ``(x0, y0, x1, y1, largest)`` around the upper part of the tracks in view
        (people, and blobs that may become people): from a quarter of the box's height above it
        down to ``face_depth`` of its height, a quarter of its width wider on each side;
        overlapping ones are joined when their union is no more to scan than both (a row of people
        across the view once joined into the whole frame: 34 ms a run instead of a few), and a face
        found in two overlapping regions counts once (:meth:`_count_faces`). ``largest`` is the
        largest face size in pixels worth looking for in the box (0: no limit).

        An upright box (``upright_aspect``) clear of the bottom border is a whole body, or one cut
        at a side, which keeps its height: its face is at most ``head_frac`` of that height (an
        adult's head is about an eighth), so it is looked for only down to ``face_depth_upright``
        and only up to that size, and not at all when even that face would be smaller than the
        cascade's 24-pixel window: the people far from the camera, where the cascade cannot find a
        face, cost nothing. At the bottom border a box may be the top of a body (a head and
        shoulders coming in), so it keeps the general rule.
        """
        cfg = self.cfg
        f = _face_scale(W)
        ah = self._shape[0] if self._shape else H / self._scale  # the analysis image's height
        boxes = []
        for tr in self._tracks:
            if tr.lost_since is not None:
                continue
            x, y, w, h = tr.box * self._scale
            depth, largest = cfg.face_depth, 0.0
            if h >= cfg.upright_aspect * w and tr.box[1] + tr.box[3] < ah * (1 - cfg.border_frac):
                largest = cfg.head_frac * h
                if largest * f < _FACE_WINDOW:
                    continue
                depth = cfg.face_depth_upright
            px, py = 0.25 * w + 8, 0.25 * h + 8
            # the upper part only: a face is at the top of an upright person, and in the upper half
            # of a head-and-shoulders blob; the cascade's time grows with the area it scans
            bottom = y + depth * h + 8
            boxes.append([max(0.0, x - px), max(0.0, y - py), min(float(W), x + w + px), min(float(H), bottom),
                          largest])
        merged = True
        while merged:  # join overlapping boxes while joining them is not more to scan
            merged = False
            out: list[list[float]] = []
            for b in boxes:
                for m in out:
                    if b[0] < m[2] and m[0] < b[2] and b[1] < m[3] and m[1] < b[3]:
                        union = [min(m[0], b[0]), min(m[1], b[1]), max(m[2], b[2]), max(m[3], b[3])]
                        if _area(union) > _area(m) + _area(b):
                            continue  # two scans cost less than one of their union: keep both
                        largest = max(m[4], b[4]) if m[4] and b[4] else 0.0  # 0 (no limit) wins
                        m[:] = [*union, largest]
                        merged = True
                        break
                else:
                    out.append(list(b))
            boxes = out
        return [(int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1)), int(np.ceil(big))) for x0, y0, x1, y1, big in boxes]


def _face_scale(width: int) -> float:
    """The scale at which the face cascade sees a frame ``width`` pixels wide: at most 640 px wide."""
    return min(1.0, 640 / width)


def _area(box: list[float]) -> float:
    """Area of ``[x0, y0, x1, y1, ...]``."""
    return (box[2] - box[0]) * (box[3] - box[1])


def _slices(box: np.ndarray, shape: tuple[int, int]) -> tuple[slice, slice]:
    x, y, w, h = _int_box(box, shape)
    return slice(y, y + h), slice(x, x + w)


def _int_box(box: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    H, W = shape[:2]
    x0, y0 = int(max(0, np.floor(box[0]))), int(max(0, np.floor(box[1])))
    x1 = int(min(W, np.ceil(box[0] + box[2])))
    y1 = int(min(H, np.ceil(box[1] + box[3])))
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def _at_border(box: np.ndarray, W: int, H: int, frac: float) -> bool:
    m = frac * W
    x, y, w, h = box
    return x <= m or x + w >= W - m or y + h >= H - frac * H
