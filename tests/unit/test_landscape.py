"""Tests of gradflowkit.landscape: filter normalization against row norms computed
directly, and loss slices against a perturbed copy of the model evaluated independently
(torch.func.functional_call)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from gradflowkit import DeepMLP
from gradflowkit.landscape import filter_normalized_direction, loss_surface


def _net(norm=None, residual=True, **kw):
    torch.manual_seed(0)
    return DeepMLP(4, 6, in_features=5, out_features=3, residual=residual, norm=norm,
                   **kw).double()


@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_rows_match_weight_rows_and_1d_params_are_zero(norm):
    net = _net(norm=norm)
    d = filter_normalized_direction(net, generator=torch.Generator().manual_seed(1))
    assert list(d) == [n for n, _ in net.named_parameters()]
    for name, p in net.named_parameters():
        assert d[name].shape == p.shape and d[name].dtype == p.dtype
        if p.ndim == 1:                      # biases, BN/LN scales and shifts
            assert torch.count_nonzero(d[name]) == 0
        else:
            for i in range(p.shape[0]):
                want = float(np.linalg.norm(p[i].detach().numpy()))
                got = float(np.linalg.norm(d[name][i].numpy()))
                assert abs(got - want) <= 1e-12 * max(1.0, want)
    assert any(p.ndim == 1 for _, p in net.named_parameters())


def test_zero_weight_rows_stay_zero_and_direction_is_random_not_weight():
    net = _net(branch_layers=2, zero_init_last=True)
    d = filter_normalized_direction(net, generator=torch.Generator().manual_seed(2))
    assert torch.count_nonzero(d["blocks.0.linear2.weight"]) == 0
    w = net.blocks[0].linear.weight.detach()
    cos = float((d["blocks.0.linear.weight"] * w).sum() / (w.norm() ** 2))
    assert abs(cos) < 0.9                    # not just a copy of the weights
    d2 = filter_normalized_direction(net, generator=torch.Generator().manual_seed(2))
    assert all(torch.equal(d[k], d2[k]) for k in d)


def test_surface_matches_perturbed_model_and_restores_state():
    net = _net(norm="batch")
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))
    loss_fn = lambda out: F.cross_entropy(out, y)  # noqa: E731
    gen = torch.Generator().manual_seed(3)
    d1, d2 = (filter_normalized_direction(net, generator=gen) for _ in range(2))
    before = copy.deepcopy(net.state_dict())
    alphas, betas = np.array([-0.5, 0.0, 0.25]), np.array([-1.0, 0.5])
    z = loss_surface(net, x, loss_fn, [d1, d2], [alphas, betas])
    assert z.shape == (2, 3)
    for i, b in enumerate(betas):
        for j, a in enumerate(alphas):
            oracle_net = copy.deepcopy(net)       # fresh BN buffers: same batch statistics
            params = {k: p.detach() + a * d1[k] + b * d2[k]
                      for k, p in net.named_parameters()}
            want = float(loss_fn(functional_call(oracle_net, params, (x,))))
            assert abs(z[i, j] - want) < 1e-12
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    line = loss_surface(net, x, loss_fn, [d1], [alphas])
    assert line.shape == (3,)
    with torch.no_grad():
        assert abs(line[1] - float(loss_fn(net(x)))) < 1e-12   # alpha = 0: the centre


def test_bad_arguments():
    net = _net()
    x = torch.randn(4, 5, dtype=torch.float64)
    d = filter_normalized_direction(net)
    with pytest.raises(ValueError):
        loss_surface(net, x, lambda o: o.sum(), [d], [[0.0], [1.0]])
    with pytest.raises(ValueError):
        loss_surface(net, x, lambda o: o.sum(), [{"w": torch.zeros(1)}], [[0.0]])
