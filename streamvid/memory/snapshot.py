"""Save and load a :class:`DeltaMem` as a safetensors file (never pickle).

The file holds every buffer under its name, and in the safetensors metadata one JSON string under
``"streamvid"``: ``{"format_version", "layout", "config", "metadata"}``.

The file's size is fixed by the memory's layout: the safetensors header is padded with spaces (as
the safetensors format allows) to room for :data:`HEADER_BYTES` bytes of that JSON string, so saving
the same memory again with other metadata (a longer stream, more sources) never changes its size.
"""

from __future__ import annotations

import json
import logging
import os

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from streamvid.fsutil import atomic_write
from streamvid.memory.deltamem import (
    SEG_FRAMES_PER_ROW_BEFORE,
    SEG_TIME_SCALE_BEFORE,
    SHOT_GATE_BEFORE,
    SHOT_SPAN_BEFORE,
    DeltaMem,
)
from streamvid.memory.layout import MemoryLayout

log = logging.getLogger(__name__)

FORMAT_VERSION = 5
"""Version 5 (issue 7): the timeline's means are int16 with an fp32 scale per segment
(``seg_mscale``, ``layout.mean_int16``) instead of fp16, and the config holds ``seg_frames_per_row``
and, in files written since it existed, ``shot_gate`` (a config without either loads with it off)
and ``shot_span`` (a config with ``shot_gate`` but without it loads with the short-shot rule's first form).
Version 4 (issue 7): the timeline's drifts are int8 with an fp16 scale per segment (``seg_dscale``,
``layout.drift_int8``) and the last segment's mean and drift are kept unrounded too (``tail_mean``,
``tail_drift``, ``layout.timeline_tail``). Version 3 (issue 7): the timeline's means are stored
relative to ``origin [D]`` (``layout.timeline_origin``). Version 2 (issue 7): timeline segments are lines (``seg_drift``,
``seg_tmean``, ``seg_stt`` added), segment and event vectors are fp16, segment counts int32; folded
events keep their times (``fold_t``, ``fold_kind``; ``layout.folds`` 0 and no such tensors in files
written before)."""
READS = (1, 2, 3, 4, 5)
"""Versions :func:`load` reads. A version 2, 3 or 4 file loads as it was (its layout has fp16 means;
before version 4 fp16 drifts too; version 2's has no origin either: absolute means), a version 1
file is converted on load (:func:`_upgrade_v1`); saving writes version 5."""
HEADER_BYTES = 32 * 1024
"""Room in a snapshot for the ``"streamvid"`` JSON string (as escaped in the safetensors header)."""


class SnapshotError(ValueError):
    """A snapshot file is missing, unreadable, or not a streamvid memory of this format version."""


def save(mem: DeltaMem, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write ``mem`` and the JSON-able ``metadata`` to ``path`` atomically.

    The bytes go to a temporary file in the same directory, are flushed and fsynced, then
    ``os.replace`` puts it at ``path``: a reader sees the old file or the new one, never a part.
    """
    path = os.fspath(path)
    header = {
        "format_version": FORMAT_VERSION,
        "layout": mem.layout.to_dict(),
        "config": mem.config(),
        "metadata": metadata or {},
    }
    # copies: a memory of a MemoryBank has rows of shared tensors as buffers
    tensors = {name: t.detach().cpu().clone() for name, t in mem.buffers().items()}
    text = json.dumps(header, separators=(",", ":"))  # ASCII: any path survives, escaped
    blob = _fixed_size(st_save(tensors, metadata={"streamvid": text}), text)

    atomic_write(path, blob)
    log.debug("saved memory snapshot %s (%d bytes)", path, len(blob))


def _fixed_size(blob: bytes, text: str) -> bytes:
    """``blob`` (a safetensors file whose metadata holds ``text``) with its header padded so that
    the file's size depends on the tensors' layout only: the header keeps :data:`HEADER_BYTES` for
    ``text``. Raises :class:`SnapshotError` when ``text`` needs more."""
    n = int.from_bytes(blob[:8], "little")
    head = blob[8 : 8 + n].rstrip(b" ")
    escaped = json.dumps(text)[1:-1].encode("ascii")  # as the header holds it
    if escaped not in head:  # not the header this function expects: leave it as it is
        log.warning("unexpected safetensors header; the snapshot is not padded to a fixed size")
        return blob
    if len(escaped) > HEADER_BYTES:
        raise SnapshotError(f"snapshot metadata of {len(escaped)} bytes exceeds the {HEADER_BYTES} bytes reserved")
    room = len(head) - len(escaped) + HEADER_BYTES
    room += -room % 8  # safetensors keeps the tensor data 8-byte aligned
    return room.to_bytes(8, "little") + head.ljust(room, b" ") + blob[8 + n :]


def _upgrade_v1(tensors: dict[str, torch.Tensor], config: dict, specs: dict) -> tuple[dict, dict]:
    """A version 1 memory as version 2: buffers that were wider (fp32 vectors, int64 counts) are
    narrowed; a segment, then a mean vector over ``[start, end]``, becomes a line without drift
    whose frames are taken as spread evenly over its span; the merge score's length penalty,
    gone in version 2, leaves the config."""
    out = dict(tensors)
    for name, t in tensors.items():
        if name in specs and t.dtype != specs[name][1] and (t.dtype, specs[name][1]) in _NARROWED:
            out[name] = t.to(specs[name][1])
    if {"seg_start", "seg_end", "seg_count", "seg_emb"} <= set(out):
        start, end, n = out["seg_start"], out["seg_end"], out["seg_count"].double()
        out.setdefault("seg_drift", torch.zeros_like(out["seg_emb"]))
        out.setdefault("seg_tmean", 0.5 * (start + end))
        out.setdefault("seg_stt", (n * (end - start) ** 2 / 12).float())
    config = {k: v for k, v in config.items() if k != "seg_length_penalty"}
    log.info("read a format version 1 snapshot; it is saved as version %d", FORMAT_VERSION)
    return out, config


_NARROWED = {(torch.float32, torch.float16), (torch.int64, torch.int32)}


def is_snapshot(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a safetensors file with a streamvid header (reads the header only)."""
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
        return isinstance(json.loads(meta["streamvid"]), dict)
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError, TypeError):
        return False


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[DeltaMem, dict]:
    """Read a snapshot written by :func:`save` → ``(memory, metadata)``.

    Raises :class:`SnapshotError` for a missing file, a file that is not safetensors (random or
    truncated bytes), one without a streamvid header, or another format version.
    """
    path = os.fspath(path)
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except FileNotFoundError:
        raise SnapshotError(f"{path}: no such snapshot file") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SnapshotError(f"{path}: not a readable safetensors file ({reason})") from None

    try:
        header = json.loads(meta["streamvid"])
        version = header["format_version"]
    except (KeyError, TypeError, json.JSONDecodeError):
        raise SnapshotError(f"{path}: not a streamvid memory snapshot (no streamvid header)") from None
    if version not in READS:
        raise SnapshotError(
            f"{path}: snapshot format version {version}, this streamvid reads "
            f"{', '.join(map(str, READS[:-1]))} and {READS[-1]}"
        )
    try:
        layout = MemoryLayout.from_dict(header["layout"])
        config = dict(header["config"])
        metadata = dict(header["metadata"])
    except (KeyError, TypeError, ValueError) as e:
        raise SnapshotError(f"{path}: invalid snapshot header ({type(e).__name__}: {e})") from None

    # configs written while the default was 1 s left it out: such memories keep merging as they did
    config.setdefault("seg_time_scale", SEG_TIME_SCALE_BEFORE)
    config.setdefault("seg_frames_per_row", SEG_FRAMES_PER_ROW_BEFORE)  # saved before it existed: off
    if "shot_gate" in config:  # saved with the short-shot rule: without shot_span, its first form
        config.setdefault("shot_span", SHOT_SPAN_BEFORE)
    config.setdefault("shot_gate", SHOT_GATE_BEFORE)  # saved before it existed: off
    specs = layout.buffers()
    if version == 1:
        tensors, config = _upgrade_v1(tensors, config, specs)
    if layout.folds == 0:  # saved before folded events kept their times: none kept
        tensors.setdefault("fold_t", torch.zeros(0, dtype=torch.float64))
        tensors.setdefault("fold_kind", torch.zeros(0, dtype=torch.int8))
    if set(tensors) != set(specs):
        raise SnapshotError(f"{path}: snapshot tensors do not match its layout")
    for name, (shape, dtype) in specs.items():  # checked before allocating anything
        t = tensors[name]
        if tuple(t.shape) != shape or t.dtype != dtype:
            raise SnapshotError(
                f"{path}: tensor {name} is {t.dtype}{list(t.shape)}, layout says {dtype}{list(shape)}"
            )
    try:
        mem = DeltaMem(layout, device=device, **config)
    except TypeError as e:
        raise SnapshotError(f"{path}: invalid snapshot config ({e})") from None
    mem.load_buffers(tensors)
    return mem, metadata
