"""moving_average (lesson 14) against a plain loop."""

import numpy as np
import pytest

from gradflowkit.training import moving_average


def test_moving_average_matches_a_loop():
    v = np.random.default_rng(0).normal(size=30)
    w = 7
    loop = np.array([v[i - w + 1:i + 1].mean() for i in range(w - 1, len(v))])
    np.testing.assert_allclose(moving_average(list(v), w), loop, rtol=1e-12)
    np.testing.assert_allclose(moving_average(v, 1), v)


@pytest.mark.parametrize("window", [0, 31])
def test_moving_average_rejects_bad_window(window):
    with pytest.raises(ValueError):
        moving_average(np.zeros(30), window)
