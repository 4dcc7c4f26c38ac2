"""Unit tests of the ensemble helpers of gradflowkit.spectral (lesson 10).

Oracles: the single-net helpers (spectral_norms, layer_profile) on each member, and the
trainer's own weight_decay (itself checked against torch.optim.SGD) member by member."""

from __future__ import annotations

import pytest
import torch

from gradflowkit.data import Split
from gradflowkit.ensemble import EnsembleMLP
import torch.nn.functional as F

from gradflowkit.gradients import layer_profile
from gradflowkit.spectral import (EnsembleSpectralTracker, L2PenaltyTask, member_spectral_norms,
                                  spectral_norms)
from gradflowkit.tasks import ClassificationTask
from gradflowkit.trainer import train


def _toy_data(n=48, features=6, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=gen, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=gen)
    return Split(x, y, x[:10].clone(), y[:10].clone())


def _ensemble(seeds=(0, 1, 2)):
    return EnsembleMLP.build(list(seeds), 3, 5, in_features=6, out_features=3,
                             activation="tanh", init="orthogonal", weight_scale=1.5,
                             dtype=torch.float64)


def test_member_spectral_norms_are_each_members_spectral_norms():
    ens = _ensemble()
    norms = member_spectral_norms(ens)
    for i in range(ens.n_members):
        single = spectral_norms(ens.member(i))
        assert list(norms) == list(single)          # same names, same order, no biases
        for name, value in single.items():
            assert norms[name][i] == pytest.approx(value, rel=1e-12)


def test_ensemble_tracker_matches_each_members_own_measurements():
    data = _toy_data()
    ens = _ensemble()
    tracker = EnsembleSpectralTracker(data.x_test, data.y_test)
    tracker(0, ens)
    train(ens, ClassificationTask(data, 8), steps=5, lr=0.1, seeds=[4, 5, 6],
          record_every=5, callback=tracker)
    assert tracker.steps == [0, 0, 5]
    assert tracker.backward_ratio.shape == (3, 3)
    assert all(v.shape == (3, 3) for v in tracker.sigma.values())
    for i in range(ens.n_members):                 # the last record is the trained model's
        net = ens.member(i)
        signal = layer_profile(net, data.x_test, lambda out: F.cross_entropy(out, data.y_test)
                               ).signal
        assert tracker.backward_ratio[i, -1] == pytest.approx(signal[0] / signal[-1],
                                                              rel=1e-10)
        for name, value in spectral_norms(net).items():
            assert tracker.sigma[name][i, -1] == pytest.approx(value, rel=1e-12)


def test_l2_penalty_task_is_weight_decay_member_by_member():
    data, lams, steps, lr = _toy_data(), [0.0, 0.2, 0.7], 6, 0.1
    ens = _ensemble()
    singles = [EnsembleMLP([ens.member(i)]) for i in range(3)]
    train(ens, L2PenaltyTask(ClassificationTask(data, 8), ens, lams), steps=steps, lr=lr,
          seeds=[4, 5, 6])
    for i, (single, lam) in enumerate(zip(singles, lams)):
        train(single, ClassificationTask(data, 8), steps=steps, lr=lr, seeds=[4 + i],
              weight_decay=lam)
        for (name, p), q in zip(ens.named_parameters(), single.parameters()):
            torch.testing.assert_close(p[i], q[0], rtol=1e-10, atol=1e-12, msg=name)


def test_l2_penalty_task_adds_the_penalty_to_the_loss():
    data = _toy_data()
    ens = _ensemble((3, 4))
    task = L2PenaltyTask(ClassificationTask(data, 8), ens, 0.5)
    task.start([0, 1], 1)
    x, y = task.batch(0)
    with torch.no_grad():
        base = task.task.losses(ens(x), y)
        got = task.losses(ens(x), y)
        sq = torch.stack([sum((p[i] ** 2).sum() for p in ens.parameters()) for i in range(2)])
    torch.testing.assert_close(got, base + 0.25 * sq, rtol=1e-12, atol=0)


@pytest.mark.parametrize("lam, msg", [([0.1, 0.2], r"one value or 3"),
                                      (-0.1, r"finite and >= 0")])
def test_l2_penalty_task_rejects_bad_strengths(lam, msg):
    ens = _ensemble()
    with pytest.raises(ValueError, match=msg):
        L2PenaltyTask(ClassificationTask(_toy_data(), 8), ens, lam)
    with pytest.raises(TypeError, match="must be an ensemble"):
        L2PenaltyTask(ClassificationTask(_toy_data(), 8), torch.nn.Linear(2, 2), 0.1)


def test_ensemble_tracker_checks_labels():
    with pytest.raises(ValueError, match="one label per row"):
        EnsembleSpectralTracker(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))
