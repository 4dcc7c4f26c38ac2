"""Unit tests of gradflowkit.propagation against a hand-run forward/backward pass in float64,
closed-form geometric sequences, and the variance-propagation predictions at large width."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradflowkit.nets import DeepMLP
from gradflowkit.propagation import geometric_rate, relu_family_gain, signal_stats


def _hand_stats(net, x, seed):
    """Oracle: explicit matmuls and activations, backward by torch.autograd.grad of a dot
    product with the seed, population std with numpy."""
    h = (net.stem(x) if net.stem is not None else x).detach().requires_grad_(True)
    states, zs = [h], []
    for block in net.blocks:
        z = states[-1] @ block.linear.weight.T + block.linear.bias
        zs.append(z)
        states.append(block.act(z))
    grads = torch.autograd.grad((states[-1] * seed).sum(), states[:-1])
    std = lambda t: np.asarray(t.detach()).std()  # noqa: E731
    return ([std(s) for s in states], [std(g) for g in grads] + [std(seed)],
            [std(z) for z in zs])


@pytest.mark.parametrize("options", [
    dict(activation="relu", init="he"),
    dict(activation="tanh", init="orthogonal", in_features=5, out_features=3),
    dict(activation="leaky_relu", init="normal", weight_scale=2.0),
])
def test_signal_stats_match_hand_pass(float64, options):
    torch.manual_seed(0)
    net = DeepMLP(5, 7, **options)
    x = torch.randn(9, options.get("in_features", 7))
    stats = signal_stats(net, x, generator=torch.Generator().manual_seed(3))
    seed = torch.randn(9, 7, generator=torch.Generator().manual_seed(3))
    fwd, bwd, pre = _hand_stats(net, x, seed)
    np.testing.assert_allclose(stats.forward, fwd, rtol=1e-12)
    np.testing.assert_allclose(stats.backward, bwd, rtol=1e-12)
    np.testing.assert_allclose(stats.preact, pre, rtol=1e-12)
    assert stats.forward.shape == stats.backward.shape == (6,) and stats.preact.shape == (5,)


def test_signal_stats_leaves_parameter_grads_alone(seeded):
    net = DeepMLP(3, 4)
    signal_stats(net, torch.randn(2, 4))
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("init, scale, expected", [
    ("he", 1.0, 1.0),                   # He keeps both signals' size
    ("normal", 1.0, math.sqrt(0.5)),    # N(0, 1/n): the std shrinks by sqrt(1/2) per layer
    ("normal", 2.0, math.sqrt(2.0)),    # N(0, 4/n): grows by sqrt(2)
])
def test_relu_rates_match_variance_propagation(seeded, init, scale, expected):
    net = DeepMLP(12, 512, activation="relu", init=init, weight_scale=scale)
    stats = signal_stats(net, torch.randn(256, 512))
    # Layers 2..: after the first ReLU, both directions scale by the same predicted factor.
    assert geometric_rate(stats.preact) == pytest.approx(expected, rel=0.03)
    assert geometric_rate(stats.backward[::-1][:-1]) == pytest.approx(expected, rel=0.03)


def test_signal_stats_rejects_other_models():
    with pytest.raises(TypeError, match="DeepMLP"):
        signal_stats(torch.nn.Linear(2, 2), torch.randn(1, 2))


def test_geometric_rate_recovers_exact_sequences():
    assert geometric_rate(3.0 * 0.7 ** np.arange(10)) == pytest.approx(0.7, rel=1e-12)
    assert geometric_rate([5.0, 5.0, 5.0]) == pytest.approx(1.0, rel=1e-12)
    depths = np.array([5, 10, 20, 40])
    assert geometric_rate(2.0 ** -depths, steps=depths) == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize("values, match", [
    ([1.0], ">= 2 values"), ([1.0, 0.0], "> 0"), ([1.0, np.inf], "finite"),
])
def test_geometric_rate_rejects_bad_values(values, match):
    with pytest.raises(ValueError, match=match):
        geometric_rate(values)


def test_relu_family_gain_closed_form():
    assert relu_family_gain(2.0) == 1.0
    assert relu_family_gain(1.0) == pytest.approx(math.sqrt(0.5))
    assert relu_family_gain(2.0, 1.0) == pytest.approx(math.sqrt(2.0))  # identity: c = 2
    # Oracle: Monte Carlo E[f'(z)^2] of Leaky ReLU with slope 0.5.
    z = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mc = torch.where(z > 0, 1.0, 0.25).mean().item()
    assert relu_family_gain(1.0, 0.5) ** 2 == pytest.approx(mc, rel=0.01)
    with pytest.raises(ValueError, match=">= 0"):
        relu_family_gain(-1.0)
