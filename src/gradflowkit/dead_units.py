"""Dead ReLU units: units that are never active on a data set (lesson 7).

A ReLU unit whose pre-activation ``z`` is ``<= 0`` for every input outputs 0 and has slope 0
everywhere on that data: no gradient reaches its incoming weights or bias, so gradient
descent cannot revive it unless the layers below change its inputs. The helpers here find
such units in every block of a :class:`~gradflowkit.nets.DeepMLP`. For Leaky ReLU the same
test finds units that are never *positive*; those still pass a (small) gradient.
:func:`member_dead_fractions` does the same for every member of an
:class:`~gradflowkit.ensemble.EnsembleMLP` at once.
"""

from __future__ import annotations

import numpy as np
import torch

from .ensemble import EnsembleMLP
from .gradients import capture_inputs
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


@torch.no_grad()
def member_dead_fractions(model: EnsembleMLP, inputs: torch.Tensor) -> np.ndarray:
    """Share of each block's units that are never active on ``inputs``, for every member.

    The ensemble counterpart of :func:`dead_fraction` (lesson 7): member ``s``'s row equals
    ``dead_fraction(model.member(s), inputs)``.

    Args:
        model: an :class:`~gradflowkit.ensemble.EnsembleMLP`; the test looks at the input
            ``z_l`` of each block's activation (after the block's normalization, if any).
        inputs: the data set, ``(batch, in_features)`` shared by the members, or
            ``(S, batch, in_features)``.

    Returns:
        Float array ``(S, depth)`` with values in ``[0, 1]``.
    """
    if not isinstance(model, EnsembleMLP):
        raise TypeError(f"model must be an EnsembleMLP, got {type(model).__name__}; "
                        "for a single DeepMLP use dead_fraction")
    x = model._inputs(inputs)
    if x.shape[1] == 0:
        raise ValueError("inputs is empty; pass at least one example")
    modules = {str(i): block.act for i, block in enumerate(model.blocks)}
    with capture_inputs(modules) as captured:
        model(x)
    dead = [(captured[str(i)] <= 0).all(dim=1) for i in range(len(model.blocks))]
    return torch.stack(dead, dim=1).double().mean(dim=2).numpy()
