"""The entry/exit detector on generated scenes with known ground truth (frames fed directly)."""

import cv2
import numpy as np
import pytest

from streamvid.events import EventDetector, ViewChecker
from streamvid.synth import Figure, Scene, ground_truth, render
from streamvid.types import Frame

TOL = 1.5  # seconds


def run(scene: Scene, fps: float = 2.0, transform=None):
    det = EventDetector()
    step = max(1, round(scene.fps / fps))
    found, boundaries, signals = [], [], []
    for i, (t, rgb) in enumerate(render(scene)):
        if i % step:
            continue
        if transform is not None:
            rgb = transform(i, rgb)
        out = det.update(Frame(t=t, rgb=rgb, index=i // step))
        found += out.detections
        signals.append((t, out.signals))
        if out.boundary:
            boundaries.append(t)
    found += det.finish()
    return found, boundaries, signals


def match(found, truth):
    """Greedy matching of detections to ground-truth events of the same kind within TOL."""
    unmatched = list(found)
    missed = []
    for ev in truth:
        cands = [d for d in unmatched if d.event == ev["event"] and abs(d.t - ev["t"]) <= TOL]
        if cands:
            unmatched.remove(min(cands, key=lambda d: abs(d.t - ev["t"])))
        else:
            missed.append(ev)
    return missed, unmatched


def walker(fid, top, bottom, t_in, t_out, y=0.85, left_to_right=True, height=0.5, scene=None):
    x0, x1 = (-0.15, 1.15) if left_to_right else (1.15, -0.15)
    return Figure(fid, top, bottom, [(t_in, x0, y), (t_out, x1, y)], height=height, scene=scene)


def test_static_scene_with_noise_and_jitter_has_no_events():
    scene = Scene(320, 240, 10, 20.0, 1, ["lobby"], noise_sigma=4.0, jitter_px=1)
    found, boundaries, _ = run(scene)
    assert found == []
    assert boundaries == []


@pytest.mark.parametrize("ramp", [(5.0, 5.1, 0.55), (5.0, 9.0, 1.4)], ids=["sudden", "gradual"])
def test_lighting_change_is_not_an_entry(ramp):
    scene = Scene(320, 240, 10, 14.0, 2, ["office"], lighting=[ramp], noise_sigma=2.0, jitter_px=1)
    found, _, signals = run(scene)
    assert found == []
    before = np.mean([s.brightness for t, s in signals if t < ramp[0]])
    after = np.mean([s.brightness for t, s in signals if t > ramp[1] + 0.5])
    assert (after < before) if ramp[2] < 1 else (after > before)


def test_scene_cut_with_people_in_the_new_shot_is_not_an_entry():
    standing = Figure(1, "red", "blue", [(0.0, 0.5, 0.8), (20.0, 0.5, 0.8)], height=0.5, scene=1)
    scene = Scene(320, 240, 10, 14.0, 3, ["lobby", "street"], cuts=[(6.0, 1)], noise_sigma=2.0,
                  figures=[standing])
    found, boundaries, signals = run(scene)
    assert found == []
    assert any(abs(t - 6.0) <= 0.5 for t in boundaries)
    assert max(s.scene_change for t, s in signals if abs(t - 6.0) <= 0.5) == 1.0


def test_moving_camera_is_not_an_entry():
    scene = Scene(320, 240, 10, 14.0, 4, ["lobby"], noise_sigma=2.0)

    def pan(i, rgb):  # the camera pans between 5 s and 8 s (frames 50..80), then holds still
        shift = int(np.clip(i - 50, 0, 30)) * 2
        return np.ascontiguousarray(np.roll(rgb, -shift, axis=1))

    found, boundaries, _ = run(scene, transform=pan)
    assert found == []
    assert boundaries, "the pan should be reported as a segment boundary"


def test_camera_move_test_at_half_size_first_decides_as_the_full_size_one():
    """The half-size phase correlation may only settle still views: every shift, including the
    ones near the 2.5-pixel threshold, is decided as the full-size test alone decides it."""
    scene = Scene(320, 240, 10, 1.0, 8, ["street"], noise_sigma=2.0,
                  figures=[walker(1, "red", "blue", 0.0, 3.0)])
    rgb = next(iter(render(scene)))[1]
    small = cv2.resize(rgb, (320, 180), interpolation=cv2.INTER_AREA)
    checked = 0
    for dx, dy in [(0, 0), (0.3, 0), (1, 0.5), (1.8, 0), (2.2, 1.0), (2.4, 0.6), (2.6, 0), (3, 0),
                   (0, 2.7), (4, 3), (8, 0)]:
        moved = cv2.warpAffine(small, np.float32([[1, 0, dx], [0, 1, dy]]), (320, 180),
                               borderMode=cv2.BORDER_REPLICATE)
        grays = [cv2.GaussianBlur(cv2.cvtColor(im, cv2.COLOR_RGB2YCrCb), (5, 5), 1.2)
                 .astype(np.float32)[..., 0] for im in (small, moved)]
        (fx, fy), resp = cv2.phaseCorrelate(*grays)
        expected = resp > 0.05 and np.hypot(fx, fy) > 2.5
        view = ViewChecker()
        assert view.check(small, grays[0]) == (False, False)
        assert view.check(moved, grays[1]) == (False, expected), (dx, dy)
        checked += expected
    assert checked >= 4  # the shifts past the threshold were reported as moves


def test_person_standing_still_for_a_while_is_one_visit():
    path = [(1.0, -0.15, 0.85), (5.0, 0.5, 0.85), (25.0, 0.5, 0.86), (29.0, 1.15, 0.85)]
    scene = Scene(320, 240, 10, 32.0, 5, ["lobby"], noise_sigma=3.0, jitter_px=1,
                  figures=[Figure(1, "green", "black", path, height=0.55)])
    found, _, _ = run(scene)
    truth = ground_truth(scene)["events"]
    missed, extra = match(found, truth)
    assert not missed and not extra, (found, truth)


def test_two_people_crossing_each_other():
    scene = Scene(320, 240, 10, 20.0, 6, ["street"], noise_sigma=2.5, jitter_px=1, figures=[
        walker(1, "red", "blue", 2.0, 14.0, y=0.9),
        walker(2, "yellow", "gray", 3.0, 16.0, y=0.8, left_to_right=False, height=0.45),
    ])
    found, _, signals = run(scene)
    truth = ground_truth(scene)["events"]
    missed, extra = match(found, truth)
    assert not missed, (found, truth)
    assert len(extra) <= 1, extra
    assert max(s.motion for _, s in signals) > 0.005
    assert max(s.person for _, s in signals) >= 1


def test_detections_carry_a_crop_and_mask_of_the_subject():
    scene = Scene(320, 240, 10, 12.0, 7, ["lobby"], figures=[walker(1, "red", "blue", 1.0, 10.0)])
    found, _, _ = run(scene)
    entered = [d for d in found if d.event == "entered"]
    assert len(entered) == 1
    d = entered[0]
    assert d.crop is not None and d.crop.ndim == 3 and d.crop.shape[0] > d.crop.shape[1]
    assert d.mask is not None and d.mask.shape == d.crop.shape[:2] and d.mask.mean() > 0.2


def test_exit_just_before_the_end_of_the_video_is_reported():
    scene = Scene(320, 240, 10, 8.0, 8, ["lobby"], figures=[walker(1, "red", "blue", 0.5, 6.5)])
    found, _, _ = run(scene)
    missed, extra = match(found, ground_truth(scene)["events"])
    assert not missed and not extra, found


def test_faces_are_looked_for_on_the_tracks_only(monkeypatch):
    """The face cascade runs on the upper part of the tracks in view (widened, overlapping ones
    joined), at full resolution; with nobody in view it does not run at all. An upright whole body
    is searched down to 35 % of its height for faces up to a fifth of its height, and not at all
    when that face would be smaller than the cascade's 24-pixel window."""
    from streamvid.events import _Track

    det = EventDetector()
    det._scale = 2.0  # analysis pixels are half the frame's
    det._shape = (180, 320)
    rgb = np.zeros((360, 640, 3), np.uint8)

    def track(i, box, lost=None):
        b = np.array(box, float)
        return _Track(id=i, box=b, first_t=0.0, last_t=0.0, birth_center=b[:2], born_at_border=False,
                      hist=np.zeros(8), lost_since=lost)

    calls = []

    class Cascade:
        def detectMultiScale(self, gray, **kw):
            calls.append((gray.shape, kw["maxSize"]))
            return [(0, 0, 24, 24)]

    det._faces = Cascade()
    assert det._count_faces(rgb) == 0 and calls == []  # nobody in view
    det._tracks = [track(1, (10, 20, 30, 40)), track(2, (25, 30, 30, 40)), track(3, (200, 50, 30, 40)),
                   track(4, (100, 100, 20, 40), lost=1.0),
                   track(5, (100, 40, 20, 40)),  # upright, 80 px tall: a face of at most 16 px
                   track(6, (270, 20, 30, 80))]  # upright, 160 px tall: faces up to 32 px
    regions = det._face_regions(360, 640)
    # tracks 1 and 2 overlap once widened: one region; track 3 its own; the lost track 4 none.
    # A region reaches from a quarter of the box's height above it down to 60 % of it (+ 8 px):
    # track 3 is (400, 100, 60, 80) in the frame → y from 100 - 28 to 100 + 48 + 8. Track 6,
    # (540, 40, 60, 160), down to 35 %: 40 + 56 + 8.
    assert regions == [(0, 12, 133, 116, 0), (377, 72, 483, 156, 0), (517, 0, 623, 104, 32)]
    assert det._count_faces(rgb) == 3
    assert calls == [((104, 133), (0, 0)), ((84, 106), (0, 0)), ((104, 106), (32, 32))]
    # a row of boxes that overlap in a chain is not joined into one region much larger than
    # themselves; a face found in two overlapping regions counts once
    det._tracks = [track(9, (10, 100, 60, 40)), track(10, (70, 40, 60, 40)), track(11, (130, 100, 60, 40))]
    regions = det._face_regions(360, 640)
    assert len(regions) == 3
    joined = (min(r[0] for r in regions), min(r[1] for r in regions), max(r[2] for r in regions),
              max(r[3] for r in regions))
    assert sum((r[2] - r[0]) * (r[3] - r[1]) for r in regions) < (joined[2] - joined[0]) * (joined[3] - joined[1])

    class SameFace:  # the face at (300, 150, 40, 40) of the frame, seen from both regions
        answers = iter([[(50, 50, 40, 40)], [(20, 30, 40, 40)]])

        def detectMultiScale(self, gray, **kw):
            return next(self.answers)

    det._faces = SameFace()
    monkeypatch.setattr(det, "_face_regions", lambda H, W: [(250, 100, 400, 250, 0), (280, 120, 420, 260, 0)])
    assert det._count_faces(rgb) == 1
    monkeypatch.undo()
    # an upright box at the bottom border may be the top of a body (a close-up coming in): the
    # general rule; one cut at a side keeps its height, so the whole-body rule holds
    det._tracks = [track(7, (150, 120, 20, 60)), track(8, (300, 20, 15, 60))]
    assert det._face_regions(360, 640) == [(282, 202, 358, 320, 0), (584, 2, 640, 90, 24)]
