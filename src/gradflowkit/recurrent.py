"""Recurrent nets on the adding problem, and gated cells written out by hand (lesson 9).

- :func:`adding_problem`: the long-range task in the form of Le, Jaitly & Hinton (2015)
  and Arjovsky, Shah & Bengio (2016);
- :class:`SequenceRegressor`: a tanh RNN, LSTM or GRU with a linear read-out of the last
  hidden state;
- :func:`lstm_cell` and :func:`gru_cell`: one step of ``nn.LSTM`` / ``nn.GRU``, written out so
  the gates can be inspected (same weights, same equations as PyTorch); :func:`lstm_steps`
  runs the LSTM cell over a whole sequence;
- :func:`gradient_by_distance`: ``‖∂L/∂x_t‖`` against the distance ``T − t`` to the end;
- :func:`first_step_below`: when a training curve first gets below a level (the "steps to
  solve" of an ensemble trained with :func:`~gradflowkit.trainer.train`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .validation import check_choice, check_float, check_int, check_tensor

#: Recurrent cells a :class:`SequenceRegressor` can use.
CELLS: tuple[str, ...] = ("rnn", "lstm", "gru")


def adding_problem(n: int, length: int, *, generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of the adding problem.

    Each sequence has two channels: values drawn from U(0, 1), and a marker that is 1 at
    two time steps (one in each half of the sequence) and 0 elsewhere. The target is the sum
    of the two marked values, so always predicting its mean, 1, has mean squared error
    Var(U1 + U2) = 2/12 = 1/6. This is the variant of Le, Jaitly & Hinton (2015) and
    Arjovsky, Shah & Bengio (2016); the adding problem of Hochreiter & Schmidhuber (1997),
    where the task comes from, differs in its value range, marker positions and target.

    Args:
        n: number of sequences (>= 1).
        length: time steps per sequence (>= 2).
        generator: torch generator for reproducible batches (default: the global one).
        dtype: floating-point type of the tensors (default float32).

    Returns:
        ``(x, y)`` with ``x`` of shape ``(n, length, 2)`` and ``y`` of shape ``(n,)``.
    """
    n = check_int("n", n, minimum=1)
    length = check_int("length", length, minimum=2)
    values = torch.rand(n, length, generator=generator, dtype=dtype)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=generator)
    second = torch.randint(half, length, (n,), generator=generator)
    marker = torch.zeros(n, length, dtype=dtype)
    rows = torch.arange(n)
    marker[rows, first] = 1
    marker[rows, second] = 1
    y = values[rows, first] + values[rows, second]
    return torch.stack([values, marker], dim=-1), y


class SequenceRegressor(nn.Module):
    """A one-layer recurrent net with a linear read-out of its last hidden state.

    Args:
        cell: ``"rnn"`` (tanh), ``"lstm"`` or ``"gru"``.
        hidden: hidden units (>= 1).
        in_features: input channels (default 2, as in :func:`adding_problem`).
        forget_bias: for an LSTM, the forget gate's total bias (``b_ih + b_hh``) at
            initialization (default None: PyTorch's uniform init, mean 0).

    The recurrent layer is ``self.rnn`` (an ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` with
    ``batch_first=True``); ``forward(x)`` maps ``(batch, T, in_features)`` to ``(batch,)``.
    """

    def __init__(self, cell: str, hidden: int, *, in_features: int = 2,
                 forget_bias: float | None = None):
        super().__init__()
        self.cell = check_choice("cell", cell, CELLS)
        hidden = check_int("hidden", hidden, minimum=1)
        kind = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = kind(check_int("in_features", in_features, minimum=1), hidden,
                        batch_first=True)
        self.head = nn.Linear(hidden, 1)
        if forget_bias is not None:
            if cell != "lstm":
                raise ValueError(f"forget_bias applies to cell='lstm' only, got cell={cell!r}")
            set_forget_bias_(self.rnn, forget_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1]).squeeze(-1)


def set_forget_bias_(lstm: nn.LSTM, value: float) -> nn.LSTM:
    """Set the forget gate's total bias ``b_ih + b_hh`` of every unit to ``value``.

    PyTorch stores the gates in the order input, forget, cell, output, so the forget gate is
    the second quarter of each bias vector; ``b_ih`` gets ``value`` and ``b_hh`` gets 0.

    Args:
        lstm: a one-layer ``nn.LSTM`` with biases.
        value: the bias, e.g. 1 (Jozefowicz et al. 2015).

    Returns:
        ``lstm``, changed in place.
    """
    value = check_float("value", value)
    if lstm.num_layers != 1 or not lstm.bias:
        raise ValueError("set_forget_bias_ needs a one-layer nn.LSTM with bias=True")
    h = lstm.hidden_size
    with torch.no_grad():
        lstm.bias_ih_l0[h:2 * h] = value
        lstm.bias_hh_l0[h:2 * h] = 0.0
    return lstm


@dataclass(frozen=True)
class LSTMStep:
    """What one LSTM step computed: the gates and the new state."""

    i: torch.Tensor   # input gate  σ(·)
    f: torch.Tensor   # forget gate σ(·)
    g: torch.Tensor   # candidate   tanh(·)
    o: torch.Tensor   # output gate σ(·)
    c: torch.Tensor   # new cell state c_t = f ⊙ c_{t-1} + i ⊙ g
    h: torch.Tensor   # new hidden state h_t = o ⊙ tanh(c_t)


def lstm_cell(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, lstm: nn.LSTM) -> LSTMStep:
    """One step of a one-layer ``nn.LSTM``, written out gate by gate.

    Args:
        x: input at time t, shape ``(batch, in_features)``.
        h: hidden state h_{t-1}, shape ``(batch, hidden)``.
        c: cell state c_{t-1}, shape ``(batch, hidden)``.
        lstm: the module whose weights to use (gate order i, f, g, o as in PyTorch).

    Returns:
        An :class:`LSTMStep`; its tensors stay in the autograd graph of ``x``, ``h``, ``c``.
    """
    for name, t in (("x", x), ("h", h), ("c", c)):
        check_tensor(name, t, ndim=2)
    pre = x @ lstm.weight_ih_l0.T + h @ lstm.weight_hh_l0.T
    if lstm.bias:
        pre = pre + lstm.bias_ih_l0 + lstm.bias_hh_l0
    a_i, a_f, a_g, a_o = pre.chunk(4, dim=1)
    i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
    c_new = f * c + i * g              # the additive update: the constant error carousel
    return LSTMStep(i=i, f=f, g=g, o=o, c=c_new, h=o * torch.tanh(c_new))


def gru_cell(x: torch.Tensor, h: torch.Tensor, gru: nn.GRU) -> torch.Tensor:
    """One step of a one-layer ``nn.GRU``: ``h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}``.

    Args:
        x: input at time t, shape ``(batch, in_features)``.
        h: hidden state h_{t-1}, shape ``(batch, hidden)``.
        gru: the module whose weights to use (gate order r, z, n as in PyTorch).

    Returns:
        ``h_t``, in the autograd graph of ``x`` and ``h``.
    """
    check_tensor("x", x, ndim=2)
    check_tensor("h", h, ndim=2)
    gi = x @ gru.weight_ih_l0.T
    gh = h @ gru.weight_hh_l0.T
    if gru.bias:
        gi, gh = gi + gru.bias_ih_l0, gh + gru.bias_hh_l0
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def gradient_by_distance(model: SequenceRegressor, x: torch.Tensor,
                         y: torch.Tensor) -> np.ndarray:
    """``‖∂L/∂x_t‖`` for every time step, with L the batch's mean squared error.

    Args:
        model: the network (its ``.grad`` are not touched).
        x: inputs, shape ``(batch, T, features)``.
        y: targets, shape ``(batch,)``.

    Returns:
        An array of length T whose entry ``k`` is the norm of the gradient with respect to
        the inputs ``k`` steps before the end (``k = T − t``, 0 = last step), over the batch.
    """
    check_tensor("x", x, ndim=3)
    x = x.detach().requires_grad_(True)
    loss = ((model(x) - y) ** 2).mean()
    (grad,) = torch.autograd.grad(loss, x)
    per_step = torch.linalg.vector_norm(grad, dim=(0, 2), dtype=torch.float64)
    return per_step.flip(0).numpy()


@torch.no_grad()
def lstm_steps(x: torch.Tensor, lstm: nn.LSTM) -> list[LSTMStep]:
    """Run :func:`lstm_cell` over a whole sequence from zero states, without gradients.

    Args:
        x: inputs ``(batch, T, in_features)``.
        lstm: a one-layer ``nn.LSTM`` (e.g. ``SequenceRegressor("lstm", …).rnn``).

    Returns:
        ``T`` :class:`LSTMStep` records, one per time step (gates and states of every
        sequence and unit).
    """
    check_tensor("x", x, ndim=3)
    h = c = x.new_zeros(x.shape[0], lstm.hidden_size)
    steps = []
    for t in range(x.shape[1]):
        step = lstm_cell(x[:, t], h, c, lstm)
        h, c = step.h, step.c
        steps.append(step)
    return steps


def first_step_below(loss: np.ndarray, threshold: float, window: int = 10) -> np.ndarray:
    """The first step at which each member's moving-average loss is below ``threshold``.

    Args:
        loss: ``(S, steps)`` training losses, e.g. ``TrainRecord.loss`` (NaN after a member
            stopped: such windows never count as below).
        threshold: the level (> 0).
        window: steps in the trailing moving average (default 10).

    Returns:
        Int array ``(S,)``: the last step ``k`` of the first window ``k − window + 1 … k``
        whose mean is below ``threshold``, or -1 where no window is.
    """
    loss = np.asarray(loss, dtype=float)
    if loss.ndim != 2:
        raise ValueError(f"loss must be (members, steps), got shape {loss.shape}")
    threshold = check_float("threshold", threshold, positive=True)
    window = check_int("window", window, minimum=1)
    if window > loss.shape[1]:
        raise ValueError(f"window {window} is longer than the run ({loss.shape[1]} steps)")
    kernel = np.ones(window) / window
    out = np.full(loss.shape[0], -1)
    for i, row in enumerate(loss):
        below = np.convolve(row, kernel, mode="valid") < threshold   # NaN compares False
        if below.any():
            out[i] = int(np.argmax(below)) + window - 1
    return out
