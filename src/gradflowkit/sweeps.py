"""Sweeps over an ensemble: learning-rate grids and what became of each run.

A phenomenon at an edge (a run that dies, a run that overflows) is a curve over a swept
parameter, measured on many seeds at once (lessons 7 and 16):

- :func:`lr_grid` lays out the members of a learning-rate × seed sweep as one ensemble
  (learning rate major), and :func:`by_lr` folds a per-member array back into
  ``(learning rates, seeds, …)``;
- :func:`classify_runs` names the outcome of every member of a
  :class:`~gradflowkit.trainer.TrainRecord`, one of :data:`OUTCOMES`, and
  :func:`outcome_counts` counts them per learning rate;
- :func:`step_median`, :func:`member_median` and :func:`step_median_ratio` summarize the
  per-member, per-recorded-step arrays of a ``TrainRecord`` (``grad_norms``,
  ``update_ratios``) without warnings where a stopped member left NaN;
- :func:`nested_backward_ratios` measures a depth sweep of random nets in one pass: the
  backward-signal ratio of the first ``L`` layers of every stack of weight matrices, for
  several ``L`` (lesson 7).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from .activations import derivative, make_activation
from .trainer import TrainRecord
from .validation import check_float, check_int, check_tensor, check_weight_stack, member_batch

#: What became of a training run, in the order the book stacks them:
#: ``"learned"``: finite and at least the asked test accuracy;
#: ``"partial"``: finite, below that accuracy, but its loss has left the chance level;
#: ``"silent"``: finite, and its loss sits at the chance level (a uniform guess);
#: ``"overflow"``: stopped by a non-finite loss or gradient.
OUTCOMES: tuple[str, ...] = ("learned", "partial", "silent", "overflow")


def lr_grid(lrs: Sequence[float], seeds: Sequence[int]) -> tuple[list[int], list[float]]:
    """The members of a sweep over learning rates × seeds, learning rate major.

    Member ``i * len(seeds) + j`` has learning rate ``lrs[i]`` and seed ``seeds[j]``: every
    learning rate sees the same seeds (the same initial weights, and the same batches if
    the batch seeds are laid out the same way), so the learning rate is the only change.

    Args:
        lrs: the learning rates (each > 0).
        seeds: the seeds of one learning rate's members (at least one).

    Returns:
        ``(member_seeds, member_lrs)``, two lists of ``len(lrs) * len(seeds)`` entries, for
        :meth:`~gradflowkit.ensemble.EnsembleMLP.build` and
        :func:`~gradflowkit.trainer.train`'s ``lr``.
    """
    lrs = [check_float(f"lrs[{i}]", v, positive=True) for i, v in enumerate(lrs)]
    seeds = list(seeds)
    if not lrs or not seeds:
        raise ValueError(f"need at least one learning rate and one seed, got {len(lrs)} "
                         f"and {len(seeds)}")
    return [s for _ in lrs for s in seeds], [v for v in lrs for _ in seeds]


def by_lr(values, n_lrs: int) -> np.ndarray:
    """Fold a per-member array of a :func:`lr_grid` sweep into ``(n_lrs, n_seeds, …)``.

    Args:
        values: array-like with the member axis first, ``(n_lrs * n_seeds, …)``.
        n_lrs: the number of learning rates (>= 1).

    Returns:
        The same values as an array ``(n_lrs, n_seeds, …)`` (a view where possible).
    """
    n_lrs = check_int("n_lrs", n_lrs, minimum=1)
    a = np.asarray(values)
    if a.ndim == 0 or a.shape[0] % n_lrs:
        raise ValueError(f"values has {a.shape[0] if a.ndim else 0} members, not a multiple "
                         f"of {n_lrs} learning rates")
    return a.reshape(n_lrs, a.shape[0] // n_lrs, *a.shape[1:])


def classify_runs(record: TrainRecord, accuracy, *, learned: float = 0.5,
                  chance_loss: float = math.log(10), tolerance: float = 0.1,
                  window: int = 10) -> np.ndarray:
    """The outcome of every member of a training run, one of :data:`OUTCOMES`.

    In this order: a member stopped by a non-finite value is ``"overflow"``; a finite one
    with ``accuracy >= learned`` is ``"learned"``; one whose mean training loss over the
    last ``window`` steps is within ``tolerance`` of ``chance_loss`` is ``"silent"``
    (it has stopped learning without any error); the rest are ``"partial"``.

    Args:
        record: what :func:`~gradflowkit.trainer.train` returned.
        accuracy: one accuracy per member, e.g. ``record.metrics["test_accuracy"]``.
        learned: the accuracy that counts as learned (default 0.5).
        chance_loss: the loss of a uniform guess (default ``ln 10``, ten classes).
        tolerance: how close to ``chance_loss`` a silent run's loss is (default 0.1).
        window: steps averaged for the final loss (default 10).

    Returns:
        A string array ``(S,)``.
    """
    learned = check_float("learned", learned)
    chance_loss = check_float("chance_loss", chance_loss, positive=True)
    tolerance = check_float("tolerance", tolerance, positive=True)
    acc = np.asarray(accuracy, dtype=float)
    stopped = np.asarray(record.diverged)
    if acc.shape != stopped.shape:
        raise ValueError(f"accuracy must have one entry per member ({stopped.shape[0]}), "
                         f"got shape {acc.shape}")
    final = record.final_loss(window)
    finite = ~stopped & np.isfinite(final)
    good = finite & (np.nan_to_num(acc, nan=-np.inf) >= learned)
    silent = finite & ~good & (np.abs(final - chance_loss) < tolerance)
    return np.select([~finite, good, silent], ["overflow", "learned", "silent"],
                     default="partial").astype(str)


def outcome_counts(outcomes, n_lrs: int) -> dict[str, np.ndarray]:
    """How many members of each learning rate had each outcome.

    Args:
        outcomes: per-member outcomes of a :func:`lr_grid` sweep (from
            :func:`classify_runs`).
        n_lrs: the number of learning rates.

    Returns:
        ``{outcome: int array (n_lrs,)}`` for every name in :data:`OUTCOMES`, in that order.
    """
    folded = by_lr(np.asarray(outcomes, dtype=str), n_lrs)
    unknown = set(np.unique(folded)) - set(OUTCOMES)
    if unknown:
        raise ValueError(f"unknown outcomes {sorted(unknown)}; expected {OUTCOMES}")
    return {name: (folded == name).sum(axis=1) for name in OUTCOMES}



def _nanmedian(values: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():                   # an all-NaN slice gives NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis)


def step_median(values, steps: slice = slice(None)) -> np.ndarray:
    """Each member's median over its recorded steps, ignoring NaN (steps after a stop).

    Args:
        values: ``(S, R)``, e.g. ``record.update_ratios["blocks.0.linear.weight"]``.
        steps: which recorded steps (default all), e.g. ``slice(0, 2)`` for the first two.

    Returns:
        ``(S,)``; NaN for a member without a finite value in ``steps``.
    """
    a = np.asarray(values, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"values must be (members, recorded steps), got shape {a.shape}")
    return _nanmedian(np.where(np.isfinite(a), a, np.nan)[:, steps], axis=1)


def member_median(values) -> np.ndarray:
    """The median over the members at each recorded step, ignoring NaN: ``(S, R)`` → ``(R,)``.

    Returns:
        NaN at a step where no member has a finite value.
    """
    a = np.asarray(values, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"values must be (members, recorded steps), got shape {a.shape}")
    return _nanmedian(np.where(np.isfinite(a), a, np.nan), axis=0)


def step_median_ratio(numerator, denominator) -> np.ndarray:
    """Each member's median over its recorded steps of ``numerator / denominator``.

    E.g. the first hidden layer's gradient norm over the last one's. Steps where the
    ratio is not a finite positive number (a zero gradient, a stopped member) are left out.

    Args:
        numerator: ``(S, R)``.
        denominator: ``(S, R)``, the same shape.

    Returns:
        ``(S,)``; NaN for a member without such a step.
    """
    num, den = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    if num.shape != den.shape:
        raise ValueError(f"numerator {num.shape} and denominator {den.shape} differ in shape")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = num / den
    return step_median(np.where(np.isfinite(ratio) & (ratio > 0), ratio, np.nan))


@torch.no_grad()
def nested_backward_ratios(weights: torch.Tensor, activation: str, inputs: torch.Tensor,
                           grad_output: torch.Tensor, depths: Sequence[int]) -> np.ndarray:
    """``std(∂L/∂x_1) / std(∂L/∂x_{L+1})`` of the first ``L`` layers of ``S`` random nets.

    Member ``s`` is the plain bias-free net ``x_{l+1} = f(W[s, l] x_l)``, as in
    :func:`~gradflowkit.propagation.stack_signal_stats`; its depth-``L`` version is its
    first ``L`` layers. For each ``L`` the output gradient ``∂L/∂x_{L+1} = G`` is sent back,
    ``∂L/∂x_l = W_lᵀ (f'(z_l) ⊙ ∂L/∂x_{l+1})``: one forward pass serves every depth, so a
    depth sweep costs one pass forward and ``Σ L`` layers backward.

    Args:
        weights: ``(S, depth, n, n)``, e.g. from
            :func:`~gradflowkit.initialization.init_weights`.
        activation: the name of ``f``.
        inputs: ``(batch, n)`` shared by the members, or ``(S, batch, n)``.
        grad_output: ``G``, ``(S, batch, n)``: the gradient put in at every depth's output.
        depths: the depths ``L`` (each between 1 and ``depth``).

    Returns:
        Float64 array ``(len(depths), S)``: the ratio of the population standard deviations
        (over the batch and the units) of ``∂L/∂x_1`` and of ``G``. Non-finite values are
        left in.
    """
    members, depth, n_in = check_weight_stack(weights)
    depths = [check_int("depth", L, minimum=1) for L in depths]
    if not depths or max(depths) > depth:
        raise ValueError(f"depths must be between 1 and {depth}, got {depths}")
    x = member_batch("inputs", inputs, members, n_in, weights.dtype)
    check_tensor("grad_output", grad_output)
    if tuple(grad_output.shape) != tuple(x.shape):
        raise ValueError(f"grad_output must have shape {tuple(x.shape)}, got "
                         f"{tuple(grad_output.shape)}")
    f = make_activation(activation)
    slopes = []
    for layer in range(max(depths)):
        z = torch.bmm(x, weights[:, layer].transpose(1, 2))
        slopes.append(derivative(activation, z))
        x = f(z)
    g_out = grad_output.to(weights.dtype)
    std = lambda t: t.double().flatten(1).std(1, correction=0)  # noqa: E731 - per member
    rows = []
    for L in depths:
        g = g_out
        for layer in reversed(range(L)):
            g = torch.bmm(slopes[layer] * g, weights[:, layer])
        rows.append(std(g) / std(g_out))
    return torch.stack(rows).numpy()
