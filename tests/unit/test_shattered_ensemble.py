"""Ensemble helpers of gradflowkit.shattered (lesson 15) against single nets and closed forms."""

import numpy as np
import pytest
import torch

from gradflowkit.ensemble import EnsembleMLP
from gradflowkit.shattered import (autocorrelation, autocorrelations, input_derivative,
                                   member_input_derivatives, scalar_ensemble)


@pytest.mark.parametrize("residual", [False, True])
def test_member_derivatives_equal_each_members_own_and_finite_differences(residual):
    ens = scalar_ensemble(3, 4, 16, residual=residual, seed=7, branch_scale=0.5,
                          dtype=torch.float64)
    x = torch.linspace(-1, 1, 9, dtype=torch.float64)
    g = member_input_derivatives(ens, x)
    assert g.shape == (3, 9)
    eps = 1e-6
    for s in range(3):
        net = ens.member(s)
        torch.testing.assert_close(g[s], input_derivative(net, x), rtol=1e-12, atol=1e-12)
        with torch.no_grad():
            fd = (net((x + eps)[:, None]) - net((x - eps)[:, None]))[:, 0] / (2 * eps)
        torch.testing.assert_close(g[s], fd, rtol=0, atol=1e-6)


def test_scalar_ensemble_draws_he_weights_and_default_biases():
    ens = scalar_ensemble(8, 3, 200, residual=True, seed=1, branch_scale=0.25)
    assert isinstance(ens, EnsembleMLP) and ens.n_members == 8
    assert ens.blocks[0].branch_scale == 0.25
    w = ens.blocks[1].linear2.weight
    assert abs(w.std().item() / (2 / 200) ** 0.5 - 1) < 0.01          # He: var 2/fan_in
    assert abs(ens.stem.weight.std().item() / 2 ** 0.5 - 1) < 0.1    # fan_in 1
    assert abs(ens.head.weight.std().item() / (2 / 201) ** 0.5 - 1) < 0.1   # Xavier
    b = ens.blocks[0].linear.bias
    assert b.abs().max() <= 200 ** -0.5 and b.abs().max() > 0.9 * 200 ** -0.5
    assert abs(b.mean().item()) < 0.005                                  # uniform, centred
    assert not torch.equal(ens.blocks[0].linear.weight[0], ens.blocks[0].linear.weight[1])


def test_scalar_ensemble_is_reproducible_and_leaves_the_global_generator():
    state = torch.get_rng_state()
    a = scalar_ensemble(2, 2, 8, residual=False, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = scalar_ensemble(2, 2, 8, residual=False, seed=3)
    c = scalar_ensemble(2, 2, 8, residual=False, seed=4)
    assert torch.equal(a.blocks[1].linear.weight, b.blocks[1].linear.weight)
    assert not torch.equal(a.blocks[1].linear.weight, c.blocks[1].linear.weight)


def test_zero_bias_members_are_homogeneous():
    ens = scalar_ensemble(2, 5, 32, residual=False, seed=0, zero_bias=True,
                          dtype=torch.float64)
    g = member_input_derivatives(ens, torch.linspace(0.1, 2, 20, dtype=torch.float64))
    torch.testing.assert_close(g, g[:, :1].expand_as(g), rtol=1e-12, atol=1e-12)


def test_autocorrelations_row_by_row():
    rng = np.random.default_rng(0)
    sig = rng.normal(size=(3, 50)).cumsum(1)
    rho = autocorrelations(sig, 5)
    assert rho.shape == (3, 6)
    for row, r in zip(sig, rho):
        np.testing.assert_allclose(r, autocorrelation(row, 5))
    with pytest.raises(ValueError, match="2-D"):
        autocorrelations(sig[0], 5)


def test_member_input_derivatives_rejects_single_nets():
    from gradflowkit.shattered import scalar_net
    with pytest.raises(TypeError, match="input_derivative"):
        member_input_derivatives(scalar_net(2, 4, residual=False, seed=0), torch.zeros(3))
