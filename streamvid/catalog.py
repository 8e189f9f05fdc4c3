"""A catalog of indexed videos: one Δ-Mem memory per video, searched together.

``streamvid index VIDEO... --catalog DIR`` fills a catalog, ``streamvid search DIR "question"``
answers across it. A catalog is a folder::

    DIR/catalog.json      {"format": "streamvid-catalog", "version": 1, "entries": {ID: ENTRY}}
    DIR/<ID>.svm          the memory of one video (a snapshot, :mod:`streamvid.memory.snapshot`)
    DIR/.catalog.lock     taken (``flock``) while ``catalog.json`` is read and rewritten

An entry's ``ID`` is derived from the video's content and the settings it was indexed with
(:func:`video_id`): the :func:`~streamvid.pipeline.fingerprint` of its first MiB and its size, the
encoder's config (without the device it ran on), the budget, ``--fps`` and ``--max-side``. So a
video indexed again with the same settings is skipped wherever it lies now, while another encoder
or budget makes a new entry beside the first. ``ENTRY`` holds the video's path, size, mtime,
fingerprint, what probing it said, the settings, and what ingesting it gave (frames, entries,
exits, seconds, warnings); the snapshot's own metadata holds the same entry under ``"catalog"``.

Writes are crash-safe: a snapshot is written atomically (by whoever indexed the video, possibly
a Ray worker on another node: the folder must then be on a filesystem every node sees), and
``catalog.json`` is rewritten atomically by the driver alone, one entry at a time as results
come back (:meth:`Catalog.commit`, under the lock, re-reading the file first so two runs on one
catalog do not lose each other's entries). A crash loses no finished video: an entry already in
``catalog.json`` is skipped by the next run, and a snapshot written just before the crash is
recognised and adopted without indexing it again. A video whose file changed since it was indexed
(another size or other first bytes at the same path) is indexed again, and once that succeeded its
old entry and snapshot are replaced; a video that fails keeps whatever entry it had.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from streamvid.errors import InputError, StreamvidError, one_line
from streamvid.fsutil import atomic_write
from streamvid.types import Moment

log = logging.getLogger(__name__)

INDEX_NAME = "catalog.json"
LOCK_NAME = ".catalog.lock"
SNAPSHOT_EXT = ".svm"
CATALOG_FORMAT, CATALOG_VERSION = "streamvid-catalog", 1
RUNTIME_KEYS = ("device", "precision")
"""Encoder config keys that say where it ran, not what it computes: not part of an entry's id."""


class CatalogError(InputError):
    """A catalog folder that cannot be used (a file, unreadable or foreign ``catalog.json``): exit 2."""


# ---------------------------------------------------------------------- settings and ids
@dataclass(frozen=True)
class IndexSettings:
    """How the videos of one ``index`` run are ingested: the encoder (its ``config()``), the memory
    budget in bytes, the ``--fps`` sampling rate and the ``--max-side`` decode size."""

    encoder: dict
    budget_bytes: int
    fps: float
    max_side: int

    def key(self) -> dict:
        """What decides the memory's content: the settings without the encoder's device."""
        return {"encoder": encoder_key(self.encoder), "budget_bytes": int(self.budget_bytes),
                "fps": float(self.fps), "max_side": int(self.max_side)}


def encoder_key(cfg: dict) -> dict:
    """An encoder's config without :data:`RUNTIME_KEYS`: memories with equal keys are comparable."""
    return {k: v for k, v in cfg.items() if k not in RUNTIME_KEYS}


def video_id(file_fingerprint: str, size: int, settings: IndexSettings) -> str:
    """The catalog id of a video's memory: 24 hex digits of the SHA-256 of its content fingerprint,
    its size and the settings' :meth:`~IndexSettings.key`."""
    text = json.dumps({"fingerprint": file_fingerprint, "size": int(size), "settings": settings.key()},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class IndexJob:
    """One video to index: what the driver knows of it, sent to whoever indexes it."""

    video: str  # as given on the command line (messages)
    path: str  # absolute
    id: str
    size: int
    mtime_ns: int
    fingerprint: str
    settings: IndexSettings


@dataclass
class IndexResult:
    """What became of one video: ``status`` is ``"indexed"``, ``"skipped"`` (``reason`` says why)
    or ``"failed"`` (``error`` says why, on one line). ``entry`` is the catalog entry (indexed or
    skipped); ``replaced`` the ids of older entries of the same file that it replaced."""

    video: str
    status: str
    id: str | None = None
    entry: dict | None = None
    reason: str | None = None
    error: str | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        d: dict = {"video": self.video, "status": self.status, "id": self.id}
        if self.entry is not None:
            d.update(path=self.entry.get("video"), snapshot=self.entry.get("snapshot"),
                     frames=self.entry.get("frames"), entered=self.entry.get("entered"),
                     left=self.entry.get("left"))
        if self.status == "indexed":
            d["seconds"] = round(self.seconds, 3)
        if self.reason:
            d["reason"] = self.reason
        if self.error:
            d["error"] = self.error
        d["warnings"] = list(self.warnings)
        if self.replaced:
            d["replaced"] = list(self.replaced)
        return d


# ---------------------------------------------------------------------- the catalog folder
class Catalog:
    """A catalog folder (see the module docstring). ``Catalog.open(root, create=...)``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    @property
    def index_path(self) -> str:
        return os.path.join(self.root, INDEX_NAME)

    def snapshot_path(self, entry_id: str) -> str:
        return os.path.join(self.root, entry_id + SNAPSHOT_EXT)

    @classmethod
    def open(cls, root: str, *, create: bool) -> Catalog:
        """The catalog at ``root``. ``create``: make the folder and an empty ``catalog.json`` when
        missing (``index``); else one must be there (``search``). Raises :class:`CatalogError`."""
        cat = cls(root)
        if os.path.exists(root) and not os.path.isdir(root):
            raise CatalogError(f"catalog {root} is a file, not a folder")
        if not create:
            if not os.path.isdir(root):
                raise CatalogError(f"no catalog at {root}: no such folder (make one with: streamvid index "
                                   f"VIDEO... --catalog {root})")
            if not os.path.isfile(cat.index_path):
                raise CatalogError(f"no catalog in {root}: it has no {INDEX_NAME} (make one with: streamvid "
                                   f"index VIDEO... --catalog {root})")
            cat.entries()  # readable?
            return cat
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as e:
            raise CatalogError(f"cannot create the catalog folder {root}: {e.strerror or e}") from None
        if not os.access(root, os.W_OK | os.X_OK):
            raise CatalogError(f"catalog folder not writable: {root}")
        with cat._locked():
            if not os.path.exists(cat.index_path):
                cat._write({})
            else:
                cat.entries()
        return cat

    # -- catalog.json
    def entries(self) -> dict[str, dict]:
        """The entries of ``catalog.json``, id → entry. Raises :class:`CatalogError` when the file
        is unreadable or not a streamvid catalog (it is then never overwritten)."""
        try:
            with open(self.index_path, encoding="utf-8") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            reason = getattr(e, "strerror", None) or str(e).splitlines()[0]
            raise CatalogError(f"{self.index_path} is not a readable catalog ({reason}): not touching it") from None
        if not (isinstance(doc, dict) and doc.get("format") == CATALOG_FORMAT and isinstance(doc.get("entries"), dict)):
            raise CatalogError(f"{self.index_path} is not a streamvid catalog: not touching it")
        if doc.get("version") != CATALOG_VERSION:
            raise CatalogError(f"{self.index_path}: catalog version {doc.get('version')}, this streamvid reads "
                               f"{CATALOG_VERSION}")
        return {k: v for k, v in doc["entries"].items() if isinstance(v, dict)}

    def _write(self, entries: dict[str, dict]) -> None:
        doc = {"format": CATALOG_FORMAT, "version": CATALOG_VERSION,
               "entries": dict(sorted(entries.items(), key=lambda kv: (str(kv[1].get("video")), kv[0])))}
        atomic_write(self.index_path, (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        with open(os.path.join(self.root, LOCK_NAME), "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def commit(self, entry: dict) -> list[str]:
        """Add ``entry`` (its snapshot is already written) to ``catalog.json``, atomically; older
        entries of the same file with the same settings (the file changed since) are replaced and
        their snapshots removed. Returns the ids replaced."""
        with self._locked():
            entries = self.entries()
            replaced = [k for k, e in entries.items() if k != entry["id"] and e.get("video") == entry["video"]
                        and e.get("settings") == entry.get("settings")]
            for k in replaced:
                del entries[k]
            entries[entry["id"]] = entry
            self._write(entries)
        for k in replaced:
            with contextlib.suppress(OSError):
                os.unlink(self.snapshot_path(k))
            log.info("replaced the entry %s of %s (the file changed since it was indexed)", k, entry["video"])
        return replaced

    # -- planning an index run
    def plan(self, videos: Sequence[str], settings: IndexSettings) -> tuple[list[IndexJob], list[IndexResult]]:
        """Which of ``videos`` need indexing with ``settings`` → ``(jobs, results)``: the jobs to
        run, and the results of the others (skipped: already in the catalog; failed: not a
        readable file), in the order given.

        Already indexed: an entry of the same path, size, mtime and settings whose snapshot exists
        (nothing is read), else an entry of the same content id (the file moved or was copied), else
        a snapshot of that id left by a run that stopped before recording it (adopted)."""
        from streamvid.pipeline import FINGERPRINT_BYTES, fingerprint

        entries = self.entries()
        key = settings.key()
        jobs: list[IndexJob] = []
        results: list[IndexResult] = []
        planned: set[str] = set()
        for video in videos:
            path = os.path.abspath(video)
            try:
                st = os.stat(path)
            except OSError as e:
                results.append(IndexResult(video, "failed", error=_no_file(video, e)))
                continue
            if not os.path.isfile(path):
                results.append(IndexResult(video, "failed", error=f"not a file: {video}"))
                continue
            if st.st_size == 0:
                results.append(IndexResult(video, "failed", error=f"file is empty: {video}"))
                continue
            quick = next((e for e in entries.values() if e.get("video") == path and e.get("size") == st.st_size
                          and e.get("mtime_ns") == st.st_mtime_ns and e.get("settings") == key
                          and os.path.isfile(self.snapshot_path(e.get("id", "")))), None)
            if quick is not None:
                results.append(IndexResult(video, "skipped", quick["id"], quick, reason="already indexed"))
                continue
            try:
                fp = fingerprint(path, min(st.st_size, FINGERPRINT_BYTES))
            except OSError as e:
                results.append(IndexResult(video, "failed", error=_no_file(video, e)))
                continue
            vid = video_id(fp, st.st_size, settings)
            if vid in planned:
                results.append(IndexResult(video, "skipped", vid, reason="given twice (same content)"))
                continue
            known = entries.get(vid)
            if known is not None and os.path.isfile(self.snapshot_path(vid)):
                same = known.get("video") == path
                reason = "already indexed" if same else f"already indexed as {known.get('video')} (same content)"
                results.append(IndexResult(video, "skipped", vid, known, reason=reason))
                continue
            adopted = self._adopt(vid)
            if adopted is not None:
                replaced = self.commit(adopted)
                results.append(IndexResult(video, "skipped", vid, adopted, replaced=replaced,
                                           reason="already indexed (recorded now: the earlier run stopped first)"))
                continue
            planned.add(vid)
            jobs.append(IndexJob(video, path, vid, st.st_size, st.st_mtime_ns, fp, settings))
        return jobs, results

    def _adopt(self, entry_id: str) -> dict | None:
        """The entry saved in the snapshot of ``entry_id`` when a finished snapshot is there."""
        path = self.snapshot_path(entry_id)
        if not os.path.isfile(path):
            return None
        from streamvid.memory.snapshot import SnapshotError, load

        try:
            _, meta = load(path)
        except SnapshotError:
            return None
        entry = meta.get("catalog")
        return entry if isinstance(entry, dict) and entry.get("id") == entry_id else None


def _no_file(video: str, e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return f"no such file: {video}"
    return f"cannot read {video}: {e.strerror or e}"


# ---------------------------------------------------------------------- indexing one video
def index_video(job: IndexJob, root: str, encoder) -> IndexResult:
    """Index one video: decode it, encode its frames, update a new memory (the ingest ``watch``
    does: :func:`streamvid.pipeline.ingest_file`), and save the memory atomically as
    ``root/<id>.svm`` with its catalog entry in the metadata. Never raises for a bad video: the
    result says ``"failed"`` with the reason on one line. Runs wherever the video is indexed (the
    driver, or a Ray worker); ``catalog.json`` is not touched here (see :meth:`Catalog.commit`)."""
    from streamvid.memory.snapshot import SnapshotError, save
    from streamvid.pipeline import (
        SourceRecord,
        StreamLog,
        file_warnings,
        ingest_file,
        new_memory,
        snapshot_metadata,
    )
    from streamvid.sources import FileSource, SamplingGrid

    t0 = time.perf_counter()
    s = job.settings
    try:
        source = FileSource(job.path, fps=s.fps, max_side=s.max_side)
        info = source.info
        memory = new_memory(encoder, s.budget_bytes)
        grid = SamplingGrid(0.0, s.fps)
        stats = ingest_file(source, grid, encoder, memory)
        warnings = file_warnings(source.skipped, info, grid, None, s.fps, stats)
        rec = SourceRecord.for_file(job.path, info, sampled_fps=s.fps, max_side=s.max_side, size=job.size,
                                    file_fingerprint=job.fingerprint)
        rec.add(grid)
        seconds = time.perf_counter() - t0
        entry = {
            "id": job.id, "video": job.path, "snapshot": job.id + SNAPSHOT_EXT, "size": job.size,
            "mtime_ns": job.mtime_ns, "fingerprint": job.fingerprint, "settings": s.key(),
            "encoder": encoder.config(), "budget_bytes": s.budget_bytes, "sampled_fps": s.fps,
            "max_side": s.max_side, "duration": info.duration, "fps": info.fps, "width": info.width,
            "height": info.height, "codec": info.codec, "frames": stats.frames, "entered": stats.entered,
            "left": stats.left, "seconds": round(seconds, 3), "warnings": warnings,
            "indexed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        meta = {**snapshot_metadata(memory, encoder.config(), StreamLog([rec])), "catalog": entry}
        save(memory, os.path.join(root, job.id + SNAPSHOT_EXT), metadata=meta)
    except (StreamvidError, SnapshotError, ValueError) as e:
        return IndexResult(job.video, "failed", job.id, error=one_line(e), seconds=time.perf_counter() - t0)
    except OSError as e:
        return IndexResult(job.video, "failed", job.id, error=f"{job.video}: {e.strerror or e}",
                           seconds=time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - one bad video must not end a run of thousands
        log.debug("indexing %s failed", job.video, exc_info=True)
        return IndexResult(job.video, "failed", job.id, error=f"unexpected {type(e).__name__}: {one_line(e)}",
                           seconds=time.perf_counter() - t0)
    log.info("indexed %s: %d frames in %.1f s", job.video, stats.frames, seconds)
    return IndexResult(job.video, "indexed", job.id, entry, seconds=seconds, warnings=warnings)


def run_jobs(catalog: Catalog, jobs: Sequence[IndexJob], encoder,
             on_result: Callable[[IndexResult], None] | None = None) -> list[IndexResult]:
    """Index ``jobs`` one after the other in this process with ``encoder`` (``index`` without
    ``--ray``), recording each in the catalog as it finishes."""
    results = []
    for job in jobs:
        result = record(catalog, index_video(job, catalog.root, encoder))
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def record(catalog: Catalog, result: IndexResult) -> IndexResult:
    """Commit an indexed result's entry to ``catalog.json`` (the driver's part); a catalog that
    cannot be written turns the result into a failure (its snapshot is adopted by the next run)."""
    if result.status != "indexed" or result.entry is None:
        return result
    try:
        result.replaced = catalog.commit(result.entry)
    except (OSError, CatalogError) as e:
        return dataclasses.replace(result, status="failed",
                                   error=f"indexed, but {catalog.index_path} could not be updated: "
                                   f"{getattr(e, 'strerror', None) or e}")
    return result


# ---------------------------------------------------------------------- search
@dataclass
class Hit:
    """A moment of one video of the catalog."""

    moment: Moment
    video: str  # the indexed path
    id: str  # the catalog entry
    thumb: bytes | None = None  # the moment's thumbnail (a JPEG from the memory), if any

    def to_json(self) -> dict:
        return {**self.moment.to_json(), "video": self.video, "id": self.id}


@dataclass
class SearchResult:
    question: str
    kind: str  # "text" | "image"
    intent: str | None
    encoder: dict
    videos: int  # memories searched
    hits: list[Hit]
    warnings: list[str] = field(default_factory=list)
    note: str | None = None  # why there is nothing to merge (the question is empty, or beyond the encoder)


def search(catalog: Catalog, *, question: str | None = None, image: np.ndarray | None = None,
           image_label: str = "image", top_k: int = 5, min_gap: float = 1.0, encoder_name: str | None = None,
           weights: str | None = None, device: str | None = None) -> SearchResult:
    """Answer ``question`` (text) or ``image`` (``[H, W, 3]`` RGB) from every memory of the catalog
    with :func:`streamvid.query.answer_text` / :func:`~streamvid.query.answer_image`, and merge
    the moments of all videos, best score first (``top_k`` in all; ties: by video, then time).

    The memories must share an encoder (scores of different encoders do not compare):
    ``encoder_name`` picks one when the catalog holds several, else it is an InputError (exit 2).
    Memories are loaded one at a time, so a catalog of any size is searched in the memory of one.
    A snapshot that is missing or unreadable is a warning, not an error."""
    from streamvid.memory.snapshot import SnapshotError, load
    from streamvid.models.base import EncoderError
    from streamvid.models.factory import encoder_from_config
    from streamvid.query import answer_image, answer_text

    if (question is None) == (image is None):
        raise InputError("give a question or --image PATH (one of them)")
    entries = sorted(catalog.entries().values(), key=lambda e: (str(e.get("video")), str(e.get("id"))))
    if encoder_name is not None:
        entries = [e for e in entries if (e.get("encoder") or {}).get("name") == encoder_name]
    if not entries:
        which = f" made with the {encoder_name} encoder" if encoder_name else ""
        raise InputError(f"the catalog {catalog.root} holds no video{which}: index some with: streamvid index "
                         f"VIDEO... --catalog {catalog.root}")
    groups: dict[str, list[dict]] = {}
    for e in entries:
        groups.setdefault(json.dumps(encoder_key(e.get("encoder") or {}), sort_keys=True), []).append(e)
    if len(groups) > 1:
        names = "; ".join(f"{_encoder_label(json.loads(k))} ({len(v)} videos)" for k, v in groups.items())
        hint = "--encoder classic or --encoder clip" if encoder_name is None else "separate catalogs"
        raise InputError(f"the catalog {catalog.root} holds memories of {len(groups)} encoders, whose scores do "
                         f"not compare: {names}; search one of them ({hint})")
    cfg = entries[0].get("encoder") or {}
    encoder = None

    def get_encoder():
        nonlocal encoder
        if encoder is None:
            try:
                encoder = encoder_from_config(cfg, weights=weights, device=device)
            except EncoderError as e:
                raise InputError(f"this search needs the catalog's {cfg.get('name')} encoder: {e}") from None
        return encoder

    text_vecs: dict[str, object] = {}

    def embed_text(text: str):
        if text not in text_vecs:
            text_vecs[text] = get_encoder().encode_text(text)
        return text_vecs[text]

    vec = get_encoder().encode_image(image) if image is not None else None
    label = question if question is not None else image_label
    best: list[Hit] = []
    warnings: list[str] = []
    intent = None
    searched = 0
    for e in entries:
        path = catalog.snapshot_path(str(e.get("id")))
        try:
            memory, _ = load(path)
        except SnapshotError as err:
            warnings.append(f"{e.get('video')} not searched: {err}")
            continue
        searched += 1
        if vec is not None:
            ans = answer_image(memory, label, vec, top_k=top_k, min_gap=min_gap)
        else:
            ans = answer_text(memory, question, embed_text, encoder_name=str(cfg.get("name")), top_k=top_k,
                              min_gap=min_gap)
        intent = intent or ans.intent
        if ans.intent in ("empty", "invalid", "unsupported"):  # the same for every memory: say it once
            return SearchResult(ans.question, "text", ans.intent, cfg, searched, [], warnings, note=ans.answer)
        label = ans.question
        hits = [Hit(m, str(e.get("video")), str(e.get("id"))) for m in ans.moments]
        best = sorted(best + hits, key=lambda h: (-h.moment.score, h.video, h.moment.t))[:top_k]
        kept = {id(h) for h in best}
        for h in hits:  # the thumbnails of this video's moments that made the list, while it is loaded
            if id(h) in kept and h.moment.thumb_id >= 0:
                h.thumb = memory.thumbnail(h.moment.thumb_id)
    return SearchResult(label, "image" if vec is not None else "text", intent, cfg, searched, best, warnings)


def _encoder_label(key: dict) -> str:
    name = key.get("name", "unknown")
    if name == "clip":
        return f"clip {key.get('model')}/{key.get('pretrained') or key.get('weights')}"
    return str(name)
