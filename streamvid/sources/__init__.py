"""Frame sources: they know frames and times, not models."""

from streamvid.sources.file import FileSource, SamplingGrid, SourceError, probe
from streamvid.sources.live import (
    AVSource,
    CaptureSource,
    LiveSource,
    MJPEGSource,
    RealtimeFileSource,
    open_live,
    resolve,
)

__all__ = [
    "AVSource",
    "CaptureSource",
    "FileSource",
    "LiveSource",
    "MJPEGSource",
    "RealtimeFileSource",
    "SamplingGrid",
    "SourceError",
    "open_live",
    "probe",
    "resolve",
]
