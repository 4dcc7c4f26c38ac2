"""Tests of the ensemble slices of gradflowkit.landscape.

Oracles: row norms computed directly, and every member's slice recomputed on the single
net that EnsembleMLP.member returns, with the single-net loss_surface (itself tested
against torch.func.functional_call in test_landscape.py).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradflowkit.ensemble import EnsembleMLP, member_cross_entropy
from gradflowkit.landscape import (loss_surface, member_filter_normalized_direction,
                                   member_loss_surface)


def _ensemble(norm=None):
    return EnsembleMLP.build([0, 1, 2], depth=3, width=6, in_features=5, out_features=3,
                             residual=True, norm=norm, dtype=torch.float64)


@pytest.mark.parametrize("norm", [None, "batch"])
def test_member_rows_match_member_weight_rows(norm):
    ens = _ensemble(norm)
    d = member_filter_normalized_direction(ens, generator=torch.Generator().manual_seed(1))
    assert list(d) == [n for n, _ in ens.named_parameters()]
    for name, p in ens.named_parameters():
        assert d[name].shape == p.shape and d[name].dtype == p.dtype
        if p.ndim < 3:                               # biases, BN scales and shifts
            assert torch.count_nonzero(d[name]) == 0
            continue
        for s in range(p.shape[0]):
            for j in range(p.shape[1]):
                want = float(np.linalg.norm(p[s, j].detach().numpy()))
                got = float(np.linalg.norm(d[name][s, j].numpy()))
                assert abs(got - want) <= 1e-12 * max(1.0, want)
    weight = d["blocks.0.linear.weight"]
    assert not torch.allclose(weight[0], weight[1])   # each member its own draw


@pytest.mark.parametrize("norm", [None, "batch"])
def test_member_surface_matches_single_member_surfaces(norm):
    ens = _ensemble(norm)
    x, y = torch.randn(12, 5, dtype=torch.float64), torch.randint(0, 3, (12,))
    gen = torch.Generator().manual_seed(3)
    d1, d2 = (member_filter_normalized_direction(ens, generator=gen) for _ in range(2))
    before = copy.deepcopy(ens.state_dict())
    alphas, betas = np.array([-0.5, 0.0, 0.25]), np.array([-1.0, 0.5])
    z = member_loss_surface(ens, x, lambda o: member_cross_entropy(o, y), [d1, d2],
                            [alphas, betas])
    line = member_loss_surface(ens, x, lambda o: member_cross_entropy(o, y), [d1], [alphas])
    assert z.shape == (3, 2, 3) and line.shape == (3, 3)
    after = ens.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    for s in range(3):
        net = ens.member(s)
        e1 = {k: v[s] for k, v in d1.items()}
        e2 = {k: v[s] for k, v in d2.items()}
        want = loss_surface(net, x, lambda o: F.cross_entropy(o, y), [e1, e2],
                            [alphas, betas])
        np.testing.assert_allclose(z[s], want, rtol=1e-10, atol=1e-12)
        want_line = loss_surface(net, x, lambda o: F.cross_entropy(o, y), [e1], [alphas])
        np.testing.assert_allclose(line[s], want_line, rtol=1e-10, atol=1e-12)


def test_member_surface_bad_arguments():
    ens = _ensemble()
    x = torch.randn(4, 5, dtype=torch.float64)
    d = member_filter_normalized_direction(ens)
    with pytest.raises(ValueError, match="one loss per member"):
        member_loss_surface(ens, x, lambda o: o.sum(), [d], [[0.0]])
    with pytest.raises(ValueError, match="one or two"):
        member_loss_surface(ens, x, lambda o: o.sum((1, 2)), [d], [[0.0], [1.0]])
    with pytest.raises(ValueError, match="parameter names"):
        member_loss_surface(ens, x, lambda o: o.sum((1, 2)), [{"w": torch.zeros(1)}], [[0.0]])
