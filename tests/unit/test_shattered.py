"""Tests of gradflowkit.shattered: the derivative along a grid and the autocorrelation."""

import numpy as np
import pytest
import torch

from gradflowkit.shattered import autocorrelation, input_derivative, scalar_net


def test_input_derivative_matches_finite_differences():
    net = scalar_net(4, 16, residual=True, seed=0, branch_scale=0.5).double()
    x = torch.linspace(-1, 1, 7, dtype=torch.float64)
    g = input_derivative(net, x)
    eps = 1e-6
    with torch.no_grad():
        fd = (net((x + eps)[:, None]) - net((x - eps)[:, None]))[:, 0] / (2 * eps)
    assert torch.allclose(g, fd, atol=1e-6)


def test_zero_bias_relu_net_is_homogeneous():
    net = scalar_net(5, 32, residual=False, seed=1, zero_bias=True).double()
    g = input_derivative(net, torch.linspace(0.1, 2, 20, dtype=torch.float64))
    assert torch.allclose(g, g[0].expand_as(g), atol=1e-12)   # constant for x > 0


def test_biases_are_pytorch_default_range_and_branch_scale_is_set():
    net = scalar_net(3, 50, residual=True, seed=0, branch_scale=0.25)
    assert net.blocks[0].branch_scale == 0.25
    b = net.blocks[0].linear.bias
    assert b.abs().max() <= 50 ** -0.5 and b.abs().max() > 0
    assert net.stem.bias.abs().max() <= 1.0


def test_autocorrelation_against_numpy_correlate():
    rng = np.random.default_rng(0)
    g = rng.standard_normal(100).cumsum()
    d = g - g.mean()
    full = np.correlate(d, d, mode="full")[99:] / (d @ d)
    assert np.allclose(autocorrelation(g, 10), full[:11])
    assert autocorrelation(g, 0)[0] == pytest.approx(1.0)


def test_autocorrelation_of_white_noise_and_constant():
    rng = np.random.default_rng(1)
    rho = autocorrelation(rng.standard_normal(20000), 3)
    assert np.all(np.abs(rho[1:]) < 0.03)
    assert np.all(np.isnan(autocorrelation(np.ones(5), 2)))
    with pytest.raises(ValueError):
        autocorrelation(np.ones(5), 5)
