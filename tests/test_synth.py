"""Fast tests of the synthetic-video generator (streamvid.synth)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamvid import synth
from streamvid.synth import Figure, Scene

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


def _frames(scene: Scene) -> list[np.ndarray]:
    return [rgb for _, rgb in synth.render(scene)]


def _events(scene: Scene) -> list[tuple[float, str, int]]:
    return [(e["t"], e["event"], e["figure"]) for e in synth.ground_truth(scene)["events"]]


# ---------------------------------------------------------------- rendering


def test_render_is_deterministic_and_well_formed() -> None:
    scene = synth.crossing_scene(noise_sigma=3.0, jitter_px=1, seed=7)
    a, b = _frames(scene), _frames(scene)
    assert len(a) == scene.n_frames == 40
    times = [t for t, _ in synth.render(scene)]
    assert times == pytest.approx([i / scene.fps for i in range(scene.n_frames)])
    for fa, fb in zip(a, b, strict=True):
        assert fa.shape == (120, 160, 3) and fa.dtype == np.uint8
        assert np.array_equal(fa, fb)
    # random access gives the same pixels as streaming
    assert np.array_equal(synth.render_frame(scene, 17), a[17])
    # another seed gives other noise (and other background details)
    other = synth.crossing_scene(noise_sigma=3.0, jitter_px=1, seed=8)
    assert not np.array_equal(synth.render_frame(other, 0), a[0])


def test_figure_is_drawn_inside_its_box() -> None:
    scene = synth.crossing_scene()
    empty = synth.empty_scene(duration=scene.duration)
    t = 2.0
    i = int(t * scene.fps)
    diff = (
        np.abs(synth.render_frame(scene, i).astype(int) - synth.render_frame(empty, i).astype(int)).sum(-1)
        > 0
    )
    x, y, w, h = synth.figure_boxes(scene, t)[1]
    inside = diff[y : y + h, x : x + w]
    assert inside.mean() > 0.35  # a person fills a good part of its box
    # outside the box (plus a margin for the soft shadow and anti-aliasing) nothing changed
    m = int(0.25 * h) + 2
    outside = diff.copy()
    outside[max(0, y - m) : y + h + m, max(0, x - m) : x + w + m] = False
    assert not outside.any()


def test_nearer_figure_occludes_the_one_behind() -> None:
    near = Figure(1, "red", "blue", [(0.0, 0.5, 0.85)], height=0.6)
    far = Figure(2, "green", "black", [(0.0, 0.5, 0.75)], height=0.6)
    for figs in ([near, far], [far, near]):
        scene = Scene(160, 120, 10, 1.0, backgrounds=["office"], figures=figs)
        img = synth.render_frame(scene, 0)
        x, y, w, h = synth.figure_box(scene, near, 0.0)
        px = img[int(y + 0.35 * h), int(x + w / 2)]  # middle of the near figure's chest
        assert np.abs(px.astype(int) - synth.COLOURS["red"]).max() < 12


def test_perspective_and_standing_still() -> None:
    fig_low = Figure(1, "red", "blue", [(0.0, 0.3, 0.9)])
    fig_high = Figure(2, "red", "blue", [(0.0, 0.7, 0.6)])
    scene = Scene(320, 240, 10, 1.0, figures=[fig_low, fig_high])
    assert synth.figure_box(scene, fig_high, 0)[3] < synth.figure_box(scene, fig_low, 0)[3]
    # person 2 of the lobby stands still from 22 s to 37 s: the pixels around it do not change
    lobby = synth.lobby_scene(width=320, height=180, noise_sigma=0.0, jitter_px=0)
    f2 = next(f for f in lobby.figures if f.id == 2)
    x, y, w, h = synth.figure_boxes(lobby, 25.0)[2]
    a = synth.render_frame(lobby, 240)[y : y + h, x : x + w]
    b = synth.render_frame(lobby, 280)[y : y + h, x : x + w]
    assert f2.position(24.0) == f2.position(28.0)
    assert np.array_equal(a, b)
    # while walking the limbs do move
    c = synth.render_frame(lobby, 180)
    d = synth.render_frame(lobby, 183)
    assert not np.array_equal(c, d)


def test_noise_is_fresh_each_frame() -> None:
    sigma = 3.0
    frames = _frames(synth.empty_scene(noise_sigma=sigma, duration=0.5))
    d = frames[0].astype(float) - frames[1].astype(float)
    assert d.std() == pytest.approx(np.sqrt(2) * sigma, rel=0.15)
    clean = synth.render_frame(synth.empty_scene(duration=0.5), 0).astype(float)
    assert (frames[0] - clean).mean() == pytest.approx(0.0, abs=0.3)


def test_jitter_shifts_the_whole_frame() -> None:
    j = 2
    base = synth.render_frame(synth.empty_scene(), 0)
    frames = _frames(synth.empty_scene(jitter_px=j))
    H, W = base.shape[:2]
    shifts = set()
    for f in frames:
        found = None
        for dy in range(-j, j + 1):
            for dx in range(-j, j + 1):
                # frame[y, x] == base[y - dy, x - dx] away from the replicated border
                if np.array_equal(f[j:-j, j:-j], base[j - dy : H - j - dy, j - dx : W - j - dx]):
                    found = (dx, dy)
                    break
            if found:
                break
        assert found is not None
        shifts.add(found)
    assert len(shifts) > 1


def test_lighting_ramp() -> None:
    scene = synth.lighting_scene(ramp=(1.5, 2.5, 0.6))
    assert synth.gain_at(scene, 0.0) == 1.0
    assert synth.gain_at(scene, 2.0) == pytest.approx(0.8)
    assert synth.gain_at(scene, 3.5) == pytest.approx(0.6)
    frames = _frames(scene)
    before, after = frames[0].astype(float).mean(), frames[-1].astype(float).mean()
    assert after / before == pytest.approx(0.6, abs=0.01)
    # a second ramp starts from the gain in effect
    two = Scene(160, 120, 10, 6.0, lighting=[(1, 2, 0.5), (3, 5, 1.0)])
    assert synth.gain_at(two, 4.0) == pytest.approx(0.75)
    assert _events(scene) == []


def test_cut_switches_background_instantly() -> None:
    scene = synth.cut_scene(cut_t=2.0)
    frames = _frames(scene)
    assert synth.background_at(scene, 1.9) == 0 and synth.background_at(scene, 2.0) == 1
    assert np.array_equal(frames[0], frames[19])
    assert np.array_equal(frames[20], frames[-1])
    assert np.abs(frames[19].astype(int) - frames[20].astype(int)).mean() > 20
    assert _events(scene) == []


# ---------------------------------------------------------------- ground truth


@pytest.mark.parametrize("left_to_right", [True, False])
def test_crossing_ground_truth(left_to_right: bool) -> None:
    scene = synth.crossing_scene(t_in=1.2, t_out=3.4, left_to_right=left_to_right)
    assert _events(scene) == [(1.2, "entered", 1), (3.4, "left", 1)]
    gt = synth.ground_truth(scene)
    assert gt["figures"][0]["visible"] == [[1.2, 3.4]]
    assert gt["events"][0]["description"] == "person in red top and blue trousers"
    # consistent with the geometry: half of the body box is inside exactly between the events
    fig = scene.figures[0]
    for i in range(scene.n_frames):
        t = scene.frame_time(i)
        inside = synth.visible_fraction(scene, fig, t) >= 0.5 - 1e-9
        assert inside == (1.2 - 1e-6 <= t <= 3.4 + 1e-6)
        assert (1 in synth.figure_boxes(scene, t)) == inside


def test_present_at_start_is_not_an_entry_and_no_exit_at_end() -> None:
    leaving = Figure(1, "white", "black", [(0.0, 0.5, 0.8), (1.0, 0.5, 0.8), (3.0, 1.2, 0.8)])
    staying = Figure(2, "pink", "gray", [(0.0, -0.2, 0.9), (2.0, 0.4, 0.9)])
    scene = Scene(160, 120, 10, 4.0, figures=[leaving, staying])
    ev = _events(scene)
    assert [e for e in ev if e[2] == 1] == [(2.4, "left", 1)]
    assert [e for e in ev if e[2] == 2] == [(0.7, "entered", 2)]
    figs = synth.ground_truth(scene)["figures"]
    assert figs[0]["visible"] == [[0.0, 2.4]]
    assert figs[1]["visible"] == [[0.7, 3.9]]


def test_figures_do_not_cross_cuts() -> None:
    # one person is in view up to the cut, another is in view from the cut on: no events at the cut
    before = Figure(1, "red", "blue", [(0.0, 0.4, 0.85)], scene=0)
    after = Figure(2, "yellow", "black", [(0.0, 0.6, 0.85)], scene=1)
    # a third walks in after the cut: that is an entry
    late = Figure(3, "green", "gray", [(2.0, -0.2, 0.9), (4.0, 0.5, 0.9)], scene=1)
    scene = Scene(
        160, 120, 10, 5.0, backgrounds=["lobby", "street"], cuts=[(2.0, 1)], figures=[before, after, late]
    )
    ev = _events(scene)
    assert [e[2] for e in ev] == [3] and ev[0][1] == "entered"
    assert synth.figure_boxes(scene, 1.9).keys() == {1}
    assert synth.figure_boxes(scene, 2.0).keys() == {2}
    # the renderer agrees: figure 1 is gone right after the cut
    frames = _frames(scene)
    street = synth.render_frame(Scene(160, 120, 10, 5.0, backgrounds=["street"]), 0)
    x, y, w, h = synth.figure_boxes(scene, 1.9)[1]
    assert not np.array_equal(frames[19][y : y + h, x : x + w], frames[20][y : y + h, x : x + w])
    x, y, w, h = synth.figure_box(scene, before, 2.0)
    xi, yi, wi, hi = int(x), int(y), int(w), int(h)
    xa = synth.figure_box(scene, after, 2.0)[0]
    assert xi + wi < xa  # the two boxes do not overlap, so figure 1's place must show the street
    assert np.array_equal(frames[20][yi : yi + hi, xi : xi + wi], street[yi : yi + hi, xi : xi + wi])


def test_ground_truth_layout() -> None:
    scene = synth.standing_scene()
    gt = synth.ground_truth(scene)
    assert json.loads(json.dumps(gt)) == gt
    for key in (
        "video",
        "width",
        "height",
        "fps",
        "duration",
        "events",
        "figures",
        "lighting",
        "cuts",
        "noise_sigma",
        "jitter_px",
    ):
        assert key in gt
    assert gt["video"] == "standing.mp4"
    ts = [e["t"] for e in gt["events"]]
    assert ts == sorted(ts)
    assert gt == synth.ground_truth(synth.standing_scene())


def test_lobby_ground_truth() -> None:
    scene = synth.lobby_scene()
    assert (scene.width, scene.height, scene.fps, scene.n_frames) == (640, 360, 10, 750)
    assert _events(scene) == [
        (4.0, "entered", 1),
        (12.0, "entered", 2),
        (16.0, "left", 1),
        (30.0, "entered", 3),
        (42.0, "left", 3),
        (45.0, "left", 2),
        (50.0, "entered", 4),
        (60.0, "entered", 5),
        (62.0, "left", 4),
    ]
    descriptions = {f.description for f in scene.figures}
    assert len(descriptions) == 5
    assert synth.gain_at(scene, 30.0) == 1.0 and synth.gain_at(scene, 40.0) == pytest.approx(0.75)
    # person 3 passes in front of person 2 (boxes overlap, 3 is nearer the camera)
    b2, b3 = synth.figure_boxes(scene, 36.0)[2], synth.figure_boxes(scene, 36.0)[3]
    assert b3[0] < b2[0] + b2[2] and b2[0] < b3[0] + b3[2]
    assert b3[1] + b3[3] > b2[1] + b2[3]


def test_validation() -> None:
    with pytest.raises(ValueError):
        Figure(1, "teal", "blue", [(0, 0.5, 0.8)])
    with pytest.raises(ValueError):
        Scene(161, 120)
    with pytest.raises(ValueError):
        Scene(160, 120, backgrounds=["moon"])
    with pytest.raises(ValueError):
        Scene(160, 120, duration=3, backgrounds=["lobby"], cuts=[(1.0, 1)])
    with pytest.raises(ValueError):
        synth.simple_scene("nope")


# ---------------------------------------------------------------- files


def test_write_video_decodes(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    scene = synth.crossing_scene(duration=2.5, fps=12, noise_sigma=2.0, jitter_px=1)
    path = tmp_path / "clip.mp4"
    synth.write_video(path, scene, crf=20)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (160, 120)
        assert stream.codec_context.name == "h264"
        assert float(stream.average_rate) == pytest.approx(12)
        frames = list(container.decode(stream))
        assert float(stream.duration * stream.time_base) == pytest.approx(2.5, abs=1e-6)
    assert len(frames) == scene.n_frames == 30
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)
    assert [f.time for f in frames] == pytest.approx([i / 12 for i in range(30)], abs=1e-6)
    assert frames[0].format.name == "yuv420p"
    for i in (0, 15, 29):
        decoded = frames[i].to_ndarray(format="rgb24").astype(float)
        assert np.abs(decoded - synth.render_frame(scene, i)).mean() < 6


def test_committed_sample_matches_generator() -> None:
    gt_path, video = SAMPLES / "lobby.json", SAMPLES / "lobby.mp4"
    if not gt_path.exists() or not video.exists():
        pytest.skip("samples/lobby.* not generated (python scripts/make_samples.py)")
    stored = json.loads(gt_path.read_text())
    stored.pop("encoding", None)
    assert stored == json.loads(json.dumps(synth.ground_truth(synth.lobby_scene(), video="lobby.mp4")))
    assert gt_path.stat().st_size + video.stat().st_size < 2_000_000
    av = pytest.importorskip("av")
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (640, 360)
        assert stream.frames == 750
        assert float(stream.duration * stream.time_base) == pytest.approx(75.0)
