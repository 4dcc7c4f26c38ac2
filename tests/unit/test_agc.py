"""Adaptive gradient clipping (lesson 20) against a plain per-unit loop and hand-set grads."""

import math

import numpy as np
import pytest
import torch

from gradflowkit.agc import adaptive_clip_grad_, unitwise_norm
from gradflowkit.data import load_digits
from gradflowkit.ensemble import EnsembleMLP
from gradflowkit.tasks import ClassificationTask
from gradflowkit.trainer import train


def loop_clip(w: torch.Tensor, g: torch.Tensor, lam: float, eps: float) -> torch.Tensor:
    """Eq. 3 of Brock et al. 2021, one unit (row, or the whole vector) at a time, float64."""
    w, g = w.double(), g.double()
    rows = [(w, g)] if w.ndim <= 1 else [(w[i], g[i]) for i in range(w.shape[0])]
    out = []
    for wi, gi in rows:
        wn = max(math.sqrt(float((wi ** 2).sum())), eps)
        gn = math.sqrt(float((gi ** 2).sum()))
        out.append(gi * (lam * wn / gn) if gn / wn > lam else gi.clone())
    return out[0] if w.ndim <= 1 else torch.stack(out)


def with_grad(w: torch.Tensor, g: torch.Tensor) -> torch.nn.Parameter:
    p = torch.nn.Parameter(w.clone())
    p.grad = g.clone()
    return p


def test_hand_set_rows():
    w = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])       # row norms 5, 0 (→ ε), 1
    g = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 0.05]])      # row norms 1, 1, 0.05
    p = with_grad(w, g)
    count = adaptive_clip_grad_([p], clipping=0.1, eps=1e-3)
    # row 0: 1/5 > 0.1 → norm 0.5; row 1: 1/1e-3 > 0.1 → norm 1e-4; row 2: 0.05 ≤ 0.1: kept
    assert torch.allclose(p.grad.norm(dim=1), torch.tensor([0.5, 1e-4, 0.05]))
    assert torch.allclose(p.grad[0] / p.grad[0].norm(), g[0])    # the direction is kept
    assert count.item() == 2


def test_vector_is_one_unit():
    b = with_grad(torch.tensor([0.0, 0.0]), torch.tensor([3.0, 4.0]))
    adaptive_clip_grad_([b], clipping=0.5, eps=1e-3)
    assert torch.allclose(b.grad, torch.tensor([3.0, 4.0]) * (0.5e-3 / 5))


@pytest.mark.parametrize("shape", [(5, 7), (4, 3, 2, 2), (6,), ()])
@pytest.mark.parametrize("lam", [0.01, 0.3])
def test_matches_loop(shape, lam):
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(shape, generator=gen, dtype=torch.float64)
    g = torch.randn(shape, generator=gen, dtype=torch.float64) * 0.5
    p = with_grad(w, g)
    adaptive_clip_grad_([p], clipping=lam)
    assert torch.allclose(p.grad, loop_clip(w, g, lam, 1e-3).reshape(shape), atol=1e-12)


def test_unitwise_norm_shapes():
    x = torch.randn(3, 4, 5)
    assert unitwise_norm(x).shape == (3, 1, 1)
    assert unitwise_norm(x, members=3).shape == (3, 4, 1)
    assert unitwise_norm(torch.randn(3, 4), members=3).shape == (3, 1)
    assert torch.allclose(unitwise_norm(torch.randn(3, 4).abs() * 0 + 2, members=3),
                          torch.full((3, 1), 4.0))


def test_members_match_plain_nets():
    """Each member of a stacked ensemble is clipped as its own DeepMLP would be."""
    ens = EnsembleMLP.build([0, 1, 2], depth=3, width=6, in_features=4, out_features=3,
                            dtype=torch.float64)
    x = torch.randn(3, 8, 4, dtype=torch.float64)
    ens(x).square().sum().backward()
    nets = [ens.member(i) for i in range(3)]
    for i, net in enumerate(nets):
        net(x[i]).square().sum().backward()
        adaptive_clip_grad_(net.parameters(), clipping=0.05)
    counts = adaptive_clip_grad_(ens.parameters(), clipping=0.05, members=3)
    for i, net in enumerate(nets):
        member = dict(net.named_parameters())
        for name, p in ens.named_parameters():
            assert torch.allclose(p.grad[i], member[name].grad, atol=1e-10), name
    assert counts.shape == (3,) and int(counts.min()) > 0


def test_count_per_member():
    p = with_grad(torch.ones(2, 3, 2), torch.zeros(2, 3, 2))
    p.grad[0, 1] = 10.0                                   # one unit of member 0 only
    counts = adaptive_clip_grad_([p], clipping=0.1, members=2)
    assert counts.tolist() == [1, 0]
    assert math.isclose(p.grad[0, 1].norm().item(), 0.1 * math.sqrt(2), rel_tol=1e-6)


def test_nonfinite():
    p = with_grad(torch.ones(2, 2), torch.tensor([[float("inf"), 0.0], [0.1, 0.0]]))
    with pytest.raises(FloatingPointError, match="non-finite"):
        adaptive_clip_grad_([p], clipping=0.1)
    adaptive_clip_grad_([p], clipping=0.01, error_if_nonfinite=False)
    assert math.isinf(p.grad[0, 0].item())                # left as it was
    assert math.isclose(p.grad[1].norm().item(), 0.01 * math.sqrt(2), rel_tol=1e-6)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(clipping=0.0), ValueError, "clipping must be > 0"),
    (dict(clipping=-1.0), ValueError, "clipping must be > 0"),
    (dict(clipping=float("nan")), ValueError, "finite"),
    (dict(eps=0.0), ValueError, "eps must be > 0"),
    (dict(members=3), ValueError, "member axis"),
])
def test_arguments(kwargs, error, match):
    p = with_grad(torch.ones(2, 2), torch.ones(2, 2))
    with pytest.raises(error, match=match):
        adaptive_clip_grad_([p], **kwargs)


def test_needs_grads():
    with pytest.raises(ValueError, match="no parameter has a .grad"):
        adaptive_clip_grad_([torch.nn.Parameter(torch.ones(2))])
    with pytest.raises(TypeError, match="floating-point"):
        unitwise_norm(torch.ones(2, dtype=torch.int64))


def digits_task():
    return ClassificationTask(load_digits(seed=0), batch_size=16)


def test_trainer_agc_off_is_unchanged():
    runs = []
    for agc in (None, "absent"):
        ens = EnsembleMLP.build([0, 1], 2, 8, in_features=64, out_features=10)
        kw = {} if agc == "absent" else {"agc": agc}
        runs.append(train(ens, digits_task(), steps=5, lr=0.1, seeds=[3, 4], **kw).loss)
    assert np.array_equal(runs[0], runs[1])


def test_trainer_agc_matches_manual_loop():
    """trainer(agc=λ) equals SGD on one member with adaptive_clip_grad_ before each step."""
    task = digits_task()
    ens = EnsembleMLP.build([0, 1], 2, 8, in_features=64, out_features=10,
                            dtype=torch.float64)
    net = ens.member(1)
    rec = train(ens, task, steps=4, lr=0.5, seeds=[3, 4], agc=0.01)
    task.start([4], 4)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for step in range(4):
        x, y = task.batch(step)
        loss = torch.nn.functional.cross_entropy(net(x[0].double()), y[0])
        opt.zero_grad()
        loss.backward()
        adaptive_clip_grad_(net.parameters(), clipping=0.01)
        opt.step()
        assert math.isclose(loss.item(), rec.loss[1, step], rel_tol=1e-9)
    for name, p in ens.named_parameters():
        assert torch.allclose(p[1], dict(net.named_parameters())[name], atol=1e-10)


def test_trainer_agc_validated():
    ens = EnsembleMLP.build([0], 2, 8, in_features=64, out_features=10)
    with pytest.raises(ValueError, match="agc must be > 0"):
        train(ens, digits_task(), steps=1, lr=0.1, agc=0.0)
