"""`--srt FILE` and `--report DIR` (streamvid.report) end to end through the CLI, classic encoder."""

import html
import json
import os
import re
import struct
from html.parser import HTMLParser
from pathlib import Path

import pytest

from streamvid import synth
from streamvid.cli import main
from streamvid.timefmt import fmt_time

QUESTIONS = ["who entered?", "who left?", "when was there motion?"]
HOSTILE = "<script>alert(1)</script>"


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """One `watch` of a generated crossing with --save, --srt and --report."""
    d = tmp_path_factory.mktemp("report")
    video = d / "crossing.mp4"
    synth.write_video(video, synth.crossing_scene(width=320, height=240, duration=8, t_in=1, t_out=6))
    asks = [x for q in QUESTIONS + [HOSTILE] for x in ("--ask", q)]
    code = main([str(a) for a in ["watch", video, "--encoder", "classic", *asks, "--json", "--out", d / "out",
                                  "--save", d / "crossing.mem", "--srt", d / "answers.srt",
                                  "--report", d / "report", "-q"]])
    assert code == 0
    return d


def parse_srt(text: str) -> list[tuple[int, float, float, str]]:
    """A strict little SRT parser: blocks of index, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, text lines."""
    def secs(stamp: str) -> float:
        h, m, rest = stamp.split(":")
        s, ms = rest.split(",")
        assert len(ms) == 3 and len(s) == 2 and len(m) == 2 and len(h) >= 2, stamp
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    entries = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.split("\n")
        assert len(lines) >= 3, block
        m = re.fullmatch(r"(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})", lines[1])
        assert m, lines[1]
        entries.append((int(lines[0]), secs(m.group(1)), secs(m.group(2)), "\n".join(lines[2:])))
    return entries


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text, self.imgs, self.urls, self.tags, self.stack = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(a.get("src"))
        for k in ("src", "href"):
            if a.get(k):
                self.urls.append(a[k])
        if tag not in ("img", "meta", "br", "hr", "link", "input"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (self.stack[-3:], tag)
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_page(folder: Path) -> _Page:
    page = _Page()
    raw = (folder / "index.html").read_text(encoding="utf-8")
    page.feed(raw)
    page.close()
    assert page.stack == [], page.stack  # every element closed
    assert "script" not in page.tags  # no scripts at all, the hostile question included
    assert "<script" not in raw.lower()
    for url in page.urls:  # self-contained: relative files in the folder (or data: URIs)
        assert not re.match(r"^[a-z]+://|^//", url), url
        if not url.startswith("data:"):
            assert (folder / url).is_file(), url
            assert (folder / url).resolve().is_relative_to(folder.resolve()), url
    assert "timeline.png" in page.imgs
    png = (folder / "timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    w, h = struct.unpack(">II", png[16:24])
    assert w >= 400 and h >= 200
    for src in page.imgs:
        if src.endswith(".jpg"):
            assert (folder / src).read_bytes()[:2] == b"\xff\xd8", src
    return page


def test_srt_from_watch(watched):
    entries = parse_srt((watched / "answers.srt").read_text(encoding="utf-8"))
    assert [e[0] for e in entries] == list(range(1, len(entries) + 1))
    starts = [e[1] for e in entries]
    assert starts == sorted(starts)
    assert all(end - start >= 2.0 - 1e-9 for _, start, end, _ in entries)  # the minimum display time
    texts = " | ".join(e[3] for e in entries)
    assert "Q: who entered? — entered person in red" in texts
    assert "Q: who left? — left person in red" in texts
    assert len(entries) >= 3  # every moment, at its time: checked against the JSON in the next test


def test_srt_has_every_moment_and_report_from_saved_memory(watched, capsys, tmp_path):
    """`ask` on the saved memory, without the video: the SRT and the report cover every moment."""
    mem = watched / "crossing.mem"
    moved = tmp_path / "elsewhere.mem"
    moved.write_bytes(mem.read_bytes())  # no video next to it, and the recorded path is not used
    rep, srt = tmp_path / "rep", tmp_path / "a.srt"
    code, out, err = run_cli(capsys, "ask", moved, *QUESTIONS, HOSTILE, "--json", "--out", tmp_path / "out",
                             "--srt", srt, "--report", rep)
    assert code == 0, err
    doc = json.loads(out)
    moments = [(a["question"], m) for a in doc["answers"] for m in a["moments"]]
    assert len(moments) >= 3
    entries = parse_srt(srt.read_text(encoding="utf-8"))
    assert len(entries) == len(moments)
    for q, m in moments:
        assert any(abs(s - m["t"]) < 1e-3 and e >= max(m["end"], m["t"]) - 1e-3 and t.startswith(f"Q: {q} — ")
                   for _, s, e, t in entries), (q, m)

    page = check_page(rep)
    text = " ".join(page.text)
    for _, m in moments:
        assert fmt_time(m["t"]) in text, m
    for a in doc["answers"]:
        assert a["question"] in text  # the hostile one as text, escaped in the source
    thumbs = [s for s in page.imgs if s.startswith("thumbs/")]
    assert thumbs, "no thumbnails in the report"


def test_report_from_watch(watched):
    page = check_page(watched / "report")
    text = " ".join(page.text)
    for q in QUESTIONS:
        assert q in text
    assert HOSTILE in text  # shown as text ...
    raw = (watched / "report" / "index.html").read_text(encoding="utf-8")
    assert HOSTILE not in raw and html.escape(HOSTILE) in raw  # ... because it is escaped
    assert "Timeline" in text and 'class="seg"' in raw and 'class="ev"' in raw
    assert not any(n.endswith(".tmp") for n in os.listdir(watched / "report"))


def test_bad_srt_target_is_a_warning(watched, capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run_cli(capsys, "ask", watched / "crossing.mem", "who left?", "--out", tmp_path / "out",
                             "--srt", blocker / "a.srt", "--report", blocker / "rep")
    assert code == 3  # the answers are there; the outputs that could not be written make it partial
    assert "subtitles not written" in err and "report not written" in err
