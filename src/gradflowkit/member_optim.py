"""SGD and Adam for an ensemble's stacked parameters, with a learning rate per member.

``torch.optim`` applies one learning rate to a whole tensor. An ensemble whose members are
a sweep over learning rates (lessons 7 and 16: the fraction of seeds that diverge against the
learning rate) needs one per member, and a member that diverged must stop moving while the
others go on. :class:`MemberOptimizer` does exactly what ``torch.optim.SGD`` (momentum,
weight decay), ``torch.optim.Adam`` (L2 weight decay) and ``torch.optim.AdamW`` (decoupled
weight decay) do, entry by entry, with ``lr`` broadcast along the member axis; the unit
tests compare it with those optimizers run on each member alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from .validation import check_choice, check_float

#: Optimizers :class:`MemberOptimizer` implements.
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")


class MemberOptimizer:
    """One optimizer step for every member of an ensemble, with per-member learning rates.

    Args:
        params: ``(name, parameter)`` pairs, e.g. ``model.named_parameters()``; every
            parameter has the member axis first.
        n_members: number of members ``S``.
        kind: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        lr: one learning rate (> 0) for all members, or a sequence of ``S``.
        momentum: SGD momentum (default 0; ``"sgd"`` only).
        weight_decay: λ >= 0 (default 0), one for all members or a sequence of ``S``: added
            to the gradient as ``λθ`` (``"sgd"``, ``"adam"``, as torch does) or applied as
            ``θ ← θ(1 − lr λ)`` (``"adamw"``).
        betas: Adam's ``(β1, β2)`` (default ``(0.9, 0.999)``).
        eps: Adam's ε (default 1e-8).
    """

    def __init__(self, params: Iterable[tuple[str, nn.Parameter]], n_members: int, *,
                 kind: str = "sgd", lr: float | Sequence[float], momentum: float = 0.0,
                 weight_decay: float | Sequence[float] = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.kind = check_choice("optimizer", kind, OPTIMIZERS)
        self.params = list(params)
        self.n_members = n_members
        for name, p in self.params:
            if p.ndim == 0 or p.shape[0] != n_members:
                raise ValueError(f"parameter {name!r} has shape {tuple(p.shape)}; every "
                                 f"parameter of an ensemble of {n_members} needs the member "
                                 "axis first")
        self.lr = member_values("lr", lr, n_members, positive=True)
        self.momentum = check_float("momentum", momentum, nonnegative=True)
        if self.momentum and self.kind != "sgd":
            raise ValueError(f"momentum applies to optimizer='sgd' only, got {self.kind!r}; "
                             "Adam's momentum is betas[0]")
        # One float when every member has the same λ (cheaper), else a tensor (S,).
        if isinstance(weight_decay, (int, float)) and not isinstance(weight_decay, bool):
            self.weight_decay = check_float("weight_decay", weight_decay, nonnegative=True)
        else:
            self.weight_decay = member_values("weight_decay", weight_decay, n_members)
            if bool((self.weight_decay < 0).any()):
                raise ValueError(f"weight_decay must be >= 0, got "
                                 f"{self.weight_decay.tolist()}")
        self.beta1 = check_float("betas[0]", betas[0], nonnegative=True)
        self.beta2 = check_float("betas[1]", betas[1], nonnegative=True)
        if not (self.beta1 < 1 and self.beta2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        self.eps = check_float("eps", eps, positive=True)
        self.steps = 0
        self._neg_lr: dict[tuple, torch.Tensor] = {}
        self.state: dict[str, dict[str, torch.Tensor]] = {name: {} for name, _ in self.params}

    def set_lr(self, lr: torch.Tensor) -> None:
        """Set every member's learning rate for the next steps (a schedule, e.g. warm-up).

        Args:
            lr: float64 ``(S,)``, every entry finite and > 0.
        """
        lr = torch.as_tensor(lr, dtype=torch.float64)
        if lr.shape != (self.n_members,):
            raise ValueError(f"lr must have shape ({self.n_members},), got {tuple(lr.shape)}")
        if not bool((torch.isfinite(lr) & (lr > 0)).all()):
            raise ValueError(f"lr must be finite and > 0, got {lr.tolist()}")
        self.lr = lr
        self._neg_lr.clear()           # the cached -lr of the all-active SGD step

    @torch.no_grad()
    def step(self, active: torch.Tensor, *, updates: bool = False) -> dict[str, torch.Tensor]:
        """Apply one step to the members where ``active`` is True; leave the others as they are.

        Gradients of inactive members are ignored (they may hold inf or NaN) and their
        optimizer state does not advance.

        Args:
            active: boolean ``(S,)``.
            updates: also return each parameter's update ``Δθ`` (default False).

        Returns:
            ``{name: Δθ}`` when ``updates`` is True (zero for inactive members), else ``{}``.
        """
        self.steps += 1
        all_active = bool(active.all())
        if self.kind == "sgd" and not updates and all_active:
            self._sgd_all_active()
            return {}
        # Adam with every member stepping needs no masks (see _adam); SGD recording its
        # updates, or any step with stopped members, takes the masked path.
        masked = self.kind == "sgd" or not all_active
        lr = torch.where(active, self.lr, torch.zeros_like(self.lr))
        done = {}
        for name, p in self.params:
            if p.grad is None:
                continue
            if masked:
                shape = (-1,) + (1,) * (p.ndim - 1)
                mask = active.view(shape)
                grad = torch.where(mask, p.grad, torch.zeros_like(p.grad))
                step_lr = lr.to(p.dtype).view(shape)
                delta = (self._sgd if self.kind == "sgd" else self._adam)(name, p, grad,
                                                                           step_lr, mask)
            else:
                delta = self._adam(name, p, p.grad, self._negative_lr(p).neg())
            p.add_(delta)
            if updates:
                done[name] = delta
        return done

    def _sgd_all_active(self) -> None:
        """The same SGD step, bit for bit, without masks when every member steps (the
        common case: about half the tensor operations per parameter)."""
        for name, p in self.params:
            if p.grad is None:
                continue
            grad = self._with_decay(p.grad, p)
            if self.momentum:
                state = self.state[name]
                if "buf" not in state:
                    state["buf"] = grad.clone()
                else:
                    state["buf"].mul_(self.momentum).add_(grad)
                grad = state["buf"]
            # Not addcmul_: a fused multiply-add rounds once, and then a run that records
            # its updates (the masked path below) would drift from one that does not.
            p.add_(grad * self._negative_lr(p))

    def _with_decay(self, grad: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``grad + λ p`` (L2 weight decay), with one λ or one per member."""
        if isinstance(self.weight_decay, float):
            return grad.add(p, alpha=self.weight_decay) if self.weight_decay else grad
        return torch.addcmul(grad, p, self._member_view(self.weight_decay, p))

    def _member_view(self, values: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``values`` (S,) shaped ``(S, 1, …)`` to broadcast against ``p``."""
        return values.to(p.dtype).view((-1,) + (1,) * (p.ndim - 1))

    def _negative_lr(self, p: torch.Tensor) -> torch.Tensor:
        """``-lr`` shaped ``(S, 1, …)`` in ``p``'s dtype, made once per dtype and rank."""
        key = (p.dtype, p.ndim)
        if key not in self._neg_lr:
            self._neg_lr[key] = (-self.lr).to(p.dtype).view((-1,) + (1,) * (p.ndim - 1))
        return self._neg_lr[key]

    def _sgd(self, name, p, grad, lr, mask):
        grad = self._with_decay(grad, p)
        if self.momentum:
            state = self.state[name]
            if "buf" not in state:       # torch starts the buffer at the first gradient
                state["buf"] = grad.clone()
            else:
                state["buf"] = torch.where(mask, state["buf"] * self.momentum + grad,
                                           state["buf"])
            grad = state["buf"]
        return torch.where(mask, -lr * grad, torch.zeros_like(p))

    def _adam(self, name, p, grad, lr, mask=None):
        """Adam's (or AdamW's) update ``Δθ`` of one parameter.

        With ``mask`` (``(S, 1, …)`` booleans), members where it is False keep their state
        and get ``Δθ = 0``. Without one every member steps: the state is updated in place
        and nothing is masked, about half the time of the masked step. Both branches do the
        same operations in the same order, so they give the same numbers, bit for bit (a
        unit test holds them to it).
        """
        state = self.state[name]
        if not state:
            state.update(m=torch.zeros_like(p), v=torch.zeros_like(p),
                         t=torch.zeros(lr.shape, dtype=p.dtype))
        decay = None
        if self.kind == "adamw":                       # θ(1 − lr λ), before the Adam step
            wd = self.weight_decay
            decay = -lr * (wd if isinstance(wd, float) else self._member_view(wd, p)) * p
        else:
            grad = self._with_decay(grad, p)
        if mask is None:
            t = state["t"].add_(1.0)
            m = state["m"].lerp_(grad, 1 - self.beta1)
            v = state["v"].mul_(self.beta2).add_((1 - self.beta2) * grad * grad)
        else:
            state["t"] = t = state["t"] + mask.to(p.dtype)
            state["m"] = m = torch.where(mask, torch.lerp(state["m"], grad, 1 - self.beta1),
                                         state["m"])
            state["v"] = v = torch.where(mask, state["v"] * self.beta2
                                         + (1 - self.beta2) * grad * grad, state["v"])
            t = torch.clamp(t, min=1)                  # members that never stepped: no 0/0
        denom = v.sqrt() / torch.sqrt(1 - self.beta2 ** t) + self.eps
        step = (lr / (1 - self.beta1 ** t)) * m / denom
        delta = step.neg_() if decay is None else decay - step
        return delta if mask is None else torch.where(mask, delta, torch.zeros_like(p))

def member_values(name: str, value: float | Sequence[float], n_members: int, *,
                  positive: bool = False) -> torch.Tensor:
    """A float64 tensor ``(S,)`` from one number or a sequence of ``S`` numbers.

    Args:
        name: the argument's name, for the error message.
        value: a number, or one number per member.
        n_members: ``S``.
        positive: require every value > 0 (default False).

    Returns:
        The values, one per member.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        values = [check_float(name, value, positive=positive)] * n_members
    else:
        values = [check_float(f"{name}[{i}]", v, positive=positive)
                  for i, v in enumerate(value)]
        if len(values) != n_members:
            raise ValueError(f"{name} has {len(values)} values but the ensemble has "
                             f"{n_members} members; pass one number or one per member")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be finite, got {values}")
    return torch.tensor(values, dtype=torch.float64)
