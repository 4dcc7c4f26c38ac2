"""Unit tests of gradflowkit.jacobians against torch.autograd.functional.jacobian (float64)
and numpy.linalg.svd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian as torch_jacobian

from gradflowkit.activations import ACTIVATIONS, activate
from gradflowkit.jacobians import (block_jacobians, chain, dense_layer_jacobian,
                                   module_jacobian, singular_values)
from gradflowkit.nets import DeepMLP


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n_in, n_out", [(4, 4), (3, 6), (6, 2)])
def test_dense_layer_jacobian_matches_autograd(activation, n_in, n_out, float64):
    W = torch.randn(n_out, n_in, generator=_gen(0))
    b = torch.randn(n_out, generator=_gen(1))
    x = torch.randn(n_in, generator=_gen(2))
    if activation in ("relu", "leaky_relu", "elu"):
        b[0] = -(W[0] @ x)  # z_0 = 0 exactly: autograd's convention at the kink
    expected = torch_jacobian(lambda v: activate(activation, W @ v + b), x)
    got = dense_layer_jacobian(W, W @ x + b, activation)
    assert got.shape == (n_out, n_in)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_dense_layer_jacobian_closed_form():
    W = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    z = torch.tensor([-1.0, 2.0], dtype=torch.float64)
    expected = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)  # diag(0, 1) W
    assert torch.equal(dense_layer_jacobian(W, z, "relu"), expected)


def test_dense_layer_jacobian_errors():
    W = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"pre_activation has 2 entries but weight has 3 rows"):
        dense_layer_jacobian(W, torch.zeros(2), "relu")
    with pytest.raises(ValueError, match=r"^weight must have 2 dimensions"):
        dense_layer_jacobian(torch.zeros(3), torch.zeros(3), "relu")
    with pytest.raises(ValueError, match=r"^pre_activation must have 1 dimensions"):
        dense_layer_jacobian(W, torch.zeros(1, 3), "relu")
    with pytest.raises(ValueError, match=r"^activation must be one of"):
        dense_layer_jacobian(W, torch.zeros(3), "softplus")
    with pytest.raises(TypeError, match=r"^weight must be a floating-point tensor"):
        dense_layer_jacobian(torch.zeros(3, 2, dtype=torch.int64), torch.zeros(3), "relu")


@pytest.mark.parametrize("kwargs", [
    dict(activation="tanh"),
    dict(activation="relu", residual=True, branch_layers=2, norm="layer"),
    dict(activation="sigmoid", residual=True, shortcut_scale=0.5, branch_scale=2.0),
])
def test_module_jacobian_of_a_block_matches_autograd(kwargs, float64, seeded):
    net = DeepMLP(2, 5, **kwargs)
    x = torch.randn(5, generator=_gen(3))
    block = net.blocks[0]
    expected = torch_jacobian(lambda v: block(v[None])[0], x)
    torch.testing.assert_close(module_jacobian(block, x), expected, rtol=1e-12, atol=1e-14)


def test_module_jacobian_of_a_plain_block_is_the_closed_form(float64, seeded):
    net = DeepMLP(1, 4, activation="tanh")
    block = net.blocks[0]
    x = torch.randn(4, generator=_gen(4))
    z = block.linear(x[None])[0].detach()
    expected = dense_layer_jacobian(block.linear.weight.detach(), z, "tanh")
    torch.testing.assert_close(module_jacobian(block, x), expected, rtol=1e-12, atol=1e-14)


def test_module_jacobian_of_a_function_and_a_rectangular_map(float64):
    A = torch.randn(3, 5, generator=_gen(5))
    x = torch.randn(5, generator=_gen(6))
    got = module_jacobian(lambda v: torch.sin(v @ A.T), x)  # v is (1, 5)
    expected = torch.cos(A @ x)[:, None] * A
    assert got.shape == (3, 5)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_module_jacobian_rejects_batchnorm_in_training_mode(float64):
    net = DeepMLP(2, 4, norm="batch")
    with pytest.raises(ValueError, match=r"BatchNorm in training mode.*eval\(\)"):
        module_jacobian(net.blocks[0], torch.zeros(4))
    with pytest.raises(ValueError, match=r"BatchNorm in training mode.*eval\(\)"):
        module_jacobian(net, torch.zeros(4))


def test_module_jacobian_batchnorm_in_eval_mode_uses_running_stats(float64, seeded):
    net = DeepMLP(1, 4, norm="batch", activation="identity").eval()
    bn = net.blocks[0].norm
    with torch.no_grad():
        bn.running_var.copy_(torch.tensor([1.0, 4.0, 9.0, 16.0]))
    W = net.blocks[0].linear.weight.detach()
    expected = (1 / torch.sqrt(bn.running_var + bn.eps))[:, None] * W
    torch.testing.assert_close(module_jacobian(net.blocks[0], torch.ones(4)), expected)


def test_module_jacobian_needs_a_vector():
    with pytest.raises(ValueError, match=r"^x must have 1 dimensions"):
        module_jacobian(nn.Identity(), torch.zeros(1, 3))


@pytest.mark.parametrize("kwargs", [
    dict(activation="tanh", init="xavier", weight_scale=1.3),
    dict(activation="gelu", residual=True, branch_layers=2, branch_scale=0.5),
    dict(activation="elu", residual=True, norm="layer"),
])
def test_block_jacobians_and_chain_match_the_jacobian_of_the_whole_net(kwargs, float64,
                                                                        seeded):
    depth, width = 5, 4
    net = DeepMLP(depth, width, **kwargs)
    x = torch.randn(width, generator=_gen(7))
    jacs = block_jacobians(net.blocks, x)
    assert len(jacs) == depth and all(j.shape == (width, width) for j in jacs)
    # Each J_i at the hidden state x_i of the same forward pass.
    states = [s[0].detach() for s in net.hidden_states(x[None])]
    for block, xi, J in zip(net.blocks, states, jacs):
        torch.testing.assert_close(J, torch_jacobian(lambda v, b=block: b(v[None])[0], xi),
                                   rtol=1e-12, atol=1e-14)
    whole = torch_jacobian(lambda v: net(v[None])[0], x)
    torch.testing.assert_close(chain(jacs), whole, rtol=1e-10, atol=1e-12)


def test_block_jacobians_of_plain_functions(float64):
    A = torch.randn(3, 3, generator=_gen(8))
    blocks = [lambda v: v @ A.T, torch.tanh]
    x = torch.randn(3, generator=_gen(9))
    j0, j1 = block_jacobians(blocks, x)
    torch.testing.assert_close(j0, A)
    torch.testing.assert_close(j1, torch.diag(1 - torch.tanh(A @ x) ** 2))


def test_block_jacobians_rejects_batchnorm_in_training_mode(float64):
    net = DeepMLP(3, 4, norm="batch")
    means = [b.norm.running_mean.clone() for b in net.blocks]
    with pytest.raises(ValueError, match=r"^blocks\[0\] has BatchNorm in training mode.*eval"):
        block_jacobians(net.blocks, torch.ones(4))
    # Nothing ran: the running statistics are unchanged.
    assert all(torch.equal(m, b.norm.running_mean) for m, b in zip(means, net.blocks))
    assert len(block_jacobians(net.eval().blocks, torch.ones(4))) == 3


def test_chain_order_with_non_commuting_matrices(float64):
    J0 = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    J1 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    J2 = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    assert not torch.equal(J1 @ J0, J0 @ J1)
    assert torch.equal(chain([J0, J1, J2]), J2 @ J1 @ J0)
    assert torch.equal(chain([J0, J1, J2]), torch.tensor([[0.0, 2.0], [3.0, 3.0]]))
    assert torch.equal(chain([J1]), J1)


def test_chain_of_rectangular_jacobians(float64):
    J0, J1, J2 = (torch.randn(3, 5, generator=_gen(0)), torch.randn(4, 3, generator=_gen(1)),
                  torch.randn(2, 4, generator=_gen(2)))
    out = chain((J0, J1, J2))
    assert out.shape == (2, 5)
    torch.testing.assert_close(out, torch.linalg.multi_dot([J2, J1, J0]))


def test_chain_errors():
    with pytest.raises(ValueError, match=r"^jacobians is empty"):
        chain([])
    with pytest.raises(ValueError, match=r"^jacobians\[2\] has shape \(3, 3\) but the product "
                                         r"so far has 2 rows"):
        chain([torch.zeros(4, 5), torch.zeros(2, 4), torch.zeros(3, 3)])


@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (7, 3), (1, 4)])
def test_singular_values_match_numpy(shape, seeded):
    m = torch.randn(*shape)  # float32 input: computed in float64
    got = singular_values(m)
    assert got.dtype == torch.float64 and got.shape == (min(shape),)
    expected = np.linalg.svd(m.double().numpy(), compute_uv=False)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-14)
    assert bool((got[:-1] >= got[1:]).all())  # largest first


def test_singular_values_closed_form():
    m = torch.tensor([[3.0, 0.0], [0.0, -4.0], [0.0, 0.0]])
    assert singular_values(m).tolist() == [4.0, 3.0]


def test_singular_values_errors():
    with pytest.raises(ValueError, match=r"^matrix must have 2 dimensions"):
        singular_values(torch.zeros(3))
    with pytest.raises(TypeError, match=r"^matrix must be a floating-point tensor"):
        singular_values(torch.eye(3, dtype=torch.int64))
