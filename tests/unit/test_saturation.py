"""Unit tests of gradflowkit.saturation against hand-run forward passes in float64 and
autograd's derivative of the activation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradflowkit.nets import DeepMLP
from gradflowkit.saturation import SATURATION_THRESHOLD, preactivations, slope_profile


def _hand_preactivations(net, x):
    """Oracle: run the blocks by hand, z_l = norm(W_l x_l + b_l)."""
    h = net.stem(x) if net.stem is not None else x
    zs = []
    for block in net.blocks:
        z = block.norm(block.linear(h))
        zs.append(z)
        h = block(h)
    return zs


@pytest.mark.parametrize("options", [
    dict(activation="sigmoid"),
    dict(activation="tanh", in_features=3, out_features=2, weight_scale=3.0),
    dict(activation="tanh", norm="layer"),
    dict(activation="relu", residual=True, branch_layers=2),
])
def test_preactivations_match_hand_forward(float64, seeded, options):
    net = DeepMLP(4, 6, **options)
    x = torch.randn(5, options.get("in_features", 6))
    zs = preactivations(net, x)
    assert len(zs) == 4
    with torch.no_grad():
        for z, ref in zip(zs, _hand_preactivations(net, x)):
            torch.testing.assert_close(z, ref, rtol=0, atol=1e-12)
            assert not z.requires_grad


def test_preactivations_remove_their_hooks(seeded):
    net = DeepMLP(3, 4, activation="sigmoid")
    preactivations(net, torch.randn(2, 4))
    assert all(not block.act._forward_pre_hooks for block in net.blocks)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_slope_profile_against_autograd(float64, seeded, activation):
    net = DeepMLP(5, 8, activation=activation, init="normal", weight_scale=4.0)
    x = torch.randn(64, 8)
    profile = slope_profile(net, x, threshold=0.05)
    for l, z in enumerate(_hand_preactivations(net, x)):
        z = z.detach().requires_grad_(True)
        (slope,) = torch.autograd.grad(net.blocks[l].act(z).sum(), z)  # f'(z), elementwise
        assert profile.mean[l] == pytest.approx(float(slope.mean()), abs=1e-12)
        assert profile.rms[l] == pytest.approx(float(slope.pow(2).mean().sqrt()), abs=1e-12)
        assert profile.saturated[l] == pytest.approx(float((slope < 0.05).double().mean()))


def test_slope_profile_known_values(float64):
    """Zero weights: z = 0 everywhere, so σ'(0) = 1/4 and nothing is saturated."""
    net = DeepMLP(3, 4, activation="sigmoid", init="zeros")
    profile = slope_profile(net, torch.randn(7, 4))
    np.testing.assert_allclose(profile.mean, 0.25)
    np.testing.assert_allclose(profile.rms, 0.25)
    np.testing.assert_allclose(profile.saturated, 0.0)
    assert SATURATION_THRESHOLD == 0.01


def test_slope_profile_huge_weights_saturate(float64, seeded):
    net = DeepMLP(2, 16, activation="sigmoid", init="normal", weight_scale=1000.0)
    profile = slope_profile(net, torch.randn(32, 16))
    assert profile.saturated[0] > 0.9


def test_errors():
    with pytest.raises(TypeError, match="DeepMLP"):
        preactivations(torch.nn.Linear(2, 2), torch.randn(1, 2))
    with pytest.raises(ValueError, match="threshold must be > 0"):
        slope_profile(DeepMLP(1, 2), torch.randn(1, 2), threshold=0.0)
