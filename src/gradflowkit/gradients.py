"""Per-layer gradient norms from one backward pass (lessons 1, 2, 6-8, 12-14, 16).

Two kinds of gradient are measured, and the book keeps them apart:

- the **backward signal** ``∂L/∂x_l``: the gradient with respect to the activations that
  enter layer ``l``. This is what vanishes or explodes;
- the **weight gradient** ``∂L/∂W_l = δ_l x_{l-1}ᵀ``: it also scales with the activations
  entering the layer, so in a residual net, whose stream grows with depth, its profile can
  differ from the backward signal's.

Norms are Frobenius norms over the whole batch (the loss is a mean over the batch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .ensemble import EnsembleMLP
from .nets import DeepMLP
from .validation import check_finite, check_tensor

LossFn = Callable[[torch.Tensor], torch.Tensor]


def parameter_grad_norms(model: nn.Module, *, error_if_nonfinite: bool = True) -> dict[str, float]:
    """Norm of each parameter's ``.grad``, keyed by ``named_parameters()`` names.

    Parameters whose ``.grad`` is ``None`` (frozen, or unused in the last backward pass)
    are skipped.

    Args:
        model: a module after ``loss.backward()``.
        error_if_nonfinite: raise ``FloatingPointError`` naming the first parameter whose
            gradient has an inf or NaN (default True); if False, its norm is reported as
            inf or nan.

    Returns:
        ``{name: ‖grad‖₂}``.
    """
    norms = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        if error_if_nonfinite:
            check_finite(f"gradient of {name!r}", p.grad)
        # In float64, so that finite float32 gradients (entries up to ~1e38) never give an
        # overflowed norm.
        norms[name] = float(torch.linalg.vector_norm(p.grad.detach(), dtype=torch.float64))
    return norms


@contextmanager
def capture_inputs(modules: Mapping[str, nn.Module]):
    """Record the first positional input of each module during a forward pass.

    The hooks are removed on exit, even on error. A module called twice keeps its last input.

    Args:
        modules: ``{name: submodule}`` to watch.

    Yields:
        ``{name: input tensor}``, filled in as the forward pass runs (still in the graph).
    """
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in modules.items():
        def hook(_module, args, name=name):
            captured[name] = args[0]
        handles.append(module.register_forward_pre_hook(hook))
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


def input_gradients(model: nn.Module, inputs: torch.Tensor, loss_fn: LossFn,
                    modules: Mapping[str, nn.Module] | None = None, *,
                    error_if_nonfinite: bool = True) -> dict[str, torch.Tensor]:
    """Gradient of the loss with respect to the input of each module: ``∂L/∂x_l``.

    One forward and one backward pass; the model's parameter ``.grad`` are left untouched.

    Args:
        model: any module.
        inputs: a batch for ``model(inputs)``.
        loss_fn: maps the model's output to a scalar loss, e.g.
            ``lambda out: F.cross_entropy(out, y)``.
        modules: ``{name: submodule}`` whose inputs to measure. Default for a
            :class:`~gradflowkit.nets.DeepMLP`: every block (``"blocks.0"``, …) and the
            head (whose input is the last block's output); required for other models.
        error_if_nonfinite: raise ``FloatingPointError`` if the loss or a gradient is not
            finite (default True).

    Returns:
        ``{name: ∂L/∂(input of module)}``, detached, in the order of ``modules``.
    """
    check_tensor("inputs", inputs)
    modules = _default_modules(model) if modules is None else dict(modules)
    if not modules:
        raise ValueError("modules is empty: pass {name: submodule} for the layers to measure")
    inputs = inputs.detach().requires_grad_(True)  # so the first layer's input has a gradient
    with capture_inputs(modules) as captured:
        loss = loss_fn(model(inputs))
    missing = [n for n in modules if n not in captured]
    if missing:
        raise ValueError(f"modules {missing} were not called in the forward pass")
    if loss.ndim != 0:
        raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
    if error_if_nonfinite:
        check_finite("loss", loss.detach())
    names = list(modules)
    # An input outside the autograd graph (e.g. detached) cannot reach the loss: gradient 0.
    tracked = [n for n in names if captured[n].requires_grad]
    grads = dict(zip(tracked, torch.autograd.grad(loss, [captured[n] for n in tracked],
                                                  allow_unused=True))) if tracked else {}
    result = {}
    for name in names:
        g = grads.get(name)
        g = torch.zeros_like(captured[name]) if g is None else g.detach()
        if error_if_nonfinite:
            check_finite(f"gradient at the input of {name!r}", g)
        result[name] = g
    return result


def _default_modules(model: nn.Module) -> dict[str, nn.Module]:
    if not isinstance(model, DeepMLP):
        raise ValueError(f"modules is required for a {type(model).__name__}: pass "
                         "{name: submodule} for the layers whose inputs to measure")
    modules = {f"blocks.{i}": b for i, b in enumerate(model.blocks)}
    if model.head is not None:
        modules["head"] = model.head
    return modules


@dataclass(frozen=True)
class LayerProfile:
    """Per-layer gradient norms of a :class:`~gradflowkit.nets.DeepMLP` from one batch."""

    signal: np.ndarray   # ‖∂L/∂x_l‖ for l = 0 … depth (x_depth is the last block's output)
    weight: np.ndarray   # ‖∂L/∂W_l‖ of each block's first linear layer, l = 0 … depth-1
    loss: float          # the loss of the batch


def layer_profile(model: DeepMLP, inputs: torch.Tensor, loss_fn: LossFn, *,
                  error_if_nonfinite: bool = True) -> LayerProfile:
    """Backward-signal and weight-gradient norms per block of a ``DeepMLP``.

    Args:
        model: the network; must have a head (``out_features``) or ``loss_fn`` must accept
            the last block's output.
        inputs: a batch of inputs.
        loss_fn: maps the output to a scalar loss.
        error_if_nonfinite: raise on inf/NaN (default True); if False, norms may be inf/nan.

    Returns:
        A :class:`LayerProfile`. The model's ``.grad`` are overwritten.
    """
    if not isinstance(model, DeepMLP):
        raise TypeError(f"model must be a DeepMLP, got {type(model).__name__}; for other "
                        "models use input_gradients() with explicit modules")
    check_tensor("inputs", inputs)
    model.zero_grad(set_to_none=True)
    states = model.hidden_states(inputs.detach().requires_grad_(True))
    out = model.head(states[-1]) if model.head is not None else states[-1]
    loss = loss_fn(out)
    if error_if_nonfinite:
        check_finite("loss", loss.detach())
    for s in states:
        s.retain_grad()
    loss.backward()
    norm = lambda g: torch.linalg.vector_norm(g, dtype=torch.float64).item()  # noqa: E731
    signal = [norm(s.grad) for s in states]  # float64: no overflow of finite float32 grads
    weight = [norm(b.linear.weight.grad) for b in model.blocks]
    signal, weight = np.array(signal), np.array(weight)
    if error_if_nonfinite and not (np.isfinite(signal).all() and np.isfinite(weight).all()):
        where = ("backward signal" if not np.isfinite(signal).all() else "weight gradient")
        raise FloatingPointError(f"non-finite {where}; lower the weight scale or use "
                                 "float64, or pass error_if_nonfinite=False to see the "
                                 "inf/nan values per layer")
    return LayerProfile(signal=signal, weight=weight, loss=float(loss.detach()))


def member_backward_signals(model: EnsembleMLP, inputs: torch.Tensor, loss_fn: LossFn, *,
                            depth: int | None = None) -> list[torch.Tensor]:
    """The backward signal ``∂L_s/∂x_l`` of every member of an ensemble, per entry.

    The net measured is the ensemble's stem (if any), its first ``depth`` blocks and its
    head (if any): with ``depth`` below the ensemble's depth this is a shallower net whose
    blocks and head have the same distribution as a freshly built one of that depth
    (every block is an independent draw), so one deep ensemble serves several depths
    (lesson 1's explorer). Parameter gradients are not touched.

    Args:
        model: an :class:`~gradflowkit.ensemble.EnsembleMLP`.
        inputs: ``(batch, features)`` shared by the members, or ``(S, batch, features)``.
        loss_fn: maps the output ``(S, batch, out)`` to the members' losses, shape ``(S,)``
            (e.g. :func:`~gradflowkit.ensemble.member_cross_entropy` with the labels bound).
        depth: number of blocks to use (default: all of them).

    Returns:
        ``depth + 1`` detached tensors ``(S, batch, width)``: ``∂L_s/∂x_0`` (the first
        block's input) … ``∂L_s/∂x_depth`` (the last used block's output). Non-finite
        values are left in.
    """
    if not isinstance(model, EnsembleMLP):
        raise TypeError(f"model must be an EnsembleMLP, got {type(model).__name__}; for a "
                        "single DeepMLP use input_gradients() or layer_profile()")
    n_blocks = len(model.blocks)
    depth = n_blocks if depth is None else int(depth)
    if not 1 <= depth <= n_blocks:
        raise ValueError(f"depth must be between 1 and the ensemble's {n_blocks} blocks, "
                         f"got {depth}")
    check_tensor("inputs", inputs)
    x = inputs.detach()
    if x.ndim == 2:
        x = x.unsqueeze(0).expand(model.n_members, -1, -1)
    if x.ndim != 3 or x.shape[0] != model.n_members:
        raise ValueError(f"inputs must have shape (batch, features) or ({model.n_members}, "
                         f"batch, features), got {tuple(inputs.shape)}")
    x = x.requires_grad_(True)
    h = model.stem(x) if model.stem is not None else x
    states = [h]
    for block in model.blocks[:depth]:
        states.append(block(states[-1]))
    out = model.head(states[-1]) if model.head is not None else states[-1]
    losses = loss_fn(out)
    if losses.shape != (model.n_members,):
        raise ValueError(f"loss_fn must return one loss per member, shape "
                         f"({model.n_members},), got {tuple(losses.shape)}")
    grads = torch.autograd.grad(losses.sum(), states, allow_unused=True)
    return [torch.zeros_like(s) if g is None else g.detach() for s, g in zip(states, grads)]


def prefix_signal_profile(model: EnsembleMLP, inputs: torch.Tensor, loss_fn: LossFn, *,
                          depth: int | None = None) -> np.ndarray:
    """``‖∂L_s/∂x_l‖`` per member of the net made of an ensemble's first ``depth`` blocks.

    With ``depth=None`` this equals :func:`~gradflowkit.ensemble.signal_profile`; see
    :func:`member_backward_signals` for the arguments.

    Returns:
        Float64 array ``(S, depth + 1)``; column ``l`` is the norm over the batch of
        ``∂L_s/∂x_l``.
    """
    grads = member_backward_signals(model, inputs, loss_fn, depth=depth)
    return torch.stack([torch.linalg.vector_norm(g, dim=(1, 2), dtype=torch.float64)
                        for g in grads], dim=1).numpy()


def member_relative_change(before: Mapping[str, torch.Tensor],
                           model: nn.Module) -> dict[str, np.ndarray]:
    """How far training moved each member's parameters: ``‖θ_s − θ_s⁰‖ / ‖θ_s⁰‖``.

    The ensemble counterpart of :func:`~gradflowkit.training.relative_change`: where a
    layer's gradient vanished, its weights barely move (lesson 2).

    Args:
        before: ``{name: tensor}`` taken before training, e.g. by
            :func:`~gradflowkit.training.snapshot`; every tensor has the member axis first.
        model: the ensemble after training (parameters named as in ``before``).

    Returns:
        ``{name: float64 array (S,)}`` for every parameter in ``before``; a member whose
        starting parameter is all zero (a zero-initialized bias) gets ``inf`` if it moved
        and 0 if it did not.
    """
    params = dict(model.named_parameters())
    missing = [name for name in before if name not in params]
    if missing:
        raise KeyError(f"model has no parameters {missing}; take the snapshot of the same "
                       "model")
    change = {}
    with torch.no_grad():
        for name, start in before.items():
            now = params[name].detach()
            if now.shape != start.shape or now.ndim < 1:
                raise ValueError(f"{name}: shape {tuple(now.shape)} does not match the "
                                 f"snapshot's {tuple(start.shape)} (or has no member axis)")
            flat = lambda t: t.reshape(t.shape[0], -1).double()  # noqa: E731
            moved = torch.linalg.vector_norm(flat(now) - flat(start), dim=1)
            size = torch.linalg.vector_norm(flat(start), dim=1)
            zero_start = torch.where(moved > 0, torch.inf, 0.0).to(moved.dtype)
            change[name] = torch.where(size > 0, moved / size.clamp_min(1e-300),
                                       zero_start).numpy()
    return change
