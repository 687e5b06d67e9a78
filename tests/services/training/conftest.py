"""Training tests run with one torch thread: on two shared cores, two threads that spin
waiting for each other make tiny models an order of magnitude slower."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """Every training test runs with one torch thread (tests/conftest.py)."""
