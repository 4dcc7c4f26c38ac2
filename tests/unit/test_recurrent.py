"""Unit tests of gradflowkit.recurrent against nn.LSTM / nn.GRU and float64 autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gradflowkit.recurrent import (SequenceRegressor, adding_problem, first_step_below,
                                   gradient_by_distance, gru_cell, lstm_cell, lstm_steps,
                                   set_forget_bias_)


def test_adding_problem_shapes_markers_and_targets():
    x, y = adding_problem(500, 20, generator=torch.Generator().manual_seed(0))
    assert x.shape == (500, 20, 2) and y.shape == (500,)
    marker = x[..., 1]
    assert torch.all(marker.sum(1) == 2)
    assert torch.all(marker[:, :10].sum(1) == 1) and torch.all(marker[:, 10:].sum(1) == 1)
    torch.testing.assert_close(y, (x[..., 0] * marker).sum(1))
    assert 0 <= float(x[..., 0].min()) and float(x[..., 0].max()) < 1


def test_adding_problem_baseline_is_one_sixth():
    _, y = adding_problem(200_000, 4, generator=torch.Generator().manual_seed(1),
                          dtype=torch.float64)
    assert float(y.mean()) == pytest.approx(1.0, abs=0.01)
    assert float(y.var()) == pytest.approx(1 / 6, rel=0.02)


def test_lstm_cell_matches_nn_lstm(float64, seeded):
    lstm = nn.LSTM(3, 5, batch_first=True)
    x = torch.randn(4, 7, 3)
    out, (h_last, c_last) = lstm(x)
    h = c = torch.zeros(4, 5)
    for t in range(7):
        step = lstm_cell(x[:, t], h, c, lstm)
        h, c = step.h, step.c
        torch.testing.assert_close(h, out[:, t], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c, c_last[0], rtol=1e-12, atol=1e-12)


def test_lstm_direct_path_jacobian_is_diag_f(float64, seeded):
    lstm = nn.LSTM(3, 4)
    x, h, c = torch.randn(1, 3), torch.randn(1, 4), torch.randn(1, 4)
    jac = torch.autograd.functional.jacobian(lambda c_: lstm_cell(x, h, c_, lstm).c, c)
    f = lstm_cell(x, h, c, lstm).f
    torch.testing.assert_close(jac.reshape(4, 4), torch.diag(f[0]), rtol=1e-12, atol=1e-12)


def test_gru_cell_matches_nn_gru(float64, seeded):
    gru = nn.GRU(3, 5, batch_first=True)
    x = torch.randn(4, 6, 3)
    out, _ = gru(x)
    h = torch.zeros(4, 5)
    for t in range(6):
        h = gru_cell(x[:, t], h, gru)
        torch.testing.assert_close(h, out[:, t], rtol=1e-12, atol=1e-12)


def test_set_forget_bias_sets_the_second_quarter(seeded):
    model = SequenceRegressor("lstm", 6, forget_bias=1.0)
    total = model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0
    torch.testing.assert_close(total[6:12], torch.ones(6))
    step = lstm_cell(torch.zeros(1, 2), torch.zeros(1, 6), torch.zeros(1, 6), model.rnn)
    torch.testing.assert_close(step.f, torch.sigmoid(torch.ones(1, 6)))


def test_forget_bias_only_for_lstm():
    with pytest.raises(ValueError, match="lstm"):
        SequenceRegressor("gru", 4, forget_bias=1.0)
    with pytest.raises(ValueError, match="cell"):
        SequenceRegressor("transformer", 4)
    with pytest.raises(ValueError, match="one-layer"):
        set_forget_bias_(nn.LSTM(2, 3, num_layers=2), 1.0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gradient_by_distance_matches_autograd(float64, seeded, cell):
    model = SequenceRegressor(cell, 4).double()
    x, y = adding_problem(3, 9, generator=torch.Generator().manual_seed(2),
                          dtype=torch.float64)
    got = gradient_by_distance(model, x, y)
    xg = x.clone().requires_grad_(True)
    ((model(xg) - y) ** 2).mean().backward()
    expected = xg.grad.norm(dim=(0, 2)).numpy()[::-1]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_lstm_steps_follow_nn_lstm(float64, seeded):
    lstm = nn.LSTM(2, 5, batch_first=True)
    x = torch.randn(3, 7, 2)
    out, (h_n, c_n) = lstm(x)
    steps = lstm_steps(x, lstm)
    assert len(steps) == 7
    torch.testing.assert_close(torch.stack([s.h for s in steps], 1), out.detach(),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(steps[-1].c, c_n[0].detach(), rtol=1e-12, atol=1e-12)
    assert not steps[-1].f.requires_grad


def test_first_step_below_matches_a_loop():
    rng = np.random.default_rng(0)
    loss = np.exp(-np.linspace(0, 4, 60))[None] * rng.uniform(0.5, 1.5, (5, 60))
    loss[3] = 1.0                       # never below
    loss[4, 20:] = np.nan               # a stopped member: NaN windows never count
    got = first_step_below(loss, 0.2, window=5)
    for i, row in enumerate(loss):
        expected = next((k for k in range(4, 60) if row[k - 4:k + 1].mean() < 0.2), -1)
        assert got[i] == expected
    assert got[3] == -1
    assert first_step_below(np.array([[0.5, 0.1, 0.1]]), 0.2, window=1)[0] == 1


@pytest.mark.parametrize("kwargs, msg", [(dict(window=11), "longer than the run"),
                                         (dict(threshold=0.0), "threshold must be > 0")])
def test_first_step_below_bad_arguments(kwargs, msg):
    args = dict(threshold=0.1, window=2) | kwargs
    with pytest.raises(ValueError, match=msg):
        first_step_below(np.ones((2, 10)), **args)
