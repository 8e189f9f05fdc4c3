"""streamvid: streaming video understanding with a constant-size Δ-Mem memory."""

__version__ = "0.1.0"
