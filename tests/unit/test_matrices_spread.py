"""gaussian_log_rate_std and product_growth(bound=False) (lesson 3): closed form, Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradflowkit.matrices import (gaussian_log_rate, gaussian_log_rate_std, gaussian_matrices,
                                  product_growth)


def test_std_closed_form_for_two_dimensions():
    # n = 2: ||Wv||^2 n / g^2 ~ chi^2_2 / ... and log of an Exp(1) variable has variance pi^2/6.
    assert gaussian_log_rate_std(2) == pytest.approx(0.5 * math.pi / math.sqrt(6), rel=1e-8)


@pytest.mark.parametrize("width", [4, 16])
def test_std_matches_monte_carlo(width):
    gen = torch.Generator().manual_seed(width)
    w = gaussian_matrices(8000, width, 0.7, generator=gen)
    v = torch.randn(width, generator=gen, dtype=torch.float64)
    logs = ((w @ v).norm(dim=-1) / v.norm()).log().numpy()
    assert logs.std() == pytest.approx(gaussian_log_rate_std(width), rel=0.04)
    assert logs.mean() == pytest.approx(gaussian_log_rate(width, 0.7), abs=0.01)


def test_std_for_wide_layers_is_about_one_over_sqrt_2n():
    assert gaussian_log_rate_std(1000) == pytest.approx(1 / math.sqrt(2000), rel=1e-3)


def test_product_growth_without_bound_has_the_same_norms():
    with_bound = product_growth(15, 6, 1.3, trials=4, seed=9)
    without = product_growth(15, 6, 1.3, trials=4, seed=9, bound=False)
    assert without.log_bound is None
    np.testing.assert_array_equal(with_bound.log_norm, without.log_norm)
