"""descend with one learning rate per path (lesson 5's explorer runs them in one call)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradflowkit.cliff import descend


def test_per_path_rates_equal_separate_calls():
    rates, taus = [0.01, 0.02], [math.inf, 10.0]
    together = descend((7.0, -3.5), lr=np.repeat(rates, 2), steps=40, max_norm=np.tile(taus, 2))
    for i, lr in enumerate(rates):
        alone = descend((7.0, -3.5), lr=lr, steps=40, max_norm=taus)
        np.testing.assert_array_equal(together.points[:, 2 * i:2 * i + 2], alone.points)
        np.testing.assert_array_equal(together.losses[:, 2 * i:2 * i + 2], alone.losses)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, [[0.1]]])
def test_bad_rates_are_rejected(bad):
    with pytest.raises(ValueError, match="lr must be > 0"):
        descend((7.0, -3.5), lr=bad, steps=2)
