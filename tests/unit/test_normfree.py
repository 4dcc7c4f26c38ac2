"""gradflowkit.normfree and the branch gain α of DeepMLP (lesson 17).

Oracles: closed forms, plain loops over the blocks, float64 autograd on the unrolled
stream, and wide random nets (Monte Carlo) for the mean-field predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradflowkit import DeepMLP
from gradflowkit.ensemble import EnsembleMLP, signal_profile
from gradflowkit.normfree import (RECIPES, fixup_scale, predicted_backward, predicted_stream,
                                  recipe_options)
from gradflowkit.residual import member_stream_norms


def test_fixup_scale_closed_form():
    assert fixup_scale(16) == pytest.approx(0.25)               # m = 2: L^(-1/2)
    assert fixup_scale(16, branch_layers=3) == pytest.approx(0.5)   # L^(-1/4)
    assert fixup_scale(1) == 1.0
    with pytest.raises(ValueError, match="branch_layers must be >= 2"):
        fixup_scale(8, branch_layers=1)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        fixup_scale(0)


def test_recipe_options_are_what_each_recipe_changes():
    assert recipe_options("Fixup", 16)["weight_scale"] == pytest.approx(0.25)
    assert recipe_options("Fixup", 16)["zero_init_last"] is True
    assert recipe_options("SkipInit / ReZero", 4)["branch_gain"] == 0.0
    assert recipe_options("batch norm", 4)["norm"] == "batch"
    assert "norm" not in recipe_options("unnormalized", 4)
    with pytest.raises(ValueError, match="recipe must be one of"):
        recipe_options("GroupNorm", 4)


@pytest.mark.parametrize("recipe", ["Fixup", "SkipInit / ReZero"])
def test_identity_at_initialization_forward_and_backward(recipe):
    torch.manual_seed(0)
    net = DeepMLP(6, 8, **recipe_options(recipe, 6)).double()
    x = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    states = net.hidden_states(x)
    for h in states:
        assert torch.equal(h, x)
    v = torch.randn(5, 8, dtype=torch.float64)
    (grad,) = torch.autograd.grad((states[-1] * v).sum(), x)
    assert torch.equal(grad, v)                   # ∏ (I + A_i) = I exactly


def test_predictions_closed_forms_and_a_plain_loop():
    np.testing.assert_allclose(predicted_stream("unnormalized", 3, q0=2.0), [2, 6, 18, 54])
    np.testing.assert_allclose(predicted_stream("batch norm", 3, q0=2.0), [2, 3, 4, 5])
    np.testing.assert_allclose(predicted_stream("Fixup", 2), [1, 1, 1])
    np.testing.assert_allclose(predicted_backward("unnormalized", 3), [27, 9, 3, 1])
    np.testing.assert_allclose(predicted_backward("SkipInit / ReZero", 2), [1, 1, 1])
    depth, c = 5, 1 - 1 / math.pi
    loop = [1.0]
    for l in reversed(range(depth)):              # from the output side to the input side
        loop.insert(0, loop[0] * (1 + 1 / (1 + c * l)))
    np.testing.assert_allclose(predicted_backward("batch norm", depth), loop, rtol=1e-12)
    with pytest.raises(ValueError, match="q0 must be > 0"):
        predicted_stream("Fixup", 3, q0=0.0)


@pytest.mark.parametrize("recipe, forward_tol, backward_tol", [
    ("unnormalized", 0.3, 0.3), ("batch norm", 0.05, 0.05)])
def test_predictions_hold_for_wide_random_nets(recipe, forward_tol, backward_tol):
    # Monte Carlo: median of 6 nets of width 256, depth 8. Measured here: unnormalized
    # 0.87 and 0.94 of the predictions (finite width pulls a product's median below its
    # mean), batch norm 1.000 and 1.001.
    depth, width = 8, 256
    g = torch.Generator().manual_seed(1)
    x, r = torch.randn(256, width, generator=g), torch.randn(6, 256, width, generator=g)
    ens = EnsembleMLP.build(list(range(6)), depth, width, **recipe_options(recipe, depth))
    q = member_stream_norms(ens, x) ** 2
    sig = signal_profile(ens, x, lambda out: (out * r).sum((1, 2)))
    forward = np.median(q[:, -1] / q[:, 0])
    backward = np.median((sig[:, 0] / sig[:, -1]) ** 2)
    assert abs(math.log(forward / predicted_stream(recipe, depth)[-1])) < forward_tol
    assert abs(math.log(backward / predicted_backward(recipe, depth)[0])) < backward_tol


def test_branch_gain_gradient_is_the_branch_dotted_with_the_backward_signal():
    # ∂L/∂α_l = <∂L/∂x_{l+1}, s F_l(x_l)> summed over the batch (float64 autograd oracle).
    torch.manual_seed(2)
    net = DeepMLP(3, 6, residual=True, branch_layers=2, branch_gain=0.4,
                  branch_scale=0.7).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    states = net.hidden_states(x)
    loss = states[-1].square().sum()
    grads = torch.autograd.grad(loss, states[1:] + [b.gain for b in net.blocks])
    signals, gains = grads[:3], grads[3:]
    for l, block in enumerate(net.blocks):
        with torch.no_grad():
            expected = (signals[l] * 0.7 * block.branch(states[l])).sum()
        torch.testing.assert_close(gains[l], expected, rtol=1e-12, atol=1e-14)


def test_every_recipe_builds_for_an_ensemble_and_its_members():
    for recipe in RECIPES:
        ens = EnsembleMLP.build([0, 1], 3, 4, in_features=5, out_features=2,
                                **recipe_options(recipe, 3))
        assert ens(torch.randn(7, 5)).shape == (2, 7, 2)
        member = ens.member(1)
        names = {n for n, _ in member.named_parameters()}
        assert ("blocks.0.gain" in names) == (recipe == "SkipInit / ReZero")
