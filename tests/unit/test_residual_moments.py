"""Tests of propagation.relu_residual_moments against a wide float64 residual net (the
oracle: the measured mean square and mean of the stream), of relu_residual_rate against
its equation and the moments' recursion, and of landscape.grid_local_minima
against a brute-force loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradflowkit.landscape import grid_local_minima
from gradflowkit.ensemble import EnsembleMLP
from gradflowkit.propagation import relu_residual_moments, relu_residual_rate


@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_moments_match_wide_nets(scale):
    """Oracle: the stream's mean square and mean, averaged over 32 wide nets (one net's
    growth is heavy-tailed: single nets of width 2000 missed the mean square by up to 2x,
    32-net averages by at most 2.7% in five ensembles)."""
    ens = EnsembleMLP.build(range(32), 6, 1000, residual=True, branch_scale=scale,
                            bias=False, dtype=torch.float64)
    x = torch.randn(32, 1000, dtype=torch.float64)
    with torch.no_grad():
        states = ens.hidden_states(x)
    q, m = relu_residual_moments(6, branch_scale=scale)
    for k, s in enumerate(states):
        assert abs(float((s**2).mean()) / q[k] - 1) < 0.08
        assert abs(float(s.mean()) - m[k]) < 0.04 * np.sqrt(q[k])


def test_moments_without_mean_double():
    q, m = relu_residual_moments(3)
    assert q[1] == pytest.approx(2.0) and m[1] == pytest.approx(np.sqrt(1 / np.pi))
    assert q[2] == pytest.approx(4 + 2 * np.sqrt(1 / np.pi) * np.sqrt(2 / np.pi))
    with pytest.raises(ValueError):
        relu_residual_moments(-1)


def test_rate_solves_its_equation_and_is_the_deep_factor():
    """Oracles: the equation r = 2 + 2/(π(√r − 1)) itself, and the factor q_{l+1}/q_l that
    relu_residual_moments' recursion reaches deep in the stack (no assumed m ≈ c√q)."""
    r = relu_residual_rate()
    assert r == pytest.approx(2 + 2 / (np.pi * (np.sqrt(r) - 1)), abs=1e-12)
    assert 2.9 < r < 2.91
    q, _ = relu_residual_moments(300)
    assert q[-1] / q[-2] == pytest.approx(r, abs=1e-9)


def test_grid_local_minima_brute_force():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(9, 11))
    want = sum(all(z[i, j] < z[i + a, j + b] for a in (-1, 0, 1) for b in (-1, 0, 1)
                   if a or b) for i in range(1, 8) for j in range(1, 10))
    assert grid_local_minima(z) == want
    x = np.linspace(-1, 1, 7)
    assert grid_local_minima(x[:, None] ** 2 + x[None, :] ** 2) == 1
    with pytest.raises(ValueError):
        grid_local_minima(np.zeros(5))
