"""The consistency report: ``DIR/index.html`` with the score curve and each drift's pair of frames.

``write_consistency_report(result, series, drifts, out_dir)`` writes (atomically, each file):

- ``DIR/scores.png`` — the per-frame VBench terms over time (subject and background: the mean of
  the cosines with the previous and the first frame; flickering: ``(255 − mean |Δ|) / 255``),
  shot boundaries as thin lines, drifts as red markers;
- ``DIR/drift_NN_before.jpg`` / ``_after.jpg`` — the earlier appearance and the returning shot,
  the changed regions outlined in red;
- ``DIR/index.html`` — the scores per video and per shot, and the drifts side by side (inline CSS,
  no scripts, no external URLs).
"""

from __future__ import annotations

import html
import io
import os

from streamvid.fsutil import atomic_write
from streamvid.timefmt import fmt_time

PLOT = "scores.png"
SERIES_NAMES = ("subject consistency", "background consistency", "temporal flickering")
SERIES_COLOURS = ("#4c78a8", "#54a24b", "#f58518")


def render_plot(rows: list[list[float]], shots: list[dict], drifts: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.2), dpi=100)
    try:
        if rows:
            ts = [r[0] for r in rows]
            for k, (name, colour) in enumerate(zip(SERIES_NAMES, SERIES_COLOURS)):
                ys = [r[k + 1] for r in rows]
                if any(y == y for y in ys):  # not all NaN
                    ax.plot(ts, ys, label=name, color=colour, linewidth=1.2)
        for s in shots[1:]:
            ax.axvline(s["start"], color="#999999", linewidth=0.6, linestyle=":")
        for i, d in enumerate(drifts):
            ax.axvline(d["t"], color="#d0443a", linewidth=1.5, label="drift" if i == 0 else None)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("score")
        ax.set_ylim(min(0.5, *(y for r in rows for y in r[1:] if y == y)) if rows else 0.5, 1.01)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def _feat(desc: dict | None) -> str:
    if not desc:
        return "not computed"
    comparable = "VBench's features" if desc.get("vbench_comparable") else "not VBench's features"
    return f"{_e(desc.get('features', '?'))} <span class=\"note\">({comparable})</span>"


def _boxed(jpeg: bytes | None, regions: list[dict]) -> bytes | None:
    """``jpeg`` with the changed regions outlined (red), re-encoded; unchanged when it cannot be read."""
    if not jpeg:
        return jpeg
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return jpeg
    h, w = img.shape[:2]
    for r in regions:
        x, y, bw, bh = r["box"]
        cv2.rectangle(img, (int(x * w), int(y * h)), (int((x + bw) * w) - 1, int((y + bh) * h) - 1), (40, 40, 220), 2)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes() if ok else jpeg


def _f(v) -> str:
    return "–" if v is None else f"{v:.4f}"


def write_consistency_report(result: dict, rows: list[list[float]], drifts, out_dir: str) -> str:
    """Write the report for ``result`` (the CLI's JSON document); returns the index path."""
    os.makedirs(out_dir, exist_ok=True)
    atomic_write(os.path.join(out_dir, PLOT), render_plot(rows, result["shots"], result["drifts"]))
    pairs = []
    for i, d in enumerate(drifts):
        names = []
        for side, data in (("before", d.match_thumb), ("after", d.thumb)):
            name = f"drift_{i:02d}_{side}.jpg"
            data = _boxed(data, d.regions)
            if data:
                atomic_write(os.path.join(out_dir, name), data)
                names.append(name)
            else:
                names.append(None)
        pairs.append(names)

    video = result.get("video", {})
    sc = result["scores"]
    feats = result.get("features", {})
    out = [f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>streamvid consistency: {_e(os.path.basename(str(video.get("path", ""))))}</title>
<style>
body{{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}}
table{{border-collapse:collapse;margin:8px 0 16px}} td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left}}
th{{background:#f4f4f4}} .drift{{border:1px solid #e3b1ad;background:#fff6f5;padding:10px;margin:12px 0;border-radius:6px}}
.pair{{display:flex;gap:12px;flex-wrap:wrap}} .pair figure{{margin:0}} .pair img{{max-width:100%;height:auto;border:1px solid #ccc}}
.note{{color:#666}} img.plot{{max-width:100%}}
</style></head><body>
<h1>Consistency of {_e(video.get("path", ""))}</h1>
<p>{_e(result.get("summary", ""))}</p>
<h2>VBench scores</h2>
<table><tr><th>dimension</th><th>score</th><th>features</th></tr>
<tr><td>subject consistency</td><td>{_f(sc.get("subject_consistency"))}</td><td>{_feat(feats.get("subject"))}</td></tr>
<tr><td>background consistency</td><td>{_f(sc.get("background_consistency"))}</td><td>{_feat(feats.get("background"))}</td></tr>
<tr><td>temporal flickering</td><td>{_f(sc.get("temporal_flickering"))}</td><td>pixels</td></tr></table>
"""]
    for note in result.get("notes", []):
        out.append(f'<p class="note">{_e(note)}</p>')
    out.append(f'<img class="plot" src="{PLOT}" alt="scores over time">')
    out.append(f"<h2>Drift ({len(drifts)})</h2>")
    if not drifts:
        out.append("<p>No drift found: every returning place looks as it did before.</p>")
    for d, (before, after) in zip(result["drifts"], pairs):
        out.append(f'<div class="drift"><b>{fmt_time(d["t"])}</b> (score {d["score"]:.3f}): {_e(d["description"])}'
                   f'<div class="pair">')
        for name, label in ((before, f"earlier: {fmt_time(d['matches']['t'])}"), (after, f"now: {fmt_time(d['t'])}")):
            img = f'<img src="{name}" alt="{_e(label)}">' if name else "<p>(no thumbnail)</p>"
            out.append(f"<figure>{img}<figcaption>{_e(label)}</figcaption></figure>")
        out.append("</div></div>")
    out.append("<h2>Shots</h2><table><tr><th>#</th><th>from</th><th>to</th><th>frames</th><th>subject</th>"
               "<th>background</th><th>flickering</th><th>place</th></tr>")
    for s in result["shots"]:
        place = {"new": "new scene", "same": f"returns to shot {s['matches']} unchanged",
                 "drift": f"returns to shot {s['matches']}: drift", "short": "too short to compare"}.get(s["status"], s["status"])
        out.append(f"<tr><td>{s['index']}</td><td>{fmt_time(s['start'])}</td><td>{fmt_time(s['end'])}</td>"
                   f"<td>{s['frames']}</td><td>{_f(s['subject'])}</td><td>{_f(s['background'])}</td>"
                   f"<td>{_f(s['flicker'])}</td><td>{_e(place)}</td></tr>")
    out.append("</table></body></html>")
    index = os.path.join(out_dir, "index.html")
    atomic_write(index, "\n".join(out).encode("utf-8"))
    return index
