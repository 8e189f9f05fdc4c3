"""The command line: ``streamvid watch``, ``live``, ``serve``, ``ask``, ``consistency``, ``index`` and
``search``. Parsing and printing only.

Exit codes (stable, see README): 0 ok · 1 unexpected error · 2 bad input · 3 partial result · 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from streamvid import __version__
from streamvid.errors import (
    EXIT_BAD_INPUT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    InputError,
    StreamvidError,
    Warnings,
)
from streamvid.timefmt import fmt_time, parse_time

log = logging.getLogger("streamvid")

DEFAULT_MODEL, DEFAULT_PRETRAINED = "ViT-B-32", "laion2b_s34b_b79k"  # as streamvid.models.factory
DEFAULT_FPS, DEFAULT_MEMORY_MB, DEFAULT_MAX_SIDE = 2.0, 4.0, 640


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own code for usage errors)
        raise InputError(f"{message} (see: {self.prog} --help)")


def _positive(kind):
    def conv(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return v
    return conv


def _nonneg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return v


def _time(text: str) -> float:
    try:
        return parse_time(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="streamvid", description="Watch video with a constant-size memory and answer questions "
                "about it with timestamps.")
    p.add_argument("--version", action="version", version=f"streamvid {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument("--out", default="streamvid_out", metavar="DIR",
                        help="where thumbnails are written (default: %(default)s)")
    common.add_argument("--srt", metavar="FILE", help="write the answers' moments as subtitles (SRT) to FILE")
    common.add_argument("--report", metavar="DIR",
                        help="write an HTML report (DIR/index.html: timeline, answers, thumbnails, plot)")
    common.add_argument("--top-k", type=_positive(int), default=5, metavar="K",
                        help="moments per retrieval answer (default: %(default)s)")
    common.add_argument("--min-gap", type=_nonneg, default=1.0, metavar="SECONDS",
                        help="moments closer than this to a better one are dropped (default: %(default)s)")
    common.add_argument("--at", type=_time, action="append", default=[], metavar="TIME",
                        help="what is happening at TIME (s or HH:MM:SS; repeatable)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    common.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    common.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")

    # --encoder/--model/--pretrained/--fps/--memory-mb/--max-side default to None so that --resume
    # can tell an explicit choice (checked against the memory) from a default (taken from it).
    enc = _Parser(add_help=False)
    g = enc.add_argument_group("encoder")
    g.add_argument("--encoder", choices=["auto", "clip", "classic"], default=None,
                   help="auto: clip when its weights are available, else classic (default: auto; "
                   "with --resume: the memory's)")
    g.add_argument("--model", default=None, help=f"open_clip model name or config JSON (default: {DEFAULT_MODEL})")
    g.add_argument("--pretrained", default=None, help=f"open_clip pretrained tag (default: {DEFAULT_PRETRAINED})")
    g.add_argument("--weights", metavar="PATH", help="local CLIP checkpoint (.safetensors/.pt); implies clip")
    g.add_argument("--device", default=None, help="torch device for the encoder (default: cuda if available)")

    w = sub.add_parser("watch", parents=[common, enc], help="ingest a video file and answer questions",
                       description="Ingest VIDEO into a fixed-size memory, then answer the questions.")
    w.add_argument("video", help="a video file")
    w.add_argument("--ask", action="append", default=[], metavar="QUESTION", help="a question (repeatable)")
    w.add_argument("--ask-image", action="append", default=[], metavar="PATH",
                   help="an image: when does this scene appear? (repeatable)")
    w.add_argument("--fps", type=_positive(float), default=None,
                   help=f"frames sampled per second (default: {DEFAULT_FPS:g}; with --resume: the memory's)")
    w.add_argument("--start", type=_time, default=0.0, metavar="TIME", help="start at TIME (s or HH:MM:SS)")
    w.add_argument("--end", type=_time, default=None, metavar="TIME", help="stop at TIME (s or HH:MM:SS)")
    w.add_argument("--memory-mb", type=_positive(float), default=None, metavar="MB",
                   help=f"memory budget in MiB, fixed at creation (default: {DEFAULT_MEMORY_MB:g}; "
                   "with --resume: the memory's)")
    w.add_argument("--save", metavar="MEM", help="save the memory (safetensors, atomically) to MEM")
    w.add_argument("--resume", metavar="MEM",
                   help="continue the memory saved in MEM: the same video continues where it stopped, "
                   "another one is appended after it; saved back to MEM unless --save is given")
    w.add_argument("--max-side", type=_positive(int), default=None, metavar="PX",
                   help=f"decode frames scaled to at most PX on the long side (default: {DEFAULT_MAX_SIDE}; "
                   "with --resume: the memory's)")
    w.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")

    ing = argparse.ArgumentParser(add_help=False)  # options of live ingestion (live, serve)
    g = ing.add_argument_group("live ingestion")
    g.add_argument("--realtime", action="store_true", help="file SOURCEs are played paced at their own rate")
    g.add_argument("--speed", type=_positive(float), default=1.0, metavar="X",
                   help="with --realtime: play X times faster (default: %(default)s)")
    g.add_argument("--loop", action="store_true", help="with --realtime: start a file again at its end")
    g.add_argument("--alert", action="append", default=[], metavar="TEXT",
                   help="a standing question, e.g. \"a person enters\", \"someone in red leaves\", "
                   "\"motion\", \"scene change\" (clip: any text); repeatable")
    g.add_argument("--alert-threshold", type=float, default=None, metavar="COS",
                   help="clip: cosine above which a free-text alert fires (default: 0.26)")
    g.add_argument("--webhook", metavar="URL", help="POST each alert's JSON to this http(s) URL")
    g.add_argument("--webhook-timeout", type=_positive(float), default=5.0, metavar="SECONDS",
                   help="timeout of one webhook POST (default: %(default)s)")
    g.add_argument("--duration", type=_positive(float), default=None, metavar="SECONDS",
                   help="stop ingesting a source after this much stream time")
    g.add_argument("--fps", type=_positive(float), default=None,
                   help=f"frames sampled per second of stream time (default: {DEFAULT_FPS:g})")
    g.add_argument("--memory-mb", type=_positive(float), default=None, metavar="MB",
                   help=f"memory budget of each source in MiB (default: {DEFAULT_MEMORY_MB:g})")
    g.add_argument("--max-side", type=_positive(int), default=None, metavar="PX",
                   help=f"scale frames to at most PX on the long side (default: {DEFAULT_MAX_SIDE})")
    g.add_argument("--buffer", type=_positive(int), default=8, metavar="N",
                   help="frames buffered per source between it and ingestion; when full the oldest is "
                   "dropped, counted (default: %(default)s)")
    g.add_argument("--batch", dest="batch_size", type=_positive(int), default=8, metavar="N",
                   help="most frames (of all sources) encoded in one batch (default: %(default)s)")

    lv = sub.add_parser("live", parents=[common, enc, ing], help="watch a live stream, alert on standing questions",
                        description="Ingest a live SOURCE (webcam index, /dev/video*, rtsp/rtmp/http URL, HTTP "
                        "MJPEG, or a file with --realtime) into a fixed-size memory; each --alert hit prints "
                        "one JSON line on stdout (and is POSTed to --webhook); --ask is answered when the "
                        "stream ends (--duration, end of a file, Ctrl-C or SIGTERM).")
    lv.add_argument("source", metavar="SOURCE", nargs="+",
                    help="webcam index, device path, URL, or a file (with --realtime); several: one memory "
                    "each, ingested together")
    lv.add_argument("--ask", action="append", default=[], metavar="QUESTION",
                    help="a question answered when the stream ends (repeatable)")
    lv.add_argument("--save", metavar="MEM",
                    help="save the memory (safetensors, atomically) to MEM at the end; with several "
                    "sources MEM must hold {i} (the source's number) or {name}, e.g. mem-{i}.svm")
    lv.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="a status line on stderr (default: when stderr is a terminal)")

    sv = sub.add_parser("serve", parents=[enc, ing], help="serve live streams and saved memories: JSON API and web page",
                        description="Serve --source streams (ingested live, one memory each) and --memory files "
                        "over HTTP: POST /ask, GET /events (+ /events/stream, SSE), /memory, /frame.jpg, "
                        "/health, /docs, and a web page at /. Stops on SIGTERM or Ctrl-C (saving with --save).")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s); any "
                    "other than loopback needs --token")
    sv.add_argument("--port", type=int, default=8765, help="port (default: %(default)s; 0: any free port)")
    sv.add_argument("--token", default=None, help="bearer token every request must carry (default: "
                    "$STREAMVID_TOKEN); the page takes it once as /?token=TOKEN")
    sv.add_argument("--source", action="append", default=[], metavar="SOURCE",
                    help="a live source (webcam index, device, URL) or a file with --realtime (repeatable)")
    sv.add_argument("--memory", action="append", default=[], metavar="MEM",
                    help="a memory saved with --save, served read-only (repeatable)")
    sv.add_argument("--save", metavar="MEM", help="at shutdown, save each source's memory to MEM ({i}/{name} "
                    "in the path with several sources)")
    sv.add_argument("--max-body-mb", type=_positive(float), default=8.0, metavar="MB",
                    help="largest request body, e.g. an uploaded image (default: %(default)s)")
    sv.add_argument("--min-gap", type=_nonneg, default=1.0, metavar="SECONDS",
                    help="answers: moments closer than this are merged (default: %(default)s)")
    sv.add_argument("--out", default="streamvid_out", metavar="DIR",
                    help="where alert thumbnails are written (default: %(default)s)")
    sv.add_argument("-v", "--verbose", action="count", default=0, help="more log output (access log with -v)")
    sv.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr; no alert lines on stdout")
    sv.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")

    cs = sub.add_parser("consistency", parents=[enc],
                        help="scene and subject consistency of a (generated) video: VBench scores and drift",
                        description="VBench's subject consistency, background consistency and temporal "
                        "flickering per video and per shot, and drift: places that look different when the "
                        "video returns to them (times, what changed, the earlier time it should match).")
    cs.add_argument("video", help="a video file")
    cs.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    cs.add_argument("--report", metavar="DIR", help="write DIR/index.html: score curve, drift pairs side by side")
    cs.add_argument("--fps", type=_positive(float), default=None,
                    help="frames checked per second (default: every frame, as VBench does)")
    cs.add_argument("--start", type=_time, default=0.0, metavar="TIME", help="start at TIME (s or HH:MM:SS)")
    cs.add_argument("--end", type=_time, default=None, metavar="TIME", help="stop at TIME (s or HH:MM:SS)")
    cs.add_argument("--max-side", type=_positive(int), default=DEFAULT_MAX_SIDE, metavar="PX",
                    help="decode frames scaled to at most PX on the long side (default: %(default)s)")
    cs.add_argument("--memory-mb", type=_positive(float), default=None, metavar="MB",
                    help=f"Δ-Mem budget (default: {DEFAULT_MEMORY_MB:g})")
    cs.add_argument("--settle", type=_positive(float), default=1.0, metavar="SECONDS",
                    help="seconds at the start of each shot that are compared (default: %(default)s)")
    cs.add_argument("--vbench", action=argparse.BooleanOptionalAction, default=True,
                    help="compute the VBench scores (default: yes; --no-vbench: drift only, faster)")
    cs.add_argument("--dino-weights", metavar="PATH",
                    help="DINO ViT-B/16 checkpoint for subject consistency (default: the local caches)")
    cs.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="a progress bar on stderr (default: when stderr is a terminal)")
    cs.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    cs.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    cs.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")

    ix = sub.add_parser("index", parents=[enc], help="index many videos into a catalog, in-process or on Ray",
                        description="Ingest each VIDEO into its own fixed-size memory, saved in the catalog DIR "
                        "with its metadata; videos already indexed with the same settings are skipped. With "
                        "--ray, the videos are indexed in parallel by Ray workers (pip install 'streamvid[ray]').")
    ix.add_argument("videos", metavar="VIDEO", nargs="+", help="video files")
    ix.add_argument("--catalog", required=True, metavar="DIR", help="the catalog folder (created if missing)")
    ix.add_argument("--ray", metavar="MODE", default=None,
                    help="run on Ray: 'local' (a cluster on this machine, --workers CPUs), 'auto' (the cluster "
                    "this machine joined with `ray start`), or a head's ADDRESS (HOST:6379, ray://HOST:10001)")
    ix.add_argument("--workers", type=_positive(int), default=None, metavar="N",
                    help="with --ray: videos indexed at once, one CPU each (default: the cluster's CPUs, or "
                    "its GPUs with the clip encoder)")
    ix.add_argument("--fps", type=_positive(float), default=DEFAULT_FPS,
                    help="frames sampled per second (default: %(default)s)")
    ix.add_argument("--memory-mb", type=_positive(float), default=DEFAULT_MEMORY_MB, metavar="MB",
                    help="memory budget of each video in MiB (default: %(default)s)")
    ix.add_argument("--max-side", type=_positive(int), default=DEFAULT_MAX_SIDE, metavar="PX",
                    help="decode frames scaled to at most PX on the long side (default: %(default)s)")
    ix.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    ix.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    ix.add_argument("-q", "--quiet", action="store_true", help="no progress lines (failures are still shown)")
    ix.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")

    se = sub.add_parser("search", help="answer a question or an image across every video of a catalog",
                        description="Answer QUESTION (or --image PATH) from every memory of the catalog DIR; "
                        "the moments of all videos, best first, each with its video.")
    se.add_argument("catalog", metavar="DIR", help="a catalog made by `streamvid index`")
    se.add_argument("question", nargs="?", default=None, help="a question")
    se.add_argument("--image", metavar="PATH", help="an image query: when does this scene appear, in which video?")
    se.add_argument("--top-k", type=_positive(int), default=5, metavar="K",
                    help="moments in all (default: %(default)s)")
    se.add_argument("--min-gap", type=_nonneg, default=1.0, metavar="SECONDS",
                    help="within a video, moments closer than this to a better one are dropped (default: %(default)s)")
    se.add_argument("--encoder", choices=["classic", "clip"], default=None,
                    help="search the memories of this encoder (needed when the catalog holds several)")
    se.add_argument("--weights", metavar="PATH", help="the CLIP checkpoint, if it moved since indexing")
    se.add_argument("--device", default=None, help="torch device for the encoder (default: cuda if available)")
    se.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    se.add_argument("--out", default="streamvid_out", metavar="OUT",
                    help="where thumbnails are written, under OUT/search/ (default: %(default)s)")
    se.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    se.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    se.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")

    a = sub.add_parser("ask", parents=[common], help="answer questions from a saved memory",
                       description="Answer questions from a memory saved with `watch --save`, without the video.")
    a.add_argument("memory", metavar="MEM", help="a memory file written by --save")
    a.add_argument("question", nargs="*", help="question(s)")
    a.add_argument("--image", action="append", default=[], metavar="PATH", help="an image query (repeatable)")
    a.add_argument("--weights", metavar="PATH",
                   help="the CLIP checkpoint, if it moved since the memory was saved (the memory names its encoder)")
    a.add_argument("--device", default=None, help="torch device for the encoder (default: cuda if available)")
    return p


def _setup_logging(args) -> None:
    level = logging.WARNING
    if getattr(args, "quiet", False):
        level = logging.ERROR
    elif getattr(args, "verbose", 0) >= 2:
        level = logging.DEBUG
    elif getattr(args, "verbose", 0) == 1:
        level = logging.INFO
    logging.basicConfig(level=level, format="streamvid: %(levelname)s: %(message)s", stream=sys.stderr)
    if level == logging.DEBUG:  # FFmpeg's own messages (PyAV drops them by default)
        import av.logging

        av.logging.set_level(av.logging.WARNING)


def _read_image(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise InputError(f"no such image file: {path}")
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"not an image (or unreadable): {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def make_encoder(args):
    """The encoder the ``--encoder/--model/--pretrained/--weights/--device`` options ask for; the
    auto encoder's fallback note goes to stderr; an unusable choice is an InputError (exit 2).
    The thread pools are set for it (:func:`~streamvid.pipeline.configure_threads`)."""
    from streamvid.models.base import EncoderError
    from streamvid.models.factory import create_encoder
    from streamvid.pipeline import configure_threads

    try:
        encoder, note = create_encoder(args.encoder or "auto", model=args.model or DEFAULT_MODEL,
                                       pretrained=args.pretrained or DEFAULT_PRETRAINED,
                                       weights=args.weights, device=args.device)
    except EncoderError as e:
        raise InputError(str(e)) from None
    if note:
        print(f"streamvid: {note}", file=sys.stderr)
    configure_threads(encoder)
    return encoder


def _check_save_target(path: str) -> None:
    from streamvid.memory.snapshot import is_snapshot

    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot save the memory: cannot create {parent}: {e.strerror or e}") from None
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot save the memory: directory not writable: {parent}")
    if os.path.isdir(path):
        raise InputError(f"cannot save the memory: {path} is a directory")
    if os.path.exists(path) and not is_snapshot(path):
        raise InputError(f"{path} exists and is not a streamvid memory: not overwriting it")


# ---------------------------------------------------------------------- commands
def cmd_watch(args) -> int:
    from streamvid.pipeline import (
        FINGERPRINT_BYTES,
        IngestStats,
        SourceRecord,
        StreamLog,
        file_warnings,
        fingerprint,
        ingest_file,
        new_memory,
    )
    from streamvid.sources import FileSource, SamplingGrid
    from streamvid.sources.file import SourceError, probe

    images = [(p, _read_image(p)) for p in args.ask_image]  # bad input fails before any work
    resumed = _open_resume(args) if args.resume else None
    target = args.save or args.resume
    if target:
        _check_save_target(target)
    info = probe(args.video)
    path = os.path.abspath(args.video)
    size = os.path.getsize(args.video)

    stream = resumed.log if resumed is not None else StreamLog()
    last = stream.sources[-1] if stream.sources else None
    fps = args.fps or (last.sampled_fps if last is not None and last.sampled_fps else DEFAULT_FPS)
    max_side = args.max_side or (last.max_side if last is not None and last.max_side else DEFAULT_MAX_SIDE)
    start, end = args.start, args.end
    mode, nothing_new = "new", False
    if last is not None:
        mode = "continue" if last.same_video(args.video, size, info.duration) else "append"
    if mode == "continue":
        rec = last
        start = max(start, rec.resume_time(fps))
        offset = rec.offset or 0.0
        nothing_new = (info.duration is not None and start >= info.duration - 1e-6) or \
            (end is not None and end < start - 1e-6)
        if end is not None and end <= start:
            end = start + 1e-6
    else:
        offset = 0.0
        if mode == "append":
            offset = resumed.memory.stats()["last_t"] + 1.0 / fps - start
            again = [i for i, r in enumerate(stream.sources) if r.same_video(args.video, size, info.duration)]
            if again:
                log.warning("%s is already source %d of %s; appending it again after the rest",
                            args.video, again[0], args.resume)
        rec = SourceRecord.for_file(args.video, info, sampled_fps=fps, max_side=max_side, offset=offset, size=size)

    if resumed is not None:
        encoder, memory = resumed.encoder(), resumed.memory
    else:
        encoder = make_encoder(args)
        mb = args.memory_mb or DEFAULT_MEMORY_MB
        try:
            memory = new_memory(encoder, int(mb * 2**20))
        except ValueError as e:
            raise InputError(f"--memory-mb {mb:g}: {e}") from None

    warnings = Warnings()
    stats = IngestStats()
    grid = SamplingGrid(start, fps)
    interrupted = False
    answers = []
    with _sigint_stops(enabled=bool(target)) as stop:
        if not nothing_new:
            source = FileSource(args.video, fps=fps, start=start, end=end, max_side=max_side)
            show = args.progress if args.progress is not None else (sys.stderr.isatty() and not args.quiet)
            try:
                with _Progress(source, memory, show) as progress:
                    stats = ingest_file(source, grid, encoder, memory, on_frame=progress.update, offset=offset,
                                        new_segment=mode == "append", stop=stop)
            except SourceError:
                if mode != "continue" or source.emitted:
                    raise
                nothing_new = True  # the container's duration promised frames that are not there
            for w in file_warnings(source.skipped, info, grid, end, fps, stats):
                warnings.append(w)
            log.info("ingested %d frames in %.1f s (%.1f fps)", stats.frames, stats.seconds, stats.fps)
        if nothing_new:
            warnings.note(f"nothing new to watch: {args.resume} already holds {args.video} up to "
                            f"{fmt_time(rec.end or 0.0)}")
        if stats.frames:
            rec.add(grid)
            if mode == "continue":  # the file may have moved or grown since
                rec.path, rec.size, rec.duration = path, size, info.duration
                rec.fingerprint = fingerprint(args.video, min(size, FINGERPRINT_BYTES))
            else:
                stream.sources.append(rec)
        interrupted = stats.interrupted or (stop is not None and stop())
        if not interrupted:
            answers = _answer_all(memory, encoder, args.ask, images, args.top_k, min_gap=args.min_gap, at=args.at)
            interrupted = stop is not None and stop()
        if target and (stats.frames or (target != args.resume and not interrupted)):
            _save_memory(memory, target, encoder.config(), stream)
            log.info("memory saved to %s", target)

    if interrupted:
        if stats.frames:
            again = f"streamvid watch {args.video} --resume {target}"
            print(f"streamvid: interrupted: saved the memory to {target} ({stats.frames} new frames, "
                  f"{args.video} up to {fmt_time(rec.end)}); continue with: {again}", file=sys.stderr)
        else:
            print(f"streamvid: interrupted before any frame was ingested; {target} not written", file=sys.stderr)
        return EXIT_INTERRUPTED

    index = next((i for i, r in enumerate(stream.sources) if r is rec), None)
    video = {"path": args.video, "duration": info.duration, "fps": info.fps, "width": info.width,
             "height": info.height, "codec": info.codec, "sampled_fps": fps, "frames": stats.frames,
             "offset": offset, "source": index}
    summary = None
    if stats.frames:
        how = {"new": "", "continue": f"; continued from {args.resume}",
               "append": f"; appended to {args.resume} as source {index} at {fmt_time(rec.t_start or 0.0)}"}[mode]
        frames_all = memory.stats()["frames_seen"]
        total = f" ({frames_all} frames in all)" if resumed is not None else ""
        summary = (f"Watched {args.video} ({fmt_time(grid.first_t)}–{fmt_time(grid.last_t)}, {stats.frames} "
                   f"frames{how}) with the {encoder.name} encoder; memory {memory.nbytes:,} bytes{total}, "
                   f"{stats.entered} {'entry' if stats.entered == 1 else 'entries'}, "
                   f"{stats.left} {'exit' if stats.left == 1 else 'exits'}.")
    _emit(args, video, encoder.config(), memory, answers, warnings, stats,
          stream=_stream_doc(stream, mode, args.resume, target), summary=summary)
    return warnings.exit_code()


def cmd_index(args) -> int:
    import time

    from streamvid.catalog import Catalog, IndexSettings, run_jobs
    from streamvid.memory import MemoryLayout

    if args.workers is not None and args.ray is None:
        raise InputError("--workers needs --ray (without it the videos are indexed one after the other here)")
    if args.ray is not None:
        from streamvid.scale import import_ray

        import_ray()  # installed? (exit 2 before any work)
    catalog = Catalog.open(args.catalog, create=True)
    encoder = make_encoder(args)
    budget = int(args.memory_mb * 2**20)
    try:
        MemoryLayout.from_budget(budget, encoder.dim)
    except ValueError as e:
        raise InputError(f"--memory-mb {args.memory_mb:g}: {e}") from None
    settings = IndexSettings(encoder.config(), budget, args.fps, args.max_side)
    jobs, results = catalog.plan(args.videos, settings)
    total = len(args.videos)

    shown = 0

    def report(r) -> None:  # one line per video on stderr, as each is decided
        nonlocal shown
        shown += 1
        n = shown
        if r.status == "failed":
            print(f"streamvid: [{n}/{total}] failed {r.video}: {r.error}", file=sys.stderr, flush=True)
        elif not args.quiet:
            if r.status == "skipped":
                what = f"skipped {r.video}: {r.reason}"
            else:
                e = r.entry
                what = (f"indexed {r.video}: {e['frames']} frames in {r.seconds:.1f} s, {e['entered']} "
                        f"{'entry' if e['entered'] == 1 else 'entries'}, {e['left']} {'exit' if e['left'] == 1 else 'exits'}")
                what += "".join(f"; warning: {w}" for w in r.warnings)
            print(f"streamvid: [{n}/{total}] {what}", file=sys.stderr, flush=True)

    for r in results:
        report(r)
    t0 = time.perf_counter()
    workers, startup = None, 0.0
    if jobs:
        def done(r) -> None:
            results.append(r)
            report(r)

        if args.ray is None:
            run_jobs(catalog, jobs, encoder, on_result=done)
        else:
            from streamvid.scale import plan_workers, ray_session, run_on_ray

            with ray_session(args.ray, args.workers, quiet=args.quiet) as ray:
                startup = time.perf_counter() - t0
                planned, use_gpu = plan_workers(ray, encoder.config(), args.workers)
                workers = min(planned, len(jobs))
                run_on_ray(ray, catalog, jobs, encoder.config(), workers=workers, use_gpu=use_gpu, on_result=done)
    seconds = time.perf_counter() - t0
    count = {k: sum(r.status == k for r in results) for k in ("indexed", "skipped", "failed")}
    rate = count["indexed"] / seconds * 60 if count["indexed"] and seconds > 0 else None
    partial = count["failed"] > 0 or any(r.warnings for r in results if r.status == "indexed")
    where = "in-process" if args.ray is None else f"on Ray ({args.ray}) with {workers} worker{'s' * (workers != 1)}"
    if args.json:
        doc = {"catalog": catalog.root, "ray": args.ray, "workers": workers, "encoder": encoder.config(),
               "seconds": round(seconds, 3), "ray_start_seconds": round(startup, 3), "videos_per_minute": round(rate, 2) if rate else None, **count,
               "videos": [r.to_json() for r in results]}
        json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        rate_text = f", {rate:.1f} videos/min" if rate else ""
        how = f" {where}" if jobs else ""
        print(f"Catalog {catalog.root}: {count['indexed']} new, {count['skipped']} already indexed, "
              f"{count['failed']} failed of {total} video{'s' * (total != 1)} ({seconds:.1f} s{rate_text}{how}).")
    return EXIT_PARTIAL if partial else EXIT_OK


def cmd_search(args) -> int:
    from streamvid.catalog import Catalog, search

    if (args.question is None) == (args.image is None):
        raise InputError("give a QUESTION or --image PATH" + (", not both" if args.image is not None else ""))
    image = _read_image(args.image) if args.image is not None else None
    catalog = Catalog.open(args.catalog, create=False)
    res = search(catalog, question=args.question, image=image, image_label=args.image or "image", top_k=args.top_k,
                 min_gap=args.min_gap, encoder_name=args.encoder, weights=args.weights, device=args.device)
    warnings = Warnings(res.warnings)
    try:
        for h in res.hits:
            if h.thumb:
                folder = os.path.join(args.out, "search")
                os.makedirs(folder, exist_ok=True)
                path = os.path.join(folder, f"{h.id}_{h.moment.thumb_id:04d}.jpg")
                with open(path, "wb") as f:
                    f.write(h.thumb)
                h.moment.thumbnail = path
    except OSError as e:
        warnings.append(f"thumbnails not written to {args.out}: {e.strerror or e}")
    if args.json:
        doc = {"catalog": catalog.root, "question": res.question, "kind": res.kind, "intent": res.intent,
               "encoder": res.encoder, "videos": res.videos, "moments": [h.to_json() for h in res.hits],
               "warnings": list(warnings)}
        if res.note:
            doc["answer"] = res.note
        json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return warnings.exit_code()
    for w in warnings:
        print(f"streamvid: warning: {w}", file=sys.stderr)
    if res.note:
        print(res.note)
        return warnings.exit_code()
    n = len(res.hits)
    print(f"Searched {res.videos} video{'s' * (res.videos != 1)} of {catalog.root} with the "
          f"{res.encoder.get('name')} encoder: {n} moment{'s' * (n != 1)}{'' if n else ' (nothing matches)'}.")
    for h in res.hits:
        m = h.moment
        when = fmt_time(m.t) if m.end - m.start < 0.05 else f"{fmt_time(m.start)}–{fmt_time(m.end)}"
        desc = f"  {m.description}" if m.description else ""
        thumb = f"  [{m.thumbnail}]" if m.thumbnail else ""
        print(f"   - {m.event:8s} {when}  score {m.score:.2f}  {h.video}{desc}{thumb}")
    return warnings.exit_code()


def cmd_live(args) -> int:
    from streamvid.live import run_live

    return run_live(args)


def cmd_consistency(args) -> int:
    from streamvid.consistency.run import run_consistency

    return run_consistency(args)


def cmd_serve(args) -> int:
    from streamvid.server import run_serve

    return run_serve(args)


@contextlib.contextmanager
def _sigint_stops(enabled: bool) -> Iterator:
    """While enabled, a first Ctrl-C asks ingest to stop cleanly (yields its ``stop`` callable);
    a second one interrupts at once. Disabled (or off the main thread): yields None."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield None
        return
    requested = threading.Event()

    def handler(signum, frame) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


class _Resumed:
    """A memory loaded for ``watch --resume``, checked against the command line."""

    def __init__(self, args, memory, meta: dict, log_) -> None:
        self.args, self.memory, self.meta, self.log = args, memory, meta, log_
        self.cfg = meta.get("encoder") if isinstance(meta.get("encoder"), dict) else {}

    def encoder(self):
        from streamvid.models.base import EncoderError
        from streamvid.models.factory import create_encoder, encoder_from_config

        a = self.args
        try:
            if self.cfg.get("name"):
                enc = encoder_from_config(self.cfg, weights=a.weights, device=a.device)
            else:  # a memory saved without its encoder's name (by the library): the one asked for
                enc, _ = create_encoder(a.encoder, model=a.model or DEFAULT_MODEL,
                                        pretrained=a.pretrained or DEFAULT_PRETRAINED, weights=a.weights,
                                        device=a.device)
        except EncoderError as e:
            raise InputError(f"cannot resume {a.resume}: {e}") from None
        if enc.dim != self.memory.layout.dim:
            raise InputError(f"cannot resume {a.resume}: its memory holds {self.memory.layout.dim}-dimensional "
                             f"tokens, the {enc.name} encoder makes {enc.dim}-dimensional ones")
        return enc


def _open_resume(args) -> _Resumed:
    """Load ``--resume MEM`` and check that the options do not ask for another encoder or budget."""
    from streamvid.memory.snapshot import SnapshotError, load
    from streamvid.pipeline import StreamLog

    try:
        memory, meta = load(args.resume)
    except SnapshotError as e:
        raise InputError(f"cannot resume: {e}") from None
    r = _Resumed(args, memory, meta, StreamLog.from_metadata(meta, memory.stats()))
    mem = args.resume
    budget = memory.layout.budget_bytes
    if args.memory_mb is not None and int(args.memory_mb * 2**20) != budget:
        raise InputError(f"--memory-mb {args.memory_mb:g}: the budget of {mem} is {budget / 2**20:g} MiB "
                         f"({budget:,} bytes), fixed when it was made (leave --memory-mb out)")
    name = r.cfg.get("name")
    if name is None:
        if args.encoder in (None, "auto"):
            raise InputError(f"{mem} does not say which encoder made it: give --encoder clip or classic")
        return r
    if args.encoder not in (None, "auto") and args.encoder != name:
        raise InputError(f"--encoder {args.encoder}: {mem} was made with the {name} encoder, and a memory "
                         "keeps its encoder (leave --encoder out)")
    if name == "clip":
        for opt, value, saved in (("--model", args.model, r.cfg.get("model")),
                                  ("--pretrained", args.pretrained, r.cfg.get("pretrained"))):
            if value is not None and not _same_name(value, saved):
                raise InputError(f"{opt} {value}: {mem} was made with the clip encoder's {saved}, and a memory "
                                 f"keeps its encoder (leave {opt} out)")
    else:
        for opt, value in (("--model", args.model), ("--pretrained", args.pretrained), ("--weights", args.weights)):
            if value is not None:
                raise InputError(f"{opt} {value} asks for CLIP, but {mem} was made with the {name} encoder, "
                                 f"and a memory keeps its encoder (leave {opt} out)")
    return r


def _same_name(a, b) -> bool:
    """The same model name or pretrained tag, or the same file under two spellings."""
    if a == b:
        return True
    try:
        return b is not None and os.path.isfile(a) and os.path.isfile(b) and os.path.samefile(a, b)
    except OSError:
        return False


def _save_memory(memory, target: str, encoder_cfg: dict, stream) -> None:
    """Save atomically with the metadata ``watch --resume`` and ``ask`` read (see README)."""
    from streamvid.memory.snapshot import SnapshotError, save
    from streamvid.pipeline import snapshot_metadata

    meta = snapshot_metadata(memory, encoder_cfg, stream)
    existed = os.path.exists(target)
    try:
        save(memory, target, metadata=meta)
    except (OSError, SnapshotError) as e:
        kept = "the previous file is unchanged" if existed else "nothing was written"
        raise StreamvidError(f"cannot save the memory to {target}: "
                             f"{getattr(e, 'strerror', None) or e}; {kept}") from None


def _stream_doc(stream, mode: str | None, resumed_from: str | None, saved_to: str | None) -> dict:
    sources = stream.to_json()["sources"]
    for i, s in enumerate(sources):
        s["index"] = i
    return {"mode": mode, "resumed_from": resumed_from, "saved_to": saved_to, "sources": sources}


class _Progress:
    """tqdm bar on stderr: frames, rate, ETA (when the duration is known), stream time, memory bytes."""

    def __init__(self, source, memory, show: bool) -> None:
        self.source, self.memory, self.show, self.bar = source, memory, show, None

    def __enter__(self) -> _Progress:
        if self.show:
            from tqdm import tqdm

            self.bar = tqdm(total=self.source.expected_frames, unit="frame", file=sys.stderr,
                            dynamic_ncols=True, desc=os.path.basename(self.source.path))
            self.bar.set_postfix_str(f"mem {self.memory.nbytes:,} B")
        return self

    def update(self, frame) -> None:
        if self.bar is None:
            return
        if self.bar.total is not None and self.bar.n >= self.bar.total:
            self.bar.total = self.bar.n + 1
        self.bar.update(1)
        if frame.index % 5 == 0:
            self.bar.set_postfix_str(f"t {fmt_time(frame.t)} · mem {self.memory.nbytes:,} B", refresh=False)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_ask(args) -> int:
    from streamvid.memory.snapshot import SnapshotError, load
    from streamvid.pipeline import StreamLog

    if not args.question and not args.image and not args.at:
        raise InputError("give a question, --image PATH or --at TIME")
    images = [(p, _read_image(p)) for p in args.image]
    try:
        memory, meta = load(args.memory)
    except SnapshotError as e:
        raise InputError(str(e)) from None
    encoder = _LazyEncoder(meta.get("encoder", {}), args)
    answers = _answer_all(memory, encoder, args.question, images, args.top_k, min_gap=args.min_gap, at=args.at)
    src = meta.get("source", {})
    video = {"path": src.get("path"), "duration": src.get("duration"), "fps": src.get("fps")}
    stream = StreamLog.from_metadata(meta, memory.stats())
    warnings = Warnings()
    _emit(args, video, meta.get("encoder", {}), memory, answers, warnings, None,
          stream=_stream_doc(stream, None, None, None))
    return warnings.exit_code()


class _LazyEncoder:
    """The snapshot's encoder, created only when a question needs embedding (events do not)."""

    def __init__(self, cfg: dict, args) -> None:
        self.cfg = cfg
        self.args = args
        self.name = cfg.get("name", "unknown")
        self._enc = None

    def get(self):
        if self._enc is None:
            from streamvid.models.base import EncoderError
            from streamvid.models.factory import encoder_from_config

            try:
                self._enc = encoder_from_config(self.cfg, weights=self.args.weights, device=self.args.device)
            except EncoderError as e:
                raise InputError(f"this question needs the memory's {self.name} encoder: {e}") from None
        return self._enc

    def encode_text(self, text: str):
        return self.get().encode_text(text)

    def encode_image(self, rgb):
        return self.get().encode_image(rgb)


def _answer_all(memory, encoder, questions: Sequence[str], images, top_k: int, *, min_gap: float = 1.0,
                at: Sequence[float] = ()):
    from streamvid.query import answer_at, answer_image, answer_text

    answers = [answer_text(memory, q, encoder.encode_text, encoder_name=encoder.name, top_k=top_k,
                           min_gap=min_gap) for q in questions]
    answers += [answer_image(memory, path, encoder.encode_image(rgb), top_k=top_k, min_gap=min_gap)
                for path, rgb in images]
    answers += [answer_at(memory, t) for t in at]
    return answers


def _write_thumbs(memory, answers, out_dir: str, stem: str) -> None:
    written: dict[int, str] = {}
    for ans in answers:
        for m in ans.moments:
            if m.thumb_id < 0:
                continue
            if m.thumb_id not in written:
                data = memory.thumbnail(m.thumb_id)
                if not data:
                    continue
                folder = os.path.join(out_dir, stem)
                os.makedirs(folder, exist_ok=True)
                path = os.path.join(folder, f"thumb_{m.thumb_id:04d}.jpg")
                with open(path, "wb") as f:
                    f.write(data)
                written[m.thumb_id] = path
            m.thumbnail = written[m.thumb_id]


def _write_reports(args, memory, answers, video: dict, stream: dict | None, warnings: list) -> None:
    """``--srt FILE`` and ``--report DIR`` (streamvid.report); a failure to write one is a warning."""
    from streamvid import report

    if args.srt:
        try:
            report.write_srt(answers, args.srt)
        except OSError as e:
            warnings.append(f"subtitles not written to {args.srt}: {e.strerror or e}")
    if args.report:
        try:
            report.write_report(memory, answers, args.report, video=video, warnings=list(warnings),
                                sources=stream["sources"] if stream is not None else None)
        except OSError as e:
            warnings.append(f"report not written to {args.report}: {e.strerror or e}")


def _source_of(sources: list[dict], t: float) -> dict | None:
    """The source record (of ``_stream_doc``) whose span on the memory's timeline holds ``t``."""
    found = None
    for s in sources:
        if s.get("t_start") is not None and s["t_start"] <= t + 1e-6:
            found = s
    return found if found is not None else (sources[0] if sources else None)


def _emit(args, video: dict, encoder_cfg: dict, memory, answers, warnings, stats, *,
          stream: dict | None = None, summary: str | None = None, extra: dict | None = None,
          indent: int | None = 2) -> None:
    stem = os.path.splitext(os.path.basename(str(video.get("path") or "memory")))[0] or "memory"
    try:
        _write_thumbs(memory, answers, args.out, stem)
    except OSError as e:
        warnings.append(f"thumbnails not written to {args.out}: {e.strerror or e}")
    _write_reports(args, memory, answers, video, stream, warnings)
    sources = stream["sources"] if stream is not None else []
    several = len(sources) > 1  # then times are on the memory's timeline: say which source each is in
    if args.json:
        doc = {"video": video, "encoder": encoder_cfg, "memory": memory.stats(),
               "answers": [a.to_json() for a in answers], "warnings": warnings}
        if stream is not None:
            doc["stream"] = stream
        if stats is not None:
            doc["ingest"] = {"frames": stats.frames, "seconds": round(stats.seconds, 3),
                             "fps": round(stats.fps, 2), "entered": stats.entered, "left": stats.left}
        if extra:
            doc.update(extra)
        if several:
            for a in doc["answers"]:
                for m in a["moments"]:
                    src = _source_of(sources, m["t"])
                    m["source"] = src["index"]
                    off = src.get("offset")
                    m["source_t"] = round(m["t"] - off, 3) if off is not None else None
        json.dump(doc, sys.stdout, indent=indent, ensure_ascii=False)
        sys.stdout.write("\n")
        return
    for w in warnings:
        print(f"streamvid: warning: {w}", file=sys.stderr)
    if summary is not None:
        print(summary)
    for a in answers:
        print(f"\nQ: {a.question}")
        print(f"A: {a.answer}")
        for m in a.moments:
            when = fmt_time(m.t) if m.end - m.start < 0.05 else f"{fmt_time(m.start)}–{fmt_time(m.end)}"
            extra = f"  {m.description}" if m.description else ""
            thumb = f"  [{m.thumbnail}]" if m.thumbnail else ""
            where = ""
            if several:
                src = _source_of(sources, m.t)
                name = os.path.basename(src["path"]) if src.get("path") else f"source {src['index']}"
                off = src.get("offset")
                where = f"  ({name} at {fmt_time(m.t - off)})" if off is not None else f"  ({name})"
            print(f"   - {m.event:8s} {when}  score {m.score:.2f}{extra}{where}{thumb}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    given = list(argv if argv is not None else sys.argv[1:])
    debug = "--debug" in given
    as_json = "--json" in given

    def fail(message: str, code: int) -> int:
        print(f"streamvid: error: {message}", file=sys.stderr)
        if as_json:  # stdout stays one JSON document for scripts that parse it
            print(json.dumps({"error": message, "exit_code": code}, ensure_ascii=False))
        return code

    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_BAD_INPUT
        _setup_logging(args)
        return {"watch": cmd_watch, "live": cmd_live, "serve": cmd_serve, "ask": cmd_ask,
                "consistency": cmd_consistency, "index": cmd_index, "search": cmd_search}[args.command](args)
    except StreamvidError as e:
        return fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        print("streamvid: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # a bug: still one line unless --debug
        if debug:
            raise
        return fail(f"unexpected {type(e).__name__}: {e} (run with --debug for details)", EXIT_ERROR)


if __name__ == "__main__":
    sys.exit(main())
