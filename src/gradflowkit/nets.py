"""A configurable deep fully-connected network, plain or residual (lessons 1-2, 6-8, 11-15).

``DeepMLP`` stacks ``depth`` blocks of equal width between an optional input projection
(``stem``) and a linear ``head``. Each block computes, for an input ``x``:

- plain:    ``f(N(W x + b))``
- residual: ``shortcut_scale * x + F(x)`` with the branch ``F(x) = f(N(W x + b))`` when
  ``branch_layers=1``, or ``F(x) = W2 f(N(W1 x + b1)) + b2`` when ``branch_layers=2``
  (the last linear layer is ``zero_init_last``-able, so the block starts as the identity).

``N`` is an optional normalization (``"batch"`` or ``"layer"``). The blocks live in
``model.blocks`` so that gradient helpers can hook their inputs: the input of block ``l``
is the activation ``x_l`` whose gradient ``∂L/∂x_l`` is the backward signal of the book.

``InplaceResidualMLP`` is a small residual net written with in-place operations
(``nn.ReLU(inplace=True)``, ``out += x``), as torchvision's ResNets are (lesson 16).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .activations import ACTIVATIONS, make_activation
from .initialization import INITS, init_linear_
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
    norm: str | None = None       # None, "batch" or "layer", before the activation
    bias: bool = True             # linear layers have biases (initialized to zero)

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
        if not self.residual and (self.branch_layers != 1 or self.zero_init_last):
            raise ValueError("branch_layers and zero_init_last apply only to residual "
                             "nets; pass residual=True or leave them at their defaults")
        if self.zero_init_last and self.branch_layers == 1 and self.activation == "sigmoid":
            raise ValueError("zero_init_last with branch_layers=1 and activation='sigmoid' "
                             "gives F(x) = sigmoid(0) = 0.5, not 0, so the block is not the "
                             "identity; use branch_layers=2 or an activation with f(0) = 0")
        return self


class Block(nn.Module):
    """One block of :class:`DeepMLP`: a plain layer or a residual block."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.residual = cfg.residual
        self.shortcut_scale = cfg.shortcut_scale
        self.branch_scale = cfg.branch_scale
        self.linear = nn.Linear(cfg.width, cfg.width, bias=cfg.bias)
        init_linear_(self.linear, cfg.init, scale=cfg.weight_scale)
        self.norm = _make_norm(cfg.norm, cfg.width)
        self.act = make_activation(cfg.activation)
        self.linear2 = None
        if cfg.residual and cfg.branch_layers == 2:
            self.linear2 = nn.Linear(cfg.width, cfg.width, bias=cfg.bias)
            init_linear_(self.linear2, cfg.init, scale=cfg.weight_scale)
        if cfg.zero_init_last:
            last = self.linear2 if self.linear2 is not None else self.linear
            init_linear_(last, "zeros")

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The block's non-linear path ``F(x)`` (the whole block when not residual)."""
        h = self.act(self.norm(self.linear(x)))
        return self.linear2(h) if self.linear2 is not None else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.residual:
            return self.branch(x)
        return self.shortcut_scale * x + self.branch_scale * self.branch(x)


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
        unknown = set(options) - set(NetConfig.__dataclass_fields__)
        if unknown:
            allowed = ", ".join(sorted(set(NetConfig.__dataclass_fields__) - {"depth", "width"}))
            raise TypeError(f"unknown option(s) {sorted(unknown)}; allowed: {allowed}")
        self.config = NetConfig(depth=depth, width=width, **options).validate()
        cfg = self.config
        self.stem = None
        if cfg.in_features is not None and cfg.in_features != cfg.width:
            self.stem = nn.Linear(cfg.in_features, cfg.width, bias=cfg.bias)
            init_linear_(self.stem, "xavier" if cfg.init == "zeros" else cfg.init)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.head = None
        if cfg.out_features is not None:
            self.head = nn.Linear(cfg.width, cfg.out_features, bias=cfg.bias)
            init_linear_(self.head, "xavier")

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
        if self.stem is not None:
            x = self.stem(x)
        states = [x]
        for block in self.blocks:
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
