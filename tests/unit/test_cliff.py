"""Unit tests of gradflowkit.cliff against torch autograd in float64, the closed form for one
time step, and a hand-written descent loop that clips with gradflowkit.clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradflowkit.clipping import clip_by_global_norm
from gradflowkit.cliff import CliffTask, cliff_loss, cliff_loss_and_grad, descend


def _autograd(w, b, task):
    """Oracle: run the recursion in torch float64 and differentiate with autograd."""
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    x = torch.tensor(task.x0, dtype=torch.float64)
    for _ in range(task.steps):
        x = wt * torch.sigmoid(x) + bt
    loss = (x - task.target) ** 2
    loss.backward()
    return loss.item(), wt.grad.item(), bt.grad.item()


@pytest.mark.parametrize("task", [CliffTask(), CliffTask(steps=7, x0=-1.0, target=2.0)])
@pytest.mark.parametrize("w, b", [(0.5, 0.1), (3.0, -1.5), (6.0, -3.0), (7.0, -3.5),
                                  (-2.0, 1.0), (4.6, -2.37)])
def test_loss_and_grad_match_autograd(task, w, b):
    loss, gw, gb = cliff_loss_and_grad(w, b, task)
    ref = _autograd(w, b, task)
    np.testing.assert_allclose([loss, gw, gb], ref, rtol=1e-9, atol=1e-12)


def test_one_step_closed_form():
    task = CliffTask(steps=1, x0=0.3, target=-0.2)
    w, b = 1.7, 0.4
    s = 1 / (1 + math.exp(-0.3))
    err = w * s + b + 0.2
    loss, gw, gb = cliff_loss_and_grad(w, b, task)
    assert loss == pytest.approx(err ** 2, rel=1e-14)
    assert gw == pytest.approx(2 * err * s, rel=1e-14)
    assert gb == pytest.approx(2 * err, rel=1e-14)


def test_grid_is_vectorized_and_equals_pointwise():
    w, b = np.meshgrid(np.linspace(-1, 8, 7), np.linspace(-6, 2, 5))
    loss, gw, gb = cliff_loss_and_grad(w, b)
    assert loss.shape == gw.shape == gb.shape == (5, 7)
    for i, j in [(0, 0), (2, 5), (4, 6)]:
        one = cliff_loss_and_grad(w[i, j], b[i, j])
        np.testing.assert_allclose([loss[i, j], gw[i, j], gb[i, j]], one, rtol=1e-15)
    np.testing.assert_array_equal(cliff_loss(w, b), loss)


def test_the_wall_is_steep():
    # Across the wall at w = 5 the final state jumps by about w, so the gradient is huge
    # there and small on either side.
    b = np.linspace(-3.0, -2.0, 100001)
    loss, _, gb = cliff_loss_and_grad(5.0, b)
    assert np.abs(gb).max() > 1e4
    assert abs(gb[0]) < 20 and abs(gb[-1]) < 20
    assert loss[0] - loss[-1] > 5


def _hand_descent(start, lr, steps, max_norm):
    """Oracle: one path, clipped with gradflowkit.clipping.clip_by_global_norm."""
    p = torch.tensor(start, dtype=torch.float64)
    points = [p.clone()]
    for _ in range(steps):
        _, gw, gb = cliff_loss_and_grad(p[0].item(), p[1].item())
        g = torch.tensor([float(gw), float(gb)], dtype=torch.float64)
        if max_norm is not None:
            g = clip_by_global_norm([g], max_norm)[0][0]
        p = p - lr * g
        points.append(p.clone())
    return torch.stack(points).numpy()


@pytest.mark.parametrize("max_norm", [None, 0.5, 5.0])
def test_descend_matches_a_hand_loop(max_norm):
    paths = descend((5.0, -4.0), lr=0.01, steps=40, max_norm=max_norm)
    assert paths.points.shape == (41, 1, 2)
    assert paths.losses.shape == (41, 1) and paths.grad_norms.shape == (40, 1)
    np.testing.assert_allclose(paths.points[:, 0], _hand_descent((5.0, -4.0), 0.01, 40,
                                                                 max_norm), rtol=1e-12)
    np.testing.assert_allclose(paths.losses[:, 0], cliff_loss(*paths.points[:, 0].T),
                               rtol=1e-15)


def test_clipped_steps_are_bounded_and_paths_run_side_by_side():
    taus = [np.inf, 1.0, 10.0]
    paths = descend((7.0, -3.5), lr=0.01, steps=120, max_norm=taus)
    assert paths.points.shape == (121, 3, 2)
    steps = paths.step_lengths
    assert steps[:, 1].max() <= 0.01 * 1.0 + 1e-12
    assert steps[:, 2].max() <= 0.01 * 10.0 + 1e-12
    assert steps[:, 0].max() > 1.0  # the unclipped path is thrown off the wall
    for j, tau in enumerate(taus):  # each column is the same as a run on its own
        alone = descend((7.0, -3.5), lr=0.01, steps=120,
                        max_norm=None if math.isinf(tau) else tau)
        np.testing.assert_allclose(paths.points[:, j], alone.points[:, 0], rtol=1e-12)
    # several starts with one threshold
    many = descend([(5.0, -4.0), (6.0, -3.0)], lr=0.01, steps=3, max_norm=2.0)
    assert many.points.shape == (4, 2, 2)


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(lr=0.0, steps=3), ValueError, r"^lr must be > 0"),
    (dict(lr=0.1, steps=0), ValueError, r"^steps must be >= 1"),
    (dict(lr=0.1, steps=3, max_norm=0.0), ValueError, r"^max_norm must be None, > 0"),
    (dict(lr=0.1, steps=3, max_norm=[1.0, -1.0]), ValueError, r"^max_norm must be"),
])
def test_bad_arguments(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        descend((5.0, -4.0), **kwargs)


def test_bad_starts_and_task():
    with pytest.raises(ValueError, match=r"^starts must have shape"):
        descend(np.zeros((2, 3)), lr=0.1, steps=1)
    with pytest.raises(ValueError, match=r"^task.steps must be >= 1"):
        cliff_loss(1.0, 0.0, CliffTask(steps=0))
