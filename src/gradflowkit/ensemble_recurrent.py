"""Ensembles of recurrent regressors computed together (lesson 9).

:class:`EnsembleRecurrent` holds ``S`` :class:`~gradflowkit.recurrent.SequenceRegressor`
nets of one cell type (tanh RNN, LSTM or GRU) with stacked weights, so that every seed of
the adding-problem experiment trains at once. The cell equations are PyTorch's
(``nn.RNN``, ``nn.LSTM``, ``nn.GRU``), written with batched matrix products; parameter
names are those of a ``SequenceRegressor`` (``rnn.weight_hh_l0``) with the member axis
first, and :meth:`EnsembleRecurrent.member` returns member ``i`` as a
``SequenceRegressor`` (the unit tests compare the two).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .recurrent import CELLS, SequenceRegressor
from .validation import check_choice, check_int, check_tensor

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


class EnsembleRecurrent(nn.Module):
    """``S`` one-layer recurrent nets with a linear read-out of the last hidden state.

    Args:
        members: ``SequenceRegressor`` nets of the same cell type and sizes; their weights
            are copied.

    ``forward(x)`` maps ``(S, batch, T, in)`` (or ``(batch, T, in)`` shared by every
    member) to ``(S, batch)``.
    """

    def __init__(self, members: Sequence[SequenceRegressor]):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        for i, net in enumerate(members):
            if not isinstance(net, SequenceRegressor):
                raise TypeError(f"member {i} must be a SequenceRegressor, "
                                f"got {type(net).__name__}")
        first = members[0]
        shape = (first.cell, first.rnn.input_size, first.rnn.hidden_size)
        for i, net in enumerate(members):
            if (net.cell, net.rnn.input_size, net.rnn.hidden_size) != shape:
                raise ValueError(f"member {i} is a {net.cell} of sizes "
                                 f"{net.rnn.input_size}->{net.rnn.hidden_size}, member 0 "
                                 f"a {shape[0]} of {shape[1]}->{shape[2]}: they must match")
        self.cell, self.in_features, self.hidden = shape
        self.n_members = len(members)
        states = [net.state_dict() for net in members]
        self.rnn = nn.Module()
        for key in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            stacked = torch.stack([s[f"rnn.{key}"].detach() for s in states])
            self.rnn.register_parameter(key, nn.Parameter(stacked.clone()))
        self.head = nn.Module()
        for key in ("weight", "bias"):
            stacked = torch.stack([s[f"head.{key}"].detach() for s in states])
            self.head.register_parameter(key, nn.Parameter(stacked.clone()))

    @classmethod
    def build(cls, seeds: Sequence[int], cell: str, hidden: int, *,
              dtype: torch.dtype = torch.float32, **options) -> "EnsembleRecurrent":
        """Member ``i`` is ``SequenceRegressor(cell, hidden, **options)`` built right after
        ``torch.manual_seed(seeds[i])``; torch's global generator is left as it was."""
        check_choice("cell", cell, CELLS)
        seeds = list(seeds)
        if not seeds:
            raise ValueError("seeds is empty: pass one seed per member")
        nets = []
        with torch.random.fork_rng(devices=[]):
            for seed in seeds:
                torch.manual_seed(check_int("seed", seed, minimum=0))
                nets.append(SequenceRegressor(cell, hidden, **options).to(dtype))
        return cls(nets)

    def member(self, i: int) -> SequenceRegressor:
        """A new ``SequenceRegressor`` with member ``i``'s weights (copies)."""
        i = check_int("i", i, minimum=0)
        if i >= self.n_members:
            raise IndexError(f"member {i} does not exist: the ensemble has {self.n_members}")
        with torch.random.fork_rng(devices=[]):   # the weights are overwritten: draw nothing
            net = SequenceRegressor(self.cell, self.hidden, in_features=self.in_features)
        net.to(self.rnn.weight_hh_l0.dtype)
        net.load_state_dict({k: v[i].clone() for k, v in self.state_dict().items()})
        return net

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x)
        if x.ndim == 3:
            return x.unsqueeze(0).expand(self.n_members, -1, -1, -1)
        if x.ndim != 4 or x.shape[0] != self.n_members:
            raise ValueError(f"x must have shape (batch, T, features) or ({self.n_members}, "
                             f"batch, T, features), got {tuple(x.shape)}")
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._inputs(x)
        members, batch, length, features = x.shape
        r = self.rnn
        # Input projections of all time steps at once, time first: (T, S, batch, gates·hidden).
        # The RNN's and LSTM's hidden bias only adds, so it joins the input bias here; the
        # GRU's multiplies the reset gate into its n part, so it stays in the loop.
        # unbind (not xi[t]) so that backward stacks the T gradients once instead of
        # filling a full-size zero tensor per time step.
        in_bias = r.bias_ih_l0 if self.cell == "gru" else r.bias_ih_l0 + r.bias_hh_l0
        x_time_first = x.permute(2, 0, 1, 3).contiguous()            # (T, S, batch, in)
        xi = torch.matmul(x_time_first, r.weight_ih_l0.transpose(1, 2)) + in_bias.unsqueeze(1)
        w_hh = r.weight_hh_l0.transpose(1, 2).contiguous()   # bmm would copy it every step
        b_hh = r.bias_hh_l0.unsqueeze(1)
        h = x.new_zeros(members, batch, self.hidden)
        c = x.new_zeros(members, batch, self.hidden)
        for gi in xi.unbind(0):
            gh = torch.bmm(h, w_hh)
            h, c = _step(self.cell, gi, gh + b_hh if self.cell == "gru" else gh, h, c)
        out = torch.baddbmm(self.head.bias.unsqueeze(1), h, self.head.weight.transpose(1, 2))
        return out.squeeze(-1)


def _step(cell: str, gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    """One time step of ``cell`` from the input and hidden projections (PyTorch's gates)."""
    if cell == "rnn":
        return torch.tanh(gi + gh), c
    if cell == "lstm":
        i, f, g, o = (gi + gh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h, c


def member_gradient_by_distance(model: EnsembleRecurrent, x: torch.Tensor,
                                y: torch.Tensor) -> np.ndarray:
    """``‖∂L_s/∂x_t‖`` of every member ``s`` against the distance ``T − t`` to the end.

    The ensemble counterpart of :func:`~gradflowkit.recurrent.gradient_by_distance`.

    Args:
        model: the ensemble (its ``.grad`` are not touched).
        x: inputs ``(batch, T, features)``, shared by the members.
        y: targets ``(batch,)``.

    Returns:
        Float64 ``(S, T)``; column ``k`` is the gradient norm over the batch with respect to
        the inputs ``k`` steps before the end (0 = last step).
    """
    if not isinstance(model, EnsembleRecurrent):
        raise TypeError(f"model must be an EnsembleRecurrent, got {type(model).__name__}")
    check_tensor("x", x, ndim=3)
    xs = model._inputs(x).detach().clone().requires_grad_(True)
    losses = ((model(xs) - y) ** 2).mean(1)
    (grad,) = torch.autograd.grad(losses.sum(), xs)
    per_step = torch.linalg.vector_norm(grad, dim=(1, 3), dtype=torch.float64)
    return per_step.flip(1).numpy()
