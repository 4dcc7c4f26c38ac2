"""Unit tests of gradflowkit.training: closed forms for the weight-change measures and the
accuracy (the training loop is gradflowkit.trainer, tested in test_trainer.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradflowkit.training import accuracy, relative_change, snapshot


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
