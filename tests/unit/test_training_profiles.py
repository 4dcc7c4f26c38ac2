"""ProfileRecorder and moving_average (lesson 14) against independent computations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradflowkit import DeepMLP
from gradflowkit.data import Split
from gradflowkit.training import ProfileRecorder, moving_average, train_classifier


def _toy_split(n=64, d=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    return Split(x, y, x[:8], y[:8])


def _signal_by_autograd(model, x, y):
    """‖∂L/∂x_l‖ via torch.autograd.grad on the block inputs, independently of the package."""
    h = model.stem(x) if model.stem is not None else x
    states = [h]
    for block in model.blocks:
        h = block(h)
        states.append(h)
    loss = F.cross_entropy(model.head(h), y)
    grads = torch.autograd.grad(loss, states)
    return np.array([g.norm().item() for g in grads])


def test_profile_recorder_steps_and_final_profile():
    torch.manual_seed(0)
    data = _toy_split()
    model = DeepMLP(5, 8, in_features=6, out_features=3, residual=True,
                    branch_layers=2, branch_scale=0.3).double()
    rec = ProfileRecorder(data.x_train[:32], data.y_train[:32])
    train_classifier(model, data, steps=10, lr=0.01, batch_size=16, record_every=4,
                     callback=rec)
    assert rec.steps == [0, 4, 8, 10]
    assert len(rec.signal) == len(rec.weight) == 4
    assert rec.signal[-1].shape == (6,) and rec.weight[-1].shape == (5,)
    expected = _signal_by_autograd(model, data.x_train[:32], data.y_train[:32])
    np.testing.assert_allclose(rec.signal[-1], expected, rtol=1e-10)
    assert all(p.grad is None for p in model.parameters())


def test_profile_recorder_does_not_change_training():
    data = _toy_split()
    losses = []
    for use_recorder in (False, True):
        torch.manual_seed(1)
        model = DeepMLP(3, 8, in_features=6, out_features=3).double()
        cb = ProfileRecorder(data.x_train, data.y_train) if use_recorder else None
        h = train_classifier(model, data, steps=12, lr=0.1, batch_size=16,
                             record_every=5 if use_recorder else 0, callback=cb)
        losses.append(h.loss)
    np.testing.assert_allclose(losses[0], losses[1], rtol=0, atol=0)


def test_profile_recorder_rejects_mismatched_batch():
    with pytest.raises(ValueError, match="rows"):
        ProfileRecorder(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))


def test_moving_average_matches_a_loop():
    v = np.random.default_rng(0).normal(size=30)
    w = 7
    loop = np.array([v[i - w + 1:i + 1].mean() for i in range(w - 1, len(v))])
    np.testing.assert_allclose(moving_average(list(v), w), loop, rtol=1e-12)
    np.testing.assert_allclose(moving_average(v, 1), v)


@pytest.mark.parametrize("window", [0, 31])
def test_moving_average_rejects_bad_window(window):
    with pytest.raises(ValueError):
        moving_average(np.zeros(30), window)
