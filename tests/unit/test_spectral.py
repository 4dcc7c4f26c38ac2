"""Unit tests of gradflowkit.spectral and of train_classifier's weight_decay and callback,
against NumPy's SVD, the closed form of geometric decay, and a hand-written SGD loop on the
L2-penalized loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradflowkit.data import Split
from gradflowkit.gradients import layer_profile
from gradflowkit.nets import DeepMLP
from gradflowkit.spectral import SpectralTracker, decay_steps, spectral_norms
from gradflowkit.training import train_classifier


def _toy_data(n=48, features=6, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=gen, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=gen)
    return Split(x, y, x[:10].clone(), y[:10].clone())


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


def test_weight_decay_is_sgd_on_the_l2_penalized_loss(float64):
    data = _toy_data()
    lr, wd, steps, batch = 0.1, 0.05, 7, 16
    torch.manual_seed(0)
    model = DeepMLP(2, 5, in_features=6, out_features=3, activation="tanh", init="xavier")
    twin = DeepMLP(2, 5, in_features=6, out_features=3, activation="tanh", init="xavier")
    twin.load_state_dict(model.state_dict())
    train_classifier(model, data, steps=steps, lr=lr, batch_size=batch, weight_decay=wd)
    # Oracle: the same mini-batches (same generator), plain gradient steps on L + wd/2 ||θ||².
    gen = torch.Generator().manual_seed(0)
    order, cursor = torch.randperm(len(data.y_train), generator=gen), 0
    for _ in range(steps):
        if cursor + batch > len(data.y_train):
            order, cursor = torch.randperm(len(data.y_train), generator=gen), 0
        idx = order[cursor:cursor + batch]
        cursor += batch
        loss = F.cross_entropy(twin(data.x_train[idx]), data.y_train[idx])
        loss = loss + wd / 2 * sum((p ** 2).sum() for p in twin.parameters())
        twin.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in twin.parameters():
                p -= lr * p.grad
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


def test_callback_steps_and_tracker_records(float64):
    data = _toy_data()
    torch.manual_seed(1)
    model = DeepMLP(3, 5, in_features=6, out_features=3, activation="tanh", init="xavier")
    tracker = SpectralTracker(data.x_test, data.y_test)
    calls = []

    def callback(step, m):
        calls.append(step)
        tracker(step, m)

    train_classifier(model, data, steps=10, lr=0.1, batch_size=8, record_every=4,
                     callback=callback)
    assert calls == [0, 4, 8, 10] == tracker.steps
    assert list(tracker.sigma) == [n for n, p in model.named_parameters() if p.ndim == 2]
    assert all(len(v) == 4 for v in tracker.sigma.values())
    # the last record is the trained model's
    for name, value in spectral_norms(model).items():
        assert tracker.sigma[name][-1] == pytest.approx(value, rel=1e-12)
    signal = layer_profile(model, data.x_test,
                           lambda out: F.cross_entropy(out, data.y_test)).signal
    assert tracker.backward_ratio[-1] == pytest.approx(signal[0] / signal[-1], rel=1e-12)


def test_callback_does_not_change_training(float64):
    data = _toy_data()
    torch.manual_seed(2)
    a = DeepMLP(2, 5, in_features=6, out_features=3, activation="relu")
    b = DeepMLP(2, 5, in_features=6, out_features=3, activation="relu")
    b.load_state_dict(a.state_dict())
    train_classifier(a, data, steps=6, lr=0.1, batch_size=8, record_every=2)
    train_classifier(b, data, steps=6, lr=0.1, batch_size=8, record_every=2,
                     callback=SpectralTracker(data.x_test, data.y_test))
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_callback_needs_record_every_and_tracker_checks_labels():
    data = _toy_data()
    model = DeepMLP(1, 4, in_features=6, out_features=3).double()
    with pytest.raises(ValueError, match=r"^callback needs record_every >= 1"):
        train_classifier(model, data, steps=2, lr=0.1, callback=lambda s, m: None)
    with pytest.raises(ValueError, match=r"^weight_decay must be >= 0"):
        train_classifier(model, data, steps=2, lr=0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match=r"^y must be a tensor with one label per row"):
        SpectralTracker(data.x_test, data.y_test[:3])


def test_spectral_norms_skip_non_matrices():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    assert list(spectral_norms(model)) == ["0.weight", "2.weight"]
