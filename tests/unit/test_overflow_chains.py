"""Unit tests of the ReLU-chain ensembles in gradflowkit.overflow (lesson 3).

Oracles: a plain DeepMLP per chain (float64 autograd through overflow_trace), explicit
summation of the terms in every order (for the forced-NaN rule), and torch's own outer
product (for the NaN pattern of a weight gradient).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from gradflowkit.nets import DeepMLP
from gradflowkit.overflow import (first_layers, forced_nan_matvec, nan_of_outer,
                                  overflow_trace, relu_chain_log_max, relu_chain_states,
                                  relu_chain_trace, relu_chain_weights)


def _chain(depth=6, width=5, members=3, scale=1.5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = relu_chain_weights(depth, width, members, scale=scale, generator=gen)
    x = torch.randn(members, width, generator=gen, dtype=torch.float64)
    return w, x


def _member_net(w, s):
    """The DeepMLP (no biases) that chain ``s`` of ``w`` is."""
    net = DeepMLP(w.shape[0], w.shape[-1], activation="relu", bias=False).double()
    with torch.no_grad():
        for block, wl in zip(net.blocks, w[:, s]):
            block.linear.weight.copy_(wl)
    return net


def test_weights_shape_scale_dtype_and_generator():
    w = relu_chain_weights(40, 20, 30, scale=4.0, generator=torch.Generator().manual_seed(3))
    assert w.shape == (40, 30, 20, 20) and w.dtype == torch.float64
    assert float(w.std()) == pytest.approx(4.0 * math.sqrt(2 / 20), rel=0.01)
    again = relu_chain_weights(40, 20, 30, scale=4.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(w, again)
    w32 = relu_chain_weights(2, 3, 4, dtype=torch.float32)
    assert w32.dtype == torch.float32
    with pytest.raises(TypeError, match="dtype"):
        relu_chain_weights(2, 3, 4, dtype=torch.int64)


def test_states_match_each_member_as_a_deep_mlp(float64):
    w, x = _chain()
    states = relu_chain_states(w, x, dtype=torch.float64)
    assert states.shape == (7, 3, 5)
    for s in range(3):
        expected = torch.stack(_member_net(w, s).hidden_states(x[s:s + 1]))[:, 0]
        torch.testing.assert_close(states[:, s], expected.detach(), rtol=1e-12, atol=1e-14)


def test_log_max_is_exact_where_float64_is_finite_and_continues_beyond():
    w, x = _chain(depth=30, width=8, members=4, scale=4.0)
    lm = relu_chain_log_max(w, x)
    states = relu_chain_states(w, x, dtype=torch.float64)
    direct = states.abs().amax(-1).log().T.numpy()            # (members, depth + 1)
    np.testing.assert_allclose(lm, direct, rtol=1e-10)
    w_big, x_big = _chain(depth=600, width=32, members=1, scale=4.0, seed=5)   # wide: no death
    lm_big = relu_chain_log_max(w_big, x_big)
    assert np.all(np.isfinite(lm_big)) and lm_big[:, -1].min() > 709.8   # log of the float64 max
    over = ~torch.isfinite(relu_chain_states(w_big, x_big, dtype=torch.float64))
    assert bool(over.any())                                   # float64 itself overflowed


def test_log_max_is_minus_inf_once_the_chain_dies():
    w = -torch.eye(3, dtype=torch.float64).expand(4, 1, 3, 3).clone()   # relu(-x) = 0 for x > 0
    x = torch.ones(1, 3, dtype=torch.float64)
    lm = relu_chain_log_max(w, x)
    assert lm[0, 0] == 0 and np.all(lm[0, 1:] == -np.inf)


def test_trace_matches_overflow_trace_of_each_member(float64):
    w, x = _chain(depth=5, width=4, members=3, scale=1.2, seed=2)
    loss = lambda out: 0.5 * (out ** 2).sum(-1)               # noqa: E731
    tr = relu_chain_trace(w, x, loss, dtype=torch.float64)
    assert tr.signals.shape == (6, 3, 4) and tr.weight_grads.shape == (5, 3, 4, 4)
    for s in range(3):
        ref = overflow_trace(_member_net(w, s), x[s:s + 1], lambda o: 0.5 * (o ** 2).sum())
        assert float(tr.loss[s]) == pytest.approx(ref.loss, rel=1e-12)
        torch.testing.assert_close(tr.signals[:, s], torch.stack(ref.signals)[:, 0])
        torch.testing.assert_close(tr.deltas[:, s], torch.stack(ref.deltas)[:, 0])
        torch.testing.assert_close(tr.preactivations[:, s], torch.stack(ref.preactivations)[:, 0])
        torch.testing.assert_close(tr.weight_grads[:, s], torch.stack(ref.weight_grads))


def test_trace_keeps_inf_and_nan_in_float32():
    w, x = _chain(depth=40, width=16, members=4, scale=4.0, seed=1)
    tr = relu_chain_trace(w, x, lambda out: 0.5 * (out ** 2).sum(-1))
    assert tr.signals.dtype == torch.float32
    assert bool(torch.isinf(tr.loss).all()) and bool(torch.isnan(tr.signals[0]).all())
    assert bool(torch.isfinite(tr.states).all())


def test_trace_rejects_a_loss_that_is_not_one_per_chain():
    w, x = _chain()
    with pytest.raises(ValueError, match="one loss per chain"):
        relu_chain_trace(w, x, lambda out: out.sum())


def test_first_layers_by_hand():
    mask = np.zeros((5, 3, 2), dtype=bool)
    mask[1, 0, 1] = mask[3, 0, 0] = True          # chain 0: layers 1 and 3
    mask[4, 1, 0] = True                          # chain 1: layer 4; chain 2: never
    np.testing.assert_array_equal(first_layers(mask), [1, 4, -1])
    np.testing.assert_array_equal(first_layers(mask, reverse=True), [3, 4, -1])
    np.testing.assert_array_equal(first_layers(torch.tensor(mask[:, :, 0])), [3, 4, -1])
    with pytest.raises(ValueError, match="layers, chains"):
        first_layers(np.zeros(3, dtype=bool))


def _nan_in_every_order(row, v):
    """Sum the terms A_ij v_j one by one, in every order; True if every order gives NaN."""
    terms = [a * b for a, b in zip(row, v)]
    return all(math.isnan(sum(order)) for order in itertools.permutations(terms))


@pytest.mark.parametrize("seed", range(20))
def test_forced_nan_is_exactly_nan_in_every_order(seed):
    # Small finite values: no finite term can overflow, so the operands decide alone.
    rng = np.random.default_rng(seed)
    pool = [0.0, 1.0, -2.0, 0.5, math.inf, -math.inf, math.nan]
    a = torch.tensor(rng.choice(pool, size=(6, 4), p=[.2, .2, .2, .2, .08, .08, .04]))
    v = torch.tensor(rng.choice(pool, size=4, p=[.15, .2, .2, .15, .12, .12, .06]))
    forced = forced_nan_matvec(a, v)
    for i in range(6):
        assert bool(forced[i]) == _nan_in_every_order(a[i].tolist(), v.tolist())
    assert bool((~forced | torch.isnan(a @ v)).all())       # torch's own kernel agrees


def test_forced_nan_batched_and_inf_minus_inf():
    a = torch.tensor([[[1.0, 1.0], [1.0, -1.0]], [[2.0, 0.0], [1.0, 1.0]]])
    v = torch.tensor([[math.inf, math.inf], [3.0, math.inf]])
    got = forced_nan_matvec(a, v)
    assert got.tolist() == [[False, True], [True, False]]   # inf - inf; then 0 * inf
    with pytest.raises(ValueError, match="matrix"):
        forced_nan_matvec(torch.zeros(3), torch.zeros(3))


def test_nan_of_outer_matches_torch():
    values = torch.tensor([0.0, -1.5, math.inf, -math.inf, math.nan, 2.0])
    got = nan_of_outer(values, values.flip(0))
    assert torch.equal(got, torch.isnan(torch.outer(values, values.flip(0))))
    batched = nan_of_outer(values.expand(3, -1), values.expand(3, -1))
    assert batched.shape == (3, 6, 6)
