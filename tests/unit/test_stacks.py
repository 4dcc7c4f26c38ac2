"""gradflowkit.initialization.init_weights, gradflowkit.propagation.stack_signal_stats and
gradflowkit.jacobians.stack_jacobian: many random nets as one stack of weight matrices.

Oracles: init_linear_ on nn.Linear layers with the same generator (the same draws),
QᵀQ = I, the closed-form variances; autograd through a plain loop over the layers
(torch.autograd.grad with the same output gradient); torch.autograd.functional.jacobian of
each member's forward function."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gradflowkit.initialization import init_linear_, init_std, init_weights
from gradflowkit.jacobians import stack_jacobian
from gradflowkit.propagation import stack_signal_stats


@pytest.mark.parametrize("scheme", ["normal", "xavier", "he"])
def test_gaussian_stack_equals_init_linear_layer_by_layer(scheme):
    gen = torch.Generator().manual_seed(7)
    stack = init_weights(scheme, (3, 2, 32, 16), generator=gen, dtype=torch.float64)
    gen = torch.Generator().manual_seed(7)
    for m in range(3):
        for layer in range(2):
            ref = init_linear_(nn.Linear(16, 32, dtype=torch.float64), scheme, generator=gen)
            torch.testing.assert_close(stack[m, layer], ref.weight.detach(), rtol=0,
                                       atol=1e-15)


@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (5, 6, 3), (2, 3, 6)])
def test_orthogonal_stack_is_orthogonal_and_scaled(shape):
    w = init_weights("orthogonal", shape, scale=1.5, dtype=torch.float64)
    assert w.shape == shape
    fan_out, fan_in = shape[-2:]
    if fan_out >= fan_in:
        gram = w.transpose(-2, -1) @ w
        eye = torch.eye(fan_in, dtype=torch.float64)
    else:
        gram = w @ w.transpose(-2, -1)
        eye = torch.eye(fan_out, dtype=torch.float64)
    torch.testing.assert_close(gram, 2.25 * eye.expand_as(gram), rtol=0, atol=1e-12)


def test_orthogonal_stack_is_haar_like():
    """The sign fix: the diagonal of Q is not biased to be positive (mean ~ 0)."""
    w = init_weights("orthogonal", (4000, 4, 4), dtype=torch.float64)
    diag_mean = torch.diagonal(w, dim1=-2, dim2=-1).mean().item()
    assert abs(diag_mean) < 0.02


@pytest.mark.parametrize("scheme", ["normal", "xavier", "he", "zeros"])
def test_stack_variances(scheme):
    w = init_weights(scheme, (50, 40, 60), scale=2.0)
    expected = (2.0 * init_std(scheme, 60, 40)) ** 2
    assert abs(w.double().var().item() - expected) <= 0.02 * expected + 1e-12


def test_init_weights_rejects_bad_arguments():
    with pytest.raises(ValueError, match="scheme"):
        init_weights("glorot", (2, 2))
    with pytest.raises(ValueError, match="at least 2 entries"):
        init_weights("normal", (3,))
    with pytest.raises(TypeError, match="floating"):
        init_weights("normal", (2, 2), dtype=torch.int64)


def _autograd_stats(weights, activation, x, grad_output):
    """Oracle: a plain loop over layers with autograd, member by member."""
    f = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}[activation]
    rows = []
    for s in range(weights.shape[0]):
        h = x.clone().requires_grad_(True)
        states, zs = [h], []
        for layer in range(weights.shape[1]):
            z = states[-1] @ weights[s, layer].T
            zs.append(z)
            states.append(f(z))
        grads = torch.autograd.grad(states[-1], states[:-1], grad_outputs=grad_output[s])
        std = lambda t: float(t.detach().std(unbiased=False))  # noqa: E731
        rows.append(([std(t) for t in states], [std(g) for g in grads] +
                     [std(grad_output[s])], [std(z) for z in zs]))
    return [np.array(col) for col in zip(*rows)]


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_stack_signal_stats_match_autograd(activation):
    weights = init_weights("he", (3, 5, 8, 8), dtype=torch.float64)
    x = torch.randn(6, 8, dtype=torch.float64)
    grad_output = torch.randn(3, 6, 8, dtype=torch.float64)
    stats = stack_signal_stats(weights, activation, x, grad_output=grad_output)
    forward, backward, preact = _autograd_stats(weights, activation, x, grad_output)
    np.testing.assert_allclose(stats.forward, forward, rtol=1e-12)
    np.testing.assert_allclose(stats.backward, backward, rtol=1e-12)
    np.testing.assert_allclose(stats.preact, preact, rtol=1e-12)
    assert stats.rms_slope.shape == (3, 5)
    if activation == "relu":   # f'(z)² = 1{z > 0}: the rms slope is the root active share
        z = x @ weights[:, 0].transpose(1, 2)
        np.testing.assert_allclose(stats.rms_slope[:, 0],
                                   (z > 0).double().mean((1, 2)).sqrt().numpy(), rtol=1e-12)


def test_stack_signal_stats_draws_from_the_generator_and_checks_shapes():
    weights = init_weights("normal", (2, 3, 4, 4))
    x = torch.randn(5, 4)
    a = stack_signal_stats(weights, "tanh", x, generator=torch.Generator().manual_seed(1))
    b = stack_signal_stats(weights, "tanh", x, generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(a.backward, b.backward)
    assert a.forward.shape == a.backward.shape == (2, 4) and a.preact.shape == (2, 3)
    with pytest.raises(ValueError, match="square"):
        stack_signal_stats(torch.zeros(2, 3, 4, 5), "tanh", x)
    with pytest.raises(ValueError, match="inputs must have shape"):
        stack_signal_stats(weights, "tanh", torch.randn(3, 5, 4))
    with pytest.raises(ValueError, match="grad_output must have shape"):
        stack_signal_stats(weights, "tanh", x, grad_output=torch.zeros(2, 5, 3))


@pytest.mark.parametrize("activation", ["identity", "tanh", "relu"])
def test_stack_jacobian_matches_autograd(activation):
    weights = init_weights("orthogonal", (3, 4, 5, 5), dtype=torch.float64)
    x = torch.randn(3, 5, dtype=torch.float64)
    jac = stack_jacobian(weights, activation, x)
    f = {"identity": lambda v: v, "tanh": torch.tanh, "relu": torch.relu}[activation]
    for s in range(3):
        def net(v, s=s):
            for layer in range(4):
                v = f(weights[s, layer] @ v)
            return v
        ref = torch.autograd.functional.jacobian(net, x[s])
        torch.testing.assert_close(jac[s], ref, rtol=0, atol=1e-12)
    if activation == "identity":   # the plain product, for any input
        product = weights[:, 3] @ weights[:, 2] @ weights[:, 1] @ weights[:, 0]
        torch.testing.assert_close(stack_jacobian(weights, "identity", x[0]), product)


def test_stack_jacobian_checks_shapes():
    with pytest.raises(ValueError, match="x must have shape"):
        stack_jacobian(torch.zeros(2, 3, 4, 4), "tanh", torch.zeros(3, 4))
