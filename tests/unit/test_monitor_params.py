"""The Monitor follows the optimizer's parameters: param groups added during training,
layers frozen and unfrozen; and refuses an optimizer that holds none of the model's
parameters. Oracle: the update-to-data ratio computed by hand from copies."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradflowkit.monitor import Monitor


def _ratio(before: torch.Tensor, after: torch.Tensor) -> float:
    before, after = before.double(), after.double()
    return math.log10(float((before - after).std(correction=0) / before.std(correction=0)))


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


def test_unfreezing_with_add_param_group_yields_its_update_ratios_from_then_on():
    model = _net()
    for p in model[0].parameters():
        p.requires_grad_(False)
    opt = torch.optim.SGD([*model[2].parameters(), *model[4].parameters()], lr=0.1)
    x = torch.randn(16, 4)
    ratios, oracle = [], []
    with Monitor(model, opt) as mon:
        for step in range(4):
            if step == 2:                      # unfreeze the first layer, new lr
                for p in model[0].parameters():
                    p.requires_grad_(True)
                opt.add_param_group({"params": list(model[0].parameters()), "lr": 0.3})
            before = model[0].weight.detach().clone()
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
            oracle.append(_ratio(before, model[0].weight.detach())
                          if step >= 2 else None)
            ratios.append(mon.records[-1]["update_ratio"].get("0.weight"))
    assert ratios[:2] == [None, None]
    assert ratios[2:] == pytest.approx(oracle[2:], rel=1e-6)   # float32 buffers
    assert set(mon.records[0]["update_ratio"]) == {"2.weight", "2.bias", "4.weight", "4.bias"}
    assert set(mon.records[3]["update_ratio"]) >= {"0.weight", "0.bias"}


def test_freezing_a_layer_mid_training_drops_its_ratio():
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 4)
    with Monitor(model, opt) as mon:
        for step in range(3):
            if step == 1:
                model[2].weight.requires_grad_(False)
                model[2].weight.grad = None
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    assert "2.weight" in mon.records[0]["update_ratio"]
    assert "2.weight" not in mon.records[1]["update_ratio"]
    assert "2.weight" not in mon.records[1]["grad_norm"]


def test_a_second_model_in_the_optimizer_is_ignored():
    model, other = _net(), nn.Linear(3, 3)
    opt = torch.optim.SGD([*model.parameters(), *other.parameters()], lr=0.1)
    with Monitor(model, opt) as mon:
        opt.zero_grad()
        (model(torch.randn(5, 4)).sum() + other(torch.randn(5, 3)).sum()).backward()
        opt.step()
    # 4.bias is skipped: both its entries get the same update (std 0).
    assert set(mon.records[0]["update_ratio"]) == set(mon.parameter_shapes) - {"4.bias"}


def test_an_optimizer_without_the_models_parameters_is_refused():
    model = _net()
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="holds none of the model's parameters"):
        Monitor(model, opt)


def _closure(model, opt, x):
    """The closure LBFGS and Lightning pass to step(): zero_grad, loss, backward."""
    def closure():
        opt.zero_grad()
        loss = model(x).square().mean()
        loss.backward()
        return loss
    return closure


@pytest.mark.parametrize("as_keyword", [True, False])
def test_step_with_a_closure_records_the_gradients_the_closure_computed(as_keyword):
    """LBFGS and PyTorch Lightning compute the gradients inside step(closure)."""
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 4)
    closure = _closure(model, opt, x)
    with Monitor(model, opt) as mon:
        for _ in range(2):
            oracle_loss = float(model(x).square().mean())
            before = model[0].weight.detach().clone()
            opt.step(closure=closure) if as_keyword else opt.step(closure)
            oracle = {n: float(p.grad.double().norm()) for n, p in model.named_parameters()}
            assert mon.records[-1]["grad_norm"] == pytest.approx(oracle, rel=1e-6)  # float32 norm
            assert mon.records[-1]["loss"] == pytest.approx(oracle_loss, rel=1e-6)
            assert mon.records[-1]["update_ratio"]["0.weight"] == pytest.approx(
                _ratio(before, model[0].weight.detach()), rel=1e-6)


def test_lbfgs_is_recorded_once_per_step():
    model = _net()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)
    closure = _closure(model, opt, torch.randn(16, 4))
    with Monitor(model, opt) as mon:
        for _ in range(3):
            opt.step(closure)
    assert [r["step"] for r in mon.records] == [0, 1, 2]
    assert all(r["grad_norm"] and r["update_ratio"] for r in mon.records)


def test_a_nonfinite_gradient_from_the_closure_stops_the_step():
    from gradflowkit.monitor import NonFiniteGradientError
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def closure():
        opt.zero_grad()
        loss = model(torch.full((2, 4), float("nan"))).sum()
        loss.backward()
        return loss

    before = [p.detach().clone() for p in model.parameters()]
    with Monitor(model, opt), pytest.raises(NonFiniteGradientError, match="'0.weight'"):
        opt.step(closure)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
