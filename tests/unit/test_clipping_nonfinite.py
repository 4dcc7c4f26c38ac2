"""What norm clipping does with inf and NaN gradients (lesson 5): the package raises a clear
FloatingPointError by default; torch's default (error_if_nonfinite=False), and the package with
error_if_nonfinite=False, zero every finite entry and turn the bad one into NaN (inf), or turn
every entry into NaN (NaN)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradflowkit.clipping import clip_grad_norm_


def _params(bad, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = []
    for shape in [(3, 4), (4,), (2, 5)]:
        p = nn.Parameter(torch.zeros(shape))
        p.grad = torch.randn(shape, generator=gen)
        params.append(p)
    params[0].grad[1, 2] = bad
    return params


def _flat_grads(params):
    return torch.cat([p.grad.reshape(-1) for p in params])


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_the_package_raises_with_a_clear_message(bad):
    with pytest.raises(FloatingPointError,
                       match=r"total gradient norm \(order 2.0\) is not finite: .* Lower the "
                             r"learning rate or weight scale, clip gradients"):
        clip_grad_norm_(_params(bad), 1.0)


@pytest.mark.parametrize("clip", ["torch", "gradflowkit"])
@pytest.mark.parametrize("bad", [math.inf, -math.inf])
def test_one_inf_zeroes_everything_else_and_becomes_nan(clip, bad):
    params = _params(bad)
    if clip == "torch":
        total = torch.nn.utils.clip_grad_norm_(params, 1.0)   # default: no error
    else:
        total = clip_grad_norm_(params, 1.0, error_if_nonfinite=False)
    assert math.isinf(total.item()) and total.item() > 0
    g = _flat_grads(params)
    assert int(torch.isnan(g).sum()) == 1 and math.isnan(params[0].grad[1, 2].item())
    assert int((g == 0).sum()) == g.numel() - 1


@pytest.mark.parametrize("clip", ["torch", "gradflowkit"])
def test_one_nan_makes_every_entry_nan(clip):
    params = _params(math.nan)
    if clip == "torch":
        total = torch.nn.utils.clip_grad_norm_(params, 1.0)
    else:
        total = clip_grad_norm_(params, 1.0, error_if_nonfinite=False)
    assert math.isnan(total.item())
    assert bool(torch.isnan(_flat_grads(params)).all())


def test_an_sgd_step_after_it_spreads_nan_to_every_parameter():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(x), y).backward()
    model[0].weight.grad[0, 0] = math.inf
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
    assert math.isnan(loss.item())
    assert all(bool(torch.isnan(p).all()) for p in model.parameters())
