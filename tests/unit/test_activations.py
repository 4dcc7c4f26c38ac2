"""Unit tests of gradflowkit.activations against torch autograd in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradflowkit.activations import (ACTIVATIONS, ELU_ALPHA, LEAKY_SLOPE, activate, derivative,
                                     make_activation, second_derivative)

# A grid that contains the kink x = 0 exactly, both signs, and large |x|.
GRID = torch.cat([torch.linspace(-8.0, 8.0, 161, dtype=torch.float64),
                  torch.tensor([0.0, -0.0, 1e-12, -1e-12, -30.0, 30.0], dtype=torch.float64)])

# Independent reference functions (torch.nn.functional / closed forms), not the modules.
REFERENCE = {
    "identity": lambda x: x,
    "sigmoid": lambda x: 1 / (1 + torch.exp(-x)),
    "tanh": torch.tanh,
    "relu": F.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
    "elu": lambda x: F.elu(x, 1.0),
    "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),
}


def test_activation_names():
    assert set(ACTIVATIONS) == set(REFERENCE)
    assert len(set(ACTIVATIONS)) == len(ACTIVATIONS)
    assert LEAKY_SLOPE == 0.01 and ELU_ALPHA == 1.0


def _autograd_derivative(fn, x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x).sum(), x)
    return g


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_derivative_matches_autograd_float64(name, float64):
    """Closed form == autograd of the module, everywhere, including the kink at 0."""
    expected = _autograd_derivative(make_activation(name), GRID)
    got = derivative(name, GRID)
    assert got.dtype == torch.float64 and got.shape == GRID.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_second_derivative_matches_double_autograd_float64(name, float64):
    """Closed form == autograd of autograd of the module, away from the kinks at 0."""
    x = GRID[GRID.abs() > 1e-9].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(make_activation(name)(x).sum(), x, create_graph=True)
    expected = (torch.autograd.grad(g.sum(), x)[0] if g.requires_grad
                else torch.zeros_like(x))
    got = second_derivative(name, x.detach())
    assert got.dtype == torch.float64 and got.shape == x.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_derivative_matches_autograd_of_independent_formula(name, float64):
    expected = _autograd_derivative(REFERENCE[name], GRID)
    torch.testing.assert_close(derivative(name, GRID), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, at_zero", [
    ("identity", 1.0), ("sigmoid", 0.25), ("tanh", 1.0), ("relu", 0.0),
    ("leaky_relu", 0.01), ("elu", 1.0), ("gelu", 0.5),
])
def test_derivative_at_zero_closed_form(name, at_zero, float64):
    """At x = 0: autograd's convention for the kinks (ReLU 0, Leaky ReLU its slope)."""
    assert derivative(name, torch.zeros(1)).item() == pytest.approx(at_zero, abs=1e-15)


@pytest.mark.parametrize("name, x, expected", [
    ("relu", [-2.0, 3.0], [0.0, 1.0]),
    ("leaky_relu", [-2.0, 3.0], [0.01, 1.0]),
    ("elu", [-2.0, 3.0], [math.exp(-2.0), 1.0]),
    ("sigmoid", [math.log(3.0)], [0.75 * 0.25]),           # σ(ln 3) = 3/4
    ("tanh", [math.atanh(0.5)], [0.75]),                    # 1 - 0.5²
])
def test_derivative_closed_form_values(name, x, expected, float64):
    torch.testing.assert_close(derivative(name, torch.tensor(x)), torch.tensor(expected),
                               rtol=1e-12, atol=1e-15)


def test_sigmoid_derivative_is_at_most_one_quarter_at_zero(float64):
    d = derivative("sigmoid", GRID)
    assert d.max().item() == pytest.approx(0.25, abs=1e-15)
    assert abs(GRID[d.argmax()].item()) < 1e-12
    assert bool((d <= 0.25).all()) and bool((d > 0).all())


def test_tanh_derivative_is_at_most_one_at_zero(float64):
    d = derivative("tanh", GRID)
    assert d.max().item() == pytest.approx(1.0, abs=1e-15)
    assert abs(GRID[d.argmax()].item()) < 1e-12
    assert bool((d <= 1).all()) and bool((d >= 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_derivative_keeps_shape_and_dtype(name, dtype):
    x = torch.linspace(-3, 3, 12, dtype=dtype).reshape(3, 4)
    d = derivative(name, x)
    assert d.shape == (3, 4) and d.dtype == dtype


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activate_matches_reference(name, float64):
    torch.testing.assert_close(activate(name, GRID), REFERENCE[name](GRID),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, cls", [
    ("identity", nn.Identity), ("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh), ("relu", nn.ReLU),
    ("leaky_relu", nn.LeakyReLU), ("elu", nn.ELU), ("gelu", nn.GELU),
])
def test_make_activation_returns_fresh_module_of_the_right_class(name, cls):
    a, b = make_activation(name), make_activation(name)
    assert isinstance(a, cls) and isinstance(b, cls)
    assert a is not b
    assert list(a.parameters()) == []


def test_make_activation_uses_the_documented_parameters():
    assert make_activation("leaky_relu").negative_slope == LEAKY_SLOPE
    assert make_activation("elu").alpha == ELU_ALPHA
    assert make_activation("gelu").approximate == "none"


@pytest.mark.parametrize("call", [
    lambda: make_activation("swish"),
    lambda: activate("Relu", torch.zeros(2)),
    lambda: derivative("softplus", torch.zeros(2)),
])
def test_unknown_name_lists_every_choice(call):
    with pytest.raises(ValueError, match=r"activation must be one of") as err:
        call()
    for name in ACTIVATIONS:
        assert repr(name) in str(err.value)


@pytest.mark.parametrize("fn", [activate, derivative])
def test_non_float_input_is_rejected(fn):
    with pytest.raises(TypeError, match=r"^x must be a floating-point tensor"):
        fn("relu", torch.arange(3))
    with pytest.raises(TypeError, match=r"^x must be a torch.Tensor"):
        fn("relu", [0.0, 1.0])
