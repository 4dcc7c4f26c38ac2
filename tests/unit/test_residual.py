"""Tests of gradflowkit.residual against independent oracles: the forward pass of the net
(hidden_states), autograd Jacobians of whole blocks, and closed-form branch Jacobians."""

from __future__ import annotations

import pytest
import torch

from gradflowkit import DeepMLP, block_jacobians, chain, dense_layer_jacobian
from gradflowkit.residual import (branch_jacobians, branch_outputs, branch_sum_jacobian,
                                  unrolled_states)


def _net(lam=1.0, layers=2, scale=1.0, depth=6, width=5):
    torch.manual_seed(0)
    return DeepMLP(depth, width, activation="tanh", init="xavier", residual=True,
                   shortcut_scale=lam, branch_layers=layers, branch_scale=scale).double()


@pytest.mark.parametrize("lam", [1.0, 0.7])
def test_unrolled_sum_matches_forward_pass(lam):
    net = _net(lam=lam, scale=0.5)
    x = torch.randn(3, 5, dtype=torch.float64)
    states, branches = branch_outputs(net, x)
    oracle = net.hidden_states(x)
    for start in range(len(states)):
        for k, xk in enumerate(unrolled_states(states, branches, start, lam), start=start):
            torch.testing.assert_close(xk, oracle[k].detach(), rtol=0, atol=1e-12)


def test_branch_outputs_recursion():
    net = _net(lam=0.9)
    states, branches = branch_outputs(net, torch.randn(2, 5, dtype=torch.float64))
    for i, b in enumerate(branches):
        torch.testing.assert_close(states[i + 1], 0.9 * states[i] + b)


def test_zero_init_last_block_is_identity():
    torch.manual_seed(0)
    net = DeepMLP(4, 6, residual=True, branch_layers=2, zero_init_last=True)
    x = torch.randn(3, 6)
    _, branches = branch_outputs(net, x)
    assert all(torch.equal(b, torch.zeros_like(b)) for b in branches)
    assert torch.equal(net(x), x)


def test_branch_jacobians_closed_form_one_layer_branch():
    net = _net(layers=1, scale=0.3, lam=0.8)
    x = torch.randn(5, dtype=torch.float64)
    states, _ = branch_outputs(net, x.unsqueeze(0))
    for block, xi, A in zip(net.blocks, states, branch_jacobians(net, x)):
        z = block.linear(xi[0]).detach()
        torch.testing.assert_close(A, 0.3 * dense_layer_jacobian(block.linear.weight.detach(),
                                                                  z, "tanh"))


def test_block_jacobian_is_shortcut_plus_branch():
    net = _net(lam=0.8)
    x = torch.randn(5, dtype=torch.float64)
    eye = torch.eye(5, dtype=torch.float64)
    for J, A in zip(block_jacobians(net.blocks, x), branch_jacobians(net, x)):
        torch.testing.assert_close(J, 0.8 * eye + A)


@pytest.mark.parametrize("start", [0, 2, 5])
def test_branch_sum_jacobian_plus_identity_is_chain(start):
    net = _net()
    x = torch.randn(5, dtype=torch.float64)
    states, _ = branch_outputs(net, x.unsqueeze(0))
    jac = branch_sum_jacobian(net, states[start][0], start)
    product = chain(block_jacobians(net.blocks[start:], states[start][0]))
    torch.testing.assert_close(torch.eye(5, dtype=torch.float64) + jac, product,
                               rtol=1e-12, atol=1e-12)


def test_errors():
    plain = DeepMLP(3, 4)
    with pytest.raises(ValueError, match="not residual"):
        branch_outputs(plain, torch.randn(2, 4))
    net = _net()
    states, branches = branch_outputs(net, torch.randn(1, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="at most"):
        unrolled_states(states, branches, len(states))
    with pytest.raises(ValueError, match="at most"):
        branch_sum_jacobian(net, states[0][0], 0, stop=99)


def test_stream_norms_against_numpy():
    import numpy as np

    from gradflowkit.residual import stream_norms
    net = _net()
    x = torch.randn(4, 5, dtype=torch.float64)
    expected = [float(np.sqrt((s.detach().numpy() ** 2).sum(1).mean()))
                for s in net.hidden_states(x)]
    assert np.allclose(stream_norms(net, x), expected, rtol=1e-12)
    assert np.isclose(stream_norms(net, x)[0], float(np.sqrt((x.numpy() ** 2).sum(1).mean())))
