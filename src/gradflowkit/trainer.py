"""The book's one training loop: every member of an ensemble trained together.

:func:`train` runs ``steps`` optimizer steps on a model whose parameters have the member
axis first (an :class:`~gradflowkit.ensemble.EnsembleMLP`, an
:class:`~gradflowkit.ensemble_recurrent.EnsembleRecurrent`, or an ensemble of one), on a task from
:mod:`gradflowkit.tasks`. Every member has its own batches, its own learning rate if asked,
and its own fate: a member whose loss or gradient stops being finite is **stopped** at that
step, before the bad update, and the others go on. What happened is returned as one
:class:`TrainRecord` (lessons 2, 7-10, 13-16).

Each step, for the members still active:

1. ``loss_s`` of every member on its batch; a non-finite loss stops the member;
2. backward; a non-finite gradient norm stops the member;
3. at recorded steps: gradient norms per parameter (before clipping), ``grad_callback``;
4. optional clipping of each member's gradient to global norm ``clip`` (as
   ``torch.nn.utils.clip_grad_norm_`` does for one net);
5. the optimizer step (:class:`~gradflowkit.member_optim.MemberOptimizer`), at each
   member's learning rate times its warm-up factor (:func:`warmup_factor`); at recorded
   steps also the update-to-data ratio ``log10(std(Δθ)/std(θ))`` of every parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .agc import adaptive_clip_grad_
from .member_optim import MemberOptimizer
from .seeding import ensemble_seeds
from .validation import check_float, check_int

StepCallback = Callable[[int, nn.Module], None]


@dataclass
class TrainRecord:
    """What :func:`train` recorded, one row per member."""

    loss: np.ndarray               # (S, steps) training loss; NaN from a member's stop on
    stopped_at: np.ndarray         # (S,) step whose loss or gradient was not finite; -1: none
    recorded_steps: np.ndarray     # (R,) steps at which the two dicts below were recorded
    grad_norms: dict[str, np.ndarray] = field(default_factory=dict)     # name -> (S, R)
    update_ratios: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (S, R)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # (S,), NaN if stopped

    @property
    def diverged(self) -> np.ndarray:
        """Boolean ``(S,)``: the members that were stopped by a non-finite value."""
        return self.stopped_at >= 0

    def final_loss(self, window: int = 1) -> np.ndarray:
        """Mean training loss of the last ``window`` steps, per member (NaN if stopped)."""
        window = check_int("window", window, minimum=1)
        if window > self.loss.shape[1]:
            raise ValueError(f"window {window} is longer than the run "
                             f"({self.loss.shape[1]} steps)")
        return self.loss[:, -window:].mean(1)


def n_members_of(model: nn.Module) -> int:
    """The ensemble size of ``model``: its ``n_members`` attribute, checked on the parameters."""
    n = getattr(model, "n_members", None)
    if not isinstance(n, int) or n < 1:
        raise TypeError(f"{type(model).__name__} is not an ensemble (no n_members); build an "
                        "EnsembleMLP or EnsembleRecurrent, with one seed for a single net")
    return n


def train(model: nn.Module, task, *, steps: int, lr: float | Sequence[float],
          optimizer: str = "sgd", momentum: float = 0.0,
          weight_decay: float | Sequence[float] = 0.0,
          betas: tuple[float, float] = (0.9, 0.999), clip: float | None = None,
          seeds: Sequence[int] | None = None, record_every: int = 0,
          update_ratios: bool = True, callback: StepCallback | None = None,
          grad_callback: StepCallback | None = None,
          agc: float | None = None, warmup: int | Sequence[int] = 0) -> TrainRecord:
    """Train every member of ``model`` on ``task``; see the module docstring.

    Args:
        model: an ensemble (parameters with the member axis first, ``n_members``).
        task: a task from :mod:`gradflowkit.tasks` (``start``, ``batch``, ``losses``,
            ``evaluate``).
        steps: optimizer steps (>= 1).
        lr: learning rate (> 0), one for all members or one per member.
        optimizer: ``"sgd"`` (default), ``"adam"`` or ``"adamw"``.
        momentum: SGD momentum (default 0).
        weight_decay: λ (default 0), one for all members or one per member; see
            :class:`~gradflowkit.member_optim.MemberOptimizer`.
        betas: Adam's betas (default (0.9, 0.999)).
        clip: clip each member's gradient to this global norm (default None: no clipping).
        seeds: one seed per member for its batches (default: from ``GRADFLOW_SEED``).
        record_every: record gradient norms and update ratios every this many steps
            (default 0: never).
        update_ratios: record the update ratios too (default True); False leaves
            ``TrainRecord.update_ratios`` empty and saves their cost at recorded steps.
        callback: called as ``callback(step, model)`` before the recorded steps and once
            after the last step (``step = steps``), e.g. to measure a gradient profile
            (needs ``record_every``). The model is put back in training mode after it.
        grad_callback: called as ``grad_callback(step, model)`` at recorded steps after the
            backward pass, before clipping and the update: the ``.grad`` of stopped
            members are zero.
        agc: adaptive gradient clipping with λ = ``agc`` and ε = 1e-3, unit by unit and
            member by member, after the global clipping (default None: none; see
            :func:`~gradflowkit.agc.adaptive_clip_grad_`, lesson 20).
        warmup: linear learning-rate warm-up over this many steps, one for all members or
            one per member (default 0: none): member ``m`` steps with
            ``lr[m] · min(1, (t + 1)/warmup[m])`` at step ``t`` (lesson 19).

    Returns:
        A :class:`TrainRecord`; ``metrics`` is ``task.evaluate(model)`` after training.
    """
    n = n_members_of(model)
    steps = check_int("steps", steps, minimum=1)
    record_every = check_int("record_every", record_every, minimum=0)
    if (callback or grad_callback) and record_every == 0:
        raise ValueError("callback and grad_callback need record_every >= 1 (they are "
                         "called every record_every steps)")
    if clip is not None:
        clip = check_float("clip", clip, positive=True)
    if agc is not None:
        agc = check_float("agc", agc, positive=True)
    seeds = list(ensemble_seeds(n, "batches") if seeds is None else seeds)
    if len(seeds) != n:
        raise ValueError(f"seeds has {len(seeds)} entries for an ensemble of {n} members")
    warm = warmup_steps(warmup, n)
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    opt = MemberOptimizer(params, n, kind=optimizer, lr=lr, momentum=momentum,
                          weight_decay=weight_decay, betas=betas)
    peak_lr = opt.lr
    dtype = params[0][1].dtype if params else torch.float32
    task.start(seeds, steps)
    active = torch.ones(n, dtype=torch.bool)
    stopped_at = np.full(n, -1)
    loss_log = torch.full((steps, n), float("nan"), dtype=torch.float64)
    recorded, grad_rows, ratio_rows = [], [], []
    model.train()
    for step in range(steps):
        record = record_every > 0 and step % record_every == 0
        if record and callback is not None:
            callback(step, model)
            model.train()
        x, target = (_as(t, dtype) for t in task.batch(step))
        losses = task.losses(model(x), target)
        _stop(active, stopped_at, ~torch.isfinite(losses.detach()), step)
        for _, p in params:                 # model.zero_grad() walks the modules every step
            p.grad = None
        torch.where(active, losses, torch.zeros_like(losses)).sum().backward()
        total = _total_norms(params, n)
        _stop(active, stopped_at, ~torch.isfinite(total), step)
        loss_log[step] = torch.where(active, losses.detach().double(), float("nan"))
        if record:
            recorded.append(step)
            norms = _member_norms(params, n)
            grad_rows.append(torch.where(active[:, None], norms, float("nan")).sqrt())
            if grad_callback is not None:
                _zero_stopped_grads(params, active)
                grad_callback(step, model)
        if clip is not None:
            _clip(params, total, clip, active)
        if agc is not None:        # stopped members may hold inf: the optimizer ignores them
            adaptive_clip_grad_([p for _, p in params], agc, members=n,
                                error_if_nonfinite=False)
        if bool((warm > step).any()):      # warming up; the last such step sets the peak
            opt.set_lr(peak_lr * warmup_factor(step, warm))
        ratios = record and update_ratios
        data_std = _member_std([p.detach() for _, p in params], n) if ratios else None
        deltas = opt.step(active, updates=ratios)
        if ratios:
            update_std = _member_std([deltas.get(name, torch.zeros_like(p))
                                      for name, p in params], n)
            ratio_rows.append(_log_ratio(update_std, data_std, active))
    if callback is not None:
        callback(steps, model)
        model.train()
    metrics = task.evaluate(model)
    stopped = torch.from_numpy(stopped_at >= 0)
    names = [name for name, _ in params]
    return TrainRecord(
        loss=loss_log.T.numpy().copy(), stopped_at=stopped_at,
        recorded_steps=np.array(recorded, dtype=int),
        grad_norms=_by_name(names, grad_rows), update_ratios=_by_name(names, ratio_rows),
        metrics={k: np.where(stopped.numpy(), np.nan, np.asarray(v, dtype=float))
                 for k, v in metrics.items()})


def warmup_steps(warmup: int | Sequence[int], n: int) -> torch.Tensor:
    """Warm-up steps per member, int64 ``(S,)``, from one integer >= 0 or one per member."""
    values = [warmup] * n if isinstance(warmup, (int, np.integer)) else list(warmup)
    if len(values) != n:
        raise ValueError(f"warmup has {len(values)} values for an ensemble of {n} members; "
                         "pass one integer or one per member")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"warmup must be integers >= 0 (steps), got {v!r} at member {i}")
    return torch.tensor([int(v) for v in values], dtype=torch.int64)


def warmup_factor(step: int, warmup: torch.Tensor) -> torch.Tensor:
    """Linear warm-up ``min(1, (step + 1) / warmup)`` per member, float64; ``warmup = 0``: 1.

    Args:
        step: the step, from 0.
        warmup: warm-up steps per member ``(S,)``, >= 0.
    """
    w = warmup.to(torch.float64)
    return torch.where(w > 0, torch.clamp((step + 1) / w.clamp(min=1), max=1.0),
                       torch.ones_like(w))


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Floating-point data in the model's dtype (labels stay integers)."""
    return t.to(dtype) if t.is_floating_point() else t


def _stop(active: torch.Tensor, stopped_at: np.ndarray, bad: torch.Tensor, step: int) -> None:
    newly = (bad & active).numpy()
    stopped_at[newly] = step
    active &= ~bad


def _total_norms(params, n: int) -> torch.Tensor:
    """Each member's global gradient norm ``(S,)``, from one concatenation of the gradients.

    In the gradients' dtype; where that is not finite the norm is taken again in float64, so
    that a finite float32 gradient whose norm overflows float32 is not mistaken for an
    infinite one.
    """
    grads = [p.grad.detach().reshape(n, -1) for _, p in params if p.grad is not None]
    if not grads:
        return torch.zeros(n, dtype=torch.float64)
    flat = torch.cat(grads, dim=1)
    total = torch.linalg.vector_norm(flat, dim=1).double()
    if not bool(torch.isfinite(total).all()):
        total = torch.linalg.vector_norm(flat, dim=1, dtype=torch.float64)
    return total


def _member_norms(params, n: int) -> torch.Tensor:
    """Squared gradient norm of every parameter and member, float64 ``(S, P)``."""
    cols = []
    for _, p in params:
        if p.grad is None:
            cols.append(torch.zeros(n, dtype=torch.float64))
        else:
            g = p.grad.detach().reshape(n, -1)
            cols.append(torch.linalg.vector_norm(g, dim=1, dtype=torch.float64) ** 2)
    return torch.stack(cols, dim=1)


def _zero_stopped_grads(params, active: torch.Tensor) -> None:
    for _, p in params:
        if p.grad is not None:
            p.grad.masked_fill_(~active.view((-1,) + (1,) * (p.ndim - 1)), 0.0)


@torch.no_grad()
def _clip(params, total_norm: torch.Tensor, max_norm: float, active: torch.Tensor) -> None:
    """Scale each active member's gradient as ``torch.nn.utils.clip_grad_norm_`` would."""
    coef = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    coef = torch.where(active, coef, torch.ones_like(coef))
    for _, p in params:
        if p.grad is not None:
            p.grad.mul_(coef.to(p.grad.dtype).view((-1,) + (1,) * (p.ndim - 1)))


def _member_std(tensors: list[torch.Tensor], n: int) -> torch.Tensor:
    """Population std of every tensor's entries per member, float64 ``(S, P)``."""
    cols = []
    for t in tensors:
        flat = t.reshape(n, -1).double()
        if flat.shape[1] < 2:
            cols.append(torch.full((n,), float("nan"), dtype=torch.float64))
        else:
            cols.append(flat.std(1, correction=0))
    return torch.stack(cols, dim=1)


def _log_ratio(update_std: torch.Tensor, data_std: torch.Tensor,
               active: torch.Tensor) -> torch.Tensor:
    """``log10(std(Δθ)/std(θ))``; NaN where either is 0 or the member is stopped."""
    ok = (update_std > 0) & (data_std > 0) & active[:, None]
    safe = torch.where(ok, update_std / torch.where(ok, data_std, 1.0), 1.0)
    return torch.where(ok, torch.log10(safe), float("nan"))


def _by_name(names: list[str], rows: list[torch.Tensor]) -> dict[str, np.ndarray]:
    if not rows:
        return {}
    table = torch.stack(rows, dim=2).numpy()   # (S, P, R)
    return {name: table[:, i, :].copy() for i, name in enumerate(names)}
