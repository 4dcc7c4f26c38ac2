"""Batched path helpers of gradflowkit.paths (lesson 15) against the one-input versions."""

import numpy as np
import pytest
import torch

from gradflowkit import DeepMLP, block_jacobians
from gradflowkit.ensemble import EnsembleMLP
from gradflowkit.paths import path_profile, path_profiles, row_jacobians


def _residual_ensemble(seeds=(0, 1, 2), n=4, w=6):
    return EnsembleMLP.build(list(seeds), n, w, in_features=5, out_features=3,
                             residual=True, branch_layers=2, branch_scale=0.7,
                             dtype=torch.float64)


def test_row_jacobians_of_an_ensemble_equal_autograd_jacobians_of_each_member():
    ens = _residual_ensemble()
    x = torch.randn(4, 5, dtype=torch.float64)
    h = ens.stem(x.expand(3, -1, -1))
    J = row_jacobians(ens.blocks, h.detach())
    assert len(J) == 4 and J[0].shape == (3, 4, 6, 6)
    for s in range(3):
        net = ens.member(s)
        for b in range(4):
            x1 = net.stem(x[b][None])[0].detach()
            for i, oracle in enumerate(block_jacobians(net.blocks, x1)):
                torch.testing.assert_close(J[i][s, b], oracle, rtol=1e-12, atol=1e-12)


def test_row_jacobians_of_a_single_net_and_a_plain_net():
    net = DeepMLP(3, 5, activation="tanh").double()
    x = torch.randn(2, 5, dtype=torch.float64)
    J = row_jacobians(net.blocks, x)
    for b in range(2):
        for Ji, oracle in zip(J, block_jacobians(net.blocks, x[b])):
            torch.testing.assert_close(Ji[b], oracle, rtol=1e-12, atol=1e-12)


def test_row_jacobians_refuse_batch_norm_in_training_mode():
    net = DeepMLP(2, 4, norm="batch")
    with pytest.raises(ValueError, match="model.eval"):
        row_jacobians(net.blocks, torch.randn(3, 4))
    net.eval()
    assert len(row_jacobians(net.blocks, torch.randn(3, 4))) == 2


def test_path_profiles_equal_path_profile_per_input():
    gen = torch.Generator().manual_seed(5)
    n, w = 5, 4
    A = [0.6 * torch.randn(2, 3, w, w, generator=gen, dtype=torch.float64) for _ in range(n)]
    g = torch.randn(2, 3, w, generator=gen, dtype=torch.float64)
    batch = path_profiles(A, g)
    assert batch.per_path.shape == (2, 3, n + 1) and batch.count.shape == (n + 1,)
    for s in range(2):
        for b in range(3):
            one = path_profile([a[s, b] for a in A], g[s, b])
            np.testing.assert_allclose(batch.per_path[s, b], one.per_path, rtol=1e-12)
            np.testing.assert_allclose(batch.total[s, b], one.total, rtol=1e-12)
            np.testing.assert_allclose(batch.term[s, b], one.term, rtol=1e-12)
    np.testing.assert_array_equal(batch.count, one.count)


def test_path_profiles_check_shapes():
    A = [torch.zeros(2, 3, 3, dtype=torch.float64)]
    with pytest.raises(ValueError, match="to match grad"):
        path_profiles(A, torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least one"):
        path_profiles([], torch.zeros(3, dtype=torch.float64))
