"""Mean-field helpers (lesson 18) against closed forms, Monte Carlo, and plain loops."""

import numpy as np
import pytest
import torch

from gradflowkit import meanfield as mf
from gradflowkit.propagation import stack_signal_stats


def _trapezoid(f, lo=-14.0, hi=14.0, points=400_001):
    """E[f(z)], z ~ N(0, 1), by a fine trapezoid rule: an independent oracle."""
    z = np.linspace(lo, hi, points)
    y = f(z) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(z)) / 2)


@pytest.mark.parametrize("degree", [0, 2, 4, 6, 10])
def test_gauss_expectation_moments(degree):
    double_factorial = np.prod(np.arange(degree - 1, 0, -2)) if degree else 1.0
    assert mf.gauss_expectation(lambda z: z**degree) == pytest.approx(double_factorial,
                                                                       rel=1e-12)
    assert abs(mf.gauss_expectation(lambda z: z ** (degree + 1))) < 1e-9


@pytest.mark.parametrize("q", [0.01, 0.5, 2.0, 10.0, 40.0])
def test_maps_match_a_fine_trapezoid_at_every_q(q):
    r = np.sqrt(q)
    for name, f in (("tanh", lambda z: np.tanh(r * z) ** 2),
                    ("chi", lambda z: (1 - np.tanh(r * z) ** 2) ** 2)):
        got = (mf.length_map(q, "tanh", 1.0, 0.0) if name == "tanh"
               else mf.chi1("tanh", 1.0, 0.0, q=q))
        assert got == pytest.approx(_trapezoid(f), rel=1e-11, abs=1e-15)


@pytest.mark.parametrize("q,rel", [(0.5, 1e-12), (2.0, 1e-9), (6.0, 1e-4), (40.0, 0.5)])
def test_hermite_rule_loses_accuracy_for_narrow_integrands(q, rel):
    f = lambda z: (1 - np.tanh(np.sqrt(q) * z) ** 2) ** 2  # noqa: E731
    error = abs(mf.gauss_expectation(f, rule="hermite") / _trapezoid(f) - 1)
    assert error < rel
    if q >= 6:    # what the docstring says: no longer at rounding level
        assert error > 1e-6


@pytest.mark.parametrize("q", [0.3, 1.7, 6.0])
def test_gauss_expectation_matches_monte_carlo(q):
    rng = np.random.default_rng(5)
    z = rng.standard_normal(4_000_000)
    f = lambda u: np.tanh(np.sqrt(q) * u) ** 2  # noqa: E731
    sample = f(z)
    se = sample.std() / np.sqrt(z.size)
    assert abs(mf.gauss_expectation(f) - sample.mean()) < 5 * se


@pytest.mark.parametrize("q", [0.0, 0.4, 3.0])
@pytest.mark.parametrize("sigma_w,sigma_b", [(1.0, 0.0), (1.3, 0.5), (0.7, 1.0)])
def test_length_map_closed_forms(q, sigma_w, sigma_b):
    # ReLU: E[relu(sqrt(q) z)^2] = q / 2; linear: E[(sqrt(q) z)^2] = q
    assert mf.length_map(q, "relu", sigma_w, sigma_b) == pytest.approx(
        sigma_w**2 * q / 2 + sigma_b**2, rel=1e-12, abs=1e-15)
    assert mf.length_map(q, "linear", sigma_w, sigma_b) == pytest.approx(
        sigma_w**2 * q + sigma_b**2, rel=1e-12, abs=1e-15)


def test_relu_fixed_point_and_chi1_closed_form():
    for sigma_w, sigma_b in [(1.0, 0.5), (1.3, 0.2), (0.5, 1.0)]:
        q_star = sigma_b**2 / (1 - sigma_w**2 / 2)
        assert mf.fixed_point("relu", sigma_w, sigma_b) == pytest.approx(q_star, rel=1e-10)
        assert mf.chi1("relu", sigma_w, sigma_b) == pytest.approx(sigma_w**2 / 2, rel=1e-12)
    # with no bias q* = 0 for sigma_w^2 < 2; chi1 is the limit q -> 0+, still sigma_w^2 / 2
    assert mf.fixed_point("relu", 1.0, 0.0) == 0.0
    assert mf.chi1("relu", 1.0, 0.0) == pytest.approx(0.5, rel=1e-12)
    # He initialization, sigma_w^2 = 2 with no bias: chi1 = 1, every q is a fixed point
    assert mf.chi1("relu", np.sqrt(2), 0.0) == pytest.approx(1.0, rel=1e-12)
    assert mf.fixed_point("relu", np.sqrt(2), 0.0, q0=3.0) == pytest.approx(3.0)


def test_linear_fixed_point_closed_form():
    assert mf.fixed_point("linear", 0.8, 0.6) == pytest.approx(0.36 / 0.36, rel=1e-10)
    assert mf.chi1("linear", 0.8, 0.6) == pytest.approx(0.64, rel=1e-12)


@pytest.mark.parametrize("activation,sigma_w", [("relu", 1.5), ("linear", 1.1)])
def test_no_fixed_point_is_reported(activation, sigma_w):
    with pytest.raises(ValueError, match="no fixed point reached"):
        mf.fixed_point(activation, sigma_w, 0.3)


@pytest.mark.parametrize("sigma_w,sigma_b", [(0.8, 0.3), (1.5, 0.05), (2.5, 1.0), (1.2, 0.0)])
def test_tanh_fixed_point_against_plain_iteration(sigma_w, sigma_b):
    q_star = mf.fixed_point("tanh", sigma_w, sigma_b)
    assert mf.length_map(q_star, "tanh", sigma_w, sigma_b) == pytest.approx(q_star, rel=1e-11)
    q = 1.0
    for _ in range(3000):     # the plain iteration that the bisection replaces
        q = mf.length_map(q, "tanh", sigma_w, sigma_b)
    assert q == pytest.approx(q_star, rel=1e-8)


def test_tanh_ordered_without_bias_has_zero_fixed_point():
    for sigma_w in (0.5, 0.9, 1.0):
        assert mf.fixed_point("tanh", sigma_w, 0.0) == 0.0
        # tanh'(0) = 1, so chi1 = sigma_w^2 at q* = 0: sigma_w = 1 is the edge (Xavier)
        assert mf.chi1("tanh", sigma_w, 0.0) == pytest.approx(sigma_w**2, rel=1e-12)
    assert mf.edge_sigma_w("tanh", 0.0) == pytest.approx(1.0, abs=1e-6)


def test_tanh_derivative_identities():
    u = np.linspace(-4, 4, 101)
    phi, d, dd = mf.activation_functions("tanh")
    assert np.allclose(d(u), 1 / np.cosh(u) ** 2, rtol=1e-12)
    assert np.allclose(dd(u), -2 * np.tanh(u) / np.cosh(u) ** 2, rtol=1e-12, atol=1e-15)
    t = torch.tensor(u, requires_grad=True)
    (g,) = torch.autograd.grad(torch.tanh(t).sum(), t, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), t)
    assert np.allclose(d(u), g.detach().numpy(), rtol=1e-12)
    assert np.allclose(dd(u), gg.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("sigma_w,sigma_b", [(1.1, 0.3), (2.0, 0.5), (0.9, 0.8)])
def test_chi1_against_monte_carlo_and_slope_against_finite_difference(sigma_w, sigma_b):
    q_star = mf.fixed_point("tanh", sigma_w, sigma_b)
    z = np.random.default_rng(11).standard_normal(4_000_000)
    sample = sigma_w**2 * (1 - np.tanh(np.sqrt(q_star) * z) ** 2) ** 2
    se = sample.std() / np.sqrt(z.size)
    assert abs(mf.chi1("tanh", sigma_w, sigma_b) - sample.mean()) < 5 * se
    h = 1e-5 * q_star
    fd = (mf.length_map(q_star + h, "tanh", sigma_w, sigma_b)
          - mf.length_map(q_star - h, "tanh", sigma_w, sigma_b)) / (2 * h)
    assert mf.length_map_slope("tanh", sigma_w, sigma_b) == pytest.approx(fd, rel=1e-7)


def test_length_map_convergence_rate_is_the_slope():
    sigma_w, sigma_b = 1.6, 0.4
    q_star = mf.fixed_point("tanh", sigma_w, sigma_b)
    q = mf.iterate_length_map(q_star * 1.01, 12, "tanh", sigma_w, sigma_b)
    ratios = np.diff(np.log(np.abs(q - q_star)))
    slope = mf.length_map_slope("tanh", sigma_w, sigma_b)
    assert np.exp(ratios[-4:]) == pytest.approx(slope, rel=2e-3)
    assert mf.depth_scale(slope) == pytest.approx(-1 / np.log(slope))


def test_depth_scale():
    assert mf.depth_scale(1.0) == float("inf")
    assert mf.depth_scale(np.exp(-0.25)) == pytest.approx(4.0)
    assert mf.depth_scale(np.e) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="> 0"):
        mf.depth_scale(0.0)


def test_phase_grid_matches_pointwise_and_edge():
    grid = mf.phase_grid("tanh", [0.5, 1.5, 3.0], [0.0, 0.7])
    assert grid.chi1.shape == (2, 3) and grid.q_star.shape == (2, 3)
    for i, b in enumerate(grid.sigma_b):
        for j, w in enumerate(grid.sigma_w):
            assert grid.chi1[i, j] == pytest.approx(mf.chi1("tanh", w, b))
    w_edge = mf.edge_sigma_w("tanh", 0.3)
    assert mf.chi1("tanh", w_edge, 0.3) == pytest.approx(1.0, abs=1e-8)
    assert mf.chi1("tanh", w_edge * 0.99, 0.3) < 1 < mf.chi1("tanh", w_edge * 1.01, 0.3)


@pytest.mark.parametrize("call,match", [
    (lambda: mf.length_map(-1.0, "tanh", 1.0, 0.0), "q must be >= 0"),
    (lambda: mf.length_map(1.0, "sigmoid", 1.0, 0.0), "activation must be one of"),
    (lambda: mf.chi1("tanh", -1.0, 0.0), "sigma_w must be >= 0"),
    (lambda: mf.fixed_point("tanh", 1.0, float("nan")), "sigma_b must be finite"),
    (lambda: mf.gauss_expectation(np.exp, order=0), "order must be >= 1"),
    (lambda: mf.gauss_expectation(np.exp, order=400), "order must be <= 300"),
    (lambda: mf.gauss_expectation(np.exp, rule="simpson"), "rule must be one of"),
    (lambda: mf.edge_sigma_w("tanh", 0.3, hi=1.0), "does not change sign"),
    (lambda: mf.phase_grid("tanh", [], [0.1]), "at least one value"),
])
def test_argument_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_gauss_expectation_detects_nonfinite():
    with pytest.raises(FloatingPointError, match="not finite"):
        mf.gauss_expectation(lambda z: np.exp(z**2))


def _draw(members=3, depth=4, n=16, batch=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(members, depth, n, n, generator=gen, dtype=torch.float64) * 1.3 / n**0.5
    b = torch.randn(members, depth, n, generator=gen, dtype=torch.float64) * 0.4
    x = torch.randn(members, batch, n, generator=gen, dtype=torch.float64)
    g = torch.randn(members, batch, n, generator=gen, dtype=torch.float64)
    return w, b, x, g


@pytest.mark.parametrize("activation", mf.MEANFIELD_ACTIVATIONS)
def test_stack_backward_signal_against_autograd(activation):
    w, b, x, g = _draw()
    f = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda t: t}[activation]
    sig = mf.stack_backward_signal(w, b, activation, x, g)
    for s in range(w.shape[0]):                 # one net at a time, a plain loop
        xs = [x[s].clone().requires_grad_(True)]
        pre = []
        for layer in range(w.shape[1]):
            z = xs[-1] @ w[s, layer].T + b[s, layer]
            pre.append(float(z.detach().square().mean()))
            xs.append(f(z))
        grads = torch.autograd.grad(xs[-1], xs[:-1], grad_outputs=g[s])
        expect = [float(t.detach().square().mean()) for t in grads] + [float(g[s].square().mean())]
        assert np.allclose(sig.backward[s], expect, rtol=1e-12)
        assert np.allclose(sig.preact[s], pre, rtol=1e-12)
    assert np.allclose(sig.log_growth, np.log(sig.backward[:, :-1] / sig.backward[:, 1:]))


def test_stack_backward_signal_without_bias_matches_stack_signal_stats():
    w, b, x, g = _draw()
    sig = mf.stack_backward_signal(w, torch.zeros_like(b), "tanh", x, g)
    ref = stack_signal_stats(w, "tanh", x, grad_output=g)
    # backward std vs root mean square: equal up to the (small) mean over the entries
    assert np.allclose(np.sqrt(sig.backward), ref.backward, rtol=0.05)


def test_stack_backward_signal_errors_and_nonfinite():
    w, b, x, g = _draw()
    with pytest.raises(ValueError, match="biases must have shape"):
        mf.stack_backward_signal(w, b[:, :2], "tanh", x, g)
    with pytest.raises(ValueError, match="inputs must have shape"):
        mf.stack_backward_signal(w, b, "tanh", x[:1], g)
    with pytest.raises(ValueError, match="grad_output must have shape"):
        mf.stack_backward_signal(w, b, "tanh", x, g[:, :-1])
    with pytest.raises(TypeError, match="grad_output must be a floating-point tensor"):
        mf.stack_backward_signal(w, b, "tanh", x, g.long())
    with pytest.raises(ValueError, match="activation"):
        mf.stack_backward_signal(w, b, "swishy", x, g)
    # inputs shared by every member are the same as the same inputs stacked
    shared = mf.stack_backward_signal(w, b, "tanh", x[0], g)
    stacked = mf.stack_backward_signal(w, b, "tanh", x[0].expand_as(x), g)
    assert np.array_equal(shared.backward, stacked.backward)
    with pytest.raises(FloatingPointError, match="overflowed"):
        mf.stack_backward_signal(w.float() * 1e30, b.float(), "linear", x.float(), g.float())
    sig = mf.stack_backward_signal(w.float() * 1e30, b.float(), "linear", x.float(),
                                   g.float(), error_if_nonfinite=False)
    assert not np.isfinite(sig.backward).all()


def test_measured_growth_approaches_chi1_for_wide_nets():
    """A wide tanh stack started at q* grows its backward signal by about chi1 per layer."""
    sigma_w, sigma_b, n = 1.8, 0.5, 512
    q_star = mf.fixed_point("tanh", sigma_w, sigma_b)
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(4, 8, n, n, generator=gen, dtype=torch.float64) * sigma_w / n**0.5
    b = torch.randn(4, 8, n, generator=gen, dtype=torch.float64) * sigma_b
    x = torch.tanh(q_star**0.5 * torch.randn(4, 8, n, generator=gen, dtype=torch.float64))
    g = torch.randn(4, 8, n, generator=gen, dtype=torch.float64)
    sig = mf.stack_backward_signal(w, b, "tanh", x, g)
    assert np.median(sig.log_growth) == pytest.approx(np.log(mf.chi1("tanh", sigma_w,
                                                                      sigma_b)), abs=0.03)
    assert np.median(sig.preact) == pytest.approx(q_star, rel=0.03)
