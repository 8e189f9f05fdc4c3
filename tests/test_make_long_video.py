"""scripts/make_long_video.py's looping: packets copied with shifted timestamps, no re-encoding."""

from __future__ import annotations

import av
import numpy as np
from script_modules import load_script


def _script():
    return load_script("make_long_video")


def test_loop_repeats_a_video_with_continuing_timestamps(tmp_path):
    unique = tmp_path / "u.mp4"
    with av.open(str(unique), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):  # 2 s
            img = np.full((48, 64, 3), (i * 12) % 256, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    out = tmp_path / "long.mp4"
    loops, dur = _script().loop(unique, out, hours=6.0 / 3600)  # 6 s: three times 2 s
    assert loops == 3 and abs(dur - 2.0) < 0.11
    with av.open(str(out)) as c:
        frames = sorted((float(f.pts * f.time_base), int(f.to_ndarray()[0, 0])) for f in c.decode(video=0))
    times, firsts = [t for t, _ in frames], [v for _, v in frames]
    assert len(times) == 60 and all(b > a for a, b in zip(times, times[1:]))
    assert abs(times[20] - 2.0) < 0.11 and abs(times[40] - 4.0) < 0.11  # the loops follow each other
    assert firsts[:20] == firsts[20:40] == firsts[40:]  # the same pictures, copied
