"""``streamvid live SOURCE [SOURCE ...]``: live streams into fixed-size memories, standing alerts.

One process, one encoder, one memory per source, one ingest loop (:class:`~streamvid.engine.Engine`)
that batches the sources' frames through the encoder and their memory updates through a
:class:`~streamvid.memory.bank.MemoryBank`. :func:`open_streams` is shared with ``streamvid serve``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time

from streamvid.alerts import DEFAULT_THRESHOLD, AlertEngine, Webhook, check_webhook_url, parse_alert
from streamvid.engine import Engine, Stream
from streamvid.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, InputError, Warnings
from streamvid.events import EventDetector
from streamvid.memory.bank import MemoryBank
from streamvid.memory.layout import MemoryLayout
from streamvid.pipeline import FINGERPRINT_BYTES, SourceRecord, StreamLog, Watcher, fingerprint
from streamvid.sources import SamplingGrid
from streamvid.sources.live import _redact as redact_source
from streamvid.sources.live import open_live, resolve
from streamvid.timefmt import fmt_time

log = logging.getLogger(__name__)

SAVE_FIELDS = ("{i}", "{name}")


def check_specs(specs: list[str], *, realtime: bool, loop: bool) -> list[str]:
    """The kind of every SOURCE (``resolve``), refusing bad combinations before anything opens."""
    kinds = []
    for spec in specs:
        kind = resolve(spec)  # SourceError (exit 2) for a missing file / unknown spec
        if kind == "file" and not realtime:
            raise InputError(f"{spec} is a file: give --realtime to play it at its own pace "
                             "(or use `streamvid watch` to ingest it as fast as possible)")
        kinds.append(kind)
    if (realtime or loop) and "file" not in kinds:
        raise InputError("--realtime/--loop apply to a file SOURCE only")
    return kinds


def save_path(template: str, i: int, name: str, n: int) -> str:
    """Where stream ``i`` (of ``n``) is saved: ``template`` with ``{i}``/``{name}`` filled in."""
    if n == 1 and not any(f in template for f in SAVE_FIELDS):
        return template
    stem = os.path.splitext(os.path.basename(name))[0] or f"stream{i}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return template.replace("{i}", str(i)).replace("{name}", safe)


def check_save_template(template: str, n: int) -> None:
    if n > 1 and not any(f in template for f in SAVE_FIELDS):
        raise InputError(f"--save {template}: with {n} sources, put {{i}} (the source's number) or {{name}} "
                         "in the path, e.g. --save mem-{i}.svm")


def open_streams(specs: list[str], kinds: list[str], args, encoder, *, first_id: int = 0,
                 emit=None, webhook=None, tag_stream: bool = False) -> tuple[list[Stream], MemoryBank, list[AlertEngine]]:
    """One :class:`Stream` per SOURCE (sources not started yet), their memories in one bank.

    ``args`` carries the ``live``/``serve`` options (fps, max_side, buffer, speed, loop, duration,
    memory_mb, alert, alert_threshold, out). ``emit(doc)``: where alert hits go; they carry their
    stream's id as ``"stream"`` when there are several streams or ``tag_stream``.
    """
    from streamvid import cli
    from streamvid.pipeline import memory_kwargs

    warm_up = getattr(encoder, "warm_up", None)
    if callable(warm_up):  # one-time costs before the streams start, not on their first alert
        warm_up()
    mb = args.memory_mb or cli.DEFAULT_MEMORY_MB
    try:
        layout = MemoryLayout.from_budget(int(mb * 2**20), encoder.dim)
    except ValueError as e:
        raise InputError(f"--memory-mb {mb:g}: {e}") from None
    bank = MemoryBank(layout, len(specs), **memory_kwargs(encoder))
    fps = args.fps or cli.DEFAULT_FPS
    max_side = args.max_side or cli.DEFAULT_MAX_SIDE
    threshold = args.alert_threshold if args.alert_threshold is not None else DEFAULT_THRESHOLD
    streams, engines, stems = [], [], set()
    for j, (spec, kind) in enumerate(zip(specs, kinds)):
        sid = first_id + j
        source = open_live(spec, speed=args.speed, loop=args.loop, sample_fps=fps, maxsize=args.buffer,
                           max_side=max_side)
        name = source.path if kind == "file" else redact_source(str(spec).strip())
        stem = os.path.splitext(os.path.basename(str(name)))[0] if kind == "file" else "live"
        if stem in stems or len(specs) > 1 and kind != "file":
            stem = f"{stem}{sid}"
        stems.add(stem)
        detector = EventDetector()
        alerts = [parse_alert(text, encoder, threshold=threshold) for text in args.alert]
        engine = AlertEngine(alerts, source=name, out_dir=os.path.join(args.out, stem),
                             emit=emit or (lambda doc: None), webhook=webhook,
                             motion_on=detector.cfg.motion_on, motion_off=detector.cfg.motion_off,
                             stream=sid if len(specs) > 1 or tag_stream else None)
        memory = bank[j]
        watcher = Watcher(encoder, memory, detector, on_event=engine.on_event,
                          on_signals=engine.on_signals if engine.wants_frames else None)
        s = Stream(id=sid, name=name, kind="file" if kind == "file" else "live", memory=memory, source=source,
                   watcher=watcher, duration=args.duration, grid=SamplingGrid(0.0, fps), source_kind=kind,
                   sampled_fps=fps, max_side=max_side, alerts=engine)
        streams.append(s)
        engines.append(engine)
    return streams, bank, engines


def stream_record(s: Stream, loop: bool) -> SourceRecord:
    """What a snapshot of stream ``s`` records about its source (``watch --resume`` reads it)."""
    info = getattr(s.source, "info", None)
    rec = SourceRecord(path=s.name, fps=getattr(info, "fps", None), sampled_fps=s.sampled_fps,
                       max_side=s.max_side, offset=0.0)
    if s.kind == "file" and not loop:
        path = s.source.path
        rec.size = os.path.getsize(path)
        rec.fingerprint = fingerprint(path, min(rec.size, FINGERPRINT_BYTES))
        rec.duration = info.duration
    rec.add(s.grid)
    return rec


class StatusLine:
    """A one-line status on stderr (a terminal only), at most once a second: frames, drops, time."""

    def __init__(self, streams: list[Stream], show: bool) -> None:
        self.streams, self.show, self._last = streams, show, 0.0

    def __call__(self, stream, frame) -> None:
        if not self.show:
            return
        now = time.monotonic()
        if now - self._last < 1.0:
            return
        self._last = now
        parts = []
        for s in self.streams:
            h = s.health()
            pos = fmt_time(h["position"]) if h["position"] is not None else "-"
            parts.append(f"[{s.id}] {h['state']} {pos} {h['frames']} fr {h['dropped']} drop")
        sys.stderr.write("\r" + "  ".join(parts)[:200].ljust(60))
        sys.stderr.flush()

    def close(self) -> None:
        if self.show and self._last:
            sys.stderr.write("\n")


def run_live(args) -> int:
    """``streamvid live`` (parsed by :mod:`streamvid.cli`): ingest live sources, alert, answer, save."""
    from streamvid import cli

    specs = list(args.source)
    # Everything that can be refused is refused before a source is opened (exit 2, one line).
    webhook_url = check_webhook_url(args.webhook) if args.webhook else None
    if args.save:
        check_save_template(args.save, len(specs))
        for i, spec in enumerate(specs):
            cli._check_save_target(save_path(args.save, i, str(spec), len(specs)))
    kinds = check_specs(specs, realtime=args.realtime, loop=args.loop)
    encoder = cli.make_encoder(args)

    out_lock = threading.Lock()

    def emit(doc: dict) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
            sys.stdout.flush()

    webhook = Webhook(webhook_url, timeout=args.webhook_timeout) if webhook_url else None
    streams, bank, engines = open_streams(specs, kinds, args, encoder, emit=emit, webhook=webhook)
    show = args.progress if args.progress is not None else (sys.stderr.isatty() and not args.quiet)
    status = StatusLine(streams, bool(show))

    engine = Engine(encoder, streams, bank=bank, batch_size=getattr(args, "batch_size", 8), on_frame=status)

    # Ctrl-C / SIGTERM: stop after the current round (the sources are stopped too, so a stalled
    # camera does not hold the end up); a second Ctrl-C stops at once.
    why: list[str] = []

    def handler(signum, frame) -> None:
        if engine.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt
        why.append("SIGINT" if signum == signal.SIGINT else "SIGTERM")
        engine.stop()
        for s in streams:
            threading.Thread(target=s.source.stop, daemon=True).start()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    warnings_all: dict[int, Warnings] = {s.id: Warnings() for s in streams}
    try:
        try:
            engine.run()
        finally:
            status.close()
            if webhook is not None:
                webhook.close(timeout=args.webhook_timeout + 1.0)
        failed_early = [s for s in streams if s.state == "failed" and not s.stats.frames]
        if failed_early and len(failed_early) == len(streams):
            raise failed_early[0].source.error or InputError(failed_early[0].error)
        for s in streams:
            if s.state == "failed":
                what = "the stream ended" if s.stats.frames else "no frame was read"
                warnings_all[s.id].append(f"{what}: {s.error}")
        saved: dict[int, str] = {}
        logs: dict[int, StreamLog] = {}
        for s in streams:
            rec = stream_record(s, args.loop)
            logs[s.id] = StreamLog([rec] if s.grid.frames else [])
            if args.save and s.stats.frames:
                target = save_path(args.save, s.id, s.name, len(streams))
                cli._save_memory(s.memory, target, encoder.config(), logs[s.id])
                saved[s.id] = target
                log.info("memory of %s saved to %s", s.name, target)
            elif args.save:
                warnings_all[s.id].append(f"no frame was ingested from {s.name}; "
                                          f"{save_path(args.save, s.id, s.name, len(streams))} not written")
    finally:
        for sig, prev in previous.items():
            signal.signal(sig, prev)

    if webhook is not None and (webhook.failed or webhook.dropped):
        warnings_all[streams[0].id].append(f"webhook: {webhook.sent} alert(s) delivered, {webhook.failed} "
                                           f"failed, {webhook.dropped} dropped")
    for s in streams:
        _report(args, s, encoder, logs[s.id], saved.get(s.id), warnings_all[s.id], why, several=len(streams) > 1)
    if why and why[0] == "SIGINT":
        saved_note = f"; saved the memory to {', '.join(saved.values())}" if saved else ""
        print(f"streamvid: interrupted{saved_note}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if any(w.partial for w in warnings_all.values()) else EXIT_OK


def _report(args, s: Stream, encoder, stream_log: StreamLog, saved_to: str | None, warnings: list[str],
            why: list[str], *, several: bool) -> None:
    """The end-of-stream answers and summary of one stream (one JSON line with --json)."""
    from streamvid import cli

    stats = s.stats
    st = s.source.stats()
    gaps = st["gaps"]
    memory = s.memory
    answers = cli._answer_all(memory, encoder, args.ask, [], args.top_k, min_gap=args.min_gap, at=args.at)
    rec = stream_log.sources[0] if stream_log.sources else None
    video = {"path": s.name, "kind": s.source_kind or s.kind, "duration": None,
             "fps": rec.fps if rec else None, "sampled_fps": s.sampled_fps, "frames": stats.frames,
             "offset": 0.0, "source": 0 if stats.frames else None}
    stopped = why[0] if why else s.stopped_by or "end"
    live = {"frames": stats.frames, "received": st["received"], "dropped": st["dropped"],
            "skipped": st["skipped"], "reconnects": st["reconnects"], "gaps": gaps,
            "stopped_by": stopped, "alerts": s.alerts.total}
    if several:
        live["stream"] = s.id
    summary = None
    if stats.frames:
        summary = (f"Watched {s.name} live ({fmt_time(s.grid.first_t)}–{fmt_time(s.grid.last_t)}, "
                   f"{stats.frames} frames) with the {encoder.name} encoder; memory {memory.nbytes:,} bytes, "
                   f"{stats.entered} {'entry' if stats.entered == 1 else 'entries'}, "
                   f"{stats.left} {'exit' if stats.left == 1 else 'exits'}, {s.alerts.total} alert(s).")
    cli._emit(args, video, encoder.config(), memory, answers, warnings, stats,
              stream=cli._stream_doc(stream_log, "new", None, saved_to), summary=summary,
              extra={"live": live, "alerts": list(s.alerts.hits)}, indent=None)
    if not args.quiet:
        gap_s = sum(b - a for a, b in gaps)
        who = f" [{s.id}] {s.name}" if several else ""
        print(f"streamvid: live{who}: {stats.frames} frames, {st['dropped']} dropped, {st['reconnects']} "
              f"reconnects, {len(gaps)} gaps ({gap_s:.1f} s)", file=sys.stderr)
