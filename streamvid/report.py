"""Report outputs: answers as subtitles (SRT) and a self-contained HTML report with a timeline.

Library code: no prints; it logs on the ``streamvid`` logger and raises ``OSError`` when a file
cannot be written. Every file is written atomically (a temporary file in the same folder, then
renamed over the target), so a crash leaves the previous file or none, never half of one.

- :func:`write_srt` — the moments of all answers as numbered subtitles, in time order.
- :func:`write_report` — ``DIR/index.html`` (inline CSS, no scripts, no external URLs), the
  memory's timeline as a coloured strip with event markers, each question with its answer and the
  thumbnails of its moments (``DIR/thumbs/``, from the memory's own pool, so a saved memory renders
  a report without the video) and a matplotlib plot of the timeline channels (``DIR/timeline.png``).
"""

from __future__ import annotations

import html
import io
import logging
import os
from collections.abc import Iterable, Sequence

from streamvid.fsutil import atomic_write
from streamvid.timefmt import fmt_time
from streamvid.types import Answer, Moment

log = logging.getLogger("streamvid")

MIN_SUBTITLE_S = 2.0
"""Shortest time a subtitle stays on screen (instantaneous moments, e.g. an exit)."""

PLOT_NAME = "timeline.png"
THUMB_DIR = "thumbs"
EVENT_COLOURS = {"entered": "#2e9d4f", "left": "#d0443a", "alert": "#e08a00", "other": "#7a5cc4"}
SCENE_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#eeca3b", "#9d755d")
SCENE_CHANGE_MIN = 0.5  # a segment whose scene_change channel reaches this starts a new scene
PERSON_MIN = 0.5  # ... whose person channel reaches this had someone in view


# ---------------------------------------------------------------------- files
# ---------------------------------------------------------------------- SRT
def _srt_time(seconds: float) -> str:
    ms = int(round(max(0.0, float(seconds)) * 1000))
    s, ms = divmod(ms, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def _one_line(text: str) -> str:
    """Subtitle text on one line: a blank line would end the SRT entry."""
    return " ".join(str(text).split())


def moment_label(m: Moment) -> str:
    """``"entered person in red top"``, or just the event when there is no description."""
    return _one_line(f"{m.event} {m.description}" if m.description else m.event)


def srt_entries(answers: Iterable[Answer], min_duration: float = MIN_SUBTITLE_S) -> list[tuple[float, float, str]]:
    """``(start, end, text)`` per moment of every answer, in time order (ties: answer order).

    A subtitle starts at the moment's time ``t`` and lasts until its ``end``, at least
    ``min_duration`` seconds.
    """
    rows = []
    for ai, a in enumerate(answers):
        for mi, m in enumerate(a.moments):
            start = float(m.t)
            end = max(float(m.end), start + min_duration)
            text = f"Q: {_one_line(a.question)} — {moment_label(m)} ({m.score:.2f})"
            rows.append((start, ai, mi, end, text))
    rows.sort(key=lambda r: r[:3])
    return [(start, end, text) for start, _, _, end, text in rows]


def format_srt(answers: Iterable[Answer], min_duration: float = MIN_SUBTITLE_S) -> str:
    blocks = [f"{i}\n{_srt_time(s)} --> {_srt_time(e)}\n{text}\n"
              for i, (s, e, text) in enumerate(srt_entries(answers, min_duration), start=1)]
    return "\n".join(blocks)


def write_srt(answers: Sequence[Answer], path: str, min_duration: float = MIN_SUBTITLE_S) -> int:
    """Write the moments of ``answers`` to ``path`` as SRT (UTF-8, atomically); returns how many."""
    text = format_srt(answers, min_duration)
    atomic_write(path, text.encode("utf-8"))
    n = text.count(" --> ")
    log.info("wrote %d subtitle(s) to %s", n, path)
    return n


# ---------------------------------------------------------------------- timeline data
def _scenes(segments) -> list[int]:
    """Scene number of each segment: a new one at each scene change."""
    out, scene = [], 0
    for i, s in enumerate(segments):
        if i and s.channels.get("scene_change", 0.0) >= SCENE_CHANGE_MIN:
            scene += 1
        out.append(scene)
    return out


def _span(memory, segments, answers) -> tuple[float, float]:
    st = memory.stats()
    lo = [float(st.get("first_t") or 0.0)] + [s.start for s in segments]
    hi = [float(st.get("last_t") or 0.0)] + [b for _, b in _extents(segments)]
    for a in answers:
        for m in a.moments:
            lo.append(m.start)
            hi.append(max(m.end, m.t))
    t0, t1 = min(lo), max(hi)
    return t0, (t1 if t1 > t0 else t0 + 1.0)


def _extents(segments) -> list[tuple[float, float]]:
    """Each segment's span for drawing: held until the next one starts (a segment's ``end`` is its
    last frame, so the sampling step lies between two); the last one gets one typical step."""
    gaps = sorted(b.start - a.end for a, b in zip(segments, segments[1:]) if b.start > a.end)
    step = gaps[len(gaps) // 2] if gaps else 0.0
    out = []
    for i, s in enumerate(segments):
        nxt = segments[i + 1].start if i + 1 < len(segments) else s.end + step
        out.append((s.start, max(s.end, nxt if nxt - s.end <= 4 * step + 1e-6 else s.end + step)))
    return out


def _rgba_hex(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{max(0.0, min(1.0, alpha)):.2f})"


# ---------------------------------------------------------------------- plot
def render_plot(segments, events, answers, span: tuple[float, float]) -> bytes:
    """PNG bytes: motion, person/face and brightness per segment over time, events marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    extents = _extents(segments)
    axes = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [1.2, 1, 1]})
    series = (("motion", ("motion",), "#e08a00"),
              ("person / face", ("person", "face"), "#2e9d4f"),
              ("brightness", ("brightness",), "#4c78a8"))
    for ax, (label, chans, colour) in zip(axes, series):
        for ci, ch in enumerate(chans):
            xs, ys = [], []
            for s, (a, b) in zip(segments, extents):  # a step per segment: its value held over it
                if xs and a > xs[-1] + 1e-6:  # a gap in the timeline stays a gap
                    xs.append(float("nan"))
                    ys.append(float("nan"))
                xs += [a, max(b, a + 1e-3)]
                ys += [s.channels.get(ch, 0.0)] * 2
            style = "-" if ci == 0 else "--"
            ax.plot(xs, ys, style, color=colour if ci == 0 else "#7a5cc4", lw=1.6, label=ch)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if len(chans) > 1:
            ax.legend(fontsize=7, loc="upper right")
        for ev in events:
            ax.axvline(ev.t, color=EVENT_COLOURS.get(ev.kind, "#555555"), lw=1, alpha=0.8)
        for s in segments[1:]:
            if s.channels.get("scene_change", 0.0) >= SCENE_CHANGE_MIN:
                ax.axvline(s.start, color="#333333", lw=1, ls=":")
    most = max((max(s.channels.get("person", 0.0), s.channels.get("face", 0.0)) for s in segments), default=1.0)
    axes[1].set_ylim(-0.05, max(1.0, most) + 0.05)  # counts of people and faces
    bright = [s.channels.get("brightness", 0.0) for s in segments]
    if bright:  # at least 0.2 of range, so that sensor noise does not look like a lighting change
        mid, half = (max(bright) + min(bright)) / 2, max(0.1, (max(bright) - min(bright)) / 2 * 1.1)
        axes[2].set_ylim(mid - half, mid + half)
    top = axes[0]
    moments = sorted({round(m.t, 3) for a in answers for m in a.moments})
    if moments:
        ymax = max([s.channels.get("motion", 0.0) for s in segments] + [1e-3])
        top.plot(moments, [ymax * 1.08] * len(moments), "v", color="#222222", ms=5, label="answer moment")
        top.set_ylim(0, ymax * 1.2)
        top.legend(fontsize=7, loc="upper right")
    kinds = sorted({ev.kind for ev in events})
    if kinds:
        names = ", ".join(f"{k} ({_colour_name(EVENT_COLOURS.get(k))})" for k in kinds)
        top.set_title(f"events: {names}; dotted: scene change", fontsize=8, loc="left")
    axes[-1].set_xlim(*span)
    axes[-1].set_xlabel("time (s)", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _colour_name(c: str | None) -> str:
    return {"#2e9d4f": "green", "#d0443a": "red", "#e08a00": "orange", "#7a5cc4": "purple"}.get(c or "", "grey")


# ---------------------------------------------------------------------- HTML
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1100px;
 padding:0 16px;color:#1d1d1f;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:13px}.meta code{background:#eee;padding:0 4px;border-radius:3px}
.strip{position:relative;height:46px;background:#eceff3;border:1px solid #ccd;border-radius:4px;margin:6px 0 2px}
.seg{position:absolute;top:0;height:34px;box-sizing:border-box;border-right:1px solid rgba(255,255,255,.6)}
.scene{position:absolute;top:34px;height:12px}
.ev{position:absolute;top:-4px;width:3px;height:54px;margin-left:-1px}
.src{position:absolute;top:-8px;height:62px;border-left:2px dashed #333}
.mini{position:relative;height:14px;background:#eceff3;border-radius:3px;margin:4px 0 8px}
.mini .m{position:absolute;top:0;height:14px;min-width:3px;background:#222;opacity:.75;border-radius:2px}
.axis{display:flex;justify-content:space-between;font-size:11px;color:#666}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:12px;height:12px;vertical-align:-2px;margin-right:4px;border-radius:2px}
.qa{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px 14px;margin:12px 0}
.q{font-weight:600}.a{margin:4px 0 6px}.kind{color:#777;font-size:12px;font-weight:400}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:4px 8px;border-top:1px solid #eee;
 vertical-align:middle;font-size:13px}th{color:#666;font-weight:500}
td img{max-height:72px;max-width:128px;border-radius:3px;display:block}
.frames{display:flex;flex-wrap:wrap;gap:6px}.frames figure{margin:0;font-size:11px;color:#666;text-align:center}
.frames img{height:72px;border-radius:3px;display:block}
.plot{max-width:100%;border:1px solid #ddd;background:#fff}
.warn{color:#a35a00}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _pct(t: float, span: tuple[float, float]) -> float:
    t0, t1 = span
    return max(0.0, min(100.0, (t - t0) / (t1 - t0) * 100.0))


def _when(m: Moment) -> str:
    if m.end - m.start < 0.05:
        return fmt_time(m.t)
    if abs(m.t - m.start) < 0.05:
        return f"{fmt_time(m.start)}–{fmt_time(m.end)}"
    return f"{fmt_time(m.t)} ({fmt_time(m.start)}–{fmt_time(m.end)})"


class _Thumbs:
    """Writes pool entries to ``DIR/thumbs/`` once each; returns their paths relative to DIR."""

    def __init__(self, memory, out_dir: str) -> None:
        self.memory, self.out_dir, self.done = memory, out_dir, {}

    def get(self, tid: int) -> str | None:
        if tid is None or tid < 0:
            return None
        if tid not in self.done:
            data = self.memory.thumbnail(tid)
            rel = None
            if data:
                rel = f"{THUMB_DIR}/thumb_{tid:04d}.jpg"
                atomic_write(os.path.join(self.out_dir, THUMB_DIR, f"thumb_{tid:04d}.jpg"), data)
            self.done[tid] = rel
        return self.done[tid]


def _strip(segments, events, span, sources) -> str:
    scenes = _scenes(segments)
    mmax = max([s.channels.get("motion", 0.0) for s in segments] + [1e-6])
    parts = ['<div class="strip">']
    for s, sc, (a, b) in zip(segments, scenes, _extents(segments)):
        c = s.channels
        left = _pct(a, span)
        width = max(0.25, _pct(b, span) - left)
        if c.get("person", 0.0) >= PERSON_MIN:
            colour, what = _rgba_hex("#2e9d4f", 0.55 + 0.45 * min(1.0, c.get("motion", 0.0) / mmax)), "person"
        else:
            colour, what = _rgba_hex("#e08a00", 0.15 + 0.75 * c.get("motion", 0.0) / mmax), "no person"
        tip = (f"{fmt_time(s.start)}–{fmt_time(s.end)} · {s.count} frame(s) · scene {sc + 1} · {what} · "
               + " · ".join(f"{k} {v:.2f}" for k, v in c.items()))
        parts.append(f'<div class="seg" style="left:{left:.3f}%;width:{width:.3f}%;background:{colour}" '
                     f'title="{_e(tip)}"></div>')
        parts.append(f'<div class="scene" style="left:{left:.3f}%;width:{width:.3f}%;'
                     f'background:{SCENE_COLOURS[sc % len(SCENE_COLOURS)]}"></div>')
    for ev in events:
        tip = f"{ev.kind} {fmt_time(ev.t)} {ev.description}".strip()
        parts.append(f'<div class="ev" style="left:{_pct(ev.t, span):.3f}%;'
                     f'background:{EVENT_COLOURS.get(ev.kind, "#555")}" title="{_e(tip)}"></div>')
    for i, src in enumerate(sources or []):
        if i and src.get("t_start") is not None:
            tip = f"source {src.get('index', i)}: {src.get('path') or ''}"
            parts.append(f'<div class="src" style="left:{_pct(src["t_start"], span):.3f}%" title="{_e(tip)}"></div>')
    parts.append("</div>")
    t0, t1 = span
    ticks = [t0 + (t1 - t0) * k / 4 for k in range(5)]
    parts.append('<div class="axis">' + "".join(f"<span>{_e(fmt_time(t))}</span>" for t in ticks) + "</div>")
    legend = [("#2e9d4f", "person in view"), ("#e08a00", "motion (darker: more)"),
              (SCENE_COLOURS[0], "scene band (colour changes at a scene change)")]
    legend += [(EVENT_COLOURS[k], f"{k} event") for k in sorted({ev.kind for ev in events}) if k in EVENT_COLOURS]
    parts.append('<div class="legend">' + "".join(f'<span><i style="background:{c}"></i>{_e(n)}</span>'
                                                   for c, n in legend) + "</div>")
    return "\n".join(parts)


def _answer_html(a: Answer, span, thumbs: _Thumbs) -> str:
    out = ['<div class="qa">',
           f'<div class="q">Q: {_e(a.question)} <span class="kind">({_e(a.kind)}, {_e(a.intent)})</span></div>',
           f'<div class="a">A: {_e(a.answer)}</div>']
    if a.moments:
        out.append('<div class="mini">')
        for m in a.moments:
            left = _pct(m.start, span)
            width = max(0.4, _pct(max(m.end, m.start), span) - left)
            out.append(f'<div class="m" style="left:{left:.3f}%;width:{width:.3f}%" '
                       f'title="{_e(_when(m) + " " + moment_label(m))}"></div>')
        out.append("</div>")
        out.append("<table><tr><th>time</th><th>event</th><th>description</th><th>score</th><th>frame</th></tr>")
        for m in a.moments:
            rel = thumbs.get(m.thumb_id)
            img = f'<img src="{_e(rel)}" alt="{_e(m.event)} at {_e(fmt_time(m.t))}">' if rel else "–"
            out.append(f"<tr><td>{_e(_when(m))}</td><td>{_e(m.event)}</td><td>{_e(m.description)}</td>"
                       f"<td>{m.score:.2f}</td><td>{img}</td></tr>")
        out.append("</table>")
    out.append("</div>")
    return "\n".join(out)


def _keyframes(segments, thumbs: _Thumbs, limit: int) -> str:
    with_thumb = [s for s in segments if s.thumb >= 0]
    if not with_thumb:
        return ""
    if len(with_thumb) > limit:  # evenly spread over the timeline
        step = len(with_thumb) / limit
        with_thumb = [with_thumb[int(i * step)] for i in range(limit)]
    figs = []
    for s in with_thumb:
        rel = thumbs.get(s.thumb)
        if rel:
            when = f"{fmt_time(s.start)}–{fmt_time(s.end)}"
            figs.append(f'<figure><img src="{_e(rel)}" alt="segment at {_e(when)}"><figcaption>{_e(when)}'
                        "</figcaption></figure>")
    return '<h2>Keyframes</h2>\n<div class="frames">' + "".join(figs) + "</div>" if figs else ""


def write_report(memory, answers: Sequence[Answer], out_dir: str, *, title: str | None = None,
                 video: dict | str | None = None, sources: Sequence[dict] | None = None,
                 warnings: Sequence[str] = (), max_keyframes: int = 24) -> str:
    """Write ``out_dir/index.html`` (with ``thumbs/`` and ``timeline.png`` beside it); returns its path.

    ``memory`` is a :class:`~streamvid.memory.DeltaMem` (live or loaded from a snapshot): the
    timeline, the events and the thumbnails all come from it. ``video``: the path, or a dict with
    ``path``/``duration``/``fps``; ``sources``: the stream's source records (with ``t_start`` on the
    memory's timeline), drawn as dashed lines on the strip. Raises ``OSError`` when a file cannot be
    written.
    """
    os.makedirs(out_dir, exist_ok=True)
    segments = memory.segments()
    events = memory.events()
    stats = memory.stats()
    span = _span(memory, segments, answers)
    thumbs = _Thumbs(memory, out_dir)
    info = video if isinstance(video, dict) else {"path": video}
    title = title or f"streamvid report: {os.path.basename(str(info.get('path') or 'memory'))}"

    plot_html = ""
    try:
        png = render_plot(segments, events, answers, span)
    except ImportError as e:  # matplotlib is a dependency; without it the rest of the report still helps
        log.warning("timeline plot not drawn: %s", e)
        plot_html = '<p class="warn">timeline plot not drawn: matplotlib is not installed</p>'
    else:
        atomic_write(os.path.join(out_dir, PLOT_NAME), png)
        plot_html = f'<img class="plot" src="{PLOT_NAME}" alt="motion, person and brightness over time">'

    meta = []
    if info.get("path"):
        meta.append(f"video <code>{_e(info['path'])}</code>")
    if info.get("duration"):
        meta.append(f"duration {_e(fmt_time(info['duration']))}")
    meta.append(f"timeline {_e(fmt_time(span[0]))}–{_e(fmt_time(span[1]))}")
    meta.append(f"{stats.get('frames_seen', 0):,} frames seen")
    meta.append(f"memory {stats.get('bytes', 0):,} bytes")
    meta.append(f"{len(segments):,} segments, {len(events):,} pinned events")
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<div class="meta">{" · ".join(meta)}</div>',
    ]
    body += [f'<p class="warn">warning: {_e(w)}</p>' for w in warnings]
    body += ["<h2>Timeline</h2>", _strip(segments, events, span, sources), plot_html]
    if events:
        body.append("<h2>Events</h2><table><tr><th>time</th><th>event</th><th>description</th>"
                    "<th>score</th><th>frame</th></tr>")
        for ev in events:
            rel = thumbs.get(ev.thumb)
            img = f'<img src="{_e(rel)}" alt="{_e(ev.kind)} at {_e(fmt_time(ev.t))}">' if rel else "–"
            body.append(f"<tr><td>{_e(fmt_time(ev.t))}</td><td>{_e(ev.kind)}</td><td>{_e(ev.description)}</td>"
                        f"<td>{ev.score:.2f}</td><td>{img}</td></tr>")
        body.append("</table>")
    body.append(f"<h2>Questions ({len(answers)})</h2>")
    body += [_answer_html(a, span, thumbs) for a in answers] or ["<p>No questions were asked.</p>"]
    body.append(_keyframes(segments, thumbs, max_keyframes))
    body.append("</body></html>\n")
    path = os.path.join(out_dir, "index.html")
    atomic_write(path, "\n".join(body).encode("utf-8"))
    log.info("wrote the report to %s", path)
    return path
