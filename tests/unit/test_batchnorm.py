"""Unit tests of gradflowkit.batchnorm against nn.BatchNorm1d, float64 autograd, and a
plain torch.optim.SGD loop per member."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradflowkit.batchnorm import WeightNormTrace, batchnorm_backward, batchnorm_forward
from gradflowkit.data import Split
from gradflowkit.ensemble import EnsembleMLP
from gradflowkit.tasks import ClassificationTask, batch_indices
from gradflowkit.trainer import train


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


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_weight_norm_trace_matches_a_plain_sgd_loop(weight_decay):
    """Oracle: each member trained alone with torch.optim.SGD on its own batches."""
    data, steps, lr, batch, seeds = _toy_split(), 6, 0.5, 16, [3, 4, 5]
    ens = EnsembleMLP.build(seeds, 2, 8, out_features=3, norm="batch", bias=False,
                            dtype=torch.float64)
    nets = [ens.member(i) for i in range(len(seeds))]
    trace = WeightNormTrace("blocks.0.linear.weight")
    train(ens, ClassificationTask(data, batch), steps=steps, lr=lr, seeds=[7, 8, 9],
          weight_decay=weight_decay, record_every=1, callback=trace.callback,
          grad_callback=trace.grad_callback)
    assert trace.norm_sq.shape == (3, steps + 1) and trace.grad_sq.shape == (3, steps)
    for i, (net, seed) in enumerate(zip(nets, [7, 8, 9])):
        opt = torch.optim.SGD(net.parameters(), lr=lr, weight_decay=weight_decay)
        w = net.blocks[0].linear.weight
        norm_sq, grad_sq, inner = [], [], []
        for idx in batch_indices(seed, steps, len(data.y_train), batch):
            norm_sq.append(float((w.detach() ** 2).sum()))
            opt.zero_grad()
            F.cross_entropy(net(data.x_train[idx]), data.y_train[idx]).backward()
            grad_sq.append(float((w.grad ** 2).sum()))
            inner.append(float((w.grad * w.detach()).sum()))
            opt.step()
        norm_sq.append(float((w.detach() ** 2).sum()))
        np.testing.assert_allclose(trace.norm_sq[i], norm_sq, rtol=1e-10)
        np.testing.assert_allclose(trace.grad_sq[i], grad_sq, rtol=1e-10)
        np.testing.assert_allclose(trace.inner[i], inner, rtol=1e-8, atol=1e-14)
    if weight_decay == 0:
        # Plain SGD: ‖W − ηg‖² = ‖W‖² − 2η⟨g, W⟩ + η²‖g‖², whatever g is ...
        predicted = trace.norm_sq[:, :-1] - 2 * lr * trace.inner + lr ** 2 * trace.grad_sq
        np.testing.assert_allclose(trace.norm_sq[:, 1:], predicted, rtol=1e-12)
        # ... and with batch norm after W, g is (up to eps) orthogonal to W.
        cos = trace.inner / np.sqrt(trace.grad_sq * trace.norm_sq[:, :-1])
        assert np.abs(cos).max() < 1e-3


def test_weight_norm_trace_rejects_unknown_names():
    ens = EnsembleMLP.build([0], 1, 4, out_features=2)
    with pytest.raises(ValueError, match="has no parameter 'blocks.9.linear.weight'"):
        WeightNormTrace("blocks.9.linear.weight").callback(0, ens)
    with pytest.raises(ValueError, match="has no gradient"):
        WeightNormTrace("blocks.0.linear.weight").grad_callback(0, ens)
    with pytest.raises(ValueError, match="must be a parameter name"):
        WeightNormTrace("")
