"""What the trainer trains on: mini-batches for every member, a loss per member, metrics.

A task hands :func:`~gradflowkit.trainer.train` one batch per step for all members at once
(each member with its own batch order, from its own seed), turns the ensemble's output into
one loss per member, and measures the members after training:

- :class:`ClassificationTask`: a :class:`~gradflowkit.data.Split` (the digits), cross-entropy,
  train and test accuracy;
- :class:`AddingTask`: fresh batches of the adding problem (lesson 9), mean squared error,
  MSE on a held-out batch;
- :class:`ReversalTask`: fresh random token sequences to reverse (lesson 19), token
  cross-entropy, token accuracy on a held-out batch.

:func:`batch_indices` is the batch order of one member, so that a single run in a loop (the
unit tests' oracle) sees exactly the batches of that member in the ensemble.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .data import Split
from .ensemble import member_cross_entropy
from .recurrent import adding_problem
from .seeding import derive_seed
from .transformer import member_token_loss, reversal_batch
from .validation import check_int


def batch_indices(seed: int, steps: int, n: int, batch_size: int) -> torch.Tensor:
    """The rows of each step's mini-batch: epochs of shuffled rows, taken in order.

    A new random order is drawn whenever fewer than ``batch_size`` rows of the current one
    are left (the rest of that epoch is skipped).

    Args:
        seed: seed of the shuffles.
        steps: number of batches.
        n: rows in the data set (>= ``batch_size``).
        batch_size: rows per batch.

    Returns:
        int64 tensor ``(steps, batch_size)``.
    """
    steps = check_int("steps", steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if n < batch_size:
        raise ValueError(f"batch_size {batch_size} is larger than the data set ({n} rows)")
    gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    per_epoch = n // batch_size
    epochs = -(-steps // per_epoch)
    orders = [torch.randperm(n, generator=gen)[:per_epoch * batch_size]
              for _ in range(epochs)]
    return torch.cat(orders).view(-1, batch_size)[:steps]


class ClassificationTask:
    """Cross-entropy on a :class:`~gradflowkit.data.Split`, mini-batches per member.

    Args:
        data: the split; the training part is batched, both parts are evaluated.
        batch_size: rows per step and member (default 64).
    """

    def __init__(self, data: Split, batch_size: int = 64):
        if not isinstance(data, Split):
            raise TypeError(f"data must be a gradflowkit.data.Split, got {type(data).__name__}")
        self.data = data
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self._order: torch.Tensor | None = None

    def start(self, seeds: Sequence[int], steps: int) -> None:
        """Draw every member's batch order for ``steps`` steps."""
        n = len(self.data.y_train)
        self._order = torch.stack([batch_indices(s, steps, n, self.batch_size)
                                   for s in seeds], dim=1)   # (steps, S, batch)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``(S, batch, features)`` and labels ``(S, batch)`` of ``step``."""
        idx = self._order[step]
        return self.data.x_train[idx], self.data.y_train[idx]

    def losses(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each member's mean cross-entropy, shape ``(S,)``."""
        return member_cross_entropy(out, target)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, np.ndarray]:
        """Train and test accuracy of every member, in eval mode."""
        was_training = model.training
        model.eval()
        result = {}
        for part, x, y in (("train", self.data.x_train, self.data.y_train),
                           ("test", self.data.x_test, self.data.y_test)):
            x = x.to(next(model.parameters()).dtype)
            result[f"{part}_accuracy"] = (model(x).argmax(-1) == y).double().mean(1).numpy()
        model.train(was_training)
        return result


class AddingTask:
    """The adding problem of length ``length``: fresh sequences for every step and member, MSE.

    Member ``i``'s batches for the whole run are drawn at the start, in one call
    ``adding_problem(steps * batch_size, length)`` with the generator seeded by ``seeds[i]``;
    step ``k`` takes rows ``k·batch_size … (k+1)·batch_size − 1``. (One call per member
    instead of one per member and step: the per-step calls cost about a tenth of training a
    small ensemble.) The held-out batch of :meth:`evaluate` is the same for every member,
    seeded from ``GRADFLOW_SEED``.

    Args:
        length: sequence length T (>= 2).
        batch_size: sequences per step and member (default 64).
        test_size: sequences in the held-out batch (default 1000).
    """

    def __init__(self, length: int, batch_size: int = 64, test_size: int = 1000):
        self.length = check_int("length", length, minimum=2)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.test_size = check_int("test_size", test_size, minimum=1)
        self._x: torch.Tensor | None = None
        self._y: torch.Tensor | None = None

    def start(self, seeds: Sequence[int], steps: int) -> None:
        """Draw every member's batches for ``steps`` steps."""
        steps = check_int("steps", steps, minimum=1)
        xs, ys = [], []
        for seed in seeds:
            gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
            x, y = adding_problem(steps * self.batch_size, self.length, generator=gen)
            xs.append(x.view(steps, self.batch_size, self.length, 2))
            ys.append(y.view(steps, self.batch_size))
        self._x, self._y = torch.stack(xs, dim=1), torch.stack(ys, dim=1)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``(S, batch, T, 2)`` and targets ``(S, batch)`` of ``step``."""
        if self._x is None:
            raise RuntimeError("call start(seeds, steps) before batch()")
        return self._x[step], self._y[step]

    def losses(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each member's mean squared error, shape ``(S,)``."""
        return ((out - target) ** 2).mean(1)

    def test_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The held-out batch: ``(test_size, T, 2)`` and ``(test_size,)``."""
        gen = torch.Generator().manual_seed(derive_seed("adding-test", self.length))
        return adding_problem(self.test_size, self.length, generator=gen)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, np.ndarray]:
        """Each member's MSE on :meth:`test_batch`."""
        dtype = next(model.parameters()).dtype
        x, y = (t.to(dtype) for t in self.test_batch())
        return {"test_mse": ((model(x) - y) ** 2).mean(1).double().numpy()}


class ReversalTask:
    """Sequence reversal: ``length`` random tokens in, the same tokens reversed out.

    The target at position ``t`` is the token at position ``T − 1 − t``; a model that has
    not learned it is right ``1/vocab`` of the time. Member ``i``'s sequences for the whole
    run are drawn at the start from a generator seeded by ``seeds[i]`` (members with the
    same seed see the same batches). The held-out batch of :meth:`evaluate` is the same for
    every member, seeded from ``GRADFLOW_SEED``.

    Args:
        vocab: token values ``0 … vocab − 1`` (>= 2).
        length: tokens per sequence ``T`` (>= 2).
        batch_size: sequences per step and member (default 16).
        test_size: sequences in the held-out batch (default 256).
    """

    def __init__(self, vocab: int, length: int, batch_size: int = 16, test_size: int = 256):
        self.vocab = check_int("vocab", vocab, minimum=2)
        self.length = check_int("length", length, minimum=2)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.test_size = check_int("test_size", test_size, minimum=1)
        self._ids: torch.Tensor | None = None

    def start(self, seeds: Sequence[int], steps: int) -> None:
        """Draw every member's sequences for ``steps`` steps."""
        steps = check_int("steps", steps, minimum=1)
        ids = []
        for seed in seeds:
            gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
            ids.append(torch.randint(self.vocab, (steps, self.batch_size, self.length),
                                     generator=gen))
        self._ids = torch.stack(ids, dim=1)                    # (steps, S, batch, T)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``(S, batch, T)`` and their reversals of ``step``."""
        if self._ids is None:
            raise RuntimeError("call start(seeds, steps) before batch()")
        ids = self._ids[step]
        return ids, ids.flip(-1)

    def losses(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each member's mean cross-entropy over sequences and positions, shape ``(S,)``."""
        return member_token_loss(out, target)

    def test_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The held-out batch: ids ``(test_size, T)`` and their reversals."""
        gen = torch.Generator().manual_seed(derive_seed("reversal-test", self.vocab,
                                                        self.length))
        return reversal_batch(gen, self.test_size, self.length, self.vocab)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, np.ndarray]:
        """Each member's token accuracy on :meth:`test_batch`."""
        ids, targets = self.test_batch()
        right = model(ids).argmax(-1) == targets
        return {"test_accuracy": right.double().flatten(1).mean(1).numpy()}
