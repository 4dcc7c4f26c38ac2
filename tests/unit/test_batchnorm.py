"""Unit tests of gradflowkit.batchnorm against nn.BatchNorm1d and float64 autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gradflowkit.batchnorm import batchnorm_backward, batchnorm_forward, sgd_norm_trace
from gradflowkit.data import Split
from gradflowkit.nets import DeepMLP


@pytest.mark.parametrize("eps", [1e-5, 1e-12])
def test_forward_matches_batchnorm1d(float64, seeded, eps):
    z = 3 * torch.randn(16, 5) + 2
    bn = nn.BatchNorm1d(5, eps=eps)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
    y, cache = batchnorm_forward(z, bn.weight.detach(), bn.bias.detach(), eps=eps)
    torch.testing.assert_close(y, bn.train()(z).detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cache.x_hat.mean(0), torch.zeros(5), rtol=0, atol=1e-12)


def test_backward_matches_autograd(float64, seeded):
    z = torch.randn(12, 4).requires_grad_(True)
    gamma = torch.rand(4).add_(0.5).requires_grad_(True)
    beta = torch.randn(4).requires_grad_(True)
    dy = torch.randn(12, 4)
    bn = nn.BatchNorm1d(4)
    with torch.no_grad():
        bn.weight.copy_(gamma)
        bn.bias.copy_(beta)
    out = bn.train()(z)
    oracle = torch.autograd.grad(out, [z, bn.weight, bn.bias], dy)
    _, cache = batchnorm_forward(z.detach(), gamma.detach(), beta.detach())
    mine = batchnorm_backward(dy, cache)
    for a, b in zip(mine, oracle):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_backward_rejects_wrong_shape(float64, seeded):
    _, cache = batchnorm_forward(torch.randn(6, 3), torch.ones(3), torch.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        batchnorm_backward(torch.randn(6, 4), cache)


def test_forward_rejects_batch_of_one():
    with pytest.raises(ValueError, match=">= 2 rows"):
        batchnorm_forward(torch.randn(1, 3), torch.ones(3), torch.zeros(3))


def _toy_split(n=64, d=8, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=gen)
    return Split(x_train=x, y_train=y, x_test=x, y_test=y)


def test_sgd_norm_trace_records_the_update(seeded):
    data = _toy_split()
    model = DeepMLP(1, 8, out_features=3, norm="batch", bias=False).double()
    w = model.blocks[0].linear.weight
    before = w.detach().clone()
    trace = sgd_norm_trace(model, w, data, steps=5, lr=0.5, batch_size=16)
    assert trace.norm_sq.shape == (6,) and trace.grad_sq.shape == (5,)
    assert trace.norm_sq[0] == pytest.approx(float((before ** 2).sum()), rel=1e-14)
    assert trace.norm_sq[-1] == pytest.approx(float((w.detach() ** 2).sum()), rel=1e-14)
    # Plain SGD: ‖W − ηg‖² = ‖W‖² − 2η⟨g, W⟩ + η²‖g‖², whatever g is.
    predicted = trace.norm_sq[:-1] - 2 * 0.5 * trace.inner + 0.25 * trace.grad_sq
    np.testing.assert_allclose(trace.norm_sq[1:], predicted, rtol=1e-12)
    # Batch norm after W: the gradient is (nearly, because of eps) orthogonal to W.
    cos = trace.inner / np.sqrt(trace.grad_sq * trace.norm_sq[:-1])
    assert np.abs(cos).max() < 1e-3


def test_sgd_norm_trace_weight_decay_shrinks(seeded):
    data = _toy_split()
    model = DeepMLP(1, 8, out_features=3, norm="batch", bias=False).double()
    w = model.blocks[0].linear.weight
    trace = sgd_norm_trace(model, w, data, steps=3, lr=0.01, weight_decay=5.0, batch_size=16)
    assert trace.norm_sq[-1] < trace.norm_sq[0] * 0.95 ** 3


def test_sgd_norm_trace_rejects_foreign_weight():
    model = DeepMLP(1, 4, out_features=2)
    with pytest.raises(ValueError, match="model.parameters"):
        sgd_norm_trace(model, nn.Parameter(torch.ones(2)), _toy_split(d=4, classes=2),
                       steps=1, lr=0.1)
