"""gradflowkit.ensemble_recurrent: S recurrent regressors computed together.

Oracle: each member as a SequenceRegressor (PyTorch's nn.RNN / nn.LSTM / nn.GRU kernels)
built after torch.manual_seed(seed), and recurrent.gradient_by_distance on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradflowkit.ensemble_recurrent import EnsembleRecurrent, member_gradient_by_distance
from gradflowkit.recurrent import SequenceRegressor, adding_problem, gradient_by_distance

SEEDS = [2, 7, 9]


def singles(cell, hidden=6, **options):
    nets = []
    for s in SEEDS:
        torch.manual_seed(s)
        nets.append(SequenceRegressor(cell, hidden, **options).double())
    return nets


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_forward_and_gradients_equal_pytorchs_cells(cell):
    ens = EnsembleRecurrent.build(SEEDS, cell, 6, dtype=torch.float64)
    x, y = adding_problem(5, 11, dtype=torch.float64)
    out = ens(x)
    ((out - y) ** 2).mean(1).sum().backward()
    for i, net in enumerate(singles(cell)):
        expected = net(x)
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-12)
        ((expected - y) ** 2).mean().backward()
        for (name_e, p_e), (name_n, p_n) in zip(ens.named_parameters(), net.named_parameters()):
            assert name_e == name_n
            torch.testing.assert_close(p_e.grad[i], p_n.grad, rtol=1e-10, atol=1e-12)


def test_forget_bias_option_and_per_member_inputs():
    ens = EnsembleRecurrent.build(SEEDS, "lstm", 4, dtype=torch.float64, forget_bias=1.0)
    xs = torch.stack([adding_problem(3, 7, dtype=torch.float64)[0] for _ in SEEDS])
    out = ens(xs)
    for i, net in enumerate(singles("lstm", 4, forget_bias=1.0)):
        torch.testing.assert_close(out[i], net(xs[i]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_gradient_by_distance_per_member(cell):
    ens = EnsembleRecurrent.build(SEEDS, cell, 6, dtype=torch.float64)
    x, y = adding_problem(4, 9, dtype=torch.float64)
    got = member_gradient_by_distance(ens, x, y)
    assert got.shape == (3, 9)
    for i, net in enumerate(singles(cell)):
        np.testing.assert_allclose(got[i], gradient_by_distance(net, x, y), rtol=1e-10)
    assert all(p.grad is None for p in ens.parameters())


def test_member_round_trip_and_generator_left_alone():
    state = torch.get_rng_state()
    ens = EnsembleRecurrent.build(SEEDS, "gru", 3)
    net = ens.member(1)
    assert torch.equal(torch.get_rng_state(), state)
    assert isinstance(net, SequenceRegressor) and net.cell == "gru"
    assert torch.equal(net.rnn.weight_hh_l0, ens.rnn.weight_hh_l0[1])
    x = adding_problem(2, 5)[0]
    torch.testing.assert_close(EnsembleRecurrent([ens.member(i) for i in range(3)])(x), ens(x))


@pytest.mark.parametrize("call, exc, msg", [
    (lambda: EnsembleRecurrent([]), ValueError, r"at least one member"),
    (lambda: EnsembleRecurrent([torch.nn.Linear(2, 2)]), TypeError,
     r"member 0 must be a SequenceRegressor"),
    (lambda: EnsembleRecurrent([SequenceRegressor("rnn", 3), SequenceRegressor("gru", 3)]),
     ValueError, r"member 1 is a gru .* they must match"),
    (lambda: EnsembleRecurrent.build([0], "transformer", 3), ValueError, r"cell must be one of"),
    (lambda: EnsembleRecurrent.build([0, 1], "rnn", 3).member(5), IndexError,
     r"member 5 does not exist"),
    (lambda: EnsembleRecurrent.build([0, 1], "rnn", 3)(torch.randn(3, 2, 4, 2)), ValueError,
     r"x must have shape \(batch, T, features\) or \(2, batch, T, features\)"),
    (lambda: member_gradient_by_distance(SequenceRegressor("rnn", 3), torch.randn(2, 4, 2),
                                         torch.randn(2)), TypeError,
     r"must be an EnsembleRecurrent"),
])
def test_clear_errors(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()
