"""Shared fixtures of the gradflowkit unit tests.

The default dtype is set per test (fixtures ``float64`` / ``float32``) and always restored,
never globally; every test that draws random numbers seeds torch itself (``seeded``).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere: no display in tests

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


def _with_default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield dtype
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture
def float64():
    """Run the test with torch's default dtype float64 (restored afterwards)."""
    yield from _with_default_dtype(torch.float64)


@pytest.fixture
def float32():
    """Run the test with torch's default dtype float32 (restored afterwards)."""
    yield from _with_default_dtype(torch.float32)


@pytest.fixture(autouse=True)
def seeded():
    """Seed torch's global generator for every test, and restore its state afterwards.

    Autouse so that no test depends on how much randomness earlier tests consumed: the
    suite gives the same result in any order and on a fresh clone.
    """
    state = torch.get_rng_state()
    torch.manual_seed(1234)
    try:
        yield
    finally:
        torch.set_rng_state(state)


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every matplotlib figure a test opened."""
    yield
    plt.close("all")


@pytest.fixture(autouse=True)
def _default_dtype_is_restored():
    """Fail loudly if a test leaks a changed default dtype into the next one."""
    before = torch.get_default_dtype()
    yield
    assert torch.get_default_dtype() == before, "a test changed torch's default dtype"
