"""StackedRNN, random_runs and the batched BPTT helpers of gradflowkit.rnn (lesson 4).

Oracle: the single-net VanillaRNN functions, run member by member, and np.polyfit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradflowkit.rnn import (StackedRNN, VanillaRNN, fitted_log_rate,
                             jacobian_norms_by_distance, random_runs, step_jacobians,
                             typical_log_rate)

SEEDS = [3, 11, 42]


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_members_compute_as_their_own_nets(activation):
    nets, xs = random_runs(SEEDS, 5, 3, 9, activation=activation, sigma_max=2.0, bias=0.1)
    assert xs.shape == (9, 3, 3)
    with torch.no_grad():
        tr = nets(xs)
    assert tr.states.shape == (10, 3, 5) and tr.preactivations.shape == (9, 3, 5)
    jac = step_jacobians(nets, tr.preactivations)
    norms = jacobian_norms_by_distance(jac)
    rates = typical_log_rate(nets, tr.preactivations)
    assert norms.shape == (3, 10) and rates.shape == (3,)
    for s, seed in enumerate(SEEDS):
        gen = torch.Generator().manual_seed(seed)
        rnn = VanillaRNN(5, 3, activation=activation, sigma_max=2.0, bias=0.1, generator=gen)
        x = torch.randn(9, 3, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(xs[:, s], x, rtol=0, atol=0)
        with torch.no_grad():
            ref = rnn(x)
        torch.testing.assert_close(tr.states[:, s], ref.states, rtol=1e-12, atol=1e-14)
        ref_jac = step_jacobians(rnn, ref.preactivations)
        torch.testing.assert_close(jac[:, s], ref_jac, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(norms[s], jacobian_norms_by_distance(ref_jac), rtol=1e-10)
        assert rates[s] == pytest.approx(typical_log_rate(rnn, ref.preactivations), rel=1e-10)


def test_fitted_log_rate_matches_polyfit():
    rng = np.random.default_rng(0)
    norms = np.exp(np.cumsum(rng.normal(-0.1, 0.3, size=(4, 20)), axis=1))
    d = np.arange(20)
    expected = [np.polyfit(d, np.log(n), 1)[0] for n in norms]
    np.testing.assert_allclose(fitted_log_rate(norms), expected, rtol=1e-10)
    assert fitted_log_rate(norms[0]) == pytest.approx(expected[0], rel=1e-10)
    with pytest.raises(ValueError, match="positive finite"):
        fitted_log_rate(np.array([1.0, 0.0, 2.0]))


def test_stacking_checks_its_members():
    gen = torch.Generator().manual_seed(0)
    a = VanillaRNN(4, 2, activation="tanh", generator=gen)
    b = VanillaRNN(4, 2, activation="sigmoid", generator=gen)
    with pytest.raises(ValueError, match="share the activation"):
        StackedRNN([a, b])
    with pytest.raises(TypeError, match="VanillaRNN"):
        StackedRNN([])
    with pytest.raises(ValueError, match="xs must have shape"):
        StackedRNN([a, a])(torch.zeros(5, 3, 2, dtype=torch.float64))
