"""Ensembles of deep MLPs computed together: one weight tensor per layer, members stacked.

A claim about training or initialization is a claim about a distribution over seeds, so
the book trains many copies of a net at once. A Python loop over 16 small nets is
dispatch-bound; stacking their weights as ``(members, out, in)`` and multiplying with
``torch.baddbmm`` costs about 5× one net, not 16× (see the robustness issue's timings).

:class:`EnsembleMLP` holds ``S`` members of one :class:`~gradflowkit.nets.DeepMLP`
configuration. Its parameters have the names of a ``DeepMLP``'s (``blocks.3.linear.weight``)
with a leading member axis, so member ``i`` of the ensemble *is* the ``DeepMLP`` that
:meth:`EnsembleMLP.member` returns, to float rounding (the unit tests check this against
single nets). Inputs are ``(S, batch, features)``, or ``(batch, features)`` shared by every
member; outputs are ``(S, batch, out)``.

Per-member measurements that the lessons need live here too:
:func:`member_grad_norms` (weight-gradient norms per member) and :func:`signal_profile`
(the backward signal ``‖∂L/∂x_l‖`` of every block, per member).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .nets import Block, DeepMLP, NetConfig, block_states, initial_parameters
from .validation import check_int, check_tensor


class StackedLinear(nn.Module):
    """``S`` linear layers of one shape: ``y[s] = x[s] W[s]ᵀ + b[s]``.

    Args:
        members: number of layers stacked (>= 1).
        in_features: inputs per layer.
        out_features: outputs per layer.
        bias: whether the layers have biases (default True).
    """

    def __init__(self, members: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(members, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(members, out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight_t = self.weight.transpose(1, 2)
        if self.bias is None:
            return torch.bmm(x, weight_t)
        return torch.baddbmm(self.bias.unsqueeze(1), x, weight_t)


class StackedBatchNorm(nn.Module):
    """``S`` independent ``nn.BatchNorm1d`` layers: each member normalizes over its own batch.

    Computed by torch's own batch-norm kernel on the ``(batch, S·width)`` view of the input,
    so each (member, unit) pair is one BatchNorm channel, with its running statistics.

    Args:
        members: number of layers stacked.
        width: units per layer.
        eps: added to the variance (default 1e-5, as ``nn.BatchNorm1d``).
        momentum: of the running statistics (default 0.1, as ``nn.BatchNorm1d``).
    """

    def __init__(self, members: int, width: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(members, width))
        self.bias = nn.Parameter(torch.zeros(members, width))
        self.register_buffer("running_mean", torch.zeros(members, width))
        self.register_buffer("running_var", torch.ones(members, width))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members, batch, width = x.shape
        if self.training and batch < 2:
            raise ValueError("batch norm in training mode needs at least 2 rows per member, "
                             f"got {batch}; use a larger batch or call model.eval()")
        if self.training:
            self.num_batches_tracked.add_(1)
        flat = x.transpose(0, 1).reshape(batch, members * width)
        out = F.batch_norm(flat, self.running_mean.view(-1), self.running_var.view(-1),
                           self.weight.view(-1), self.bias.view(-1), self.training,
                           self.momentum, self.eps)
        return out.view(batch, members, width).transpose(0, 1)


class StackedLayerNorm(nn.Module):
    """``S`` ``nn.LayerNorm`` layers over the last axis, each with its own affine part."""

    def __init__(self, members: int, width: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(members, width))
        self.bias = nn.Parameter(torch.zeros(members, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        return torch.addcmul(self.bias.unsqueeze(1), normed, self.weight.unsqueeze(1))


class StackedBlock(Block):
    """One block of :class:`EnsembleMLP`: :class:`~gradflowkit.nets.Block` for ``S`` members."""

    def __init__(self, members: int, cfg: NetConfig):
        super().__init__(
            cfg,
            make_linear=lambda fan_in, fan_out, bias: StackedLinear(members, fan_in, fan_out, bias),
            make_norm=lambda norm, width: _stacked_norm(norm, members, width))
        if self.gain is not None:
            self.gain = nn.Parameter(torch.zeros(members))    # one α per member


def _stacked_norm(norm: str | None, members: int, width: int) -> nn.Module:
    if norm == "batch":
        return StackedBatchNorm(members, width)
    if norm == "layer":
        return StackedLayerNorm(members, width)
    return nn.Identity()


class EnsembleMLP(nn.Module):
    """``S`` :class:`~gradflowkit.nets.DeepMLP` nets of one configuration, computed together.

    Build one with :meth:`build` (from seeds) or from existing nets; see the module
    docstring for shapes.

    Args:
        members: the nets to stack (all with the same ``config``); their parameters and
            buffers are copied, the nets themselves are not kept.

    Example:
        >>> ens = EnsembleMLP.build([0, 1, 2], depth=4, width=16, in_features=8)
        >>> ens(torch.randn(5, 8)).shape
        torch.Size([3, 5, 16])
    """

    def __init__(self, members: Sequence[DeepMLP]):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        for i, net in enumerate(members):
            if not isinstance(net, DeepMLP):
                raise TypeError(f"member {i} must be a DeepMLP, got {type(net).__name__}")
            if net.config != members[0].config:
                raise ValueError(f"member {i} has config {net.config}, member 0 has "
                                 f"{members[0].config}; every member needs the same config")
        self._make_layers(members[0].config, len(members))
        self.to(members[0].blocks[0].linear.weight.dtype)   # before copying: keep float64
        states = [net.state_dict() for net in members]
        self.load_state_dict({key: _stack_entry(key, [s[key] for s in states])
                              for key in states[0]})

    def _make_layers(self, cfg: NetConfig, n: int) -> None:
        self.config = cfg
        self.n_members = n
        self.stem = None
        if cfg.in_features is not None and cfg.in_features != cfg.width:
            self.stem = StackedLinear(n, cfg.in_features, cfg.width, cfg.bias)
        self.blocks = nn.ModuleList(StackedBlock(n, cfg) for _ in range(cfg.depth))
        self.head = None
        if cfg.out_features is not None:
            self.head = StackedLinear(n, cfg.width, cfg.out_features, cfg.bias)

    @classmethod
    def build(cls, seeds: Sequence[int], depth: int, width: int, *,
              dtype: torch.dtype = torch.float32, **options) -> "EnsembleMLP":
        """One member per seed: member ``i`` is ``DeepMLP(depth, width, **options)`` built
        right after ``torch.manual_seed(seeds[i])``.

        The weights are drawn straight into the stacked tensors
        (:func:`~gradflowkit.nets.initial_parameters` with one generator per member), without
        building the ``S`` nets; torch's global generator is not touched.

        Args:
            seeds: one seed per member, e.g. from
                :func:`~gradflowkit.seeding.ensemble_seeds`.
            depth: blocks per net.
            width: units per block.
            dtype: of the parameters (default float32; the weights are drawn in float64
                and rounded to torch's default dtype first, as a ``DeepMLP`` moved to
                ``dtype`` has them).
            **options: the other fields of :class:`~gradflowkit.nets.NetConfig`.

        Returns:
            The ensemble.
        """
        seeds = [check_int("seed", s, minimum=0) for s in seeds]
        if not seeds:
            raise ValueError("seeds is empty: pass one seed per member")
        cfg = NetConfig.from_options(depth, width, **options)
        draws = [initial_parameters(cfg, torch.Generator().manual_seed(s)) for s in seeds]
        ensemble = cls.__new__(cls)
        nn.Module.__init__(ensemble)
        ensemble._make_layers(cfg, len(seeds))
        ensemble.to(dtype)
        with torch.no_grad():
            for name in draws[0]:
                ensemble.get_parameter(name).copy_(torch.stack([d[name] for d in draws]))
        return ensemble

    def member(self, i: int) -> DeepMLP:
        """A new ``DeepMLP`` with member ``i``'s parameters and buffers (copies)."""
        i = check_int("i", i, minimum=0)
        if i >= self.n_members:
            raise IndexError(f"member {i} does not exist: the ensemble has {self.n_members}")
        with torch.random.fork_rng(devices=[]):   # the weights are overwritten: draw nothing
            net = DeepMLP(self.config.depth, self.config.width, **_options(self.config))
        net.to(self.blocks[0].linear.weight.dtype)     # before copying: keep float64
        state = {k: (v[i] if v.ndim > 0 else v).clone() for k, v in self.state_dict().items()}
        net.load_state_dict(state)
        net.train(self.training)
        return net

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x)
        if x.ndim == 2:
            return x.unsqueeze(0).expand(self.n_members, -1, -1)
        if x.ndim != 3 or x.shape[0] != self.n_members:
            raise ValueError(f"x must have shape (batch, features) or ({self.n_members}, "
                             f"batch, features), got {tuple(x.shape)}")
        return x

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[x_0, …, x_depth]`` of every member: each ``(S, batch, width)``, in the graph."""
        return block_states(self.stem, self.blocks, self._inputs(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.hidden_states(x)[-1]
        return self.head(out) if self.head is not None else out


def _stack_entry(key: str, values: list[torch.Tensor]) -> torch.Tensor:
    if key.endswith("num_batches_tracked"):   # one counter for all members (trained together)
        return values[0].clone()
    return torch.stack([v.detach() for v in values])


def _options(cfg: NetConfig) -> dict:
    fields = dict(cfg.__dict__)
    fields.pop("depth")
    fields.pop("width")
    return fields


def member_grad_norms(model: nn.Module) -> dict[str, np.ndarray]:
    """``‖∇θ‖`` of every parameter of an ensemble, per member, in float64.

    Args:
        model: a module whose parameters all have the member axis first, after a backward
            pass. Parameters whose ``.grad`` is None are skipped.

    Returns:
        ``{name: array of shape (S,)}``; a member whose gradient has inf or NaN gets inf/nan
        (the trainer stops such members before it records).
    """
    norms = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            g = p.grad.detach().reshape(p.shape[0], -1)
            norms[name] = torch.linalg.vector_norm(g, dim=1, dtype=torch.float64).numpy()
    return norms


MemberLoss = Callable[[torch.Tensor], torch.Tensor]


def signal_profile(model: EnsembleMLP, inputs: torch.Tensor,
                   loss_fn: MemberLoss) -> np.ndarray:
    """The backward signal ``‖∂L_s/∂x_l‖`` of every block, for every member ``s``.

    The ensemble counterpart of :func:`~gradflowkit.gradients.layer_profile` (whose
    ``signal`` it equals member by member). Parameter gradients are not touched.

    Args:
        model: the ensemble.
        inputs: ``(batch, features)`` shared by the members, or ``(S, batch, features)``.
        loss_fn: maps the output ``(S, batch, out)`` to the members' losses, shape ``(S,)``,
            e.g. :func:`member_cross_entropy` with the labels bound.

    Returns:
        Float64 array ``(S, depth + 1)``; column ``l`` is ``‖∂L/∂x_l‖`` over the batch
        (column ``depth``: the last block's output). Non-finite values are left in, so
        that a diverged member shows as inf/nan rather than stopping the measurement.
    """
    if not isinstance(model, EnsembleMLP):
        raise TypeError(f"model must be an EnsembleMLP, got {type(model).__name__}")
    inputs = model._inputs(inputs).detach()
    states = model.hidden_states(inputs.requires_grad_(True))
    out = model.head(states[-1]) if model.head is not None else states[-1]
    losses = loss_fn(out)
    if losses.shape != (model.n_members,):
        raise ValueError(f"loss_fn must return one loss per member, shape "
                         f"({model.n_members},), got {tuple(losses.shape)}")
    grads = torch.autograd.grad(losses.sum(), states)
    return torch.stack([torch.linalg.vector_norm(g, dim=(1, 2), dtype=torch.float64)
                        for g in grads], dim=1).numpy()


def member_cross_entropy(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each member: ``out`` ``(S, batch, classes)`` → ``(S,)``.

    Args:
        out: logits of every member.
        labels: ``(batch,)`` shared labels, or ``(S, batch)``.

    Returns:
        The members' losses, in the graph.
    """
    members, batch, classes = out.shape
    labels = labels.expand(members, batch) if labels.ndim == 1 else labels
    flat = F.cross_entropy(out.reshape(members * batch, classes), labels.reshape(-1),
                           reduction="none")
    return flat.view(members, batch).mean(1)
