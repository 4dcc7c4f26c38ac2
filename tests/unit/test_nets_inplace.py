"""InplaceResidualMLP: the in-place residual net of lesson 16 against a hand-written forward."""

from __future__ import annotations

import pytest
import torch

from gradflowkit.nets import InplaceResidualBlock, InplaceResidualMLP


def test_forward_matches_out_of_place_formula(float64):
    model = InplaceResidualMLP(width=5, depth=3, out_features=2)
    x = torch.randn(7, 5)
    expected = x
    for block in model.blocks:
        h = torch.relu(block.linear1(expected))
        expected = torch.relu(expected + block.linear2(h))
    expected = model.head(expected)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_uses_inplace_relus_and_backward_matches_out_of_place(float64):
    model = InplaceResidualMLP(width=4, depth=2)
    assert all(b.act1.inplace and b.act2.inplace for b in model.blocks)
    x = torch.randn(3, 4)
    model(x).pow(2).sum().backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    def reference(x):
        for block in model.blocks:
            x = torch.relu(x + block.linear2(torch.relu(block.linear1(x))))
        return x

    reference(x).pow(2).sum().backward()
    for g, p in zip(got, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-12, atol=1e-14)


def test_input_is_not_modified():
    model = InplaceResidualMLP(width=4, depth=2)
    x = torch.randn(3, 4)
    before = x.clone()
    model(x)
    assert torch.equal(x, before)


def test_no_head_keeps_width():
    assert InplaceResidualMLP(width=6, depth=1)(torch.randn(2, 6)).shape == (2, 6)


@pytest.mark.parametrize("make, match", [
    (lambda: InplaceResidualMLP(width=0, depth=2), "width must be >= 1"),
    (lambda: InplaceResidualMLP(width=3, depth=0), "depth must be >= 1"),
    (lambda: InplaceResidualMLP(width=3, depth=1, out_features=0), "out_features"),
    (lambda: InplaceResidualBlock(width=-1), "width must be >= 1"),
])
def test_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()
