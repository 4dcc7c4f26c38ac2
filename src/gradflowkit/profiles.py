"""Backward-signal profiles of every member of an ensemble while it trains (lesson 14).

:class:`SignalRecorder` is a ``callback`` for :func:`~gradflowkit.trainer.train`: at each
call it measures ``‖∂L_s/∂x_l‖`` of every block ``l`` and every member ``s`` on one fixed
batch (:func:`~gradflowkit.ensemble.signal_profile` with cross-entropy), so that profiles
at different steps compare the same inputs (for one net: an ensemble of one).

:func:`signal_ratio` turns the profiles into the number lesson 14 reads them by: the
signal entering the first block over the signal leaving the last, per member and step.
"""

from __future__ import annotations

import numpy as np
import torch

from .ensemble import EnsembleMLP, member_cross_entropy, signal_profile
from .validation import check_int, check_tensor


class SignalRecorder:
    """A ``callback`` for :func:`~gradflowkit.trainer.train` that records signal profiles.

    The measuring pass runs in the mode the trainer hands over (training mode): in a net
    with batch norm it normalizes over the fixed batch and nudges the running statistics,
    as one more training batch would; the weights and their ``.grad`` are not changed.

    Args:
        x: the fixed batch of inputs, ``(batch, features)``, shared by the members.
        y: its labels, ``(batch,)``.

    Example:
        >>> rec = SignalRecorder(data.x_train[:256], data.y_train[:256])  # doctest: +SKIP
        >>> train(ens, task, steps=150, lr=0.05, record_every=25, callback=rec)  # doctest: +SKIP
        >>> rec.profiles.shape     # (checkpoints, members, depth + 1)  # doctest: +SKIP
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        check_tensor("x", x, ndim=2)
        if not isinstance(y, torch.Tensor) or y.ndim != 1:
            raise TypeError(f"y must be a 1-D tensor of labels, got {type(y).__name__} "
                            f"{tuple(getattr(y, 'shape', ()))}")
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)} labels")
        self.x, self.y = x, y
        self.steps: list[int] = []            # the step of each recorded profile
        self._signal: list[np.ndarray] = []   # (S, depth + 1) per recorded step

    def __call__(self, step: int, model: EnsembleMLP) -> None:
        if not isinstance(model, EnsembleMLP):
            raise TypeError(f"SignalRecorder records an EnsembleMLP, got "
                            f"{type(model).__name__}; for one net, build an "
                            "EnsembleMLP of one seed")
        self.steps.append(check_int("step", step, minimum=0))
        self._signal.append(signal_profile(
            model, self.x, lambda out: member_cross_entropy(out, self.y)))

    @property
    def profiles(self) -> np.ndarray:
        """Float64 ``(checkpoints, S, depth + 1)``: ``‖∂L_s/∂x_l‖`` at each recorded step.

        Column ``l`` is the input of block ``l`` (``l = 0``: the stem's output; the last
        column: the last block's output). Non-finite values of a diverged member are kept.
        """
        if not self._signal:
            raise ValueError("nothing recorded yet: pass the recorder to train() as "
                             "callback, with record_every >= 1")
        return np.stack(self._signal)


def signal_ratio(profiles: np.ndarray, first: int = 1) -> np.ndarray:
    """``‖∂L/∂x_first‖ / ‖∂L/∂x_last‖``: input-side signal over output-side signal.

    Args:
        profiles: ``(..., depth + 1)`` backward-signal norms, e.g.
            :attr:`SignalRecorder.profiles`.
        first: the column of the numerator (default 1: the second block's input ``x_2``,
            which leaves out the stem's output ``x_1``; columns count from 0, the book's
            layers from 1; see lesson 14).

    Returns:
        ``profiles[..., first] / profiles[..., -1]``, shape ``profiles.shape[:-1]``.
        Ratios > 1 mean the signal grows toward the input.
    """
    p = np.asarray(profiles, dtype=np.float64)
    if p.ndim < 1 or p.shape[-1] < 2:
        raise ValueError(f"profiles must end in an axis of depth + 1 >= 2 entries, got "
                         f"shape {p.shape}")
    first = check_int("first", first, minimum=0)
    if first >= p.shape[-1] - 1:
        raise ValueError(f"first must be below the last column {p.shape[-1] - 1}, got {first}")
    return p[..., first] / p[..., -1]
