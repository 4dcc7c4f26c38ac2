"""Spectral norms of the weights during training, and how fast weight decay shrinks them
(lesson 10).

Weight decay multiplies every weight by ``1 - ηλ`` per SGD step before the gradient step is
added, so with no gradient the spectral norm ``σ_max(W)`` shrinks geometrically:
``σ_max(W_k) = (1 - ηλ)^k σ_max(W_0)``. :func:`decay_steps` inverts that, and
:class:`EnsembleSpectralTracker` records what actually happens while the members of an
ensemble train (:func:`~gradflowkit.trainer.train`): ``σ_max`` of every weight matrix
(:func:`member_spectral_norms`; :func:`spectral_norms` for one net) and the backward-signal
ratio ``‖∂L/∂x_1‖ / ‖∂L/∂x_{L+1}‖`` on a fixed batch. :class:`L2PenaltyTask` gives every
member its own L2 penalty in the loss (lesson 8; for SGD it is weight decay, which the
trainer also takes per member).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .ensemble import member_cross_entropy, signal_profile
from .validation import check_float, check_tensor


def spectral_norms(model: nn.Module) -> dict[str, float]:
    """The largest singular value of every 2-D parameter (weight matrix) of ``model``.

    Args:
        model: any module.

    Returns:
        ``{parameter name: σ_max}`` in ``named_parameters()`` order; biases are skipped.
    """
    with torch.no_grad():
        return {name: float(torch.linalg.matrix_norm(p.detach(), ord=2))
                for name, p in model.named_parameters() if p.ndim == 2}


def decay_steps(factor: float, lr: float, weight_decay: float) -> float:
    """Number of pure weight-decay steps that divide a weight matrix by ``factor``.

    Solves ``(1 - lr · weight_decay)^k = 1 / factor`` for ``k``, that is
    ``k = ln(factor) / (-ln(1 - lr · weight_decay))``, which is about
    ``ln(factor) / (lr · weight_decay)`` when ``lr · weight_decay`` is small.

    Args:
        factor: how many times smaller the weights should get (> 0; < 1 gives a negative k).
        lr: learning rate η (> 0).
        weight_decay: λ (> 0), with ``lr · weight_decay < 1``.

    Returns:
        ``k`` as a float (not rounded).
    """
    factor = check_float("factor", factor, positive=True)
    rate = check_float("lr", lr, positive=True) * check_float("weight_decay", weight_decay,
                                                              positive=True)
    if rate >= 1:
        raise ValueError(f"lr * weight_decay must be < 1, got {rate}; each step would flip "
                         "or zero the weights")
    return math.log(factor) / -math.log1p(-rate)


def member_spectral_norms(model: nn.Module) -> dict[str, np.ndarray]:
    """``σ_max`` of every weight matrix of every member of an ensemble.

    Args:
        model: an ensemble whose parameters have the member axis first, e.g. an
            :class:`~gradflowkit.ensemble.EnsembleMLP`; its weight matrices are the
            parameters with 3 axes ``(S, out, in)``.

    Returns:
        ``{parameter name: float64 array (S,)}`` in ``named_parameters()`` order; biases
        and other parameters are skipped.
    """
    with torch.no_grad():   # in the parameters' own dtype: float32 SVDs are much cheaper
        return {name: torch.linalg.matrix_norm(p.detach(), ord=2).double().numpy()
                for name, p in model.named_parameters() if p.ndim == 3}


class EnsembleSpectralTracker:
    """A training callback: ``σ_max`` of every weight and the backward ratio, per member.

    Pass it as ``callback=`` to :func:`~gradflowkit.trainer.train` (with ``record_every``).
    Every call appends the step, :func:`member_spectral_norms` of the model, and every
    member's ratio ``‖∂L/∂x_1‖ / ‖∂L/∂x_{L+1}‖`` of
    :func:`~gradflowkit.ensemble.signal_profile` on the fixed batch ``(x, y)``, with the
    members' cross-entropy.

    Args:
        x: a fixed batch of inputs ``(batch, features)``, shared by the members.
        y: its integer labels ``(batch,)``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x = check_tensor("x", x, ndim=2)
        if not isinstance(y, torch.Tensor) or y.shape != (len(x),):
            raise ValueError(f"y must be a tensor with one label per row of x ({len(x)} rows)")
        self.y = y
        self.steps: list[int] = []
        self._sigma: dict[str, list[np.ndarray]] = {}
        self._ratio: list[np.ndarray] = []

    def __call__(self, step: int, model: nn.Module) -> None:
        self.steps.append(int(step))
        for name, value in member_spectral_norms(model).items():
            self._sigma.setdefault(name, []).append(value)
        signal = signal_profile(model, self.x.to(next(model.parameters()).dtype),
                                lambda out: member_cross_entropy(out, self.y))
        self._ratio.append(signal[:, 0] / signal[:, -1])

    @property
    def sigma(self) -> dict[str, np.ndarray]:
        """``{weight name: (S, records)}``: ``σ_max`` of every member at every record."""
        return {name: np.stack(v, axis=1) for name, v in self._sigma.items()}

    @property
    def backward_ratio(self) -> np.ndarray:
        """``(S, records)``: first/last backward-signal ratio of every member."""
        return np.stack(self._ratio, axis=1)


class L2PenaltyTask:
    """A task whose loss carries an L2 penalty, with one ``λ`` per member of the ensemble.

    ``losses`` returns ``L_s + λ_s/2 · ‖θ_s‖²`` (all parameters of member ``s``). Under
    plain SGD this is weight decay ``θ ← (1 − ηλ)θ − η∇L`` (lesson 10,
    eq. ``eq-reg-decay``), which the trainer's own ``weight_decay`` applies instead; use
    this task where the penalty in the loss is the point (lesson 8: L2 with batch norm).
    The recorded training loss includes the penalty; ``evaluate`` is the wrapped task's.

    Args:
        task: the task to wrap (e.g. :class:`~gradflowkit.tasks.ClassificationTask`).
        model: the ensemble that will be trained (its parameters enter the penalty).
        weight_decay: ``λ >= 0``, one value or one per member.
    """

    def __init__(self, task, model: nn.Module, weight_decay):
        n = getattr(model, "n_members", None)
        if not isinstance(n, int) or n < 1:
            raise TypeError(f"model must be an ensemble (with n_members), got "
                            f"{type(model).__name__}")
        values = np.broadcast_to(np.asarray(weight_decay, dtype=float), (n,)).copy() \
            if np.ndim(weight_decay) == 0 else np.asarray(weight_decay, dtype=float)
        if values.shape != (n,):
            raise ValueError(f"weight_decay needs one value or {n} (one per member), got "
                             f"{values.shape[0]}")
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(f"weight_decay must be finite and >= 0, got {values.tolist()}")
        self.task, self.model, self.n = task, model, n
        self.weight_decay = torch.from_numpy(values)

    def start(self, seeds, steps: int) -> None:
        """As the wrapped task."""
        self.task.start(seeds, steps)

    def batch(self, step: int):
        """As the wrapped task."""
        return self.task.batch(step)

    def losses(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The wrapped task's losses plus ``λ_s/2 ‖θ_s‖²``, shape ``(S,)``."""
        base = self.task.losses(out, target)
        flat = torch.cat([p.reshape(self.n, -1) for p in self.model.parameters()], dim=1)
        return base + 0.5 * self.weight_decay.to(base.dtype) * (flat * flat).sum(1)

    def evaluate(self, model: nn.Module) -> dict[str, np.ndarray]:
        """As the wrapped task."""
        return self.task.evaluate(model)
