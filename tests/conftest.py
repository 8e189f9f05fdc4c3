"""Test-wide settings: no network, ever (the auto encoder must not probe the hub from tests)."""

import os

os.environ.setdefault("STREAMVID_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRITON_INTERPRET", "1")


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def one_torch_thread():
    """Small tensors: one thread avoids thread-pool overhead on busy CI runners."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
