"""The encoder protocol every visual encoder implements.

An encoder turns RGB frames into visual tokens ``[N, D]`` plus a global vector ``[D]`` in one joint
space, and (where it can) text or an image query into a ``[D]`` vector of the same space, so that a
question can be compared with what the memory holds. All outputs are float32, L2-normalised rows,
on the CPU.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from streamvid.types import Encoded


class EncoderError(RuntimeError):
    """An encoder could not be created or used (bad weights file, unknown model, ...)."""


@runtime_checkable
class Encoder(Protocol):
    name: str  # "clip" | "classic"
    dim: int  # D
    tokens_per_frame: int  # N
    # optional: ``novelty_threshold`` (float), the memory's novelty threshold suited to these tokens

    def config(self) -> dict:
        """JSON-able description (name, model, weights, dim, ...) stored with a memory snapshot."""

    def encode_frames(self, frames: Sequence[np.ndarray]) -> list[Encoded]:
        """Encode a batch of ``[H, W, 3]`` uint8 RGB frames → one :class:`Encoded` per frame."""

    def encode_image(self, rgb: np.ndarray) -> torch.Tensor:
        """An image used as a query → ``[D]`` (comparable with frames' ``global_``)."""

    def encode_text(self, text: str) -> torch.Tensor | None:
        """A text query → ``[D]``, or ``None`` when this encoder cannot embed that text."""

    def describe(self, crop: np.ndarray, mask: np.ndarray | None = None) -> str:
        """A short description of a subject crop (``[h, w, 3]`` RGB; ``mask`` ``[h, w]`` bool)."""


def l2n(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """L2-normalise along ``dim`` (zero vectors stay zero)."""
    return x / x.norm(dim=dim, keepdim=True).clamp_min(1e-12)


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line(exc: BaseException | str, limit: int = 200) -> str:
    """An exception (or text) as one short line for an error message (ANSI codes removed)."""
    text = ANSI_ESCAPE.sub("", str(exc)).strip() or type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else the CPU; EncoderError for a bad or absent device."""
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise EncoderError(f"bad device '{device}': {one_line(e)}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EncoderError(f"device '{device}' asked for, but CUDA is not available")
    return dev
