"""Save and load a :class:`DeltaMem` as a safetensors file (never pickle).

The file holds every buffer under its name, and in the safetensors metadata one JSON string under
``"streamvid"``: ``{"format_version", "layout", "config", "metadata"}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from streamvid.memory.deltamem import DeltaMem
from streamvid.memory.layout import MemoryLayout

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


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
    tensors = {name: t.detach().cpu().contiguous() for name, t in mem.buffers().items()}
    blob = st_save(tensors, metadata={"streamvid": json.dumps(header)})

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    log.debug("saved memory snapshot %s (%d bytes)", path, len(blob))


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
    if version != FORMAT_VERSION:
        raise SnapshotError(
            f"{path}: snapshot format version {version}, this streamvid reads {FORMAT_VERSION}"
        )
    try:
        layout = MemoryLayout.from_dict(header["layout"])
        config = dict(header["config"])
        metadata = dict(header["metadata"])
    except (KeyError, TypeError, ValueError) as e:
        raise SnapshotError(f"{path}: invalid snapshot header ({type(e).__name__}: {e})") from None

    specs = layout.buffers()
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
    for name, buf in mem.buffers().items():
        buf.copy_(tensors[name])
    return mem, metadata
