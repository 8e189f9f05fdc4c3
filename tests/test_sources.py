"""The PyAV file source: sampling, times, ranges and bad input (clips are written by the tests)."""

import av
import numpy as np
import pytest

from streamvid.errors import EXIT_BAD_INPUT
from streamvid.sources import FileSource, SourceError, probe


def write_clip(path, n=50, fps=10, size=(160, 120), codec="libx264", pix_fmt="yuv420p"):
    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = (i * 5) % 256
            img[:, : (i * 3) % w, 1] = 200
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_probe_and_sampling(tmp_path):
    path = write_clip(tmp_path / "a.mp4", n=50, fps=10)
    info = probe(str(path))
    assert info.duration == pytest.approx(5.0, abs=0.11)
    assert info.fps == pytest.approx(10.0)
    assert (info.width, info.height) == (160, 120)
    src = FileSource(str(path), fps=2)
    frames = list(src)
    assert [round(f.t, 2) for f in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    assert [f.index for f in frames] == list(range(10))
    assert src.expected_frames == 10
    assert frames[0].rgb.shape == (120, 160, 3) and frames[0].rgb.dtype == np.uint8
    # the frame at t=1.0 is the 11th frame of the clip: red channel 10*5
    assert abs(int(frames[2].rgb[..., 0].mean()) - 50) <= 3


@pytest.mark.parametrize("fps, start, end", [(2.0, 0.0, None), (1.0, 0.35, None), (3.0, 0.0, None),
                                             (0.5, 0.0, None), (7.0, 0.1, 4.0), (None, 0.0, None)])
@pytest.mark.parametrize("codec, ext", [("libx264", "mp4"), ("mpeg4", "avi"), ("mpeg2video", "mpg")])
def test_dropping_unwanted_frames_changes_nothing_taken(tmp_path, fps, start, end, codec, ext):
    """The decoder drops non-reference frames that sampling will not take (B-frames here): the
    frames taken are the same, to the bit, and fewer frames are decoded."""
    path = tmp_path / f"a.{ext}"
    with av.open(str(path), "w") as c:  # a square sliding over a still background: B-frames
        s = c.add_stream(codec, rate=30)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        if codec != "libx264":  # x264 chooses its own
            s.codec_context.max_b_frames = 2
        bg = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
        for i in range(90):
            img = bg.copy()
            img[20:40, i:i + 20] = (250, 40, 40)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    runs = {}
    for skip in (False, True):
        src = FileSource(str(path), fps=fps, start=start, end=end, skip_unwanted=skip)
        runs[skip] = ([(f.t, f.index, f.rgb.tobytes()) for f in src], src.decoded)
    (plain, n_plain), (dropped, n_dropped) = runs[False], runs[True]
    assert dropped == plain and plain
    if fps is None or fps > 30 / 1.5:  # every frame is taken: nothing to drop
        assert n_dropped == n_plain
    else:
        assert n_dropped < n_plain


def test_all_frames_and_native_rate(tmp_path):
    path = write_clip(tmp_path / "a.mp4", n=12, fps=4)
    frames = list(FileSource(str(path), fps=None))
    assert len(frames) == 12
    assert frames[-1].t == pytest.approx(11 / 4)


def test_start_end(tmp_path):
    path = write_clip(tmp_path / "a.mp4", n=50, fps=10)
    ts = [f.t for f in FileSource(str(path), fps=2, start=1.2, end=3.1)]
    assert ts[0] == pytest.approx(1.2) and ts[-1] <= 3.1 and len(ts) == 4
    with pytest.raises(SourceError, match="no decodable video frames in the --start/--end range"):
        list(FileSource(str(path), fps=2, start=30, end=40))


def test_max_side_downscales(tmp_path):
    path = write_clip(tmp_path / "a.mp4", n=3, fps=10, size=(320, 240))
    f = next(iter(FileSource(str(path), fps=None, max_side=160)))
    assert f.rgb.shape == (120, 160, 3)


def test_one_frame_clip(tmp_path):
    path = write_clip(tmp_path / "one.mp4", n=1)
    assert len(list(FileSource(str(path)))) == 1


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "no such file"),
    (lambda p: (p.write_bytes(b""), p)[1], "file is empty"),
    (lambda p: (p.write_text("hello, I am not a video\n" * 20), p)[1], "not a video file"),
    (lambda p: (p.mkdir(), p)[1], "is a directory"),
])
def test_bad_files_are_input_errors(tmp_path, make, message):
    path = make(tmp_path / "clip.mp4")
    with pytest.raises(SourceError, match=message) as e:
        FileSource(str(path))
    assert e.value.exit_code == EXIT_BAD_INPUT
    assert "\n" not in str(e.value)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = i * 1024
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(SourceError, match="no video stream"):
        FileSource(str(path))


@pytest.mark.parametrize("codec, name", [("libx264", "c.mp4"), ("mpeg4", "c.avi"), ("mjpeg", "c.avi")])
def test_corrupt_packets_are_skipped_and_counted(tmp_path, caplog, codec, name):
    pix = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    path = write_clip(tmp_path / name, n=60, fps=10, codec=codec, pix_fmt=pix)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for off in range(int(len(data) * 0.4), int(len(data) * 0.6), 97):  # damage the middle
        data[off] = int(rng.integers(0, 256))
    path.write_bytes(bytes(data))
    src = FileSource(str(path), fps=None)
    frames = list(src)
    assert src.skipped >= 1
    assert 10 <= len(frames) < 60
    assert "corrupt" in caplog.text


def test_truncated_file_gives_what_could_be_read(tmp_path):
    path = write_clip(tmp_path / "t.mp4", n=60, fps=10, codec="mpeg4")
    full = len(list(FileSource(str(path), fps=None)))
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    # mp4 keeps its index at the end: cut an AVI instead so the first half stays decodable
    write_clip(cut, n=60, fps=10, codec="mpeg4")
    cut.write_bytes(cut.read_bytes()[: len(data) // 2])
    frames = list(FileSource(str(cut), fps=None))
    assert 0 < len(frames) < full


def test_consumer_can_stop_early(tmp_path):
    path = write_clip(tmp_path / "a.mp4", n=200, fps=25)
    src = FileSource(str(path), fps=None, queue_size=2)
    for f in src:
        if f.index == 3:
            break
    assert src.emitted == 4


def test_rotated_video_is_turned_upright(tmp_path):
    """A phone video stored sideways with a display rotation comes out the way it is shown."""
    path = tmp_path / "rot.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        s.set_display_rotation(90)
        for _ in range(3):
            img = np.zeros((120, 160, 3), np.uint8)
            img[:30, :40] = 255  # a white block in the stored frame's top-left corner
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    f = next(iter(FileSource(str(path), fps=None)))
    assert f.rgb.shape[:2] == (160, 120)  # turned a quarter: portrait
    # 90° counterclockwise: the stored top-left corner is now the bottom-left
    assert f.rgb[-20:, :15].mean() > 200 and f.rgb[:20, :15].mean() < 50


def test_unsupported_codec_is_an_input_error(tmp_path):
    path = write_clip(tmp_path / "z.avi", n=5, codec="mpeg4")
    path.write_bytes(path.read_bytes().replace(b"FMP4", b"ZZZZ"))  # a FourCC FFmpeg cannot decode
    with pytest.raises(SourceError, match="unsupported video codec") as e:
        list(FileSource(str(path), fps=None))
    assert e.value.exit_code == EXIT_BAD_INPUT
