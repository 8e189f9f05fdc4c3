"""Frame sources: they know frames and times, not models."""

from streamvid.sources.file import FileSource, SourceError, probe

__all__ = ["FileSource", "SourceError", "probe"]
