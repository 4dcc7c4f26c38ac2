"""gradflowkit.tasks: batches per member, losses per member, metrics per member.

Oracles: a cursor loop over torch.randperm epochs (the batch order the old single-net loop
used), adding_problem called with each member's generator, F.cross_entropy per member."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gradflowkit.data import Split
from gradflowkit.recurrent import adding_problem
from gradflowkit.seeding import derive_seed
from gradflowkit.tasks import AddingTask, ClassificationTask, batch_indices


def cursor_order(seed, steps, n, batch):
    """Consecutive slices of shuffled epochs; a new epoch when too few rows are left."""
    gen = torch.Generator().manual_seed(seed)
    order, cursor, rows = torch.randperm(n, generator=gen), 0, []
    for _ in range(steps):
        if cursor + batch > n:
            order, cursor = torch.randperm(n, generator=gen), 0
        rows.append(order[cursor:cursor + batch])
        cursor += batch
    return torch.stack(rows)


@pytest.mark.parametrize("n, batch, steps", [(10, 3, 11), (64, 64, 3), (100, 7, 40),
                                             (9, 1, 20)])
def test_batch_indices_are_the_cursor_order(n, batch, steps):
    got = batch_indices(5, steps, n, batch)
    assert got.shape == (steps, batch) and got.dtype == torch.int64
    assert torch.equal(got, cursor_order(5, steps, n, batch))


def test_batch_indices_errors():
    with pytest.raises(ValueError, match=r"batch_size 11 is larger than the data set"):
        batch_indices(0, 3, 10, 11)
    with pytest.raises(ValueError, match=r"steps must be >= 1"):
        batch_indices(0, 0, 10, 2)


@pytest.fixture
def split():
    gen = torch.Generator().manual_seed(1)
    return Split(torch.randn(30, 4, generator=gen), torch.randint(0, 3, (30,), generator=gen),
                 torch.randn(12, 4, generator=gen), torch.randint(0, 3, (12,), generator=gen))


def test_classification_batches_are_each_members_rows(split):
    task = ClassificationTask(split, batch_size=8)
    task.start([3, 4], steps=5)
    for step in range(5):
        x, y = task.batch(step)
        assert x.shape == (2, 8, 4) and y.shape == (2, 8)
        for m, seed in enumerate([3, 4]):
            rows = batch_indices(seed, 5, 30, 8)[step]
            assert torch.equal(x[m], split.x_train[rows])
            assert torch.equal(y[m], split.y_train[rows])


def test_classification_losses_and_accuracy(split):
    task = ClassificationTask(split)
    out = torch.randn(2, 6, 3)
    y = torch.randint(0, 3, (2, 6))
    losses = task.losses(out, y)
    for m in range(2):
        assert losses[m].item() == pytest.approx(F.cross_entropy(out[m], y[m]).item())

    class Fixed(torch.nn.Module):          # member 0 predicts class 0, member 1 the label
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2, 1))

        def forward(self, x):
            out = torch.zeros(2, len(x), 3)
            out[0, :, 0] = 1
            labels = split.y_test if len(x) == 12 else split.y_train
            out[1, torch.arange(len(x)), labels] = 1
            return out

    metrics = task.evaluate(Fixed())
    assert metrics["test_accuracy"][1] == 1.0 and metrics["train_accuracy"][1] == 1.0
    assert metrics["test_accuracy"][0] == pytest.approx(float((split.y_test == 0).double().mean()))


def test_classification_needs_a_split():
    with pytest.raises(TypeError, match=r"data must be a gradflowkit.data.Split, got tuple"):
        ClassificationTask((1, 2))


def test_adding_batches_are_one_draw_per_member_sliced_by_step():
    """Oracle: adding_problem(steps * batch) once with each member's generator."""
    task = AddingTask(6, batch_size=3)
    with pytest.raises(RuntimeError, match=r"call start\(seeds, steps\) before batch"):
        task.batch(0)
    task.start([7, 8], steps=4)
    draws = [adding_problem(12, 6, generator=torch.Generator().manual_seed(s)) for s in (7, 8)]
    for step in range(4):
        x, y = task.batch(step)
        assert x.shape == (2, 3, 6, 2) and y.shape == (2, 3)
        for m, (ex, ey) in enumerate(draws):
            assert torch.equal(x[m], ex[3 * step:3 * step + 3])
            assert torch.equal(y[m], ey[3 * step:3 * step + 3])


def test_adding_test_batch_follows_the_seed_switch(monkeypatch):
    monkeypatch.setenv("GRADFLOW_SEED", "3")
    task = AddingTask(5, test_size=10)
    x, y = task.test_batch()
    ex, ey = adding_problem(10, 5, generator=torch.Generator().manual_seed(
        derive_seed("adding-test", 5)))
    assert torch.equal(x, ex) and torch.equal(y, ey)
    losses = task.losses(torch.zeros(2, 4), torch.ones(2, 4))
    assert losses.tolist() == [1.0, 1.0]


def test_adding_task_arguments():
    with pytest.raises(ValueError, match=r"length must be >= 2, got 1"):
        AddingTask(1)
    with pytest.raises(ValueError, match=r"test_size must be >= 1"):
        AddingTask(5, test_size=0)
