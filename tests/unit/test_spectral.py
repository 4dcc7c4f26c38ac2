"""Unit tests of gradflowkit.spectral's single-net helpers against NumPy's SVD and the closed
form of geometric decay (the ensemble helpers: test_spectral_members.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradflowkit.nets import DeepMLP
from gradflowkit.spectral import decay_steps, spectral_norms


def test_spectral_norms_match_numpy_svd(float64, seeded):
    model = DeepMLP(3, 5, in_features=4, out_features=2, activation="tanh", init="xavier")
    norms = spectral_norms(model)
    weights = {n: p for n, p in model.named_parameters() if p.ndim == 2}
    assert list(norms) == list(weights)      # every weight matrix, no bias, in order
    assert "stem.weight" in norms and "head.weight" in norms and "blocks.0.linear.bias" not in norms
    for name, p in weights.items():
        expected = np.linalg.svd(p.detach().numpy(), compute_uv=False)[0]
        assert norms[name] == pytest.approx(expected, rel=1e-12)


def test_spectral_norm_of_a_scaled_orthogonal_matrix(float64, seeded):
    model = DeepMLP(2, 8, init="orthogonal", weight_scale=1.7)
    for value in spectral_norms(model).values():
        assert value == pytest.approx(1.7, rel=1e-12)


@pytest.mark.parametrize("factor, lr, wd", [(2.0, 0.05, 0.05), (10.0, 0.1, 1e-3),
                                            (1.5, 0.5, 0.2)])
def test_decay_steps_inverts_geometric_decay(factor, lr, wd):
    k = decay_steps(factor, lr, wd)
    assert (1 - lr * wd) ** k == pytest.approx(1 / factor, rel=1e-12)
    # the small-rate approximation ln(factor) / (lr wd) is close when lr wd is small
    if lr * wd < 1e-2:
        assert k == pytest.approx(math.log(factor) / (lr * wd), rel=lr * wd)


def test_decay_steps_matches_a_pure_decay_run(float64, seeded):
    # SGD with weight decay and a zero loss gradient: W_k = (1 - lr wd)^k W_0 exactly.
    lr, wd = 0.1, 0.5
    model = DeepMLP(1, 6, init="orthogonal", weight_scale=4.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wd)
    k_needed = decay_steps(4.0, lr, wd)
    sigmas = []
    for _ in range(int(math.ceil(k_needed)) + 1):
        sigmas.append(spectral_norms(model)["blocks.0.linear.weight"])
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
    sigmas = np.array(sigmas)
    np.testing.assert_allclose(sigmas, 4.0 * (1 - lr * wd) ** np.arange(len(sigmas)),
                               rtol=1e-12)
    first_below_1 = int(np.argmax(sigmas <= 1.0 + 1e-12))
    assert first_below_1 == math.ceil(k_needed)


@pytest.mark.parametrize("args, exc, msg", [
    ((0.0, 0.1, 0.1), ValueError, r"^factor must be > 0"),
    ((2.0, 0.0, 0.1), ValueError, r"^lr must be > 0"),
    ((2.0, 0.1, 0.0), ValueError, r"^weight_decay must be > 0"),
    ((2.0, 2.0, 0.5), ValueError, r"^lr \* weight_decay must be < 1"),
])
def test_decay_steps_bad_arguments(args, exc, msg):
    with pytest.raises(exc, match=msg):
        decay_steps(*args)


def test_spectral_norms_skip_non_matrices():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    assert list(spectral_norms(model)) == ["0.weight", "2.weight"]
