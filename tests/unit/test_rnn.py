"""Unit tests of gradflowkit.rnn against float64 autograd and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradflowkit.rnn import (SLOPE_BOUND, VanillaRNN, jacobian_norms_by_distance,
                             pascanu_bound, recurrent_weight, state_jacobian, step_jacobians,
                             typical_log_rate)


def _net(activation="tanh", sigma_max=1.3, seed=0, **kw):
    gen = torch.Generator().manual_seed(seed)
    rnn = VanillaRNN(6, 3, activation=activation, sigma_max=sigma_max, generator=gen, **kw)
    xs = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    return rnn, xs


@pytest.mark.parametrize("kind", ["orthogonal", "gaussian"])
def test_recurrent_weight_has_the_requested_largest_singular_value(kind):
    w = recurrent_weight(7, 2.5, kind=kind, generator=torch.Generator().manual_seed(1))
    s = torch.linalg.svdvals(w)
    assert float(s[0]) == pytest.approx(2.5, rel=1e-12)
    if kind == "orthogonal":
        torch.testing.assert_close(s, torch.full((7,), 2.5, dtype=torch.float64))


def test_forward_matches_the_step_equation():
    rnn, xs = _net(bias=0.2)
    tr = rnn(xs)
    h = torch.zeros(6, dtype=torch.float64)
    for k, x in enumerate(xs):
        a = rnn.W @ h + rnn.U @ x + rnn.b
        h = torch.tanh(a)
        torch.testing.assert_close(tr.preactivations[k], a)
        torch.testing.assert_close(tr.states[k + 1], h)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "identity"])
def test_state_jacobian_matches_autograd(activation):
    rnn, xs = _net(activation, sigma_max=2.0)
    with torch.no_grad():
        tr = rnn(xs)
    jac = step_jacobians(rnn, tr.preactivations)
    for t in [0, 5, 11, 12]:
        def unrolled(h, t=t):
            for x in xs[t:]:
                h, _ = rnn.step(h, x)
            return h
        auto = torch.autograd.functional.jacobian(unrolled, tr.states[t])
        torch.testing.assert_close(state_jacobian(jac, t), auto, rtol=1e-10, atol=1e-12)


def test_norms_by_distance_match_explicit_products():
    rnn, xs = _net("sigmoid", sigma_max=5.0)
    with torch.no_grad():
        tr = rnn(xs)
    jac = step_jacobians(rnn, tr.preactivations)
    norms = jacobian_norms_by_distance(jac)
    assert norms.shape == (13,) and norms[0] == 1.0
    for dist in range(13):
        expected = float(torch.linalg.matrix_norm(state_jacobian(jac, 12 - dist), ord=2))
        assert norms[dist] == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("activation,sigma_max", [("tanh", 0.8), ("tanh", 2.0),
                                                  ("sigmoid", 4.5), ("sigmoid", 10.0)])
def test_pascanu_bound_holds(activation, sigma_max):
    for seed in range(3):
        rnn, xs = _net(activation, sigma_max, seed=seed, kind="gaussian")
        with torch.no_grad():
            tr = rnn(xs)
        norms = jacobian_norms_by_distance(step_jacobians(rnn, tr.preactivations))
        assert np.all(norms <= pascanu_bound(sigma_max, activation, np.arange(13)) * (1 + 1e-10))


def test_pascanu_bound_values():
    np.testing.assert_allclose(pascanu_bound(4.5, "sigmoid", [0, 1, 2]), [1, 1.125, 1.125 ** 2])
    assert SLOPE_BOUND == {"tanh": 1.0, "sigmoid": 0.25, "identity": 1.0}


def test_typical_log_rate_closed_forms():
    rnn, xs = _net("identity", sigma_max=1.7)
    with torch.no_grad():
        tr = rnn(xs)
    assert typical_log_rate(rnn, tr.preactivations) == pytest.approx(math.log(1.7), rel=1e-12)
    zero = torch.zeros(5, 6, dtype=torch.float64)       # sigmoid'(0) = 1/4 for every unit
    rnn_s, _ = _net("sigmoid", sigma_max=3.0)
    assert typical_log_rate(rnn_s, zero) == pytest.approx(math.log(0.75), rel=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="activation"):
        VanillaRNN(3, 2, activation="relu")
    rnn, _ = _net()
    with pytest.raises(ValueError, match="xs must have shape"):
        rnn(torch.zeros(4, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="t must be"):
        state_jacobian(torch.zeros(3, 2, 2, dtype=torch.float64), 4)
