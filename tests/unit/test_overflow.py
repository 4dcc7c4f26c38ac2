"""Unit tests of gradflowkit.overflow against hand-made tensors and float64 autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradflowkit.nets import DeepMLP
from gradflowkit.overflow import first_index, nonfinite_counts, overflow_trace


def test_nonfinite_counts_by_hand():
    inf, nan = math.inf, math.nan
    tensors = [torch.tensor([1.0, -3.0]), torch.tensor([inf, -inf, 2.0]),
               torch.tensor([nan, 5.0, inf]), torch.tensor([nan])]
    c = nonfinite_counts(tensors)
    np.testing.assert_array_equal(c.inf, [0, 2, 1, 0])
    np.testing.assert_array_equal(c.nan, [0, 0, 1, 1])
    np.testing.assert_array_equal(c.max_abs[:3], [3.0, 2.0, 5.0])
    assert math.isnan(c.max_abs[3])


def test_first_index_both_directions():
    assert first_index([0, 0, 3, 1]) == 2
    assert first_index([0, 0, 3, 1], reverse=True) == 3
    assert first_index(np.zeros(4)) is None


def test_overflow_trace_matches_autograd_when_finite(float64, seeded):
    net = DeepMLP(5, 6, activation="tanh")
    x = torch.randn(3, 6)
    loss_fn = lambda out: 0.5 * (out ** 2).sum()  # noqa: E731
    tr = overflow_trace(net, x, loss_fn)
    xs = x.clone().requires_grad_(True)
    zs, h = [], xs
    for block in net.blocks:
        z = block.linear(h)
        z.retain_grad()
        zs.append(z)
        h = torch.tanh(z)
    loss = loss_fn(h)
    loss.backward()
    assert tr.loss == pytest.approx(float(loss.detach()), rel=1e-12)
    torch.testing.assert_close(tr.signals[0], xs.grad)
    for l, block in enumerate(net.blocks):
        torch.testing.assert_close(tr.deltas[l], zs[l].grad)
        torch.testing.assert_close(tr.weight_grads[l], zs[l].grad.T @ tr.states[l])
    assert len(tr.states) == len(tr.signals) == 6 and len(tr.deltas) == 5


def test_overflow_trace_keeps_inf_and_nan(float32, seeded):
    net = DeepMLP(40, 16, activation="relu", init="he", weight_scale=4.0)
    tr = overflow_trace(net, torch.randn(1, 16), lambda out: 0.5 * (out ** 2).sum())
    assert tr.loss == math.inf
    assert nonfinite_counts(tr.signals).nan[0] > 0


def test_overflow_trace_rejects_residual_nets():
    with pytest.raises(ValueError, match="plain DeepMLP"):
        overflow_trace(DeepMLP(2, 3, residual=True), torch.randn(1, 3), lambda o: o.sum())
