"""Mean-field signal propagation: the length map, its fixed point, χ₁ (lesson 18).

In a wide random net ``z_l = W_l x_l + b_l``, ``x_{l+1} = φ(z_l)`` with weights
``N(0, σ_w²/n)`` and biases ``N(0, σ_b²)``, the pre-activations of one input are Gaussian
over the units, with mean square ``q_l``. Poole et al. (2016) and Schoenholz et al. (2017)
follow ``q_l`` through the *length map*

    q_{l+1} = σ_w² E_z[φ(√q_l z)²] + σ_b²,        z ~ N(0, 1),

to its fixed point ``q*``, and read off the slope

    χ₁ = σ_w² E_z[φ'(√q* z)²],

which is the factor by which the mean square of the backward signal ``∂L/∂x_l`` grows per
layer at large width (χ₁ < 1: ordered, gradients vanish; χ₁ > 1: chaotic, they
explode).

The expectations are quadrature sums in float64 (:func:`gauss_expectation`): Gauss–Hermite
in the probabilists' convention (``numpy.polynomial.hermite_e.hermegauss``), or a uniform
rule whose step follows the width of the integrand, used by the maps by default:
Gauss–Hermite loses accuracy for ``tanh'(√q z)²`` at large ``q``. :func:`stack_backward_signal`
measures the same quantities on a stack of finite random nets, for comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from typing import NamedTuple

import numpy as np
import torch

from .activations import derivative, make_activation, second_derivative
from .propagation import stack_passes
from .validation import check_choice, check_float, check_int

#: Activations with closed-form φ, φ' and φ'' here (``"linear"`` is the identity).
MEANFIELD_ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "linear")

#: Gauss–Hermite nodes used by default, exact for polynomials of degree below 400.
DEFAULT_ORDER = 200

#: Quadrature rules of :func:`gauss_expectation`.
RULES: tuple[str, ...] = ("hermite", "uniform")

#: χ₁ and the map's slope at q = 0 are evaluated here instead: their limits as q -> 0+.
_Q_TINY = 1e-300

#: Half-width of the uniform rule's z-range (the Gaussian weight beyond it is < 1e-31).
Z_MAX = 12.0


#: The mean-field names in :mod:`gradflowkit.activations` (one definition of φ, φ', φ'').
_ACTIVATION_NAMES = {"tanh": "tanh", "relu": "relu", "linear": "identity"}


def _as_numpy(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    """``fn`` on float64 NumPy arrays (the quadratures call it thousands of times: no
    module is built and nothing is copied per call)."""
    def f(u):
        return fn(torch.from_numpy(np.asarray(u, dtype=np.float64))).numpy()
    return f


@lru_cache(maxsize=None)
def activation_functions(name: str) -> tuple[Callable, Callable, Callable]:
    """``(φ, φ', φ'')`` of an activation, as NumPy functions.

    Args:
        name: one of :data:`MEANFIELD_ACTIVATIONS`.

    Returns:
        Three elementwise functions: the module of
        :func:`~gradflowkit.activations.make_activation` (its ``forward``, built once),
        :func:`~gradflowkit.activations.derivative` and
        :func:`~gradflowkit.activations.second_derivative` in float64. For ReLU, φ'' is 0
        (its kink contributes nothing to the expectations used here, since φ(0) = 0).
    """
    act = _ACTIVATION_NAMES[check_choice("activation", name, MEANFIELD_ACTIVATIONS)]
    return (_as_numpy(make_activation(act).forward), _as_numpy(partial(derivative, act)),
            _as_numpy(partial(second_derivative, act)))


@lru_cache(maxsize=8)
def _hermite(order: int) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.hermite_e.hermegauss(order)
    return nodes, weights / np.sqrt(2.0 * np.pi)     # weights now sum to 1


@lru_cache(maxsize=64)
def _uniform(step: float) -> tuple[np.ndarray, np.ndarray]:
    half = int(np.ceil(Z_MAX / step))
    nodes = step * (np.arange(-half, half, dtype=float) + 0.5)   # symmetric, none at 0
    weights = step * np.exp(-nodes**2 / 2) / np.sqrt(2.0 * np.pi)
    return nodes, weights


def gauss_expectation(f: Callable[[np.ndarray], np.ndarray], *, rule: str = "hermite",
                      order: int = DEFAULT_ORDER, step: float = 0.25) -> float:
    """``E_z[f(z)]`` for a standard normal ``z``, by quadrature in float64.

    ``"hermite"`` is Gauss–Hermite quadrature in the probabilists' convention
    (``numpy.polynomial.hermite_e.hermegauss``): exact for polynomials of degree below
    ``2 * order``, and fast for smooth ``f``. It loses accuracy when ``f`` has a narrow
    feature: for ``f(z) = tanh'(√q z)²`` the 200-node rule is off by 4e-5 (relative) at
    q = 6 and by 1e-3 at q = 10, because tanh has poles at ``z = ±iπ/(2√q)``, close to
    the real axis. ``"uniform"`` is the midpoint rule on ``|z| <= 12`` with spacing
    ``step``; for an analytic ``f`` its error falls like ``exp(-2π d / step)`` with ``d``
    the distance of the nearest pole from the real axis, so a step proportional to that
    distance keeps it at rounding level (the mean-field maps below use
    ``step = 0.25 / min(max(1, √q), 64)``). Both rules have nodes symmetric about 0 and
    none at 0, so for ReLU, whose kink at 0 spoils either rule's accuracy, they are exact
    by symmetry: ``relu(z)² + relu(-z)² = z²`` and ``1{z > 0} + 1{-z > 0} = 1``.

    Args:
        f: an elementwise function of a float64 array.
        rule: ``"hermite"`` (default) or ``"uniform"``.
        order: nodes of the Hermite rule (default :data:`DEFAULT_ORDER`, at most 300:
            NumPy's weights overflow beyond that).
        step: spacing of the uniform rule (default 0.25).

    Returns:
        The expectation, a float. Raises ``FloatingPointError`` if it is not finite.
    """
    check_choice("rule", rule, RULES)
    if rule == "hermite":
        order = check_int("order", order, minimum=1)
        if order > 300:
            raise ValueError(f"order must be <= 300 (NumPy's Hermite weights overflow), got "
                             f"{order}; use rule='uniform' for narrow integrands")
        nodes, weights = _hermite(order)
    else:
        nodes, weights = _uniform(check_float("step", step, positive=True))
    with np.errstate(over="ignore", invalid="ignore"):
        value = float(np.dot(weights, f(nodes)))
    if not np.isfinite(value):
        raise FloatingPointError(f"E[f(z)] is not finite ({value}); f overflows at the "
                                 "quadrature nodes")
    return value


def _expect(g: Callable, q: float, rule: str, order: int) -> float:
    """``E_z[g(√q z)]`` with a uniform step matched to the width ``1/√q`` of ``g(√q z)``.

    The step stops shrinking at q = 4096 (about 12 000 nodes); beyond it the uniform rule
    is no longer at rounding level for tanh.
    """
    root = np.sqrt(q)
    return gauss_expectation(lambda z: g(root * z), rule=rule, order=order,
                             step=0.25 / min(max(1.0, root), 64.0))


def _check_sigmas(sigma_w: float, sigma_b: float) -> tuple[float, float]:
    return (check_float("sigma_w", sigma_w, nonnegative=True),
            check_float("sigma_b", sigma_b, nonnegative=True))


def length_map(q: float, activation: str, sigma_w: float, sigma_b: float, *,
               rule: str = "uniform", order: int = DEFAULT_ORDER) -> float:
    """One step of the length map, ``σ_w² E_z[φ(√q z)²] + σ_b²``.

    Args:
        q: mean square of the pre-activations of layer ``l`` (>= 0).
        activation: one of :data:`MEANFIELD_ACTIVATIONS`.
        sigma_w: weight scale σ_w (weights ``N(0, σ_w²/n)``), >= 0.
        sigma_b: bias scale σ_b (biases ``N(0, σ_b²)``), >= 0.
        rule: quadrature of :func:`gauss_expectation` (default ``"uniform"``, accurate
            at every q; ``"hermite"`` for comparison).
        order: Gauss–Hermite nodes when ``rule="hermite"`` (default
            :data:`DEFAULT_ORDER`).

    Returns:
        ``q_{l+1}``.
    """
    q = check_float("q", q, nonnegative=True)
    sigma_w, sigma_b = _check_sigmas(sigma_w, sigma_b)
    phi = activation_functions(activation)[0]
    return sigma_w**2 * _expect(lambda u: phi(u) ** 2, q, rule, order) + sigma_b**2


def iterate_length_map(q0: float, depth: int, activation: str, sigma_w: float,
                       sigma_b: float, *, rule: str = "uniform",
                       order: int = DEFAULT_ORDER) -> np.ndarray:
    """``[q_0, q_1, …, q_depth]`` from repeated :func:`length_map` steps.

    Args:
        q0: the starting mean square (>= 0).
        depth: number of steps (>= 0).
        activation, sigma_w, sigma_b, rule, order: as in :func:`length_map`.

    Returns:
        A float64 array of ``depth + 1`` entries.
    """
    depth = check_int("depth", depth, minimum=0)
    q = [check_float("q0", q0, nonnegative=True)]
    for _ in range(depth):
        q.append(length_map(q[-1], activation, sigma_w, sigma_b, rule=rule, order=order))
        if not np.isfinite(q[-1]):
            raise FloatingPointError(f"the length map overflowed after {len(q) - 1} steps")
    return np.array(q)


def fixed_point(activation: str, sigma_w: float, sigma_b: float, *, q0: float = 1.0,
                tol: float = 1e-13, q_max: float = 1e12, rule: str = "uniform",
                order: int = DEFAULT_ORDER) -> float:
    """The fixed point ``q*`` that iterating the length map from ``q0`` approaches.

    Iteration alone converges slowly near the edge of chaos (like ``1/l`` for tanh at
    σ_w = 1, σ_b = 0), so the root of ``h(q) = map(q) - q`` is bracketed in the direction
    the iteration moves (``h(q0) > 0``: up, else down) and found by bisection. For the
    activations here the length map is increasing with at most one positive fixed point
    on each side of ``q0``, so this is the point the iteration reaches.

    Args:
        activation, sigma_w, sigma_b, rule, order: as in :func:`length_map`.
        q0: where the iteration starts (default 1, > 0).
        tol: relative tolerance on ``q*`` (default 1e-13).
        q_max: if ``q`` would have to grow beyond this, there is no fixed point (default
            1e12): ``ValueError`` (e.g. ReLU with σ_w² > 2, or the linear map with σ_w > 1).

    Returns:
        ``q*`` (0.0 when the iteration decays to zero, e.g. tanh with σ_w <= 1, σ_b = 0).
    """
    q0 = check_float("q0", q0, positive=True)
    tol = check_float("tol", tol, positive=True)
    sigma_w, sigma_b = _check_sigmas(sigma_w, sigma_b)

    def h(q: float) -> float:
        return length_map(q, activation, sigma_w, sigma_b, rule=rule, order=order) - q

    h0 = h(q0)
    if abs(h0) <= tol * q0:
        return q0
    lo, hi = q0, q0
    if h0 > 0:                                   # the iteration moves up
        while h(hi) > 0:
            lo, hi = hi, hi * 2.0
            if hi > q_max:
                raise ValueError(
                    f"no fixed point reached: the length map of {activation} with "
                    f"sigma_w={sigma_w:g}, sigma_b={sigma_b:g} grows q past q_max="
                    f"{q_max:g}; lower sigma_w (for ReLU, sigma_w**2 < 2)")
    else:                                        # the iteration moves down
        # below q* the map moves q up: h(lo) > 0, beyond the quadrature's rounding
        # (relative 1e-16, well below tol) where h(q) ~ q² near a fixed point q* = 0
        while h(lo) <= tol * lo:
            hi, lo = lo, lo / 2.0
            if lo < 1e-15 * q0:
                return 0.0                       # q decays to the fixed point q* = 0
    for _ in range(200):                         # h(lo) >= 0 >= h(hi)
        mid = 0.5 * (lo + hi)
        if h(mid) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= tol * hi:
            break
    return 0.5 * (lo + hi)


def chi1(activation: str, sigma_w: float, sigma_b: float, *, q: float | None = None,
         rule: str = "uniform", order: int = DEFAULT_ORDER) -> float:
    """``χ₁ = σ_w² E_z[φ'(√q z)²]`` at ``q = q*`` (or at a given ``q``).

    Args:
        activation, sigma_w, sigma_b, rule, order: as in :func:`length_map`.
        q: where to evaluate (default: :func:`fixed_point` from ``q0 = 1``).

    Returns:
        χ₁: the per-layer factor of the backward signal's mean square at large width; at
        ``q = 0`` its limit as ``q -> 0+`` (``σ_w² φ'(0)²`` for tanh, ``σ_w²/2`` for ReLU).
    """
    sigma_w, sigma_b = _check_sigmas(sigma_w, sigma_b)
    q = fixed_point(activation, sigma_w, sigma_b, rule=rule, order=order) if q is None \
        else check_float("q", q, nonnegative=True)
    dphi = activation_functions(activation)[1]
    # at q* = 0 take the limit q -> 0+: 1/2 for ReLU (half the units active), not relu'(0)²
    return sigma_w**2 * _expect(lambda u: dphi(u) ** 2, max(q, _Q_TINY), rule, order)


def length_map_slope(activation: str, sigma_w: float, sigma_b: float, *,
                     q: float | None = None, rule: str = "uniform",
                     order: int = DEFAULT_ORDER) -> float:
    """``d q_{l+1} / d q_l`` at ``q*``: ``χ₁ + σ_w² E_z[φ(√q z) φ''(√q z)]``.

    By Stein's lemma ``E[z g(z)] = E[g'(z)]``, the derivative of ``σ_w² E[φ(√q z)²]`` in
    ``q`` is ``σ_w² E[φ'² + φ φ'']`` at ``√q z``. Schoenholz et al. (2017) write the
    depth scale of the length map's convergence as ``ξ_q = -1 / ln`` of this slope.

    Args:
        activation, sigma_w, sigma_b, rule, order: as in :func:`length_map`.
        q: where to evaluate (default: :func:`fixed_point`).

    Returns:
        The slope (below 1 at a stable fixed point).
    """
    sigma_w, sigma_b = _check_sigmas(sigma_w, sigma_b)
    q = fixed_point(activation, sigma_w, sigma_b, rule=rule, order=order) if q is None \
        else check_float("q", q, nonnegative=True)
    phi, dphi, ddphi = activation_functions(activation)
    return sigma_w**2 * _expect(lambda u: dphi(u) ** 2 + phi(u) * ddphi(u), max(q, _Q_TINY),
                                rule, order)


def depth_scale(factor: float) -> float:
    """``ξ = -1 / ln(factor)``, the depth over which ``factor**l`` changes by ``e``.

    Used as ``ξ_c = -1/ln χ₁`` and ``ξ_q = -1/ln(slope)``. For a factor above 1 (growth)
    the result is negative; its magnitude is the depth over which the signal grows by e.

    Args:
        factor: a per-layer factor, > 0.

    Returns:
        ξ, ``inf`` for a factor of exactly 1 (the edge of chaos).
    """
    factor = check_float("factor", factor, positive=True)
    return float("inf") if factor == 1.0 else -1.0 / np.log(factor)


class PhaseGrid(NamedTuple):
    """Mean-field quantities over a ``(σ_b, σ_w)`` grid (lesson 18)."""

    sigma_w: np.ndarray  # (W,) weight scales, the grid's columns
    sigma_b: np.ndarray  # (B,) bias scales, the grid's rows
    q_star: np.ndarray   # (B, W) fixed point of the length map
    chi1: np.ndarray     # (B, W) χ₁ at q*


def phase_grid(activation: str, sigma_w: Sequence[float], sigma_b: Sequence[float], *,
               rule: str = "uniform", order: int = DEFAULT_ORDER) -> PhaseGrid:
    """:func:`fixed_point` and :func:`chi1` at every ``(σ_b, σ_w)`` of a grid.

    Args:
        activation: one of :data:`MEANFIELD_ACTIVATIONS`.
        sigma_w: the weight scales (>= 0), one per column.
        sigma_b: the bias scales (>= 0), one per row.
        rule, order: quadrature, as in :func:`length_map`.

    Returns:
        A :class:`PhaseGrid`; rows follow ``sigma_b``, columns ``sigma_w``.
    """
    sw = np.asarray(sigma_w, dtype=float).ravel()
    sb = np.asarray(sigma_b, dtype=float).ravel()
    if sw.size == 0 or sb.size == 0:
        raise ValueError("sigma_w and sigma_b need at least one value each")
    q = np.empty((sb.size, sw.size))
    c = np.empty_like(q)
    for i, b in enumerate(sb):
        for j, w in enumerate(sw):
            q[i, j] = fixed_point(activation, float(w), float(b), rule=rule, order=order)
            c[i, j] = chi1(activation, float(w), float(b), q=q[i, j], rule=rule, order=order)
    return PhaseGrid(sigma_w=sw, sigma_b=sb, q_star=q, chi1=c)


def edge_sigma_w(activation: str, sigma_b: float, *, lo: float = 0.05, hi: float = 10.0,
                 tol: float = 1e-10, rule: str = "uniform",
                 order: int = DEFAULT_ORDER) -> float:
    """The σ_w at which χ₁ = 1 for a given σ_b: the edge of chaos, by bisection.

    Args:
        activation: one of :data:`MEANFIELD_ACTIVATIONS` (the length map must have a
            fixed point on all of ``[lo, hi]``: true for tanh).
        sigma_b: the bias scale (>= 0).
        lo, hi: the σ_w bracket (default 0.05 .. 10); χ₁ - 1 must change sign on it.
        tol: absolute tolerance on σ_w (default 1e-10).
        rule, order: quadrature, as in :func:`length_map`.

    Returns:
        σ_w with ``chi1(activation, σ_w, sigma_b) = 1``.
    """
    sigma_b = check_float("sigma_b", sigma_b, nonnegative=True)
    lo, hi = check_float("lo", lo, positive=True), check_float("hi", hi, positive=True)
    f = lambda w: chi1(activation, w, sigma_b, rule=rule, order=order) - 1.0  # noqa: E731
    f_lo, f_hi = f(lo), f(hi)
    if f_lo > 0 or f_hi < 0:
        raise ValueError(f"chi1 - 1 does not change sign on sigma_w in [{lo:g}, {hi:g}] "
                         f"(values {f_lo:.3g}, {f_hi:.3g}); widen the bracket")
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


class BackwardSignal(NamedTuple):
    """Per-member, per-layer mean squares of a stack of random nets with biases."""

    preact: np.ndarray    # (S, L) mean square of z_l over the batch and the units
    backward: np.ndarray  # (S, L+1) mean square of ∂L/∂x_l; last column: grad_output's
    log_growth: np.ndarray  # (S, D) ln(backward[:, l] / backward[:, l+1]), per layer


@torch.no_grad()
def stack_backward_signal(weights: torch.Tensor, biases: torch.Tensor, activation: str,
                          inputs: torch.Tensor, grad_output: torch.Tensor, *,
                          error_if_nonfinite: bool = True) -> BackwardSignal:
    """Forward and backward mean squares per layer of ``S`` nets ``x ↦ φ(W x + b)``.

    The passes are :func:`~gradflowkit.propagation.stack_passes` (the backward pass written
    out, ``∂L/∂x_l = W_lᵀ (φ'(z_l) ⊙ ∂L/∂x_{l+1})``, from ``grad_output`` at the last
    layer's output), the same passes as lesson 6's
    :func:`~gradflowkit.propagation.stack_signal_stats`; this reads mean squares (the
    mean-field ``q``) where that reads standard deviations.

    Args:
        weights: ``(S, L, n, n)``.
        biases: ``(S, L, n)``.
        activation: one of :data:`MEANFIELD_ACTIVATIONS`.
        inputs: ``(S, batch, n)``, the inputs ``x_1`` of every member, or ``(batch, n)``
            shared by all.
        grad_output: ``(S, batch, n)``, ``∂L/∂x_{D+1}``.
        error_if_nonfinite: raise ``FloatingPointError`` if a mean square is inf or NaN
            (default True); with False they are returned as they are.

    Returns:
        A :class:`BackwardSignal` of float64 arrays.
    """
    act = _ACTIVATION_NAMES[check_choice("activation", activation, MEANFIELD_ACTIVATIONS)]
    # The shapes of the weights, biases, inputs and grad_output are checked by stack_passes.
    run = stack_passes(weights, act, inputs, biases=biases, grad_output=grad_output)
    ms = lambda t: t.square().flatten(1).mean(1).double()  # noqa: E731 - per member
    grads = [ms(g) for g in run.grads]
    preact = [ms(z) for z in run.preacts]
    back = torch.stack(grads, dim=1).numpy()
    pre = torch.stack(preact, dim=1).numpy()
    if error_if_nonfinite and not (np.isfinite(back).all() and np.isfinite(pre).all()):
        raise FloatingPointError("a mean square overflowed to inf or NaN; use float64, "
                                 "fewer layers or a smaller sigma_w")
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.log(back[:, :-1] / back[:, 1:])
    return BackwardSignal(preact=pre, backward=back, log_growth=growth)
