"""A configurable deep fully-connected network, plain or residual (lessons 1-2, 6-8, 11-15).

``DeepMLP`` stacks ``depth`` blocks of equal width between an optional input projection
(``stem``) and a linear ``head``. Each block computes, for an input ``x``:

- plain:    ``f(N(W x + b))``
- residual: ``shortcut_scale * x + branch_scale * α * F(x)`` with the branch
  ``F(x) = f(N(W x + b))`` when ``branch_layers=1``, or ``F(x) = W2 f(N(W1 x + b1)) + b2``
  when ``branch_layers=2`` (the last linear layer is ``zero_init_last``-able, so the block
  starts as the identity: Fixup's zero initialization). ``α`` is a learnable scalar per
  block when ``branch_gain`` is set (SkipInit, ReZero: ``branch_gain=0.0`` starts every
  block as the identity, lesson 17), else 1.

``N`` is an optional normalization (``"batch"`` or ``"layer"``). The blocks live in
``model.blocks`` so that gradient helpers can hook their inputs: the input of block ``l``
is the activation ``x_l`` whose gradient ``∂L/∂x_l`` is the backward signal of the book.

``InplaceResidualMLP`` is a small residual net written with in-place operations
(``nn.ReLU(inplace=True)``, ``out += x``), as torchvision's ResNets are (lesson 16).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .activations import ACTIVATIONS, make_activation
from .initialization import INITS, draw_weight
from .validation import check_choice, check_float, check_int

#: Normalizations a block can use (``None`` for none).
NORMS: tuple[str | None, ...] = (None, "batch", "layer")


@dataclass(frozen=True)
class NetConfig:
    """Everything that defines a :class:`DeepMLP`; see that class for the meaning."""

    depth: int                    # number of equal-width blocks
    width: int                    # units per block
    in_features: int | None = None   # input size; None means equal to width (no stem)
    out_features: int | None = None  # output size; None means no head
    activation: str = "relu"      # one of ACTIVATIONS
    init: str = "he"              # one of INITS, for every block's first linear layer
    weight_scale: float = 1.0     # multiplier on the initial block weights
    residual: bool = False        # add the identity shortcut x + F(x)
    shortcut_scale: float = 1.0   # λ in λ x + F(x) (He et al. 2016, eq. 8)
    branch_layers: int = 1        # linear layers per residual branch (1 or 2)
    branch_scale: float = 1.0     # multiplier on F(x), e.g. 1/sqrt(depth)
    zero_init_last: bool = False  # zero the branch's last linear layer: block = identity
    branch_gain: float | None = None  # learnable scalar α on the branch, its initial value
    norm: str | None = None       # None, "batch" or "layer", before the activation
    bias: bool = True             # linear layers have biases (initialized to zero)

    @classmethod
    def from_options(cls, depth: int, width: int, **options) -> "NetConfig":
        """A validated config from :class:`DeepMLP`'s arguments; unknown options are a
        ``TypeError`` that lists the allowed ones."""
        unknown = set(options) - set(cls.__dataclass_fields__)
        if unknown:
            allowed = ", ".join(sorted(set(cls.__dataclass_fields__) - {"depth", "width"}))
            raise TypeError(f"unknown option(s) {sorted(unknown)}; allowed: {allowed}")
        return cls(depth=depth, width=width, **options).validate()

    def validate(self) -> "NetConfig":
        """Raise a clear error for any out-of-range field; return ``self``."""
        check_int("depth", self.depth, minimum=1)
        check_int("width", self.width, minimum=1)
        if self.in_features is not None:
            check_int("in_features", self.in_features, minimum=1)
        if self.out_features is not None:
            check_int("out_features", self.out_features, minimum=1)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("init", self.init, INITS)
        check_float("weight_scale", self.weight_scale, nonnegative=True)
        check_float("shortcut_scale", self.shortcut_scale)
        check_float("branch_scale", self.branch_scale)
        if check_int("branch_layers", self.branch_layers, minimum=1) > 2:
            raise ValueError(f"branch_layers must be 1 or 2, got {self.branch_layers}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of None, 'batch', 'layer'; got {self.norm!r}")
        if self.branch_gain is not None:
            check_float("branch_gain", self.branch_gain)
        if not self.residual and (self.branch_layers != 1 or self.zero_init_last
                                  or self.branch_gain is not None):
            raise ValueError("branch_layers, zero_init_last and branch_gain apply only to "
                             "residual nets; pass residual=True or leave them at their "
                             "defaults")
        if self.zero_init_last and self.branch_layers == 1 and self.activation == "sigmoid":
            raise ValueError("zero_init_last with branch_layers=1 and activation='sigmoid' "
                             "gives F(x) = sigmoid(0) = 0.5, not 0, so the block is not the "
                             "identity; use branch_layers=2 or an activation with f(0) = 0")
        return self


class _Linear(nn.Linear):
    """``nn.Linear`` without PyTorch's default initialization.

    Every linear layer of a :class:`DeepMLP` is set by :func:`initial_parameters`, so
    drawing the default weights first would only spend time and random numbers.
    """

    def reset_parameters(self) -> None:
        pass


def initial_parameters(cfg: NetConfig,
                       generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The initial weights and biases of every linear layer of a :class:`DeepMLP`.

    The one place where the draw order of a net is defined: the stem (``"xavier"`` when
    ``init`` is ``"zeros"``), then each block's ``linear`` and ``linear2``, then the head
    (``"xavier"``). A branch's last layer with ``zero_init_last`` is drawn and then zeroed,
    so the other layers get the same weights with or without it. Biases are zero.
    :class:`DeepMLP` draws from torch's global generator, and
    :meth:`~gradflowkit.ensemble.EnsembleMLP.build` from one generator per member, so that
    member ``i`` is the net built right after ``torch.manual_seed(seeds[i])``.

    Args:
        cfg: the net's configuration (validated here).
        generator: random generator (default: torch's global one).

    Returns:
        ``{parameter name: value}`` in torch's default dtype (weights drawn in float64 and
        rounded), for the names of ``DeepMLP.named_parameters()`` of linear layers, and the
        branch gains ``blocks.i.gain`` (``branch_gain``; nothing is drawn for them).
    """
    cfg = cfg.validate()
    values: dict[str, torch.Tensor] = {}
    dtype = torch.get_default_dtype()

    def layer(name: str, fan_in: int, fan_out: int, scheme: str, scale: float = 1.0,
              zero: bool = False) -> None:
        weight = draw_weight(scheme, fan_out, fan_in, generator=generator)
        values[f"{name}.weight"] = (torch.zeros(fan_out, fan_in, dtype=dtype) if zero
                                    else weight.to(dtype) * scale)
        if cfg.bias:
            values[f"{name}.bias"] = torch.zeros(fan_out, dtype=dtype)

    if cfg.in_features is not None and cfg.in_features != cfg.width:
        layer("stem", cfg.in_features, cfg.width, "xavier" if cfg.init == "zeros" else cfg.init)
    two = cfg.residual and cfg.branch_layers == 2
    for i in range(cfg.depth):
        layer(f"blocks.{i}.linear", cfg.width, cfg.width, cfg.init, cfg.weight_scale,
              zero=cfg.zero_init_last and not two)
        if two:
            layer(f"blocks.{i}.linear2", cfg.width, cfg.width, cfg.init, cfg.weight_scale,
                  zero=cfg.zero_init_last)
        if cfg.residual and cfg.branch_gain is not None:
            values[f"blocks.{i}.gain"] = torch.tensor(float(cfg.branch_gain), dtype=dtype)
    if cfg.out_features is not None:
        layer("head", cfg.width, cfg.out_features, "xavier")
    return values


class Block(nn.Module):
    """One block of :class:`DeepMLP`: a plain layer or a residual block.

    ``make_linear(in, out, bias)`` and ``make_norm(norm, width)`` build the layers; the
    ensemble's :class:`~gradflowkit.ensemble.StackedBlock` passes stacked ones, so both share
    this block's one ``branch`` and ``forward``.
    """

    def __init__(self, cfg: NetConfig, make_linear: Callable[..., nn.Module] | None = None,
                 make_norm: Callable[[str | None, int], nn.Module] | None = None):
        super().__init__()
        make_linear = make_linear or (lambda i, o, bias: _Linear(i, o, bias=bias))
        make_norm = make_norm or _make_norm
        self.residual = cfg.residual
        self.shortcut_scale = cfg.shortcut_scale
        self.branch_scale = cfg.branch_scale
        self.linear = make_linear(cfg.width, cfg.width, cfg.bias)
        self.norm = make_norm(cfg.norm, cfg.width)
        self.act = make_activation(cfg.activation)
        self.linear2 = None
        if cfg.residual and cfg.branch_layers == 2:
            self.linear2 = make_linear(cfg.width, cfg.width, cfg.bias)
        self.gain = None        # α: a scalar here, one per member in an ensemble
        if cfg.residual and cfg.branch_gain is not None:
            self.gain = nn.Parameter(torch.tensor(float(cfg.branch_gain)))

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The block's non-linear path ``F(x)`` (the whole block when not residual)."""
        h = self.act(self.norm(self.linear(x)))
        return self.linear2(h) if self.linear2 is not None else h

    def scaled_branch(self, x: torch.Tensor) -> torch.Tensor:
        """What the block adds to its shortcut: ``branch_scale * α * F(x)``."""
        out = self.branch_scale * self.branch(x)
        if self.gain is None:
            return out
        gain = self.gain if self.gain.ndim == 0 else \
            self.gain.view(-1, *([1] * (out.ndim - 1)))    # (S,) -> (S, 1, 1): per member
        return gain * out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.residual:
            return self.branch(x)
        return self.shortcut_scale * x + self.scaled_branch(x)


class DeepMLP(nn.Module):
    """A deep fully-connected network, plain or residual; see the module docstring.

    Args:
        depth: number of blocks (>= 1).
        width: units per block (>= 1).
        **options: the other fields of :class:`NetConfig`, with its defaults.

    Example:
        >>> net = DeepMLP(depth=20, width=64, activation="sigmoid", init="xavier")
        >>> len(net.blocks)
        20
    """

    def __init__(self, depth: int, width: int, **options):
        super().__init__()
        self.config = NetConfig.from_options(depth, width, **options)
        cfg = self.config
        self.stem = None
        if cfg.in_features is not None and cfg.in_features != cfg.width:
            self.stem = _Linear(cfg.in_features, cfg.width, bias=cfg.bias)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.head = None
        if cfg.out_features is not None:
            self.head = _Linear(cfg.width, cfg.out_features, bias=cfg.bias)
        with torch.no_grad():
            for name, value in initial_parameters(cfg).items():
                self.get_parameter(name).copy_(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem is not None:
            x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x) if self.head is not None else x

    def activation_modules(self) -> dict[str, nn.Module]:
        """Each block's activation module, keyed ``"0"``, ``"1"``, …: its input is ``z_l``.

        Returns:
            ``{block index: activation module}``, for hooks such as
            :func:`gradflowkit.gradients.capture_inputs`.
        """
        return {str(i): block.act for i, block in enumerate(self.blocks)}

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[x_0, x_1, ..., x_depth]``: the input of every block and the last output.

        Args:
            x: a batch of inputs, shape ``(batch, in_features)``.

        Returns:
            ``depth + 1`` tensors of shape ``(batch, width)``, still in the autograd graph.
        """
        return block_states(self.stem, self.blocks, x)


def block_states(stem: nn.Module | None, blocks: nn.ModuleList,
                 x: torch.Tensor) -> list[torch.Tensor]:
    """``[x_0, …, x_depth]``: the stem's output (or ``x``) and every block's output in turn
    (shared by :class:`DeepMLP` and :class:`~gradflowkit.ensemble.EnsembleMLP`)."""
    if stem is not None:
        x = stem(x)
    states = [x]
    for block in blocks:
        x = block(x)
        states.append(x)
    return states


def _make_norm(norm: str | None, width: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm1d(width)
    if norm == "layer":
        return nn.LayerNorm(width)
    return nn.Identity()


class InplaceResidualBlock(nn.Module):
    """``relu(x + W2 relu(W1 x + b1) + b2)`` written with in-place ReLUs and ``out += x``.

    The pattern of torchvision's ResNet blocks; the monitor of lesson 16 must cope with it
    (module backward hooks do not).

    Args:
        width: units of the input, the hidden layer and the output (>= 1).
    """

    def __init__(self, width: int):
        super().__init__()
        width = check_int("width", width, minimum=1)
        self.linear1 = nn.Linear(width, width)
        self.act1 = nn.ReLU(inplace=True)
        self.linear2 = nn.Linear(width, width)
        self.act2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.act1(self.linear1(x))
        out = self.linear2(out)
        out += identity
        return self.act2(out)


class InplaceResidualMLP(nn.Module):
    """A stack of :class:`InplaceResidualBlock` with an optional linear head (lesson 16).

    Args:
        width: units per block (>= 1).
        depth: number of blocks (>= 1).
        out_features: size of a linear head after the blocks (default None: no head).
    """

    def __init__(self, width: int, depth: int, out_features: int | None = None):
        super().__init__()
        check_int("depth", depth, minimum=1)
        self.blocks = nn.ModuleList(InplaceResidualBlock(width) for _ in range(depth))
        self.head = None
        if out_features is not None:
            self.head = nn.Linear(width, check_int("out_features", out_features, minimum=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x) if self.head is not None else x
