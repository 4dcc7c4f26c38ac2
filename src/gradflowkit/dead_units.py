"""Dead ReLU units: units that are never active on a data set (lesson 7).

A ReLU unit whose pre-activation ``z`` is ``<= 0`` for every input outputs 0 and has slope 0
everywhere on that data: no gradient reaches its incoming weights or bias, so gradient
descent cannot revive it unless the layers below change its inputs. The helpers here find
such units in every block of a :class:`~gradflowkit.nets.DeepMLP`. For Leaky ReLU the same
test finds units that are never *positive*; those still pass a (small) gradient.
"""

from __future__ import annotations

import numpy as np
import torch

from .nets import DeepMLP
from .saturation import preactivations


def dead_masks(model: DeepMLP, inputs: torch.Tensor) -> list[torch.Tensor]:
    """Which units of each block are never active (``z <= 0``) on all of ``inputs``.

    Args:
        model: the network; the test looks at each block's pre-activation ``z_l``.
        inputs: the data set (or a batch of it), shape ``(batch, in_features)``.

    Returns:
        ``depth`` boolean tensors of shape ``(width,)``: True where the unit is dead.
    """
    zs = preactivations(model, inputs)  # validates model and inputs
    if zs and zs[0].shape[0] == 0:
        raise ValueError("inputs is empty; pass at least one example")
    return [(z <= 0).all(dim=0) for z in zs]


def dead_fraction(model: DeepMLP, inputs: torch.Tensor) -> np.ndarray:
    """Share of each block's units that are never active on ``inputs``.

    Args:
        model: the network.
        inputs: the data set, shape ``(batch, in_features)``.

    Returns:
        A float array of length ``depth`` with values in ``[0, 1]``.
    """
    return np.array([float(m.double().mean()) for m in dead_masks(model, inputs)])
