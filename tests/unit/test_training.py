"""Unit tests of gradflowkit.training: closed forms for the weight-change measures, and the
training loop against a hand-written SGD loop, on digits and on tiny synthetic data."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradflowkit.data import Split, load_digits
from gradflowkit.nets import DeepMLP
from gradflowkit.training import History, accuracy, relative_change, snapshot, train_classifier


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _tiny_split(n=50, d=4, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, d, generator=gen), torch.randint(0, classes, (n,), generator=gen)
    return Split(x, y, x[:10], y[:10])


# --- snapshot / relative_change ----------------------------------------------------------

def test_snapshot_is_a_detached_copy():
    model = nn.Linear(3, 2)
    snap = snapshot(model)
    assert list(snap) == ["weight", "bias"]
    with torch.no_grad():
        model.weight.add_(1.0)
    assert not torch.equal(snap["weight"], model.weight)
    assert not snap["weight"].requires_grad


def test_relative_change_closed_form():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, 4.0]]))   # norm 5
        model.bias.zero_()
    before = snapshot(model)
    with torch.no_grad():
        model.weight.add_(torch.tensor([[0.0, 1.0]]))    # moved by 1
    changes = relative_change(before, model)
    assert changes == {"weight": pytest.approx(0.2), "bias": 0.0}


def test_relative_change_from_zero():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.bias.zero_()
    before = snapshot(model)
    assert relative_change(before, model)["bias"] == 0.0
    with torch.no_grad():
        model.bias.fill_(0.1)
    assert math.isinf(relative_change(before, model)["bias"])
    assert relative_change(before, model)["weight"] == 0.0


def test_relative_change_subset_and_missing():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    before = {k: v for k, v in snapshot(model).items() if k.startswith("1.")}
    assert set(relative_change(before, model)) == {"1.weight", "1.bias"}
    with pytest.raises(ValueError, match=r"snapshot has parameters the model lacks: "
                                         r"\['2.weight'\]"):
        relative_change({"2.weight": torch.zeros(1)}, model)


# --- accuracy ----------------------------------------------------------------------------

def test_accuracy_closed_form_and_restores_the_mode():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))  # predicts the larger coordinate
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    y = torch.tensor([0, 1, 1, 1])
    model.train()
    assert accuracy(model, x, y) == 0.75
    assert model.training
    model.eval()
    assert accuracy(model, x, y) == 0.75
    assert not model.training


# --- train_classifier --------------------------------------------------------------------

def _hand_sgd(model, data, steps, lr, batch_size, momentum, seed):
    """Oracle: the documented loop (seeded shuffles, reshuffle when a batch would run past
    the end, cross-entropy, torch SGD), written out here."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    n = len(data.y_train)
    order, cursor, losses = torch.randperm(n, generator=gen), 0, []
    for _ in range(steps):
        if cursor + batch_size > n:
            order, cursor = torch.randperm(n, generator=gen), 0
        idx = order[cursor:cursor + batch_size]
        cursor += batch_size
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("batch_size, momentum", [(16, 0.0), (16, 0.9), (7, 0.5), (64, 0.0)])
def test_train_classifier_matches_a_hand_written_sgd_loop(batch_size, momentum, float64,
                                                          seeded):
    data = _tiny_split()
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    twin = copy.deepcopy(model)
    hist = train_classifier(model, data, steps=12, lr=0.2, batch_size=batch_size,
                            momentum=momentum, seed=5)
    expected = _hand_sgd(twin, data, 12, 0.2, batch_size, momentum, 5)
    assert hist.loss == pytest.approx(expected, rel=1e-12)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert hist.train_accuracy == accuracy(model, data.x_train, data.y_train)
    assert hist.test_accuracy == accuracy(model, data.x_test, data.y_test)


def test_train_classifier_is_deterministic_for_a_seed(digits, seeded):
    net = DeepMLP(2, 32, in_features=64, out_features=10, activation="tanh", init="xavier")
    a, b, c = net, copy.deepcopy(net), copy.deepcopy(net)
    ha = train_classifier(a, digits, steps=20, lr=0.05, seed=1)
    hb = train_classifier(b, digits, steps=20, lr=0.05, seed=1)
    hc = train_classifier(c, digits, steps=20, lr=0.05, seed=2)
    assert ha.loss == hb.loss
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert ha.loss != hc.loss  # another seed: other mini-batches


def test_loss_decreases_on_digits(digits, seeded):
    net = DeepMLP(2, 32, in_features=64, out_features=10, activation="relu", init="he")
    before = snapshot(net)
    hist = train_classifier(net, digits, steps=100, lr=0.1, batch_size=32)
    assert isinstance(hist, History)
    assert len(hist.loss) == 100 and all(math.isfinite(v) for v in hist.loss)
    first, last = sum(hist.loss[:10]) / 10, sum(hist.loss[-10:]) / 10
    assert first > 1.5            # about ln 10 ≈ 2.3 at the start
    assert last < 0.25 * first    # a clear decrease (about 2.4 -> 0.12)
    assert hist.test_accuracy > 0.8 and hist.train_accuracy > 0.8
    assert all(v > 0 for v in relative_change(before, net).values() if math.isfinite(v))
    assert net.training  # left in training mode
    assert hist.grad_norms == [] and hist.recorded_steps == []


@pytest.mark.parametrize("steps, record_every, expected", [
    (10, 3, [0, 3, 6, 9]), (10, 1, list(range(10))), (5, 5, [0]), (5, 10, [0]), (6, 0, []),
])
def test_record_every(steps, record_every, expected, float64, seeded):
    data = _tiny_split()
    model = nn.Sequential(nn.Linear(4, 3))
    twin = copy.deepcopy(model)
    hist = train_classifier(model, data, steps=steps, lr=0.1, batch_size=10,
                            record_every=record_every)
    assert hist.recorded_steps == expected
    assert len(hist.grad_norms) == len(expected)
    if expected:
        # The first record is the gradient of step 0, before any update: recompute it.
        idx = torch.randperm(50, generator=torch.Generator().manual_seed(0))[:10]
        F.cross_entropy(twin(data.x_train[idx]), data.y_train[idx]).backward()
        assert set(hist.grad_norms[0]) == {"0.weight", "0.bias"}
        for name, p in twin.named_parameters():
            assert hist.grad_norms[0][name] == pytest.approx(p.grad.norm().item(), rel=1e-12)


def test_diverging_learning_rate_raises(digits, seeded):
    net = DeepMLP(3, 32, in_features=64, out_features=10, weight_scale=3.0)
    with pytest.raises(FloatingPointError, match=r"^training loss became (nan|inf) at step \d+"):
        train_classifier(net, digits, steps=200, lr=1e6)


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(steps=0), ValueError, r"^steps must be >= 1"),
    (dict(steps=2.0), TypeError, r"^steps must be an int"),
    (dict(lr=0.0), ValueError, r"^lr must be > 0"),
    (dict(lr=math.inf), ValueError, r"^lr must be finite"),
    (dict(batch_size=0), ValueError, r"^batch_size must be >= 1"),
    (dict(momentum=-0.1), ValueError, r"^momentum must be >= 0"),
    (dict(seed="0"), TypeError, r"^seed must be an int"),
    (dict(record_every=-1), ValueError, r"^record_every must be >= 0"),
])
def test_bad_arguments(kwargs, exc, msg):
    model = nn.Linear(4, 3)
    before = snapshot(model)
    args = dict(steps=3, lr=0.1) | kwargs
    with pytest.raises(exc, match=msg):
        train_classifier(model, _tiny_split(), **args)
    assert all(v == 0.0 for v in relative_change(before, model).values())  # nothing trained
