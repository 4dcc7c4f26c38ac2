"""Tests of gradflowkit.paths against brute force over all subsets of blocks."""

from itertools import combinations
from math import comb

import numpy as np
import pytest
import torch
from torch import nn

from gradflowkit import DeepMLP
from gradflowkit.paths import (central_range, path_gradients, path_length_counts,
                               path_length_terms, path_profile, skipping)


def _jacobians(n, w, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [0.5 * torch.randn(w, w, dtype=torch.float64, generator=gen) for _ in range(n)]


def _ordered_product(jacobians, subset):
    w = jacobians[0].shape[0]
    out = torch.eye(w, dtype=torch.float64)
    for i in sorted(subset):            # later blocks multiply on the left
        out = jacobians[i] @ out
    return out


def test_counts_are_binomial_and_sum_to_2_to_n():
    for n in range(0, 13):
        c = path_length_counts(n)
        assert c.tolist() == [comb(n, k) for k in range(n + 1)]
        assert c.sum() == 2 ** n


@pytest.mark.parametrize("n", [1, 2, 4, 6])
def test_terms_equal_brute_force_sum_over_subsets(n):
    J = _jacobians(n, 5, seed=n)
    terms = path_length_terms(J)
    for k in range(n + 1):
        brute = sum(_ordered_product(J, s) for s in combinations(range(n), k))
        assert torch.allclose(terms[k], brute, atol=1e-12, rtol=1e-12)


def test_terms_sum_to_full_product_of_identity_plus_jacobians():
    J = _jacobians(8, 6, seed=3)
    full = torch.eye(6, dtype=torch.float64)
    for Ji in J:
        full = (torch.eye(6, dtype=torch.float64) + Ji) @ full
    assert torch.allclose(path_length_terms(J).sum(0), full, atol=1e-12)


def test_terms_with_grad_match_vector_times_matrix_terms_and_autograd():
    J = _jacobians(5, 4, seed=1)
    g = torch.randn(3, 4, dtype=torch.float64)
    vec_terms = path_length_terms(J, g)
    assert vec_terms.shape == (6, 3, 4)
    assert torch.allclose(vec_terms, g @ path_length_terms(J), atol=1e-12)
    # the full sum is the gradient autograd gives through x -> x + J_i x, block by block
    x = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    h = x
    for Ji in J:
        h = h + h @ Ji.T
    (h * g).sum().backward()
    assert torch.allclose(vec_terms.sum(0), x.grad, atol=1e-12)


def test_path_gradients_enumerate_every_subset():
    J = _jacobians(4, 3, seed=2)
    g = torch.randn(3, dtype=torch.float64)
    lengths, grads = path_gradients(J, g)
    assert grads.shape == (16, 3)
    for p in range(16):
        subset = [i for i in range(4) if p >> i & 1]
        assert lengths[p] == len(subset)
        assert torch.allclose(grads[p], g @ _ordered_product(J, subset), atol=1e-12)
    terms = path_length_terms(J, g)
    for k in range(5):
        assert torch.allclose(grads[torch.as_tensor(lengths == k)].sum(0), terms[k],
                              atol=1e-12)


def test_path_profile_is_consistent():
    J = _jacobians(6, 4, seed=4)
    g = torch.randn(4, dtype=torch.float64)
    p = path_profile(J, g)
    assert p.count.tolist() == [comb(6, k) for k in range(7)]
    assert np.allclose(p.total, p.count * p.per_path)
    assert np.all(p.term <= p.total + 1e-12)          # triangle inequality
    assert np.isclose(p.term[0], g.norm().item()) and np.isclose(p.per_path[0], p.term[0])


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        path_length_terms([])
    with pytest.raises(ValueError):
        path_length_terms([torch.zeros(2, 3)])
    with pytest.raises(ValueError):
        path_length_terms(_jacobians(2, 3), torch.zeros(4))
    with pytest.raises(ValueError):
        path_gradients(_jacobians(17, 2), torch.zeros(2, dtype=torch.float64))


def test_central_range():
    assert central_range(np.array([0, 1, 8, 1, 0]), 0.8) == (2, 2)
    assert central_range(np.array([0, 1, 8, 1, 0]), 0.9) == (1, 2)
    assert central_range(np.array([1.0]), 1.0) == (0, 0)
    w = np.array([comb(10, k) for k in range(11)], dtype=float)
    lo, hi = central_range(w, 0.9)
    assert w[lo:hi + 1].sum() >= 0.9 * w.sum() and (lo, hi) == (2, 7)   # ties: smaller lo
    with pytest.raises(ValueError):
        central_range(np.array([-1.0, 2.0]))


def test_skipping_replaces_blocks_by_identity_and_restores_them():
    torch.manual_seed(0)
    net = DeepMLP(3, 4, residual=True, branch_layers=2)
    x = torch.randn(2, 4)
    before = net(x)
    blocks = list(net.blocks)
    with skipping(net, [1]):
        assert isinstance(net.blocks[1], nn.Identity)
        expected = net.blocks[2](blocks[0](x))
        assert torch.allclose(net(x), expected)
    assert all(a is b for a, b in zip(net.blocks, blocks))
    assert torch.allclose(net(x), before)
    with pytest.raises(IndexError):
        with skipping(net, [3]):
            pass
