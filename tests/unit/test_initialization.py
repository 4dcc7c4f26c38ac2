"""Unit tests of gradflowkit.initialization: empirical statistics vs the closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradflowkit.initialization import INITS, init_linear_, init_std


def test_inits():
    assert INITS == ("normal", "xavier", "he", "orthogonal", "zeros")


@pytest.mark.parametrize("scheme, fan_in, fan_out, expected", [
    ("normal", 100, 7, math.sqrt(1 / 100)),
    ("xavier", 100, 300, math.sqrt(2 / 400)),
    ("he", 50, 3, math.sqrt(2 / 50)),
    ("zeros", 10, 10, 0.0),
    ("orthogonal", 64, 64, 1 / 8),
    ("orthogonal", 16, 64, 1 / 8),   # tall: columns are unit vectors of length 64
    ("orthogonal", 64, 16, 1 / 8),   # wide: rows are unit vectors of length 64
])
def test_init_std_closed_forms(scheme, fan_in, fan_out, expected):
    assert init_std(scheme, fan_in, fan_out) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("fan_in, fan_out", [(400, 600), (600, 400), (512, 512)])
@pytest.mark.parametrize("scheme", ["normal", "xavier", "he"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_schemes_have_the_formula_std(scheme, fan_in, fan_out, dtype):
    """Sample std of fan_in*fan_out entries vs init_std, within 6 standard errors."""
    layer = nn.Linear(fan_in, fan_out, dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    init_linear_(layer, scheme, generator=gen)
    w = layer.weight.detach().double()
    n = w.numel()
    # Independent formulas, written out here rather than read from init_std.
    sigma = {"normal": math.sqrt(1 / fan_in), "xavier": math.sqrt(2 / (fan_in + fan_out)),
             "he": math.sqrt(2 / fan_in)}[scheme]
    assert init_std(scheme, fan_in, fan_out) == pytest.approx(sigma, rel=1e-15)
    # Standard error of a sample std: sigma / sqrt(2n); of a sample mean: sigma / sqrt(n).
    assert w.std().item() == pytest.approx(sigma, rel=6 / math.sqrt(2 * n))
    assert abs(w.mean().item()) < 6 * sigma / math.sqrt(n)
    assert layer.weight.dtype == dtype


@pytest.mark.parametrize("scheme", ["normal", "xavier", "he"])
def test_gaussian_schemes_look_gaussian(scheme):
    """Fourth moment / std^4 ≈ 3 (Gaussian kurtosis), not e.g. uniform's 1.8."""
    layer = nn.Linear(500, 500, dtype=torch.float64)
    init_linear_(layer, scheme, generator=torch.Generator().manual_seed(1))
    w = layer.weight.detach()
    kurtosis = ((w - w.mean()) ** 4).mean() / w.var(unbiased=False) ** 2
    assert kurtosis.item() == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize("fan_in, fan_out", [(32, 32), (8, 40), (40, 8), (1, 5), (5, 1)])
@pytest.mark.parametrize("scale", [1.0, 0.5, 3.0])
def test_orthogonal_has_orthonormal_columns_or_rows(fan_in, fan_out, scale):
    layer = nn.Linear(fan_in, fan_out, dtype=torch.float64)
    init_linear_(layer, "orthogonal", scale=scale, generator=torch.Generator().manual_seed(2))
    w = layer.weight.detach()
    assert w.shape == (fan_out, fan_in)
    k = min(fan_in, fan_out)
    gram = w.T @ w if fan_out >= fan_in else w @ w.T  # (k, k)
    torch.testing.assert_close(gram, scale**2 * torch.eye(k, dtype=torch.float64),
                               rtol=0, atol=1e-12)
    # All singular values equal the scale (numpy-free check via torch.linalg.svdvals).
    torch.testing.assert_close(torch.linalg.svdvals(w),
                               torch.full((k,), scale, dtype=torch.float64), rtol=0, atol=1e-12)
    # Root-mean-square entry matches init_std exactly: ‖W‖_F² = k.
    rms = w.pow(2).mean().sqrt().item()
    assert rms == pytest.approx(scale * init_std("orthogonal", fan_in, fan_out), rel=1e-12)


def test_orthogonal_float32_is_orthogonal_to_float32_precision():
    layer = nn.Linear(64, 64)
    init_linear_(layer, "orthogonal", generator=torch.Generator().manual_seed(3))
    w = layer.weight.detach()
    assert w.dtype == torch.float32
    torch.testing.assert_close(w.T @ w, torch.eye(64), rtol=0, atol=1e-5)


def test_orthogonal_is_random_not_a_fixed_matrix():
    a, b = nn.Linear(16, 16), nn.Linear(16, 16)
    init_linear_(a, "orthogonal", generator=torch.Generator().manual_seed(0))
    init_linear_(b, "orthogonal", generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a.weight, b.weight)
    assert not torch.allclose(a.weight.abs(), torch.eye(16))


def test_orthogonal_is_haar_distributed_not_sign_biased():
    """Haar-random orthogonal matrices have E[W_ij] = 0. A QR without the sign fix gives
    W_00 = -|a_00|/‖a_0‖ < 0 always (Householder convention), a mean near -0.5 for 3×3."""
    gen = torch.Generator().manual_seed(11)
    layer = nn.Linear(3, 3, dtype=torch.float64)
    corners = []
    for _ in range(400):
        init_linear_(layer, "orthogonal", generator=gen)
        corners.append(layer.weight[0, 0].item())
    corners = torch.tensor(corners)
    # W_00 has variance 1/3; the standard error of 400 draws is about 0.03.
    assert abs(corners.mean().item()) < 0.15
    assert (corners > 0).float().mean().item() == pytest.approx(0.5, abs=0.1)


def test_zeros_scheme_zeroes_the_weight():
    layer = nn.Linear(7, 5)
    init_linear_(layer, "zeros", scale=2.0)
    assert torch.count_nonzero(layer.weight) == 0


@pytest.mark.parametrize("scheme", INITS)
def test_bias_is_zeroed_and_layer_returned(scheme):
    layer = nn.Linear(6, 4)
    with torch.no_grad():
        layer.bias.fill_(3.0)
    assert init_linear_(layer, scheme) is layer
    assert torch.count_nonzero(layer.bias) == 0
    assert layer.weight.requires_grad and layer.bias.requires_grad  # still trainable


@pytest.mark.parametrize("scheme", INITS)
def test_layer_without_bias(scheme):
    layer = nn.Linear(6, 4, bias=False)
    init_linear_(layer, scheme, generator=torch.Generator().manual_seed(0))
    assert layer.bias is None


@pytest.mark.parametrize("scheme", ["normal", "xavier", "he", "orthogonal"])
@pytest.mark.parametrize("scale", [0.0, 0.25, 4.0])
def test_scale_multiplies_the_weights(scheme, scale):
    """Same generator seed, scale s: weights are exactly s times the scale-1 weights."""
    base, scaled = nn.Linear(20, 30, dtype=torch.float64), nn.Linear(20, 30, dtype=torch.float64)
    init_linear_(base, scheme, generator=torch.Generator().manual_seed(5))
    init_linear_(scaled, scheme, scale=scale, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(scaled.weight, scale * base.weight, rtol=1e-15, atol=0)


@pytest.mark.parametrize("scheme", ["normal", "orthogonal"])
def test_generator_makes_it_reproducible(scheme):
    a, b = nn.Linear(10, 10), nn.Linear(10, 10)
    init_linear_(a, scheme, generator=torch.Generator().manual_seed(9))
    init_linear_(b, scheme, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a.weight, b.weight)


def test_global_generator_is_used_by_default(seeded):
    a, b = nn.Linear(10, 10), nn.Linear(10, 10)
    torch.manual_seed(3)
    init_linear_(a, "he")
    torch.manual_seed(3)
    init_linear_(b, "he")
    assert torch.equal(a.weight, b.weight)


def test_init_does_not_record_autograd_history():
    layer = nn.Linear(4, 4)
    init_linear_(layer, "he", scale=2.0)
    assert layer.weight.grad_fn is None and layer.weight.is_leaf


# --- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda: init_std("kaiming", 4, 4),
    lambda: init_linear_(nn.Linear(2, 2), "uniform"),
])
def test_unknown_scheme_lists_the_choices(call):
    with pytest.raises(ValueError, match=r"^scheme must be one of 'normal', 'xavier', 'he', "
                                         r"'orthogonal', 'zeros'"):
        call()


@pytest.mark.parametrize("fan_in, fan_out, exc, name", [
    (0, 4, ValueError, "fan_in"), (4, 0, ValueError, "fan_out"),
    (2.0, 4, TypeError, "fan_in"), (4, "3", TypeError, "fan_out"),
])
def test_init_std_bad_fans(fan_in, fan_out, exc, name):
    with pytest.raises(exc, match=rf"^{name} must be"):
        init_std("he", fan_in, fan_out)


@pytest.mark.parametrize("layer", [nn.Conv1d(2, 2, 1), nn.Identity(), torch.zeros(2, 2)])
def test_non_linear_layer_is_rejected(layer):
    with pytest.raises(TypeError, match=r"^layer must be an nn.Linear"):
        init_linear_(layer, "he")


@pytest.mark.parametrize("scale, exc, msg", [
    (-1.0, ValueError, r"^scale must be >= 0"),
    (math.nan, ValueError, r"^scale must be finite"),
    ("2", TypeError, r"^scale must be a real number"),
])
def test_bad_scale(scale, exc, msg):
    layer = nn.Linear(3, 3)
    before = layer.weight.detach().clone()
    with pytest.raises(exc, match=msg):
        init_linear_(layer, "he", scale=scale)
    assert torch.equal(layer.weight, before)  # nothing changed on error
