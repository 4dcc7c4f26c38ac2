"""A small, seeded training loop that records what the lessons look at (lessons 2, 10, 14, 16)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Split
from .gradients import layer_profile, parameter_grad_norms
from .validation import check_float, check_int


@dataclass
class History:
    """What :func:`train_classifier` recorded."""

    loss: list[float] = field(default_factory=list)   # training loss at every step
    grad_norms: list[dict[str, float]] = field(default_factory=list)  # every record_every steps
    recorded_steps: list[int] = field(default_factory=list)  # steps of grad_norms entries
    train_accuracy: float = float("nan")  # after the last step
    test_accuracy: float = float("nan")   # after the last step


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copy of every parameter, keyed by name, to compare against later.

    Args:
        model: any module.

    Returns:
        ``{name: detached clone}``.
    """
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def relative_change(before: dict[str, torch.Tensor], model: nn.Module) -> dict[str, float]:
    """``‖θ_after − θ_before‖ / ‖θ_before‖`` for every parameter in ``before``.

    Args:
        before: a :func:`snapshot` taken earlier.
        model: the same module, later.

    Returns:
        ``{name: relative change}``; a parameter that started at zero gets ``inf`` if it moved.
    """
    params = dict(model.named_parameters())
    missing = sorted(set(before) - set(params))
    if missing:
        raise ValueError(f"snapshot has parameters the model lacks: {missing}")
    changes = {}
    for name, old in before.items():
        diff = float(torch.linalg.vector_norm(params[name].detach() - old))
        base = float(torch.linalg.vector_norm(old))
        changes[name] = diff / base if base > 0 else (0.0 if diff == 0 else float("inf"))
    return changes


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of rows of ``x`` whose arg-max output equals the label ``y`` (eval mode)."""
    was_training = model.training
    model.eval()
    acc = float((model(x).argmax(1) == y).double().mean())
    model.train(was_training)
    return acc


def train_classifier(model: nn.Module, data: Split, *, steps: int, lr: float,
                     batch_size: int = 64, momentum: float = 0.0, seed: int = 0,
                     record_every: int = 0, weight_decay: float = 0.0,
                     callback: Callable[[int, nn.Module], None] | None = None) -> History:
    """Train ``model`` with cross-entropy and SGD on mini-batches; record the loss.

    Args:
        model: maps ``(batch, features)`` to ``(batch, classes)`` logits; trained in place.
        data: the :class:`~gradflowkit.data.Split` to use.
        steps: number of SGD steps (>= 1).
        lr: learning rate (> 0).
        batch_size: rows per step (default 64).
        momentum: SGD momentum (default 0).
        seed: seed of the mini-batch order (default 0).
        record_every: record per-parameter gradient norms every this many steps
            (default 0: never).
        weight_decay: λ of SGD's weight decay, ``θ ← θ - lr (∇L + λ θ)``, the same as adding
            ``λ/2 ‖θ‖²`` to the loss (default 0; lesson 10). Applies to every parameter.
        callback: called as ``callback(step, model)`` before steps ``0, record_every,
            2 record_every, ...`` and once after the last step with ``step = steps``, e.g. a
            :class:`~gradflowkit.spectral.SpectralTracker` (default None; needs
            ``record_every >= 1``). It may run its own forward and backward passes.

    Returns:
        A :class:`History`. Raises ``FloatingPointError`` if the loss becomes inf or NaN.
    """
    steps = check_int("steps", steps, minimum=1)
    lr = check_float("lr", lr, positive=True)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    record_every = check_int("record_every", record_every, minimum=0)
    if callback is not None and record_every == 0:
        raise ValueError("callback needs record_every >= 1 (it is called every record_every "
                         "steps)")
    optimizer = torch.optim.SGD(model.parameters(), lr=lr,
                                momentum=check_float("momentum", momentum, nonnegative=True),
                                weight_decay=check_float("weight_decay", weight_decay,
                                                         nonnegative=True))
    gen = torch.Generator().manual_seed(check_int("seed", seed))
    n = len(data.y_train)
    history = History()
    order, cursor = torch.randperm(n, generator=gen), 0
    model.train()
    for step in range(steps):
        if callback is not None and step % record_every == 0:
            callback(step, model)
            model.train()
        if cursor + batch_size > n:
            order, cursor = torch.randperm(n, generator=gen), 0
        idx = order[cursor:cursor + batch_size]
        cursor += batch_size
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {step}; "
                                     "lower lr or the initial weight scale")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if record_every and step % record_every == 0:
            history.grad_norms.append(parameter_grad_norms(model))
            history.recorded_steps.append(step)
        optimizer.step()
        history.loss.append(loss.item())  # float(loss) warns: it requires grad
    if callback is not None:
        callback(steps, model)
    history.train_accuracy = accuracy(model, data.x_train, data.y_train)
    history.test_accuracy = accuracy(model, data.x_test, data.y_test)
    return history


class ProfileRecorder:
    """A ``callback`` for :func:`train_classifier` that records layer profiles (lesson 14).

    At every call it runs :func:`~gradflowkit.gradients.layer_profile` with cross-entropy on
    one fixed batch, so profiles at different steps compare the same inputs. In a net with
    batch norm this extra forward pass (in training mode) also nudges the running
    statistics, as one more training batch would; the weights are not changed.

    Args:
        x: the fixed batch of inputs.
        y: its labels.

    Example:
        >>> rec = ProfileRecorder(data.x_train[:256], data.y_train[:256])  # doctest: +SKIP
        >>> train_classifier(net, data, steps=100, lr=0.05, record_every=25,
        ...                  callback=rec)  # doctest: +SKIP
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)} labels")
        self.x, self.y = x, y
        self.steps: list[int] = []          # the step of each recorded profile
        self.signal: list[np.ndarray] = []  # ‖∂L/∂x_l‖, l = 0 … depth, at each step
        self.weight: list[np.ndarray] = []  # ‖∂L/∂W_l‖ of each block's first linear layer

    def __call__(self, step: int, model: nn.Module) -> None:
        profile = layer_profile(model, self.x, lambda out: F.cross_entropy(out, self.y))
        model.zero_grad(set_to_none=True)  # leave no gradient behind for the optimizer
        self.steps.append(step)
        self.signal.append(profile.signal)
        self.weight.append(profile.weight)


def moving_average(values, window: int) -> np.ndarray:
    """Trailing mean over ``window`` values: entry ``i`` averages ``values[i-window+1 … i]``.

    Args:
        values: a sequence of numbers, e.g. ``History.loss``.
        window: how many values to average (>= 1, at most ``len(values)``).

    Returns:
        ``len(values) - window + 1`` means, in float64; entry ``j`` belongs to step
        ``j + window - 1``.
    """
    v = np.asarray(values, dtype=np.float64)
    window = check_int("window", window, minimum=1)
    if v.ndim != 1 or window > len(v):
        raise ValueError(f"need a 1-D sequence of at least window={window} values, got "
                         f"shape {v.shape}")
    c = np.concatenate([[0.0], np.cumsum(v)])
    return (c[window:] - c[:-window]) / window
