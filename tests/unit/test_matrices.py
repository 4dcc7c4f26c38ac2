"""Unit tests of gradflowkit.matrices against closed forms, explicit products and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradflowkit.matrices import (gaussian_log_rate, gaussian_matrices, jordan_like,
                                  log_growth_rate, log_norms_along, power_norms, product_growth,
                                  spectral_radius)


def test_gaussian_matrices_shape_and_variance():
    gen = torch.Generator().manual_seed(0)
    w = gaussian_matrices(200, 50, 1.5, generator=gen)
    assert w.shape == (200, 50, 50) and w.dtype == torch.float64
    assert float(w.var()) == pytest.approx(1.5 ** 2 / 50, rel=0.01)


def test_log_norms_along_matches_explicit_products():
    gen = torch.Generator().manual_seed(1)
    ws = gaussian_matrices(12, 6, 3.0, generator=gen, batch=(4,))
    v = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    got = log_norms_along(ws, v)
    assert got.shape == (4, 13)
    product = torch.eye(6, dtype=torch.float64).expand(4, 6, 6)
    for k in range(13):
        expected = ((product @ v.unsqueeze(-1)).squeeze(-1).norm(dim=-1) / v.norm(dim=-1)).log()
        torch.testing.assert_close(got[:, k], expected, rtol=1e-12, atol=1e-12)
        if k < 12:
            product = ws[k] @ product


def test_log_norms_along_does_not_overflow():
    ws = torch.eye(3, dtype=torch.float64).expand(2000, 3, 3) * 10.0   # 10^2000 overflows
    got = log_norms_along(ws, torch.ones(3, dtype=torch.float64))
    assert float(got[-1]) == pytest.approx(2000 * math.log(10), rel=1e-12)


def test_log_norms_along_rejects_bad_shapes():
    with pytest.raises(ValueError, match="must be"):
        log_norms_along(torch.zeros(3, 4, 4, dtype=torch.float64), torch.ones(5))


def test_product_growth_bound_holds_and_starts_at_zero():
    pg = product_growth(20, 8, 1.0, trials=5, seed=3)
    assert pg.log_norm.shape == pg.log_bound.shape == (5, 21)
    assert np.all(pg.log_norm[:, 0] == 0) and np.all(pg.log_bound[:, 0] == 0)
    assert np.all(pg.log_norm <= pg.log_bound + 1e-12)


def test_gaussian_log_rate_matches_monte_carlo():
    gen = torch.Generator().manual_seed(2)
    n, g = 10, 0.7
    w = gaussian_matrices(20000, n, g, generator=gen)
    v = torch.randn(n, dtype=torch.float64, generator=gen)
    mc = float((w @ v).norm(dim=-1).div(v.norm()).log().mean())
    assert gaussian_log_rate(n, g) == pytest.approx(mc, abs=0.005)
    assert gaussian_log_rate(10_000, g) == pytest.approx(math.log(g) - 1 / 20_000, abs=1e-7)


def test_log_growth_rate_recovers_a_line():
    k = np.arange(30)
    assert log_growth_rate(0.3 * k - 1) == pytest.approx(0.3)
    assert log_growth_rate(np.stack([0.3 * k, 0.3 * k + 2])) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="non-finite"):
        log_growth_rate(np.array([0.0, -np.inf]))


def test_jordan_like_powers_match_closed_form():
    lam, c = 0.9, 5.0
    a = jordan_like(2, lam, c)
    assert spectral_radius(a) == pytest.approx(lam, abs=1e-12)
    norms = power_norms(a, 40)
    for k in range(41):
        corner = k * c * lam ** (k - 1) if k else 0.0
        closed = np.array([[lam ** k, corner], [0.0, lam ** k]])
        assert norms[k] == pytest.approx(np.linalg.norm(closed, 2), rel=1e-10)


def test_power_norms_of_a_normal_matrix_are_powers_of_its_radius():
    gen = torch.Generator().manual_seed(4)
    s = torch.randn(5, 5, dtype=torch.float64, generator=gen)
    s = s + s.T
    rho = spectral_radius(s)
    assert rho == pytest.approx(float(np.abs(np.linalg.eigvalsh(s.numpy())).max()), rel=1e-12)
    np.testing.assert_allclose(power_norms(s, 6), rho ** np.arange(7), rtol=1e-10)


def test_jordan_like_structure_and_errors():
    a = jordan_like(4, 0.5, 2.0)
    expected = 0.5 * np.eye(4) + 2.0 * np.eye(4, k=1)
    np.testing.assert_array_equal(a.numpy(), expected)
    with pytest.raises(ValueError, match="square"):
        power_norms(torch.zeros(2, 3, dtype=torch.float64), 3)
