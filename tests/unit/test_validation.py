"""Unit tests of gradflowkit.validation: each check accepts good values, rejects bad ones
with the right exception type, and names the argument in its message."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradflowkit.validation import (check_choice, check_finite, check_float, check_int,
                                    check_tensor)


# --- check_int ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, 5, -3, np.int64(7), torch.tensor(3).item()])
def test_check_int_returns_plain_int(value):
    out = check_int("n", value)
    assert out == int(value)
    assert type(out) is int


@pytest.mark.parametrize("value", [1.0, 2.5, "3", None, True, False, [1]])
def test_check_int_rejects_non_integers_naming_the_argument(value):
    with pytest.raises(TypeError, match=r"^depth must be an int"):
        check_int("depth", value)


@pytest.mark.parametrize("value, minimum", [(0, 1), (-1, 0), (4, 5)])
def test_check_int_below_minimum(value, minimum):
    with pytest.raises(ValueError, match=rf"^width must be >= {minimum}, got {value}"):
        check_int("width", value, minimum=minimum)


def test_check_int_at_minimum_is_allowed():
    assert check_int("width", 1, minimum=1) == 1


# --- check_float -------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, 1, -2.5, 1e-300, np.float32(0.5), np.int64(3)])
def test_check_float_returns_float(value):
    out = check_float("lr", value)
    assert out == float(value)
    assert type(out) is float


@pytest.mark.parametrize("value", ["1.0", None, True, torch.tensor([1.0]), 1 + 2j])
def test_check_float_rejects_non_reals(value):
    with pytest.raises(TypeError, match=r"^lr must be a real number"):
        check_float("lr", value)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_check_float_rejects_non_finite(value):
    with pytest.raises(ValueError, match=r"^lr must be finite"):
        check_float("lr", value)


@pytest.mark.parametrize("value", [0, 0.0, -1e-12, -3])
def test_check_float_positive(value):
    with pytest.raises(ValueError, match=r"^max_norm must be > 0"):
        check_float("max_norm", value, positive=True)


def test_check_float_nonnegative_allows_zero_rejects_negative():
    assert check_float("scale", 0, nonnegative=True) == 0.0
    with pytest.raises(ValueError, match=r"^scale must be >= 0"):
        check_float("scale", -0.1, nonnegative=True)


# --- check_choice ------------------------------------------------------------------------

def test_check_choice_returns_value():
    assert check_choice("norm", "layer", ("batch", "layer")) == "layer"


@pytest.mark.parametrize("value", ["Layer", "", None, 3])
def test_check_choice_lists_every_choice(value):
    with pytest.raises(ValueError, match=r"^norm must be one of 'batch', 'layer'; got") as err:
        check_choice("norm", value, iter(["batch", "layer"]))  # any iterable, even one-shot
    assert repr(value) in str(err.value)


# --- check_tensor ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_check_tensor_returns_the_same_object(dtype):
    t = torch.zeros(2, 3, dtype=dtype)
    assert check_tensor("x", t, ndim=2) is t


@pytest.mark.parametrize("value", [[1.0, 2.0], np.zeros(3), 1.0])
def test_check_tensor_rejects_non_tensors(value):
    with pytest.raises(TypeError, match=r"^x must be a torch.Tensor"):
        check_tensor("x", value)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.uint8])
def test_check_tensor_rejects_integer_tensors_and_suggests_a_fix(dtype):
    with pytest.raises(TypeError, match=r"^x must be a floating-point tensor.*x\.float\(\)"):
        check_tensor("x", torch.zeros(3, dtype=dtype))


def test_check_tensor_ndim():
    with pytest.raises(ValueError, match=r"^weight must have 2 dimensions, got shape \(3,\)"):
        check_tensor("weight", torch.zeros(3), ndim=2)


# --- check_finite ------------------------------------------------------------------------

def test_check_finite_passes_finite_tensor_through():
    t = torch.tensor([0.0, -1e30, 1e-30])
    assert check_finite("loss", t) is t


def test_check_finite_counts_nan_and_inf():
    t = torch.tensor([1.0, math.nan, math.inf, -math.inf, math.nan, 2.0])
    with pytest.raises(FloatingPointError,
                       match=r"^loss is not finite: 2 NaN and 2 inf entries out of 6"):
        check_finite("loss", t)


def test_check_weight_stack_and_member_batch():
    from gradflowkit.validation import check_weight_stack, member_batch
    assert check_weight_stack(torch.zeros(3, 5, 4, 4)) == (3, 5, 4)
    with pytest.raises(ValueError, match=r"weights must be square per layer, got 4×2"):
        check_weight_stack(torch.zeros(3, 5, 4, 2))
    with pytest.raises(ValueError, match=r"weights must have 4 dimensions"):
        check_weight_stack(torch.zeros(5, 4, 4))
    shared = torch.arange(6.0).view(2, 3)
    x = member_batch("inputs", shared, 4, 3, torch.float64)
    assert x.shape == (4, 2, 3) and x.dtype == torch.float64
    assert torch.equal(x[3], shared.double())
    own = torch.zeros(4, 2, 3)
    assert member_batch("inputs", own, 4, 3, torch.float32) is own
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch, 3\) or \(4, batch, "
                                         r"3\), got \(5, 2, 3\)"):
        member_batch("inputs", torch.zeros(5, 2, 3), 4, 3, torch.float32)
