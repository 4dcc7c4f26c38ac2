"""Unit tests of gradflowkit.clipping against torch.nn.utils.clip_grad_norm_ and
clip_grad_value_, and against the definition (global norm, direction kept)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradflowkit.clipping import (EPS, clip_by_global_norm, clip_by_value, clip_grad_norm_,
                                  clip_per_tensor, global_norm)

NORM_TYPES = [1.0, 2.0, 3.0, math.inf]
SHAPES = [(3, 4), (4,), (2, 2, 5), (1,)]


def _param_pair(seed, dtype, scale=1.0):
    """Two identical lists of parameters with identical random .grad."""
    gen = torch.Generator().manual_seed(seed)
    ours, theirs = [], []
    for shape in SHAPES:
        value = torch.randn(shape, generator=gen, dtype=dtype)
        grad = scale * torch.randn(shape, generator=gen, dtype=dtype)
        for group in (ours, theirs):
            p = nn.Parameter(value.clone())
            p.grad = grad.clone()
            group.append(p)
    return ours, theirs


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("norm_type", NORM_TYPES)
@pytest.mark.parametrize("ratio", [0.1, 0.9, 1.5, 10.0])  # max_norm / total norm
@pytest.mark.parametrize("seed", [0, 1])
def test_clip_grad_norm_matches_torch(dtype, tol, norm_type, ratio, seed):
    ours, theirs = _param_pair(seed, dtype, scale=3.0)
    total = torch.linalg.vector_norm(_flat([p.grad for p in ours]), norm_type).item()
    max_norm = ratio * total
    got = clip_grad_norm_(iter(ours), max_norm, norm_type=norm_type)  # any iterable
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    torch.testing.assert_close(got, expected, rtol=tol, atol=0)
    assert got.item() == pytest.approx(total, rel=tol)  # the norm before clipping
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p.grad, q.grad, rtol=tol, atol=tol)
        assert p.grad.dtype == dtype
    if ratio >= 1:  # nothing to clip: the gradients are unchanged
        for p, q in zip(ours, _param_pair(seed, dtype, scale=3.0)[0]):
            torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0)


def test_clip_grad_norm_skips_parameters_without_grad(float64):
    ours, theirs = _param_pair(2, torch.float64, scale=5.0)
    ours[1].grad = theirs[1].grad = None
    got = clip_grad_norm_(ours, 1.0)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    torch.testing.assert_close(got, expected)
    assert ours[1].grad is None
    for p, q in zip(ours, theirs):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad)


def test_clip_grad_norm_accepts_one_tensor_like_torch(float64):
    ours, theirs = _param_pair(3, torch.float64, scale=5.0)
    got = clip_grad_norm_(ours[0], 0.5)
    expected = torch.nn.utils.clip_grad_norm_(theirs[0], 0.5)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(ours[0].grad, theirs[0].grad)


def test_clip_grad_norm_on_a_model_after_backward(float64, seeded):
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    twin = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    twin.load_state_dict(model.state_dict())
    x = 10 * torch.randn(16, 5)
    for m in (model, twin):
        m(x).pow(2).sum().backward()
    got = clip_grad_norm_(model.parameters(), 0.25)
    expected = torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.25)
    torch.testing.assert_close(got, expected)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    assert global_norm([p.grad for p in model.parameters()]).item() <= 0.25


@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_global_norm_is_the_norm_of_the_concatenation(norm_type, float64, seeded):
    grads = [torch.randn(s) for s in SHAPES]
    expected = torch.linalg.vector_norm(_flat(grads), norm_type)
    torch.testing.assert_close(global_norm(grads, norm_type), expected, rtol=1e-12, atol=0)


def test_global_norm_closed_form_and_single_tensor():
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0], [-4.0]])]
    assert global_norm(grads).item() == pytest.approx(5.0)
    assert global_norm(grads, 1.0).item() == pytest.approx(7.0)
    assert global_norm(grads, math.inf).item() == pytest.approx(4.0)
    assert global_norm(torch.tensor([6.0, 8.0])).item() == pytest.approx(10.0)


@pytest.mark.parametrize("max_norm", [0.01, 1.0, 4.0])
def test_clip_by_global_norm_keeps_the_direction(max_norm, float64, seeded):
    grads = [5 * torch.randn(s) for s in SHAPES]
    originals = [g.clone() for g in grads]
    clipped, total = clip_by_global_norm(grads, max_norm)
    assert all(torch.equal(g, o) for g, o in zip(grads, originals))  # inputs not modified
    assert all(c is not g for c, g in zip(clipped, grads))
    flat_c, flat_g = _flat(clipped), _flat(grads)
    assert total.item() == pytest.approx(flat_g.norm().item(), rel=1e-12)
    assert total.item() > max_norm  # every case here is clipped
    assert flat_c.norm().item() <= max_norm
    assert flat_c.norm().item() == pytest.approx(max_norm * total.item() / (total.item() + EPS),
                                                 rel=1e-12)
    cosine = torch.dot(flat_c, flat_g) / (flat_c.norm() * flat_g.norm())
    assert cosine.item() == pytest.approx(1.0, abs=1e-12)


def test_clip_by_global_norm_closed_form():
    clipped, total = clip_by_global_norm([torch.tensor([3.0]), torch.tensor([4.0])], 1.0)
    assert total.item() == pytest.approx(5.0)
    assert [c.item() for c in clipped] == pytest.approx([0.6, 0.8], rel=1e-5)


def test_zero_gradient_stays_zero():
    clipped, total = clip_by_global_norm([torch.zeros(3)], 1.0)
    assert total.item() == 0.0 and torch.equal(clipped[0], torch.zeros(3))


def test_clip_per_tensor_matches_torch_on_each_tensor(float64, seeded):
    grads = [torch.randn(s) * k for s, k in zip(SHAPES, [0.1, 10.0, 3.0, 0.5])]
    max_norm = 1.0
    clipped = clip_per_tensor(grads, max_norm)
    for g, c in zip(grads, clipped):
        p = nn.Parameter(torch.zeros_like(g))
        p.grad = g.clone()
        torch.nn.utils.clip_grad_norm_([p], max_norm)
        torch.testing.assert_close(c, p.grad)
        assert c.norm().item() == pytest.approx(min(g.norm().item(), max_norm), rel=1e-5)
    # The overall direction turns, since the tensors are scaled differently.
    cosine = torch.dot(_flat(clipped), _flat(grads)) / (_flat(clipped).norm() *
                                                        _flat(grads).norm())
    assert cosine.item() < 0.99


@pytest.mark.parametrize("clip_value", [0.05, 0.5, 100.0])
def test_clip_by_value_matches_torch(clip_value, float64, seeded):
    grads = [torch.randn(s) for s in SHAPES]
    params = []
    for g in grads:
        p = nn.Parameter(torch.zeros_like(g))
        p.grad = g.clone()
        params.append(p)
    torch.nn.utils.clip_grad_value_(params, clip_value)
    clipped = clip_by_value(grads, clip_value)
    for c, p, g in zip(clipped, params, grads):
        assert torch.equal(c, p.grad)
        assert c.abs().max().item() <= clip_value
    assert not torch.equal(_flat(clipped), _flat(grads)) or clip_value == 100.0


def test_clip_by_value_closed_form_and_nan():
    out = clip_by_value(torch.tensor([-3.0, -0.5, 0.0, 0.5, 3.0, math.nan]), 1.0)
    assert len(out) == 1
    torch.testing.assert_close(out[0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, math.nan]),
                               equal_nan=True)


# --- non-finite gradients ----------------------------------------------------------------

@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_nonfinite_gradient_raises_and_leaves_grads_alone(bad):
    ours, _ = _param_pair(4, torch.float32)
    ours[2].grad[0, 0, 0] = bad
    before = [p.grad.clone() for p in ours]
    with pytest.raises(FloatingPointError, match=r"^the total gradient norm \(order 2.0\) "
                                                 r"is not finite"):
        clip_grad_norm_(ours, 1.0)
    for p, b in zip(ours, before):
        torch.testing.assert_close(p.grad, b, equal_nan=True, rtol=0, atol=0)
    with pytest.raises(FloatingPointError, match=r"is not finite"):
        clip_by_global_norm([p.grad for p in ours], 1.0)
    with pytest.raises(FloatingPointError, match=r"is not finite"):
        clip_per_tensor([p.grad for p in ours], 1.0)


def test_overflowing_norm_of_finite_float32_gradients_raises_like_torch():
    p = nn.Parameter(torch.zeros(4))
    p.grad = torch.full((4,), 1e30)  # finite, but the 2-norm overflows float32
    with pytest.raises(FloatingPointError):
        clip_grad_norm_([p], 1.0)
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_nonfinite_allowed_matches_torch(bad):
    ours, theirs = _param_pair(5, torch.float32)
    ours[0].grad[0, 0] = theirs[0].grad[0, 0] = bad
    got = clip_grad_norm_(ours, 1.0, error_if_nonfinite=False)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0, error_if_nonfinite=False)
    torch.testing.assert_close(got, expected, equal_nan=True)
    assert not math.isfinite(got.item())
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p.grad, q.grad, equal_nan=True)


# --- argument errors ---------------------------------------------------------------------

def test_empty_and_non_tensor_grads():
    for fn in (lambda g: global_norm(g), lambda g: clip_by_global_norm(g, 1.0),
               lambda g: clip_per_tensor(g, 1.0), lambda g: clip_by_value(g, 1.0)):
        with pytest.raises(ValueError, match=r"^grads is empty"):
            fn([])
        with pytest.raises(TypeError, match=r"^grads\[1\] must be a torch.Tensor, got list"):
            fn([torch.zeros(2), [1.0, 2.0]])


def test_clip_grad_norm_without_any_grad():
    with pytest.raises(ValueError, match=r"^no parameter has a .grad"):
        clip_grad_norm_(nn.Linear(2, 2).parameters(), 1.0)
    with pytest.raises(ValueError, match=r"^no parameter has a .grad"):
        clip_grad_norm_([], 1.0)


@pytest.mark.parametrize("max_norm, exc, msg", [
    (0.0, ValueError, r"^max_norm must be > 0"),
    (-1.0, ValueError, r"^max_norm must be > 0"),
    (math.inf, ValueError, r"^max_norm must be finite"),
    ("1", TypeError, r"^max_norm must be a real number"),
])
def test_bad_max_norm(max_norm, exc, msg):
    ours, _ = _param_pair(6, torch.float32)
    with pytest.raises(exc, match=msg):
        clip_grad_norm_(ours, max_norm)
    with pytest.raises(exc, match=msg):
        clip_by_global_norm([p.grad for p in ours], max_norm)
    with pytest.raises(exc, match=msg):
        clip_per_tensor([p.grad for p in ours], max_norm)


@pytest.mark.parametrize("norm_type, exc, msg", [
    (0.0, ValueError, r"^norm_type must be > 0"),
    (-2.0, ValueError, r"^norm_type must be > 0"),
    (-math.inf, ValueError, r"^norm_type must be finite"),
    ("fro", TypeError, r"^norm_type must be a real number"),
])
def test_bad_norm_type(norm_type, exc, msg):
    with pytest.raises(exc, match=msg):
        global_norm([torch.ones(2)], norm_type)
    with pytest.raises(exc, match=msg):
        clip_by_global_norm([torch.ones(2)], 1.0, norm_type=norm_type)


@pytest.mark.parametrize("clip_value, exc", [(0.0, ValueError), (-0.5, ValueError),
                                             (None, TypeError)])
def test_bad_clip_value(clip_value, exc):
    with pytest.raises(exc, match=r"^clip_value must be"):
        clip_by_value([torch.ones(2)], clip_value)
