"""Render the committed sample clip and its ground truth.

    python scripts/make_samples.py [--out samples] [--crf 30]

writes ``<out>/lobby.mp4`` (640x360, 10 fps, 75 s, libx264) and ``<out>/lobby.json`` (the
ground truth from :func:`streamvid.synth.ground_truth`). Everything is seeded, so re-running gives
the same frames and the same ground truth.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from streamvid import synth

DEFAULT_CRF = 25
SIZE_LIMIT = 2 * 1024 * 1024  # both files together


def make_lobby(out: Path, crf: int = DEFAULT_CRF, preset: str = "slow") -> tuple[Path, Path]:
    """Write ``lobby.mp4`` and ``lobby.json`` under ``out``; returns their paths."""
    scene = synth.lobby_scene()
    out.mkdir(parents=True, exist_ok=True)
    video = out / "lobby.mp4"
    gt_path = out / "lobby.json"
    synth.write_video(video, scene, crf=crf, preset=preset)
    gt = synth.ground_truth(scene, video=video.name)
    gt["encoding"] = {"codec": "libx264", "crf": crf, "preset": preset, "pix_fmt": "yuv420p"}
    gt_path.write_text(json.dumps(gt, indent=1) + "\n")
    return video, gt_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("samples"), help="output folder (default: samples)")
    ap.add_argument("--crf", type=int, default=DEFAULT_CRF, help=f"x264 CRF (default: {DEFAULT_CRF})")
    ap.add_argument("--preset", default="slow", help="x264 preset (default: slow)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    video, gt_path = make_lobby(args.out, crf=args.crf, preset=args.preset)
    sizes = {p: p.stat().st_size for p in (video, gt_path)}
    for p, n in sizes.items():
        print(f"{p}: {n / 1024:.1f} KiB")
    total = sum(sizes.values())
    print(f"total: {total / 1024:.1f} KiB ({total / SIZE_LIMIT:.0%} of the 2 MiB budget)")
    gt = json.loads(gt_path.read_text())
    for e in gt["events"]:
        print(f"  {e['t']:6.1f} s  {e['event']:8s} #{e['figure']}  {e['description']}")
    if total >= SIZE_LIMIT:
        print("error: the sample is over the size budget; raise --crf", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
