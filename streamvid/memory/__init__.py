"""Δ-Mem: the constant-size memory of a stream (slots, timeline, pinned events, thumbnails)."""

from streamvid.memory.deltamem import DeltaMem, Hits, PinnedEvent, ReadResult, Segment, SlotInfo
from streamvid.memory.layout import CHANNELS, EVENT_KINDS, MemoryLayout
from streamvid.memory.snapshot import SnapshotError, load, save

__all__ = [
    "CHANNELS",
    "EVENT_KINDS",
    "DeltaMem",
    "Hits",
    "MemoryLayout",
    "PinnedEvent",
    "ReadResult",
    "Segment",
    "SlotInfo",
    "SnapshotError",
    "load",
    "save",
]
