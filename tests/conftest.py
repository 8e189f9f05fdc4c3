"""Test-wide settings: no network, ever (the auto encoder must not probe the hub from tests)."""

import os

os.environ.setdefault("STREAMVID_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRITON_INTERPRET", "1")
