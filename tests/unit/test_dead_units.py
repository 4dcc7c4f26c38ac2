"""Unit tests of gradflowkit.dead_units against masks computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradflowkit.dead_units import dead_fraction, dead_masks
from gradflowkit.nets import DeepMLP


def test_units_killed_by_a_negative_bias_are_found(float64, seeded):
    net = DeepMLP(3, 6, activation="relu", in_features=4, out_features=2)
    with torch.no_grad():
        net.blocks[1].linear.bias[[0, 4]] = -1e3   # never active for any reasonable input
    x = torch.randn(50, 4)
    masks = dead_masks(net, x)
    assert masks[1][0] and masks[1][4]
    # Oracle: run the layers by hand and test z <= 0 on every row.
    h = net.stem(x)
    for block, mask in zip(net.blocks, masks):
        z = h @ block.linear.weight.T + block.linear.bias
        assert torch.equal(mask, (z <= 0).all(0))
        h = torch.relu(z)
    frac = dead_fraction(net, x)
    np.testing.assert_allclose(frac, [m.double().mean().item() for m in masks], rtol=0)
    assert frac[1] >= 2 / 6


def test_one_active_example_keeps_a_unit_alive(seeded):
    net = DeepMLP(1, 2, activation="relu")
    with torch.no_grad():
        net.blocks[0].linear.weight.copy_(torch.eye(2))
        net.blocks[0].linear.bias.zero_()
    x = torch.tensor([[-1.0, -1.0], [-2.0, 0.5]])  # unit 0 never positive, unit 1 once
    assert dead_masks(net, x)[0].tolist() == [True, False]
    assert dead_fraction(net, x).tolist() == [0.5]


def test_dead_units_rejects_empty_and_wrong_models():
    with pytest.raises(ValueError, match="empty"):
        dead_masks(DeepMLP(1, 2), torch.zeros(0, 2))
    with pytest.raises(TypeError, match="DeepMLP"):
        dead_fraction(torch.nn.Linear(2, 2), torch.zeros(1, 2))
