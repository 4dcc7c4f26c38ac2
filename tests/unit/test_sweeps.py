"""Sweeps (lessons 7 and 16): the learning-rate grid layout, run outcomes against records
written by hand, nested backward ratios against float64 autograd and each depth's own
stack, the ensemble dead-unit share against the single-net helper, and the
ensemble saturation share against what a Monitor records on each member."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from gradflowkit.dead_units import dead_fraction, member_dead_fractions
from gradflowkit.ensemble import EnsembleMLP
from gradflowkit.monitor import Monitor, member_saturation
from gradflowkit.initialization import init_weights
from gradflowkit.propagation import stack_signal_stats
from gradflowkit.sweeps import (OUTCOMES, by_lr, classify_runs, lr_grid, member_median,
                                nested_backward_ratios, outcome_counts, step_median,
                                step_median_ratio)
from gradflowkit.trainer import TrainRecord


def test_lr_grid_is_learning_rate_major_and_by_lr_folds_it_back():
    seeds, lrs = lr_grid([0.1, 0.3], [7, 8, 9])
    assert seeds == [7, 8, 9, 7, 8, 9]
    assert lrs == [0.1, 0.1, 0.1, 0.3, 0.3, 0.3]
    folded = by_lr(np.arange(12).reshape(6, 2), 2)
    assert folded.shape == (2, 3, 2)
    assert folded[1, 0].tolist() == [6, 7]            # member 3: second lr, first seed
    with pytest.raises(ValueError, match="multiple"):
        by_lr(np.zeros(5), 2)
    with pytest.raises(ValueError, match="at least one"):
        lr_grid([], [1])
    with pytest.raises(ValueError, match="lrs"):
        lr_grid([0.1, -1.0], [1])


def _record(losses, stopped_at):
    loss = np.array(losses, dtype=float)
    stopped = np.array(stopped_at)
    for i, s in enumerate(stopped):
        if s >= 0:
            loss[i, s:] = np.nan
    return TrainRecord(loss=loss, stopped_at=stopped, recorded_steps=np.array([], int))


def test_classify_runs_follows_the_documented_order():
    ln10 = math.log(10)
    record = _record([[2.0, 0.1, 0.1],          # learned
                      [2.0, 1.5, 1.6],          # partial: left chance, below the accuracy
                      [2.0, ln10, ln10 + 0.05],  # silent: at the chance loss
                      [2.0, 5.0, 9.0],          # overflow at step 2
                      [2.0, ln10, ln10]],       # at chance, but accurate enough: learned
                     [-1, -1, -1, 2, -1])
    acc = [0.9, 0.3, 0.1, np.nan, 0.6]
    got = classify_runs(record, acc, window=2)
    assert got.tolist() == ["learned", "partial", "silent", "overflow", "learned"]
    assert classify_runs(record, acc, window=2, tolerance=0.01)[2] == "partial"
    assert classify_runs(record, acc, window=2, learned=0.95)[0] == "partial"
    with pytest.raises(ValueError, match="one entry per member"):
        classify_runs(record, [0.5, 0.5], window=2)


def test_outcome_counts_matches_a_loop():
    rng = np.random.default_rng(3)
    outcomes = rng.choice(OUTCOMES, size=12)
    counts = outcome_counts(outcomes, 3)
    assert list(counts) == list(OUTCOMES)
    for name, row in counts.items():
        expected = [sum(o == name for o in outcomes[4 * i:4 * i + 4]) for i in range(3)]
        assert row.tolist() == expected
    assert sum(counts.values()).tolist() == [4, 4, 4]
    with pytest.raises(ValueError, match="unknown outcomes"):
        outcome_counts(["learned", "exploded"], 1)


def test_medians_over_steps_and_members_skip_nan_without_warnings():
    values = np.array([[1.0, 3.0, 2.0, np.nan],        # a member stopped after step 2
                       [np.nan, np.nan, np.nan, np.nan],
                       [4.0, np.inf, 6.0, 8.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # any warning fails the test
        np.testing.assert_array_equal(step_median(values), [2.0, np.nan, 6.0])
        np.testing.assert_array_equal(step_median(values, slice(0, 2)), [2.0, np.nan, 4.0])
        np.testing.assert_array_equal(member_median(values), [2.5, 3.0, 4.0, 8.0])
        num = np.array([[1.0, 0.0, 4.0], [0.0, 0.0, 0.0]])
        den = np.array([[2.0, 0.0, 2.0], [1.0, 0.0, 3.0]])
        np.testing.assert_array_equal(step_median_ratio(num, den), [1.25, np.nan])
    with pytest.raises(ValueError, match="shape"):
        step_median_ratio(num, den[:, :2])
    with pytest.raises(ValueError, match="members, recorded steps"):
        step_median(np.zeros(3))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_nested_backward_ratios_equal_autograd_for_every_depth(activation):
    members, width, batch, depths = 3, 6, 5, [1, 3, 4]
    gen = torch.Generator().manual_seed(5)
    w = init_weights("he", (members, 4, width, width), generator=gen, dtype=torch.float64)
    x = torch.randn(batch, width, generator=gen, dtype=torch.float64)
    g = torch.randn(members, batch, width, generator=gen, dtype=torch.float64)
    got = nested_backward_ratios(w, activation, x, g, depths)
    assert got.shape == (3, members)
    f = {"relu": torch.relu, "tanh": torch.tanh}[activation]
    for row, depth in zip(got, depths):
        for s in range(members):                 # oracle: autograd on one net at a time
            x0 = x.clone().requires_grad_(True)
            h = x0
            for layer in range(depth):
                h = f(h @ w[s, layer].T)
            (grad,) = torch.autograd.grad(h, x0, grad_outputs=g[s])
            expected = grad.std(correction=0) / g[s].std(correction=0)
            assert row[s] == pytest.approx(expected.item(), rel=1e-12)
        stack = stack_signal_stats(w[:, :depth], activation, x, grad_output=g)
        np.testing.assert_allclose(row, stack.backward[:, 0] / stack.backward[:, -1],
                                   rtol=1e-12)


def test_nested_backward_ratios_validates():
    w = torch.zeros(2, 3, 4, 4)
    x, g = torch.zeros(5, 4), torch.zeros(2, 5, 4)
    with pytest.raises(ValueError, match="between 1 and 3"):
        nested_backward_ratios(w, "relu", x, g, [4])
    with pytest.raises(ValueError, match="grad_output must have shape"):
        nested_backward_ratios(w, "relu", x, torch.zeros(2, 5, 3), [1])
    with pytest.raises(ValueError, match="square"):
        nested_backward_ratios(torch.zeros(2, 3, 4, 5), "relu", x, g, [1])


@pytest.mark.parametrize("options", [dict(activation="relu"),
                                     dict(activation="leaky_relu"),
                                     dict(activation="relu", norm="batch")])
def test_member_dead_fractions_equal_dead_fraction_of_each_member(options):
    ens = EnsembleMLP.build([1, 2, 3, 4], 3, 6, in_features=5, out_features=2, **options)
    with torch.no_grad():                      # kill some units, differently per member
        ens.blocks[1].linear.bias[0, :3] = -1e3
        ens.blocks[2].linear.bias[2, 1] = -1e3
    ens.eval()
    x = torch.randn(40, 5)
    got = member_dead_fractions(ens, x)
    assert got.shape == (4, 3)
    for i in range(4):
        member = ens.member(i)
        member.eval()
        np.testing.assert_array_equal(got[i], dead_fraction(member, x))
    if options.get("norm") is None:
        assert got[0, 1] >= 0.5 and got[2, 2] >= 1 / 6
    with pytest.raises(TypeError, match="EnsembleMLP"):
        member_dead_fractions(ens.member(0), x)
    with pytest.raises(ValueError, match="empty"):
        member_dead_fractions(ens, torch.zeros(0, 5))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "gelu"])
def test_member_saturation_equals_the_monitor_on_each_member(activation):
    scale = 3.0 if activation in ("sigmoid", "tanh") else 1.0   # some outputs saturate
    ens = EnsembleMLP.build([4, 5, 6], 3, 8, in_features=4, out_features=3,
                            activation=activation, init="xavier", weight_scale=scale)
    x = torch.randn(30, 4) * 3
    got = member_saturation(ens, x)
    assert got.shape == (3, 3)
    for i in range(3):
        net = ens.member(i)
        opt = torch.optim.SGD(net.parameters(), lr=0.0)
        with Monitor(net, optimizer=opt) as mon:
            net(x).sum().backward()
            opt.step()
        recorded = [mon.records[0]["activation"][f"blocks.{l}.act"]["saturation"]
                    for l in range(3)]
        np.testing.assert_allclose(got[i], recorded, rtol=0, atol=1e-12)
    if activation in ("sigmoid", "tanh"):
        assert got.max() > 0                      # the test exercises the threshold
    with pytest.raises(TypeError, match="EnsembleMLP"):
        member_saturation(ens.member(0), x)
