"""gradflowkit.trainer.train (with gradflowkit.tasks): an ensemble trained together must be
its members trained one by one.

Oracle: a plain loop per member, written here: a DeepMLP or SequenceRegressor built after
torch.manual_seed(seed), torch.optim, torch.nn.utils.clip_grad_norm_, the member's batches
drawn the documented way, and a stop at the first non-finite loss or gradient."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradflowkit import DeepMLP, parameter_grad_norms
from gradflowkit.data import Split
from gradflowkit.ensemble import EnsembleMLP
from gradflowkit.ensemble_recurrent import EnsembleRecurrent
from gradflowkit.recurrent import SequenceRegressor, adding_problem
from gradflowkit.tasks import AddingTask, ClassificationTask, batch_indices
from gradflowkit.trainer import TrainRecord, train, warmup_factor, warmup_steps

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


@pytest.fixture(scope="module")
def data():
    """A small separable 3-class problem in float64 (no BN: Adam on null directions of a
    batch-normalized layer would amplify rounding noise, which is not what is tested)."""
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 5, generator=gen, dtype=torch.float64) * 2
    def part(n):
        y = torch.randint(0, 3, (n,), generator=gen)
        return centers[y] + torch.randn(n, 5, generator=gen, dtype=torch.float64), y
    x_train, y_train = part(90)
    x_test, y_test = part(40)
    return Split(x_train, y_train, x_test, y_test)


def solo_run(seed, data, *, steps, lr, batch_size, optimizer="sgd", clip=None, net_seed=None,
             record_every=0, **options):
    """One member alone: the oracle loop."""
    torch.manual_seed(seed if net_seed is None else net_seed)
    net = DeepMLP(3, 8, in_features=5, out_features=3).double()
    opt = OPTIMIZERS[optimizer](net.parameters(), lr=lr, **options)
    idx = batch_indices(seed, steps, len(data.y_train), batch_size)
    losses, stopped, grads, ratios = [], -1, [], []
    for step in range(steps):
        loss = F.cross_entropy(net(data.x_train[idx[step]]), data.y_train[idx[step]])
        if not torch.isfinite(loss):
            stopped = step
            break
        opt.zero_grad()
        loss.backward()
        total = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in net.parameters()))
        if not math.isfinite(total):
            stopped = step
            break
        losses.append(loss.item())
        if record_every and step % record_every == 0:
            grads.append(parameter_grad_norms(net))
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        before = [p.detach().clone() for p in net.parameters()]
        opt.step()
        if record_every and step % record_every == 0:
            ratios.append([_log_ratio(p.detach() - b, b)
                           for p, b in zip(net.parameters(), before)])
    return net, losses, stopped, grads, ratios


def _log_ratio(update, data):
    su, sd = float(update.std(correction=0)), float(data.std(correction=0))
    return math.log10(su / sd) if su > 0 and sd > 0 else float("nan")


def ensemble(seeds):
    return EnsembleMLP.build(seeds, 3, 8, in_features=5, out_features=3, dtype=torch.float64)


@pytest.mark.parametrize("optimizer, options, clip", [
    ("sgd", dict(momentum=0.9, weight_decay=1e-3), None),
    ("sgd", dict(), 0.3),
    ("adam", dict(weight_decay=1e-3), 0.5),
    ("adamw", dict(weight_decay=1e-2), None),
])
def test_ensemble_equals_members_trained_alone(data, optimizer, options, clip):
    seeds, lr = [5, 6, 7], (0.05 if optimizer == "sgd" else 0.01)
    ens = ensemble(seeds)
    record = train(ens, ClassificationTask(data, 16), steps=25, lr=lr, optimizer=optimizer,
                   clip=clip, seeds=seeds, **options)
    assert record.loss.shape == (3, 25) and (record.stopped_at == -1).all()
    for i, seed in enumerate(seeds):
        net, losses, *_ = solo_run(seed, data, steps=25, lr=lr, batch_size=16,
                                   optimizer=optimizer, clip=clip, **options)
        np.testing.assert_allclose(record.loss[i], losses, rtol=1e-10)
        for p_e, p_n in zip(ens.member(i).parameters(), net.parameters()):
            torch.testing.assert_close(p_e, p_n, rtol=1e-9, atol=1e-10)


def test_learning_rate_per_member(data):
    seeds, lrs = [1, 1, 1], [0.01, 0.1, 0.3]      # the same net and batches, three rates
    ens = ensemble(seeds)
    record = train(ens, ClassificationTask(data, 16), steps=15, lr=lrs, momentum=0.5,
                   seeds=seeds)
    for i, lr in enumerate(lrs):
        _, losses, *_ = solo_run(1, data, steps=15, lr=lr, batch_size=16, momentum=0.5)
        np.testing.assert_allclose(record.loss[i], losses, rtol=1e-10)
    assert len({tuple(row) for row in record.loss[:, 1:]}) == 3   # the rates were used


@pytest.mark.parametrize("optimizer, options", [("sgd", dict(momentum=0.5)),
                                                ("sgd", dict()), ("adam", dict())])
def test_warmup_per_member_equals_lambda_lr_alone(data, optimizer, options):
    """Each member's warm-up (0: none) against torch's LambdaLR in the oracle loop; SGD
    without momentum takes the optimizer's all-active path, whose -lr is cached."""
    seeds, warm, lr = [3, 3, 4], [0, 4, 7], (0.1 if optimizer == "sgd" else 0.01)
    ens = ensemble(seeds)
    record = train(ens, ClassificationTask(data, 16), steps=10, lr=lr, optimizer=optimizer,
                   warmup=warm, seeds=seeds, **options)
    for i, (seed, wu) in enumerate(zip(seeds, warm)):
        torch.manual_seed(seed)
        net = DeepMLP(3, 8, in_features=5, out_features=3).double()
        opt = OPTIMIZERS[optimizer](net.parameters(), lr=lr, **options)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t, wu=wu: 1.0 if wu == 0 else min(1.0, (t + 1) / wu))
        idx = batch_indices(seed, 10, len(data.y_train), 16)
        for step in range(10):
            loss = F.cross_entropy(net(data.x_train[idx[step]]), data.y_train[idx[step]])
            assert math.isclose(loss.item(), record.loss[i, step], rel_tol=1e-10)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        for p_e, p_n in zip(ens.member(i).parameters(), net.parameters()):
            torch.testing.assert_close(p_e, p_n, rtol=1e-9, atol=1e-10)
    assert not np.allclose(record.loss[0, 1:], record.loss[1, 1:])   # the warm-up was used


def test_warmup_factor_and_steps():
    w = torch.tensor([0, 1, 4])
    torch.testing.assert_close(warmup_factor(0, w),
                               torch.tensor([1, 1, 0.25], dtype=torch.float64))
    torch.testing.assert_close(warmup_factor(2, w),
                               torch.tensor([1, 1, 0.75], dtype=torch.float64))
    torch.testing.assert_close(warmup_factor(9, w), torch.ones(3, dtype=torch.float64))
    assert warmup_steps(3, 2).tolist() == [3, 3]
    assert warmup_steps([0, np.int64(5)], 2).tolist() == [0, 5]
    for bad, msg in ((-1, "warmup must be integers >= 0"), ([1.5, 2], "got 1.5 at member 0"),
                     (True, "warmup must be integers"), ([1], "warmup has 1 values")):
        with pytest.raises(ValueError, match=msg):
            warmup_steps(bad, 2)


def test_a_diverging_member_is_stopped_before_the_bad_update(data):
    seeds, lrs = [2, 3, 4], [0.05, 1e300, 0.05]   # float64 overflows only from ~1e308
    ens = ensemble(seeds)
    record = train(ens, ClassificationTask(data, 16), steps=20, lr=lrs, momentum=0.9,
                   seeds=seeds)
    net, losses, stopped, *_ = solo_run(3, data, steps=20, lr=1e300, batch_size=16,
                                        momentum=0.9)
    assert 0 < stopped < 20
    assert record.stopped_at.tolist() == [-1, stopped, -1]
    assert record.diverged.tolist() == [False, True, False]
    np.testing.assert_allclose(record.loss[1, :stopped], losses, rtol=1e-10)
    assert np.isnan(record.loss[1, stopped:]).all()
    for p_e, p_n in zip(ens.member(1).parameters(), net.parameters()):  # as before the step
        torch.testing.assert_close(p_e, p_n, rtol=1e-9, atol=0)
    for i in (0, 2):                                     # the others did not notice
        _, solo, *_ = solo_run(seeds[i], data, steps=20, lr=0.05, batch_size=16,
                               momentum=0.9)
        np.testing.assert_allclose(record.loss[i], solo, rtol=1e-10)
    assert np.isnan(record.metrics["test_accuracy"][1])
    assert np.isfinite(record.metrics["test_accuracy"][[0, 2]]).all()
    assert np.isnan(record.final_loss(3)[1]) and np.isfinite(record.final_loss(3)[0])


def test_recorded_gradient_norms_and_update_ratios(data):
    seeds = [8, 9]
    ens = ensemble(seeds)
    record = train(ens, ClassificationTask(data, 16), steps=12, lr=0.1, momentum=0.9,
                   seeds=seeds, record_every=5)
    assert record.recorded_steps.tolist() == [0, 5, 10]
    names = [n for n, _ in ens.named_parameters()]
    assert list(record.grad_norms) == names == list(record.update_ratios)
    for i, seed in enumerate(seeds):
        net, _, _, grads, ratios = solo_run(seed, data, steps=12, lr=0.1, batch_size=16,
                                            momentum=0.9, record_every=5)
        for r, (g, ratio_row) in enumerate(zip(grads, ratios)):
            for k, name in enumerate(names):
                assert record.grad_norms[name][i, r] == pytest.approx(g[name], rel=1e-10)
                if np.isnan(ratio_row[k]):             # zero-initialized biases at step 0
                    assert name.endswith("bias") and r == 0
                    assert np.isnan(record.update_ratios[name][i, r])
                else:
                    assert record.update_ratios[name][i, r] == pytest.approx(ratio_row[k],
                                                                             rel=1e-8)


def test_update_ratios_can_be_left_out(data):
    seeds = [8, 9]
    full = train(ensemble(seeds), ClassificationTask(data, 16), steps=6, lr=0.1, seeds=seeds,
                 record_every=2)
    lean = train(ensemble(seeds), ClassificationTask(data, 16), steps=6, lr=0.1, seeds=seeds,
                 record_every=2, update_ratios=False)
    assert lean.update_ratios == {} and full.update_ratios
    np.testing.assert_array_equal(lean.loss, full.loss)
    for name, norms in full.grad_norms.items():
        np.testing.assert_array_equal(lean.grad_norms[name], norms)


def test_callbacks_are_called_at_the_recorded_steps(data):
    ens = ensemble([0, 1])
    seen, grads_seen = [], []

    def callback(step, model):
        seen.append((step, model.training))
        model.eval()                       # the trainer must put it back in training mode

    def grad_callback(step, model):
        grads_seen.append((step, all(p.grad is not None for p in model.parameters())))

    train(ens, ClassificationTask(data, 16), steps=7, lr=0.1, record_every=3,
          callback=callback, grad_callback=grad_callback)
    assert seen == [(0, True), (3, True), (6, True), (7, True)]
    assert grads_seen == [(0, True), (3, True), (6, True)]


def test_metrics_are_each_members_accuracy(data):
    seeds = [4, 5]
    ens = ensemble(seeds)
    record = train(ens, ClassificationTask(data, 16), steps=10, lr=0.1, seeds=seeds)
    for i in range(2):
        net = ens.member(i).eval()
        with torch.no_grad():
            test = float((net(data.x_test).argmax(1) == data.y_test).double().mean())
            tr = float((net(data.x_train).argmax(1) == data.y_train).double().mean())
        assert record.metrics["test_accuracy"][i] == pytest.approx(test)
        assert record.metrics["train_accuracy"][i] == pytest.approx(tr)


def test_default_seeds_follow_the_seed_switch(data, monkeypatch):
    def losses():
        ens = ensemble([0, 1])
        return train(ens, ClassificationTask(data, 16), steps=3, lr=0.1).loss
    monkeypatch.setenv("GRADFLOW_SEED", "0")
    a, b = losses(), losses()
    monkeypatch.setenv("GRADFLOW_SEED", "1")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, losses())


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_recurrent_ensemble_on_the_adding_task_equals_members_alone(cell):
    seeds, steps = [3, 4], 6
    ens = EnsembleRecurrent.build(seeds, cell, 5, dtype=torch.float64)
    task = AddingTask(8, batch_size=4, test_size=20)
    record = train(ens, task, steps=steps, lr=0.01, optimizer="adam", clip=0.5, seeds=seeds)
    x_test, y_test = task.test_batch()
    for i, seed in enumerate(seeds):
        torch.manual_seed(seed)
        net = SequenceRegressor(cell, 5).double()
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        x_all, y_all = adding_problem(4 * steps, 8, generator=torch.Generator().manual_seed(seed))
        losses = []
        for k in range(steps):
            x, y = x_all[4 * k:4 * k + 4], y_all[4 * k:4 * k + 4]
            loss = ((net(x.double()) - y.double()) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
            opt.step()
            losses.append(loss.item())
        np.testing.assert_allclose(record.loss[i], losses, rtol=1e-9)
        with torch.no_grad():
            mse = float(((net(x_test.double()) - y_test.double()) ** 2).mean())
        assert record.metrics["test_mse"][i] == pytest.approx(mse, rel=1e-8)


@pytest.mark.parametrize("options", [dict(), dict(optimizer="adam", clip=0.1, record_every=2)])
def test_training_emits_no_warnings(data, options):
    """A warning on stderr fails the book build: the trainer must not cause one."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record = train(ensemble([0, 1]), ClassificationTask(data, 16), steps=5, lr=0.01,
                       **options)
    assert record.loss.shape == (2, 5) and np.isfinite(record.loss).all()


def test_trainrecord_final_loss_checks_window():
    record = TrainRecord(loss=np.ones((2, 4)), stopped_at=np.array([-1, -1]),
                         recorded_steps=np.array([], dtype=int))
    assert record.final_loss(4).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"window 5 is longer than the run \(4 steps\)"):
        record.final_loss(5)


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(model=DeepMLP(2, 4)), TypeError, r"DeepMLP is not an ensemble"),
    (dict(callback=lambda s, m: None), ValueError, r"need record_every >= 1"),
    (dict(seeds=[1]), ValueError, r"seeds has 1 entries for an ensemble of 2 members"),
    (dict(clip=0.0), ValueError, r"clip must be > 0"),
    (dict(steps=0), ValueError, r"steps must be >= 1"),
    (dict(optimizer="lbfgs"), ValueError, r"optimizer must be one of"),
    (dict(warmup=[2]), ValueError, r"warmup has 1 values for an ensemble of 2 members"),
])
def test_bad_arguments(data, kwargs, exc, msg):
    options = dict(model=ensemble([0, 1]), task=ClassificationTask(data, 16), steps=2,
                   lr=0.1) | kwargs
    with pytest.raises(exc, match=msg):
        train(**options)
