"""Frame sources: they know frames and times, not models."""

from streamvid.sources.file import FileSource, SamplingGrid, SourceError, probe

__all__ = ["FileSource", "SamplingGrid", "SourceError", "probe"]
