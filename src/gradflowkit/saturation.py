"""How saturated a net's activations are, layer by layer (lesson 2).

A unit saturates when its pre-activation ``z`` sits where the activation is flat, so that
``f'(z)`` is near zero and the backward signal through that unit is nearly cut. The
helpers here record the pre-activations ``z_l`` of every block of a
:class:`~gradflowkit.nets.DeepMLP` and summarize ``f'(z_l)`` per layer.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .activations import derivative
from .gradients import capture_inputs
from .nets import DeepMLP
from .validation import check_float, check_tensor

#: ``f'(z)`` below this counts as saturated (about 4% of the sigmoid's maximum 1/4).
SATURATION_THRESHOLD = 0.01


@torch.no_grad()
def preactivations(model: DeepMLP, inputs: torch.Tensor) -> list[torch.Tensor]:
    """The input ``z_l`` of every block's activation, from one forward pass.

    ``z_l`` is what the activation sees: ``W_l x_l + b_l``, after the block's normalization
    if it has one.

    Args:
        model: the network.
        inputs: a batch, shape ``(batch, in_features)``.

    Returns:
        ``depth`` detached tensors of shape ``(batch, width)``, block 0 first.
    """
    if not isinstance(model, DeepMLP):
        raise TypeError(f"model must be a DeepMLP, got {type(model).__name__}")
    check_tensor("inputs", inputs)
    with capture_inputs(model.activation_modules()) as captured:
        model(inputs)
    return [captured[str(i)].detach() for i in range(len(model.blocks))]


class SlopeProfile(NamedTuple):
    """Per-layer summary of the slopes ``f'(z_l)`` of a :class:`~gradflowkit.nets.DeepMLP`."""

    mean: np.ndarray       # mean of f'(z_l) over the batch and the units, per layer
    rms: np.ndarray        # sqrt(mean f'(z_l)²): the gain a random backward signal sees
    saturated: np.ndarray  # share of units (over the batch) with f'(z_l) < threshold


def slope_profile(model: DeepMLP, inputs: torch.Tensor, *,
                  threshold: float = SATURATION_THRESHOLD) -> SlopeProfile:
    """Mean and root-mean-square slope ``f'(z_l)``, and the saturated share, per layer.

    Args:
        model: the network; its activation is ``model.config.activation``.
        inputs: a batch, shape ``(batch, in_features)``.
        threshold: a unit counts as saturated where ``f'(z) < threshold`` (default
            :data:`SATURATION_THRESHOLD`).

    Returns:
        A :class:`SlopeProfile` with arrays of length ``depth``.
    """
    threshold = check_float("threshold", threshold, positive=True)
    zs = preactivations(model, inputs)  # checks that model is a DeepMLP
    slopes = [derivative(model.config.activation, z).double() for z in zs]
    return SlopeProfile(
        mean=np.array([float(s.mean()) for s in slopes]),
        rms=np.array([float(s.square().mean().sqrt()) for s in slopes]),
        saturated=np.array([float((s < threshold).double().mean()) for s in slopes]),
    )
