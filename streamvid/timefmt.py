"""Times as people read them."""

from __future__ import annotations

import re

from streamvid.errors import InputError


def fmt_time(seconds: float) -> str:
    """``83.25`` → ``"00:01:23.2"`` (HH:MM:SS.s)."""
    tenths = int(round(max(0.0, float(seconds)) * 10))
    s, d = divmod(tenths, 10)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}.{d}"


_TIME = re.compile(r"^(?:(?:(\d+):)?(\d+):)?(\d+(?:\.\d*)?)$")


def parse_time(text: str) -> float:
    """``"83.5"``, ``"1:23.5"`` or ``"00:01:23.5"`` → seconds. Raises :class:`InputError`."""
    m = _TIME.match(text.strip())
    if not m:
        raise InputError(f"not a time: {text!r} (use seconds or HH:MM:SS[.s])")
    h, mnt, s = m.groups()
    return int(h or 0) * 3600 + int(mnt or 0) * 60 + float(s)
