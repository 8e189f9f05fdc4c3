"""``streamvid consistency VIDEO``: the :class:`ConsistencyMonitor` over a file, text/JSON/HTML out."""

from __future__ import annotations

import json
import logging
import os
import sys

from streamvid.errors import EXIT_INTERRUPTED, InputError, Warnings
from streamvid.timefmt import fmt_time

log = logging.getLogger(__name__)


def build_monitor(args, encoder):
    """The monitor and its VBench feature choices (with their notes) for the CLI's options."""
    from streamvid.consistency import vbench
    from streamvid.consistency.monitor import ConsistencyConfig, ConsistencyMonitor
    from streamvid.models.base import EncoderError

    subject = background = None
    if args.vbench:
        try:
            subject, background = vbench.vbench_features(
                dino_weights=args.dino_weights, encoder=encoder if encoder.name == "clip" else None,
                weights=args.weights, device=args.device)
        except EncoderError as e:
            raise InputError(str(e)) from None
    cfg = ConsistencyConfig(settle=args.settle)
    try:
        monitor = ConsistencyMonitor(encoder, subject=subject, background=background,
                                     memory_mb=args.memory_mb or 4.0, config=cfg)
    except ValueError as e:
        raise InputError(f"--memory-mb {args.memory_mb}: {e}") from None
    return monitor


def run_consistency(args) -> int:
    from streamvid import cli
    from streamvid.consistency.report import write_consistency_report
    from streamvid.sources import FileSource

    source = FileSource(args.video, fps=args.fps, start=args.start, end=args.end, max_side=args.max_side)
    info = source.info
    encoder = cli.make_encoder(args)
    monitor = build_monitor(args, encoder)
    notes = [c.note for c in (monitor.subject, monitor.background) if c is not None and getattr(c, "note", None)]
    if not args.quiet:
        for n in dict.fromkeys(notes):
            print(f"streamvid: note: {n}", file=sys.stderr)

    show = args.progress if args.progress is not None else (sys.stderr.isatty() and not args.quiet)
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=source.expected_frames, unit="frame", file=sys.stderr, dynamic_ncols=True,
                   desc=os.path.basename(args.video))
    interrupted = False

    def frames():
        for f in source:
            yield f
            if bar is not None:
                bar.update(1)

    try:
        monitor.feed(frames())
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    monitor.finish()
    result = monitor.report()
    warnings = Warnings()
    if getattr(source, "skipped", 0):
        warnings.append(f"{source.skipped} corrupt packet(s)/frame(s) skipped")
    if interrupted:
        warnings.append("interrupted: the findings cover the frames checked so far")
    if not result["frames"]:
        raise InputError(f"{args.video}: no frame decoded in the range asked for")
    n_shots, n_drift = len(result["shots"]), len(result["drifts"])
    sampled = f"{args.fps:g} fps" if args.fps else f"every frame ({info.fps:g} fps)" if info.fps else "every frame"
    summary = (f"Checked {args.video} ({fmt_time(result['duration'] or 0.0)}, {result['frames']} frames, {sampled}, "
               f"{n_shots} shot{'s' if n_shots != 1 else ''}) with the {encoder.name} encoder: "
               + (f"{n_drift} drift{'s' if n_drift != 1 else ''}." if n_drift else "no drift."))
    doc = {"video": {"path": args.video, "duration": info.duration, "fps": info.fps, "sampled_fps": args.fps,
                     "width": info.width, "height": info.height},
           "encoder": encoder.config(), "summary": summary, "notes": list(dict.fromkeys(notes)),
           "warnings": warnings, **result}
    warnings = doc["warnings"]  # the report may add to them
    if args.report:
        try:
            index = write_consistency_report(doc, monitor.series.rows(), monitor.drifts, args.report)
            log.info("report written to %s", index)
            for i, d in enumerate(doc["drifts"]):  # the moment's thumbnail: the returning frame
                path = os.path.join(args.report, f"drift_{i:02d}_after.jpg")
                d["thumbnail"] = path if os.path.isfile(path) else None
        except OSError as e:
            doc["warnings"].append(f"report not written to {args.report}: {e.strerror or e}")
    if args.json:
        json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        for w in doc["warnings"]:
            print(f"streamvid: warning: {w}", file=sys.stderr)
        print(summary)
        sc = doc["scores"]
        feats = doc["features"]
        print("VBench scores:")
        for key, name, fk in (("subject_consistency", "subject consistency", "subject"),
                              ("background_consistency", "background consistency", "background"),
                              ("temporal_flickering", "temporal flickering", None)):
            v = sc.get(key)
            what = f"  ({feats[fk]['features']})" if fk and feats.get(fk) else ""
            print(f"  {name:24s} {'–' if v is None else f'{v:.4f}'}{what}")
        print("Shots:")
        for s in doc["shots"]:
            place = {"new": "new scene", "same": f"returns to shot {s['matches']}, unchanged",
                     "drift": f"returns to shot {s['matches']}: DRIFT", "short": "too short to compare"}[s["status"]]
            scores = "  ".join(f"{k} {s[k]:.3f}" for k in ("subject", "background", "flicker") if s[k] is not None)
            print(f"  {s['index']:3d}  {fmt_time(s['start'])}–{fmt_time(s['end'])}  {place:30s} {scores}")
        if doc["drifts"]:
            print("Drift:")
            for d in doc["drifts"]:
                print(f"   - drift    {fmt_time(d['t'])}  score {d['score']:.2f}  {d['description']} "
                      f"(should match {fmt_time(d['matches']['t'])})")
        if args.report:
            print(f"Report: {os.path.join(args.report, 'index.html')}")
    return EXIT_INTERRUPTED if interrupted else warnings.exit_code()
