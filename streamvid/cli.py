"""The command line: ``streamvid watch`` and ``streamvid ask``. Parsing and printing only.

Exit codes (stable, see README): 0 ok · 1 unexpected error · 2 bad input · 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

import cv2
import numpy as np

from streamvid import __version__
from streamvid.errors import EXIT_BAD_INPUT, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, InputError, StreamvidError
from streamvid.timefmt import fmt_time, parse_time

log = logging.getLogger("streamvid")


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
    common.add_argument("--top-k", type=_positive(int), default=5, metavar="K",
                        help="moments per retrieval answer (default: %(default)s)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    common.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    common.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")

    enc = _Parser(add_help=False)
    g = enc.add_argument_group("encoder")
    g.add_argument("--encoder", choices=["auto", "clip", "classic"], default="auto",
                   help="auto: clip when its weights are available, else classic (default: %(default)s)")
    g.add_argument("--model", default="ViT-B-32", help="open_clip model name or config JSON (default: %(default)s)")
    g.add_argument("--pretrained", default="laion2b_s34b_b79k", help="open_clip pretrained tag (default: %(default)s)")
    g.add_argument("--weights", metavar="PATH", help="local CLIP checkpoint (.safetensors/.pt); implies clip")
    g.add_argument("--device", default=None, help="torch device for the encoder (default: cuda if available)")

    w = sub.add_parser("watch", parents=[common, enc], help="ingest a video file and answer questions",
                       description="Ingest VIDEO into a fixed-size memory, then answer the questions.")
    w.add_argument("video", help="a video file")
    w.add_argument("--ask", action="append", default=[], metavar="QUESTION", help="a question (repeatable)")
    w.add_argument("--ask-image", action="append", default=[], metavar="PATH",
                   help="an image: when does this scene appear? (repeatable)")
    w.add_argument("--fps", type=_positive(float), default=2.0, help="frames sampled per second (default: 2)")
    w.add_argument("--start", type=_time, default=0.0, metavar="TIME", help="start at TIME (s or HH:MM:SS)")
    w.add_argument("--end", type=_time, default=None, metavar="TIME", help="stop at TIME (s or HH:MM:SS)")
    w.add_argument("--memory-mb", type=_positive(float), default=4.0, metavar="MB",
                   help="memory budget in MiB, fixed at creation (default: %(default)s)")
    w.add_argument("--save", metavar="MEM", help="save the memory (safetensors) to MEM")
    w.add_argument("--max-side", type=_positive(int), default=640, metavar="PX",
                   help="decode frames scaled to at most PX on the long side (default: %(default)s)")
    w.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")

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
    from streamvid.events import EventDetector
    from streamvid.memory.snapshot import save
    from streamvid.models.base import EncoderError
    from streamvid.models.factory import create_encoder
    from streamvid.pipeline import Watcher, new_memory
    from streamvid.sources import FileSource

    images = [(p, _read_image(p)) for p in args.ask_image]  # bad input fails before any work
    if args.save:
        _check_save_target(args.save)
    source = FileSource(args.video, fps=args.fps, start=args.start, end=args.end, max_side=args.max_side)
    try:
        encoder, note = create_encoder(args.encoder, model=args.model, pretrained=args.pretrained,
                                       weights=args.weights, device=args.device)
    except EncoderError as e:
        raise InputError(str(e)) from None
    if note:
        print(f"streamvid: {note}", file=sys.stderr)
    try:
        memory = new_memory(encoder, int(args.memory_mb * 2**20))
    except ValueError as e:
        raise InputError(f"--memory-mb {args.memory_mb:g}: {e}") from None
    watcher = Watcher(encoder, memory, EventDetector())

    show = args.progress if args.progress is not None else (sys.stderr.isatty() and not args.quiet)
    with _Progress(source, memory, show) as progress:
        stats = watcher.ingest(source, on_frame=progress.update)
    warnings = []
    if source.skipped:
        warnings.append(f"skipped {source.skipped} corrupt packet(s)/frame(s)")
    log.info("ingested %d frames in %.1f s (%.1f fps)", stats.frames, stats.seconds, stats.fps)

    answers = _answer_all(memory, encoder, args.ask, images, args.top_k)
    if args.save:
        save(memory, args.save, metadata={
            "encoder": encoder.config(),
            "source": {"path": os.path.abspath(args.video), "duration": source.info.duration,
                       "fps": source.info.fps, "sampled_fps": args.fps},
            "position": stats.last_t,
        })
        log.info("memory saved to %s", args.save)
    video = {"path": args.video, "duration": source.info.duration, "fps": source.info.fps,
             "width": source.info.width, "height": source.info.height, "codec": source.info.codec,
             "sampled_fps": args.fps, "frames": stats.frames}
    _emit(args, video, encoder.config(), memory, answers, warnings, stats)
    return EXIT_OK


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

    if not args.question and not args.image:
        raise InputError("give a question or --image PATH")
    images = [(p, _read_image(p)) for p in args.image]
    try:
        memory, meta = load(args.memory)
    except SnapshotError as e:
        raise InputError(str(e)) from None
    encoder = _LazyEncoder(meta.get("encoder", {}), args)
    answers = _answer_all(memory, encoder, args.question, images, args.top_k)
    src = meta.get("source", {})
    video = {"path": src.get("path"), "duration": src.get("duration"), "fps": src.get("fps")}
    _emit(args, video, meta.get("encoder", {}), memory, answers, [], None)
    return EXIT_OK


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


def _answer_all(memory, encoder, questions: Sequence[str], images, top_k: int):
    from streamvid.query import answer_image, answer_text

    answers = [answer_text(memory, q, encoder.encode_text, encoder_name=encoder.name, top_k=top_k)
               for q in questions]
    answers += [answer_image(memory, path, encoder.encode_image(rgb), top_k=top_k) for path, rgb in images]
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


def _emit(args, video: dict, encoder_cfg: dict, memory, answers, warnings, stats) -> None:
    stem = os.path.splitext(os.path.basename(str(video.get("path") or "memory")))[0] or "memory"
    try:
        _write_thumbs(memory, answers, args.out, stem)
    except OSError as e:
        warnings.append(f"thumbnails not written to {args.out}: {e.strerror or e}")
    if args.json:
        doc = {"video": video, "encoder": encoder_cfg, "memory": memory.stats(),
               "answers": [a.to_json() for a in answers], "warnings": warnings}
        if stats is not None:
            doc["ingest"] = {"frames": stats.frames, "seconds": round(stats.seconds, 3),
                             "fps": round(stats.fps, 2), "entered": stats.entered, "left": stats.left}
        json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return
    for w in warnings:
        print(f"streamvid: warning: {w}", file=sys.stderr)
    if stats is not None:
        st = memory.stats()
        print(f"Watched {video['path']} ({fmt_time(stats.first_t or 0)}–{fmt_time(stats.last_t or 0)}, "
              f"{stats.frames} frames) with the {encoder_cfg.get('name')} encoder; memory "
              f"{st['bytes']:,} bytes, {stats.entered} entries, {stats.left} exits.")
    for a in answers:
        print(f"\nQ: {a.question}")
        print(f"A: {a.answer}")
        for m in a.moments:
            when = fmt_time(m.t) if m.end - m.start < 0.05 else f"{fmt_time(m.start)}–{fmt_time(m.end)}"
            extra = f"  {m.description}" if m.description else ""
            thumb = f"  [{m.thumbnail}]" if m.thumbnail else ""
            print(f"   - {m.event:8s} {when}  score {m.score:.2f}{extra}{thumb}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_BAD_INPUT
        _setup_logging(args)
        return {"watch": cmd_watch, "ask": cmd_ask}[args.command](args)
    except StreamvidError as e:
        print(f"streamvid: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("streamvid: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # a bug: still one line unless --debug
        if debug:
            raise
        print(f"streamvid: error: unexpected {type(e).__name__}: {e} (run with --debug for details)",
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
