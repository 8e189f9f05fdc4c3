"""A long generated video for throughput benchmarks (issue 7): ``--minutes`` of unique content,
looped (by copying its packets with shifted timestamps, no re-encoding) to ``--hours``.

    python scripts/make_long_video.py --out /tmp/long720.mp4 --hours 1 --minutes 5 --size 1280x720
    python scripts/make_long_video.py --out /tmp/long720.mp4 --hours 1 --loop-of v720_5m.mp4  # no rendering

The unique part is ``synth.lobby_scene`` variants (people entering and leaving a lobby, one
variant per minute with its own seed), rendered at ``--fps`` (default 10) and encoded with x264.
The result states its true unique length; the loop is plain in the timestamps.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av


def make(out: Path, hours: float, minutes: float, size: tuple[int, int], fps: float) -> Path:
    from streamvid import synth

    w, h = size
    with tempfile.TemporaryDirectory() as d:
        unique = Path(d) / "unique.mp4"
        with av.open(str(unique), "w") as c:
            s = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000), options={"preset": "veryfast"})
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            n = 0
            for k in range(max(1, round(minutes))):
                scene = synth.lobby_scene(width=w, height=h, fps=fps, seed=2024 + k)
                for i in range(min(scene.n_frames, int(60 * fps))):
                    frame = av.VideoFrame.from_ndarray(synth.render_frame(scene, i), format="rgb24")
                    frame.pts = n
                    n += 1
                    for p in s.encode(frame):
                        c.mux(p)
            for p in s.encode():
                c.mux(p)
        loops, dur = loop(unique, out, hours)
    print(f"{out}: {loops} × {dur / 60:.1f} min of unique content = {loops * dur / 3600:.2f} h at {w}x{h}, "
          f"{fps:g} fps", file=sys.stderr)
    return out


def loop(unique: Path, out: Path, hours: float) -> tuple[int, float]:
    """``unique`` (its first video stream) repeated to about ``hours`` into ``out`` by copying its
    packets with shifted timestamps (no re-encoding) → (repeats, seconds of ``unique``)."""
    with av.open(str(unique)) as inp:
        src = inp.streams.video[0]
        if src.duration is None:
            raise SystemExit(f"make_long_video: {unique} states no video duration; cannot loop it")
        dur = float(src.duration * src.time_base)
    loops = max(1, round(hours * 3600 / dur))
    with av.open(str(unique)) as inp, av.open(str(out), "w") as dst:
        src = inp.streams.video[0]
        o = dst.add_stream_from_template(src)
        span = src.duration  # in the stream's time base
        for k in range(loops):
            inp.seek(0)
            for p in inp.demux(src):
                if p.dts is None:
                    continue
                p.pts += k * span
                p.dts += k * span
                p.stream = o
                dst.mux(p)
    return loops, dur


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--hours", type=float, default=1.0)
    p.add_argument("--minutes", type=float, default=5.0, help="unique content, looped to --hours")
    p.add_argument("--size", default="1280x720")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--loop-of", type=Path, metavar="VIDEO",
                   help="loop this video (e.g. a 5-minute one made here before) instead of rendering; "
                        "--minutes, --size and --fps are then its own")
    a = p.parse_args()
    if a.loop_of is not None:
        if not a.loop_of.is_file():
            p.error(f"--loop-of {a.loop_of}: no such file")
        loops, dur = loop(a.loop_of, a.out, a.hours)
        print(f"{a.out}: {loops} × {dur / 60:.1f} min of {a.loop_of} = {loops * dur / 3600:.2f} h", file=sys.stderr)
        return 0
    w, h = (int(v) for v in a.size.lower().split("x"))
    make(a.out, a.hours, a.minutes, (w, h), a.fps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
