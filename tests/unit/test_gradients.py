"""Unit tests of gradflowkit.gradients against torch autograd on hand-run forward passes
(float64), explicit Jacobian products, and hand-set .grad values of known norm."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradflowkit.gradients import (LayerProfile, input_gradients, layer_profile,
                                   parameter_grad_norms)
from gradflowkit.nets import DeepMLP


def _batch(n=8, d=5, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen), torch.randint(0, classes, (n,), generator=gen)


def _reference_grads(net, x, loss_fn):
    """Oracle: run the blocks by hand and ask autograd for ∂L/∂x_l and ∂L/∂W_l."""
    x = x.clone().requires_grad_(True)
    h = net.stem(x) if net.stem is not None else x
    states = [h]
    for block in net.blocks:
        h = block(h)
        states.append(h)
    out = net.head(h) if net.head is not None else h
    loss = loss_fn(out)
    weights = [b.linear.weight for b in net.blocks]
    grads = torch.autograd.grad(loss, states + weights)
    n = len(states)
    return ([g.norm().item() for g in grads[:n]], [g.norm().item() for g in grads[n:]],
            loss.item(), grads[:n])


NET_KWARGS = [
    dict(activation="tanh", init="xavier"),
    dict(activation="relu", init="he", in_features=5, out_features=3),
    dict(activation="sigmoid", init="normal", weight_scale=2.0, out_features=3),
    dict(activation="gelu", residual=True, branch_layers=2, norm="layer", out_features=3),
    dict(activation="relu", residual=True, branch_scale=0.5, norm="batch", out_features=3),
]


@pytest.mark.parametrize("kwargs", NET_KWARGS)
def test_layer_profile_matches_autograd_on_hand_run_states(kwargs, float64, seeded):
    width = 5
    net = DeepMLP(6, width, **kwargs)
    x, y = _batch(d=kwargs.get("in_features", width))
    if "out_features" in kwargs:
        loss_fn = lambda out: F.cross_entropy(out, y)  # noqa: E731
    else:
        loss_fn = lambda out: out.pow(2).mean()  # noqa: E731
    signal, weight, loss, _ = _reference_grads(net, x, loss_fn)
    prof = layer_profile(net, x, loss_fn)
    assert isinstance(prof, LayerProfile)
    assert isinstance(prof.signal, np.ndarray) and prof.signal.shape == (6 + 1,)
    assert isinstance(prof.weight, np.ndarray) and prof.weight.shape == (6,)
    np.testing.assert_allclose(prof.signal, signal, rtol=1e-10)
    np.testing.assert_allclose(prof.weight, weight, rtol=1e-10)
    assert prof.loss == pytest.approx(loss, rel=1e-12)
    assert np.all(prof.signal > 0) and np.all(prof.weight > 0)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_layer_profile_matches_the_explicit_jacobian_product(activation, float64, seeded):
    """One input: ∂L/∂x_l = ∂L/∂x_L · J_{L-1} ⋯ J_l, with each J from
    torch.autograd.functional.jacobian of the block, multiplied by hand."""
    depth, width = 5, 4
    net = DeepMLP(depth, width, activation=activation, init="xavier", weight_scale=1.5)
    x = torch.randn(1, width)
    target = torch.randn(1, width)
    loss_fn = lambda out: 0.5 * (out - target).pow(2).sum()  # noqa: E731
    xs = [x[0]]
    with torch.no_grad():
        for block in net.blocks:
            xs.append(block(xs[-1][None])[0])
    jac = [torch.autograd.functional.jacobian(lambda v, b=b: b(v[None])[0], xi)
           for b, xi in zip(net.blocks, xs)]
    g = xs[-1] - target[0]              # ∂L/∂x_L for the squared error
    expected = [g.norm().item()]
    for J in reversed(jac):
        g = g @ J
        expected.append(g.norm().item())
    expected.reverse()
    prof = layer_profile(net, x, loss_fn)
    np.testing.assert_allclose(prof.signal, expected, rtol=1e-10)


def test_layer_profile_linear_net_closed_form(float64):
    """Identity activation, W_l = a I, loss = sum(out): ∂L/∂x_l = a^(L-l) · 1, so the
    signal norm is a^(L-l) sqrt(batch · width); ∂L/∂W_l = a^(L-1-l) 1 x_lᵀ summed."""
    depth, width, a = 4, 3, 0.5
    net = DeepMLP(depth, width, activation="identity")
    with torch.no_grad():
        for b in net.blocks:
            b.linear.weight.copy_(a * torch.eye(width))
            b.linear.bias.zero_()
    x = torch.tensor([[1.0, 2.0, 2.0], [0.0, 3.0, 4.0]])
    prof = layer_profile(net, x, lambda out: out.sum())
    expected = [a ** (depth - l) * math.sqrt(2 * width) for l in range(depth + 1)]
    np.testing.assert_allclose(prof.signal, expected, rtol=1e-12)
    # ∂L/∂W_l = Σ_batch δ x_lᵀ with δ = a^(L-1-l) 1 and x_l = a^l x: rows all equal to
    # a^(L-1) Σ_batch x, whose norm is |(1, 5, 6)| = sqrt(62); times sqrt(width) rows.
    expected_w = [a ** (depth - 1) * math.sqrt(62) * math.sqrt(width)] * depth
    np.testing.assert_allclose(prof.weight, expected_w, rtol=1e-12)
    assert prof.loss == pytest.approx(a**depth * 12)  # sum of x = 12


def test_layer_profile_weight_equals_the_grad_left_on_the_model(float64, seeded):
    net = DeepMLP(4, 5, out_features=3)
    x, y = _batch()
    prof = layer_profile(net, x, lambda out: F.cross_entropy(out, y))
    norms = parameter_grad_norms(net)
    np.testing.assert_allclose(prof.weight, [norms[f"blocks.{i}.linear.weight"]
                                             for i in range(4)], rtol=1e-12)
    assert {"head.weight", "head.bias", "blocks.0.linear.bias"} <= set(norms)


def test_layer_profile_overwrites_rather_than_accumulates(float64, seeded):
    net = DeepMLP(3, 5, out_features=3)
    x, y = _batch()
    loss_fn = lambda out: F.cross_entropy(out, y)  # noqa: E731
    with torch.no_grad():
        for p in net.parameters():
            p.grad = torch.full_like(p, 100.0)
    first = layer_profile(net, x, loss_fn)
    second = layer_profile(net, x, loss_fn)
    np.testing.assert_array_equal(first.signal, second.signal)
    np.testing.assert_array_equal(first.weight, second.weight)
    assert net.blocks[0].linear.weight.grad.norm().item() == pytest.approx(first.weight[0])


def test_layer_profile_does_not_change_the_inputs(float64, seeded):
    net = DeepMLP(2, 5)
    x = torch.randn(4, 5)
    layer_profile(net, x, lambda out: out.sum())
    assert not x.requires_grad and x.grad is None


# --- input_gradients ---------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", NET_KWARGS)
def test_input_gradients_agrees_with_layer_profile_and_autograd(kwargs, float64, seeded):
    net = DeepMLP(5, 5, **kwargs)
    x, y = _batch(d=kwargs.get("in_features", 5))
    has_head = "out_features" in kwargs
    loss_fn = ((lambda out: F.cross_entropy(out, y)) if has_head
               else (lambda out: out.pow(2).mean()))
    grads = input_gradients(net, x, loss_fn)
    expected_keys = [f"blocks.{i}" for i in range(5)] + (["head"] if has_head else [])
    assert list(grads) == expected_keys
    *_, ref = _reference_grads(net, x, loss_fn)
    for key, r in zip(expected_keys, ref):
        torch.testing.assert_close(grads[key], r, rtol=1e-10, atol=1e-14)
        assert not grads[key].requires_grad
    prof = layer_profile(net, x, loss_fn)
    norms = [grads[k].norm().item() for k in expected_keys]
    n = len(norms)
    np.testing.assert_allclose(norms, prof.signal[:n], rtol=1e-10)


def test_input_gradients_leaves_grad_untouched(float64, seeded):
    net = DeepMLP(3, 4, out_features=2)
    x, y = _batch(d=4, classes=2)
    sentinel = torch.full_like(net.blocks[0].linear.weight, 7.0)
    net.blocks[0].linear.weight.grad = sentinel.clone()
    input_gradients(net, x, lambda out: F.cross_entropy(out, y))
    assert torch.equal(net.blocks[0].linear.weight.grad, sentinel)
    others = [p.grad for n, p in net.named_parameters() if n != "blocks.0.linear.weight"]
    assert all(g is None for g in others)
    assert not x.requires_grad


def test_input_gradients_custom_model_with_modules(float64, seeded):
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 6), nn.Sigmoid(),
                          nn.Linear(6, 2))
    x = torch.randn(5, 4)
    target = torch.randn(5, 2)
    loss_fn = lambda out: F.mse_loss(out, target)  # noqa: E731
    grads = input_gradients(model, x, loss_fn, {"first": model[0], "mid": model[2],
                                                "last": model[4]})
    assert list(grads) == ["first", "mid", "last"]
    # Oracle: the same computation by hand.
    x0 = x.clone().requires_grad_(True)
    x1 = torch.tanh(model[0](x0)).requires_grad_(True)
    h = model[2](x1)
    x2 = torch.sigmoid(h)
    loss = loss_fn(model[4](x2))
    g0, g1, g2 = torch.autograd.grad(loss, [x0, x1, x2])
    torch.testing.assert_close(grads["first"], g0)
    torch.testing.assert_close(grads["mid"], g1)
    torch.testing.assert_close(grads["last"], g2)
    assert all(p.grad is None for p in model.parameters())


def test_input_gradients_unused_or_detached_inputs_give_zeros(float64):
    """A module whose input does not reach the loss, or is outside the autograd graph,
    gets a zero gradient of its input's shape, not None and not an autograd error."""
    class Branches(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            self.b(x * 2.0)           # in the graph, but its output is thrown away
            self.c(x.detach() + 1.0)  # outside the graph
            return self.a(x)

    model = Branches()
    x = torch.ones(2, 3)
    grads = input_gradients(model, x, lambda out: out.sum(),
                            {"a": model.a, "b": model.b, "c": model.c})
    assert torch.equal(grads["b"], torch.zeros(2, 3))
    assert torch.equal(grads["c"], torch.zeros(2, 3))
    # ∂(Σ W x + b)/∂x = column sums of W, for every row of the batch.
    torch.testing.assert_close(grads["a"], model.a.weight.sum(0).expand(2, 3).detach())


def test_input_gradients_needs_modules_for_other_models():
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"^modules is required for a Sequential"):
        input_gradients(model, torch.zeros(1, 2), lambda out: out.sum())


def test_input_gradients_argument_errors():
    net = DeepMLP(2, 3)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"^modules is empty"):
        input_gradients(net, x, lambda out: out.sum(), {})
    with pytest.raises(ValueError, match=r"modules \['other'\] were not called"):
        input_gradients(net, x, lambda out: out.sum(), {"b": net.blocks[0],
                                                        "other": nn.Linear(3, 3)})
    with pytest.raises(ValueError, match=r"^loss_fn must return a scalar, got shape \(2, 3\)"):
        input_gradients(net, x, lambda out: out)
    with pytest.raises(TypeError, match=r"^inputs must be a floating-point tensor"):
        input_gradients(net, torch.zeros(2, 3, dtype=torch.int64), lambda out: out.sum())
    with pytest.raises(TypeError, match=r"^inputs must be a torch.Tensor"):
        input_gradients(net, [[0.0] * 3], lambda out: out.sum())


def test_layer_profile_argument_errors():
    with pytest.raises(TypeError, match=r"^model must be a DeepMLP, got Sequential"):
        layer_profile(nn.Sequential(nn.Linear(2, 2)), torch.zeros(1, 2), lambda o: o.sum())
    with pytest.raises(TypeError, match=r"^inputs must be a torch.Tensor"):
        layer_profile(DeepMLP(1, 2), np.zeros((1, 2)), lambda o: o.sum())


# --- non-finite values -------------------------------------------------------------------

def _inf_weight_net():
    # Identity activation, so no ReLU mask can zero the path through the inf weights (with
    # ReLU the gradient at blocks.0 was 0 for some random draws and the test flaked).
    torch.manual_seed(0)
    net = DeepMLP(3, 4, out_features=2, activation="identity")
    with torch.no_grad():
        net.blocks[1].linear.weight.fill_(math.inf)
    return net


def _overflowing_backward_net():
    """float32, identity activation, W = 1e20 I: forward stays finite (inputs 1e-30 reach
    1e30) but the backward signal 1e20^3 overflows to inf."""
    net = DeepMLP(3, 4, activation="identity")
    with torch.no_grad():
        for b in net.blocks:
            b.linear.weight.copy_(1e20 * torch.eye(4))
    return net, torch.full((2, 4), 1e-30)


def test_nonfinite_loss_raises(float32):
    net = _inf_weight_net()
    x = torch.ones(2, 4)
    with pytest.raises(FloatingPointError, match=r"^loss is not finite"):
        layer_profile(net, x, lambda out: out.sum())
    with pytest.raises(FloatingPointError, match=r"^loss is not finite"):
        input_gradients(net, x, lambda out: out.sum())


def test_nonfinite_loss_reported_when_allowed(float32):
    net = _inf_weight_net()
    x = torch.ones(2, 4)
    prof = layer_profile(net, x, lambda out: out.sum(), error_if_nonfinite=False)
    assert math.isnan(prof.loss)
    assert not np.isfinite(prof.signal).all()
    grads = input_gradients(net, x, lambda out: out.sum(), error_if_nonfinite=False)
    assert not torch.isfinite(grads["blocks.0"]).all()


def test_overflowing_backward_signal_raises(float32):
    net, x = _overflowing_backward_net()
    loss_fn = lambda out: out.mean()  # noqa: E731
    assert torch.isfinite(loss_fn(net(x)))  # the loss itself is finite
    with pytest.raises(FloatingPointError, match=r"non-finite backward signal"):
        layer_profile(net, x, loss_fn)
    with pytest.raises(FloatingPointError,
                       match=r"^gradient at the input of 'blocks.0' is not finite"):
        input_gradients(net, x, loss_fn)


def test_overflowing_backward_signal_reported_as_inf_when_allowed(float32):
    net, x = _overflowing_backward_net()
    prof = layer_profile(net, x, lambda out: out.mean(), error_if_nonfinite=False)
    # x_1's gradient is 1e40/n -> inf; x_0's is Wᵀ(inf …) with zeros off the diagonal -> nan
    assert np.isinf(prof.signal[1]) and not np.isfinite(prof.signal[0])
    assert np.isfinite(prof.signal[2:]).all()
    assert np.isfinite(prof.loss)
    grads = input_gradients(net, x, lambda out: out.mean(), error_if_nonfinite=False)
    assert torch.isinf(grads["blocks.1"]).all()
    assert not torch.isfinite(grads["blocks.0"]).any()
    assert torch.isfinite(grads["blocks.2"]).all()


# --- parameter_grad_norms ----------------------------------------------------------------

def test_parameter_grad_norms_hand_set_grads():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    model[0].weight.grad = torch.tensor([[3.0, 0.0], [0.0, 4.0]])     # norm 5
    model[0].bias.grad = torch.tensor([-1.0, 0.0])                    # norm 1
    model[1].weight.grad = torch.full((1, 2), 0.5)                    # norm sqrt(1/2)
    # model[1].bias.grad stays None: skipped
    norms = parameter_grad_norms(model)
    assert list(norms) == ["0.weight", "0.bias", "1.weight"]
    assert norms["0.weight"] == pytest.approx(5.0)
    assert norms["0.bias"] == pytest.approx(1.0)
    assert norms["1.weight"] == pytest.approx(math.sqrt(0.5))
    assert all(type(v) is float for v in norms.values())


def test_parameter_grad_norms_no_grads_is_empty():
    assert parameter_grad_norms(nn.Linear(3, 3)) == {}


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_parameter_grad_norms_nonfinite(bad):
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].weight.grad = torch.ones(2, 2)
    model[1].bias.grad = torch.tensor([1.0, bad])
    with pytest.raises(FloatingPointError, match=r"^gradient of '1.bias' is not finite"):
        parameter_grad_norms(model)
    norms = parameter_grad_norms(model, error_if_nonfinite=False)
    assert norms["0.weight"] == pytest.approx(2.0)
    assert math.isinf(norms["1.bias"]) if bad == math.inf else math.isnan(norms["1.bias"])


def test_norms_of_large_finite_float32_gradients_do_not_overflow(float32):
    """Entries of 1e20 are finite in float32 but their squares are not: the norms are
    taken in float64, so they are finite and exact."""
    model = nn.Linear(4, 2)
    model.weight.grad = torch.full((2, 4), 1e20)
    norms = parameter_grad_norms(model)
    assert norms["weight"] == pytest.approx(float(torch.tensor(1e20)) * math.sqrt(8), rel=1e-6)

    net, x = _overflowing_backward_net()
    prof = layer_profile(net, x, lambda out: out.mean(), error_if_nonfinite=False)
    # ∂L/∂x_2 = 1e20/8 in each of 8 entries (finite in float32), norm 1e20/sqrt(8).
    assert prof.signal[2] == pytest.approx(1e20 / math.sqrt(8), rel=1e-5)
