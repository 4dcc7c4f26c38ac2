"""How saturated a net's activations are, layer by layer (lesson 2).

A unit saturates when its pre-activation ``z`` sits where the activation is flat, so that
``f'(z)`` is near zero and the backward signal through that unit is nearly cut. The
helpers here record the pre-activations ``z_l`` of every block of a
:class:`~gradflowkit.nets.DeepMLP` (or of every member of an
:class:`~gradflowkit.ensemble.EnsembleMLP`) and summarize ``f'(z_l)`` per layer.

:func:`variant` copies a net or an ensemble with another activation or weight scale but
the *same random draws*, so that a sweep over activations and scales compares like with
like (lesson 2) and draws the weights only once.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import NamedTuple

import numpy as np
import torch

from .activations import derivative, make_activation
from .ensemble import EnsembleMLP
from .gradients import capture_inputs
from .nets import DeepMLP
from .validation import check_float, check_tensor

#: ``f'(z)`` below this counts as saturated (about 4% of the sigmoid's maximum 1/4).
SATURATION_THRESHOLD = 0.01


@torch.no_grad()
def preactivations(model: DeepMLP | EnsembleMLP, inputs: torch.Tensor) -> list[torch.Tensor]:
    """The input ``z_l`` of every block's activation, from one forward pass.

    ``z_l`` is what the activation sees: ``W_l x_l + b_l``, after the block's normalization
    if it has one.

    Args:
        model: the network, or an ensemble of them.
        inputs: a batch, shape ``(batch, in_features)`` (for an ensemble also
            ``(S, batch, in_features)``, one batch per member).

    Returns:
        ``depth`` detached tensors of shape ``(batch, width)`` (an ensemble:
        ``(S, batch, width)``), block 0 first.
    """
    if not isinstance(model, (DeepMLP, EnsembleMLP)):
        raise TypeError(f"model must be a DeepMLP or an EnsembleMLP, got "
                        f"{type(model).__name__}")
    check_tensor("inputs", inputs)
    modules = {str(i): block.act for i, block in enumerate(model.blocks)}
    with capture_inputs(modules) as captured:
        model(inputs)
    return [captured[str(i)].detach() for i in range(len(model.blocks))]


class SlopeProfile(NamedTuple):
    """Per-layer summary of the slopes ``f'(z_l)`` of a :class:`~gradflowkit.nets.DeepMLP`
    (arrays ``(depth,)``) or of each member of an ensemble (arrays ``(S, depth)``)."""

    mean: np.ndarray       # mean of f'(z_l) over the batch and the units, per layer
    rms: np.ndarray        # sqrt(mean f'(z_l)²): the gain a random backward signal sees
    saturated: np.ndarray  # share of units (over the batch) with f'(z_l) < threshold


def slope_profile(model: DeepMLP | EnsembleMLP, inputs: torch.Tensor, *,
                  threshold: float = SATURATION_THRESHOLD) -> SlopeProfile:
    """Mean and root-mean-square slope ``f'(z_l)``, and the saturated share, per layer.

    Args:
        model: the network, or an ensemble of them (then every statistic is per member);
            its activation is ``model.config.activation``.
        inputs: a batch, shape ``(batch, in_features)`` (see :func:`preactivations`).
        threshold: a unit counts as saturated where ``f'(z) < threshold`` (default
            :data:`SATURATION_THRESHOLD`).

    Returns:
        A :class:`SlopeProfile` with arrays of length ``depth``, or ``(S, depth)`` for an
        ensemble.
    """
    threshold = check_float("threshold", threshold, positive=True)
    zs = preactivations(model, inputs)  # checks the model's type
    slopes = torch.stack([derivative(model.config.activation, z).double() for z in zs], -1)
    # A net: (batch, width, depth); an ensemble: (S, batch, width, depth).
    dims = (-3, -2)
    return SlopeProfile(
        mean=slopes.mean(dims).numpy(),
        rms=slopes.square().mean(dims).sqrt().numpy(),
        saturated=(slopes < threshold).double().mean(dims).numpy(),
    )


def variant(model: DeepMLP | EnsembleMLP, *, activation: str | None = None,
            weight_scale: float | None = None) -> DeepMLP | EnsembleMLP:
    """A copy of ``model`` with another activation and/or weight scale, same random draws.

    The blocks' weights are multiplied by ``weight_scale / model.config.weight_scale``
    (stem and head are not scaled, as in :class:`~gradflowkit.nets.DeepMLP`), and every
    block's activation module is replaced. For a freshly built net with weight scale 1 the
    result is, bit for bit, the net built from the same seed with these options: the
    activation draws nothing, and the weight scale multiplies the same draws.

    Args:
        model: a net or an ensemble (not changed).
        activation: the new activation (default: keep).
        weight_scale: the new weight scale, > 0 (default: keep). The model's own scale must
            be > 0.

    Returns:
        The copy, with ``config`` updated.
    """
    if not isinstance(model, (DeepMLP, EnsembleMLP)):
        raise TypeError(f"model must be a DeepMLP or an EnsembleMLP, got "
                        f"{type(model).__name__}")
    changes = {}
    if activation is not None:
        changes["activation"] = activation
    if weight_scale is not None:
        weight_scale = check_float("weight_scale", weight_scale, positive=True)
        if model.config.weight_scale <= 0:
            raise ValueError("the model's weight_scale is 0: its weights carry no draws "
                             "to rescale; build it with a positive weight_scale")
        changes["weight_scale"] = weight_scale
    config = dataclasses.replace(model.config, **changes).validate()
    new = copy.deepcopy(model)
    new.config = config
    factor = config.weight_scale / model.config.weight_scale
    with torch.no_grad():
        for block in new.blocks:
            block.act = make_activation(config.activation)
            if factor != 1:
                for layer in (block.linear, block.linear2):
                    if layer is not None:
                        layer.weight.mul_(factor)
    return new
