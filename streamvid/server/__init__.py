"""``streamvid serve``: live streams and saved memories behind a JSON API and a web page.

:func:`run_serve` (parsed by :mod:`streamvid.cli`) opens the ``--memory`` files and ``--source``
streams, starts the ingest loop (:class:`~streamvid.engine.Engine`) on a thread, and serves
:func:`streamvid.server.app.create_app` with uvicorn until SIGTERM or Ctrl-C; then it stops the
sources, flushes the detectors and, with ``--save``, saves the live streams' memories.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading

from streamvid.errors import EXIT_INTERRUPTED, EXIT_OK, InputError

log = logging.getLogger(__name__)

TOKEN_ENV = "STREAMVID_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(args) -> int:
    from streamvid import cli
    from streamvid.engine import Engine, Stream
    from streamvid.live import check_save_template, check_specs, open_streams, save_path, stream_record
    from streamvid.memory.snapshot import SnapshotError, load
    from streamvid.pipeline import StreamLog

    # -- everything that can be refused, before anything is opened (exit 2, one line) -----------
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    if token is not None and not token.strip():
        raise InputError("--token is empty")
    if not is_loopback(args.host) and not token:
        raise InputError(f"--host {args.host} is reachable from other machines: give --token TOKEN (or set "
                         f"{TOKEN_ENV}) so every request must carry it")
    if not args.source and not args.memory:
        raise InputError("nothing to serve: give --source SOURCE (live or --realtime file) and/or --memory MEM")
    if args.save:
        if not args.source:
            raise InputError("--save saves the --source streams' memories; there is no --source")
        check_save_template(args.save, len(args.source))
        for i, spec in enumerate(args.source):
            cli._check_save_target(save_path(args.save, len(args.memory) + i, str(spec), len(args.source)))
    webhook_url = None
    if args.webhook:
        from streamvid.alerts import check_webhook_url

        webhook_url = check_webhook_url(args.webhook)
    kinds = check_specs(list(args.source), realtime=args.realtime, loop=args.loop) if args.source else []

    streams: list[Stream] = []
    for i, path in enumerate(args.memory):
        try:
            memory, meta = load(path)
        except SnapshotError as e:
            raise InputError(str(e)) from None
        sources = cli._stream_doc(StreamLog.from_metadata(meta, memory.stats()), None, None, None)["sources"]
        streams.append(Stream(id=i, name=os.path.basename(path), kind="memory", memory=memory, state="memory",
                              query_encoder=cli._LazyEncoder(meta.get("encoder", {}), args), sources=sources))

    engine = None
    hub_box: list = []  # the hub, once made (the callbacks below need it; it needs the streams)
    webhook = None
    if args.source:
        from streamvid.alerts import Webhook

        encoder = cli.make_encoder(args)
        out_lock = threading.Lock()

        def emit(doc: dict) -> None:
            if not args.quiet:
                with out_lock:
                    sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
                    sys.stdout.flush()
            if hub_box and doc["event"] not in ("entered", "left"):  # those flag their pinned event
                hub = hub_box[0]
                hub.on_alert(hub.streams[doc["stream"]], doc)

        webhook = Webhook(webhook_url, timeout=args.webhook_timeout) if webhook_url else None
        live, bank, _ = open_streams(list(args.source), kinds, args, encoder, first_id=len(streams), emit=emit,
                                     webhook=webhook, tag_stream=True)
        for s in live:
            s.query_encoder = encoder
            s.watcher.on_event = _pin_and_alert(s, hub_box)
        streams += live

        def on_frame(s, f) -> None:
            if hub_box:
                hub_box[0].on_frame(s, f)

        def on_state(s) -> None:
            if hub_box:
                hub_box[0].on_state(s)

        engine = Engine(encoder, live, bank=bank, batch_size=args.batch_size, on_frame=on_frame, on_state=on_state)

    from streamvid.server.app import create_app
    from streamvid.server.hub import Hub

    hub = Hub(streams, engine)
    hub_box.append(hub)
    app = create_app(hub, token=token, max_body=int(args.max_body_mb * 2**20), min_gap=args.min_gap)

    # -- bind first (a taken port is a one-line error), then serve ----------------------------------
    try:
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as e:
        raise InputError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host

    import uvicorn

    server = _Server(uvicorn.Config(app, log_level="warning" if not args.verbose else "info",
                                    access_log=bool(args.verbose), timeout_graceful_shutdown=3,
                                    lifespan="off"), on_exit=hub.close_subscribers)

    def announce() -> None:
        server.started_event.wait()
        if server.started:
            print(f"streamvid: serving on http://{shown}:{port}/", file=sys.stderr, flush=True)

    # Everything loaded so far (torch, the encoder, the memories: ~190k objects) lives as long as the
    # server: out of the cyclic GC's reach, a full collection no longer scans it (85 ms on a 2-core
    # machine, which landed on ~1 in 20 questions; BENCHMARKS.md, "Query latency").
    gc.freeze()
    if engine is not None:
        engine.start()
    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if engine is not None:
            engine.stop()
            engine.join(10.0)
        if webhook is not None:
            webhook.close(timeout=args.webhook_timeout + 1.0)
    saved = []
    if engine is not None and args.save:
        for s in engine.live:
            target = save_path(args.save, s.id, s.name, len(engine.live))
            if not s.stats.frames:
                print(f"streamvid: warning: no frame was ingested from {s.name}; {target} not written",
                      file=sys.stderr)
                continue
            rec = stream_record(s, args.loop)
            cli._save_memory(s.memory, target, engine.encoder.config(), StreamLog([rec]))
            saved.append(target)
    if not args.quiet:
        note = f"; saved {', '.join(saved)}" if saved else ""
        print(f"streamvid: server stopped{note}", file=sys.stderr)
    return EXIT_INTERRUPTED if server.signals and server.signals[0] == signal.SIGINT else EXIT_OK


def _pin_and_alert(s, hub_box):
    """A Watcher ``on_event``: the stream's alert engine first, then the hub (with the alerts it fired)."""
    alerts = s.alerts

    def on_event(det, row) -> None:
        before = alerts.total
        alerts.on_event(det, row)
        fired = alerts.total - before
        texts = [h["alert"] for h in list(alerts.hits)[-fired:]] if fired else []
        if hub_box:
            hub_box[0].on_pin(s, det, row, alert="; ".join(texts) or None)
    return on_event


class _Server:
    """uvicorn's Server, but a SIGTERM/SIGINT ends it without being raised again afterwards (so the
    process can save and exit with its own code) and ends the live feeds first."""

    def __new__(cls, config, on_exit):
        import uvicorn

        class Server(uvicorn.Server):
            def __init__(self) -> None:
                super().__init__(config)
                self.signals: list[int] = []
                self.started_event = threading.Event()

            async def startup(self, sockets=None) -> None:
                try:
                    await super().startup(sockets=sockets)
                finally:
                    self.started_event.set()

            def handle_exit(self, sig, frame) -> None:
                self.signals.append(sig)
                on_exit()
                if self.should_exit and sig == signal.SIGINT:
                    self.force_exit = True
                else:
                    self.should_exit = True

            def capture_signals(self):
                import contextlib

                @contextlib.contextmanager
                def capture():
                    if threading.current_thread() is not threading.main_thread():
                        yield
                        return
                    old = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
                    try:
                        yield
                    finally:
                        for sig, h in old.items():
                            signal.signal(sig, h)
                return capture()

        return Server()
