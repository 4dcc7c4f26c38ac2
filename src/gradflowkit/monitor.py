"""Watch gradient flow while a model trains: a hook-based monitor (lesson 16).

A :class:`Monitor` hooks a model's activation modules (forward hooks) and its optimizer
(step pre- and post-hooks) and records, every ``every``-th optimizer step:

- ``grad_norm``: the Frobenius norm of each parameter's ``.grad`` (in float64);
- ``activation``: the mean, standard deviation and saturated share of the output of each
  watched module (by default every ``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``, ``GELU``);
- ``update_ratio``: ``log10(std(p_after - p_before) / std(p_before))`` per parameter, the
  update-to-data ratio (about -3 is Karpathy's rule of thumb for a healthy learning rate);
- optionally per-layer histograms of ``log10|grad|`` and of the activations.

Non-finite gradients are checked on every step, before the optimizer applies them. There
are no module backward hooks: they break on in-place operations such as
``nn.ReLU(inplace=True)`` and ``out += identity``, which the monitor therefore supports.
:func:`member_saturation` applies the monitor's saturation rule to every member of an
:class:`~gradflowkit.ensemble.EnsembleMLP` at once.

Saturation, the share of a module's output entries that pass (almost) no gradient:

- ``Sigmoid``: output < 0.01 or > 0.99 (there the derivative ``s(1-s)`` is below ~0.0099);
- ``Tanh``: ``|output| > 0.99`` (derivative ``1 - t²`` below ~0.02);
- ``ReLU``, ``LeakyReLU``, ``GELU`` and any other watched type: output <= 0 (a ReLU passes
  no gradient there, a leaky ReLU or GELU little).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .ensemble import EnsembleMLP
from .validation import check_choice, check_int

#: Module types whose outputs a :class:`Monitor` watches by default.
DEFAULT_ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.GELU)

#: The activation statistics a record holds per module (see :meth:`Monitor.matrix`).
ACTIVATION_STATS: tuple[str, ...] = ("mean", "std", "saturation")

#: The record keys :func:`records_matrix` turns into arrays.
MATRIX_KINDS: tuple[str, ...] = ("grad_norm", "update_ratio", "activation")

_SIGMOID, _TANH, _RELU, _RECTIFIER = 0, 1, 2, 3


class NonFiniteGradientError(FloatingPointError):
    """A gradient has an inf or NaN entry; raised before the optimizer applies it."""


class Monitor:
    """Record gradient norms, activation statistics and update ratios during training.

    Use it as a context manager around the training loop (or call :meth:`attach` and
    :meth:`detach`); every hook is removed on exit, even on error::

        with Monitor(model, optimizer=opt, every=10) as mon:
            for x, y in batches:
                opt.zero_grad()
                loss_fn(model(x), y).backward()
                opt.step()        # the monitor hooks the optimizer
        mon.records               # one dict per recorded step

    Step ``s`` is the number of optimizer steps taken before this one (0-based); it is
    recorded when ``s % every == 0``, with the activations of the last forward pass (with
    autograd on) before it. Forward passes under ``torch.no_grad()`` are ignored. A module
    called several times in one forward pass is recorded as ``name``, ``name#1``, ….
    Without an optimizer, call :meth:`step` after ``loss.backward()``; records then have
    an empty ``update_ratio``.

    A record is ``{"step": int, "loss": float | None, "grad_norm": {param: float},
    "activation": {module: {"mean", "std", "saturation"}}, "update_ratio": {param: float}}``
    plus, with ``histogram_bins``, ``"grad_hist"`` and ``"act_hist"``: ``{name: (counts,
    edges)}`` of ``log10|grad|`` (zero entries left out) and of the activation values.
    The standard deviations divide by the number of entries ``N`` (not ``N - 1``); NaN
    outputs make a module's statistics NaN. The update ratio skips parameters with fewer
    than 2 entries, with ``std(p_before) = 0`` (e.g. zero-initialized) or that did not
    change (``std(update) = 0``). A step stopped by :class:`NonFiniteGradientError` leaves
    no record: the records end with the last step before the alarm.

    Cost: the module hooks are registered only for the forward passes before recorded
    steps, so the other steps pay just the non-finite check (one fused norm over the
    gradients). ``benchmarks/monitor_overhead.py`` measures the overhead.

    Args:
        model: the network to watch; it must have parameters.
        optimizer: a ``torch.optim.Optimizer`` to hook (default None: call :meth:`step`).
        every: record every ``every``-th optimizer step, ``every >= 1`` (default 1).
            Non-finite gradients are checked on every step regardless.
        activation_types: a tuple of ``nn.Module`` subclasses whose outputs are watched
            (default :data:`DEFAULT_ACTIVATION_TYPES`); ``()`` watches none.
        histogram_bins: number of bins of the per-layer histograms, or None for no
            histograms (default None).
        raise_on_nonfinite: raise :class:`NonFiniteGradientError` on the first step with an
            inf or NaN gradient, before the update is applied (default True); if False,
            record it in :attr:`nonfinite` / :attr:`nonfinite_steps` and go on.

    Attributes:
        records: the list of records, one per recorded step.
        nonfinite: None, or ``{"step": s, "parameter": name, "value": "inf" | "nan"}`` for
            the first step with a non-finite gradient (the first parameter in
            ``named_parameters()`` order; "nan" if that gradient has any NaN).
        nonfinite_steps: every step with a non-finite gradient (only filled with
            ``raise_on_nonfinite=False``, apart from the first).
        parameter_shapes: ``{param name: shape}``, e.g. to keep only weight matrices.
        steps_taken: optimizer steps seen while attached.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                 every: int = 1,
                 activation_types: tuple[type[nn.Module], ...] = DEFAULT_ACTIVATION_TYPES,
                 histogram_bins: int | None = None, raise_on_nonfinite: bool = True):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}; "
                            "wrap a function in an nn.Module subclass")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got "
                            f"{type(optimizer).__name__}; pass e.g. "
                            "torch.optim.SGD(model.parameters(), lr=0.1)")
        self.every = check_int("every", every, minimum=1)
        if not (isinstance(activation_types, tuple)
                and all(isinstance(t, type) and issubclass(t, nn.Module)
                        for t in activation_types)):
            raise TypeError("activation_types must be a tuple of nn.Module subclasses, e.g. "
                            f"(nn.ReLU, nn.Tanh); got {activation_types!r}")
        if histogram_bins is not None:
            histogram_bins = check_int("histogram_bins", histogram_bins, minimum=1)
        if not isinstance(raise_on_nonfinite, bool):
            raise TypeError(f"raise_on_nonfinite must be True or False, got "
                            f"{raise_on_nonfinite!r}")
        self._named_params = list(model.named_parameters())
        if not self._named_params:
            raise ValueError(f"model ({type(model).__name__}) has no parameters: there are "
                             "no gradients to monitor; pass the model you train")
        self.model = model
        self.optimizer = optimizer
        self.activation_types = activation_types
        self.histogram_bins = histogram_bins
        self.raise_on_nonfinite = raise_on_nonfinite
        self.records: list[dict[str, Any]] = []
        self.nonfinite: dict[str, Any] | None = None
        self.nonfinite_steps: list[int] = []
        self.parameter_shapes = {n: tuple(p.shape) for n, p in self._named_params}
        self.steps_taken = 0
        self._watched = [(name, m, _saturation_kind(m)) for name, m in model.named_modules()
                         if activation_types and isinstance(m, activation_types)]
        self._ratio_params = [(n, p) for n, p in self._named_params
                              if p.requires_grad and p.numel() >= 2]
        self._opt_handles: list[Any] = []
        self._fwd_handles: list[Any] = []
        self._attached = False
        self._recording = True   # whether the next step is recorded
        self._calls: dict[str, int] = {}   # calls per watched module in this forward pass
        self._acts: list[tuple] = []       # statistics of the current forward pass
        self._act_hist: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._loss: tuple[int, float] | None = None
        self._pending: dict[str, Any] | None = None
        self._buffers: _RatioBuffers | None = None
        self._data_norms: list[float] | None = None
        self._scratch = _Scratch()  # reused work buffers for the activation statistics

    # -- attaching -------------------------------------------------------------------

    def attach(self) -> "Monitor":
        """Register the hooks. Raises if already attached.

        Re-attaching after :meth:`detach` goes on counting steps where it stopped.

        Returns:
            The monitor itself.
        """
        if self._attached:
            raise RuntimeError("this Monitor is already attached; call detach() first or "
                               "use one `with Monitor(...)` block")
        try:
            if self.optimizer is not None:
                self._opt_handles.append(self.optimizer.register_step_pre_hook(self._pre_step))
                self._opt_handles.append(
                    self.optimizer.register_step_post_hook(self._post_step))
            self._recording = self.steps_taken % self.every == 0
            self._forward_hooks(self._recording)
        except BaseException:
            self._remove_hooks()
            raise
        self._attached = True
        return self

    def detach(self) -> None:
        """Remove every hook (safe to call twice). The records are kept."""
        self._remove_hooks()
        self._attached = False
        self._pending = None
        self._buffers = None
        self._data_norms = None

    def _remove_hooks(self) -> None:
        for handles in (self._fwd_handles, self._opt_handles):
            while handles:
                handles.pop().remove()

    def _forward_hooks(self, on: bool) -> None:
        """Hook the watched modules only before recorded steps: other steps pay nothing."""
        if on and not self._fwd_handles:
            self._fwd_handles.append(self.model.register_forward_pre_hook(self._on_forward))
            for name, module, kind in self._watched:
                def hook(_module, _args, output, name=name, kind=kind):
                    self._on_activation(name, kind, output)
                self._fwd_handles.append(module.register_forward_hook(hook))
        elif not on:
            while self._fwd_handles:
                self._fwd_handles.pop().remove()

    def __enter__(self) -> "Monitor":
        return self.attach()

    def __exit__(self, *exc_info) -> None:
        self.detach()

    # -- user calls --------------------------------------------------------------------

    def step(self) -> None:
        """Check and record the current gradients when there is no optimizer.

        Call it after ``loss.backward()``. Raises :class:`NonFiniteGradientError` like the
        optimizer hook does.
        """
        if self.optimizer is not None:
            raise RuntimeError("this Monitor hooks the optimizer, which records each "
                               "optimizer.step(); do not call Monitor.step() as well")
        if not self._attached:
            raise RuntimeError("the Monitor is not attached; use `with Monitor(...)` or "
                               "call attach() first")
        self._pre_step()
        self._post_step()

    def log(self, loss: float | torch.Tensor) -> None:
        """Store the loss of the step about to be taken in its record (if it is recorded).

        Args:
            loss: the loss, a float or a one-element tensor (detached here); call it
                before ``optimizer.step()`` (or :meth:`step`), e.g. ``mon.log(loss)``.
        """
        if isinstance(loss, torch.Tensor):
            loss = loss.detach()
        self._loss = (self.steps_taken, float(loss))

    def matrix(self, kind: str, stat: str | None = None):
        """The records of one kind as an array: recorded steps × names.

        Args:
            kind: ``"grad_norm"``, ``"update_ratio"`` or ``"activation"``.
            stat: for ``"activation"``, one of ``"mean"``, ``"std"``, ``"saturation"``
                (required there; must be None otherwise).

        Returns:
            ``(steps, names, values)``: see :func:`records_matrix`.
        """
        return records_matrix(self.records, kind, stat)

    # -- hooks -----------------------------------------------------------------------

    def _on_forward(self, _module, _args) -> None:
        if self._recording and torch.is_grad_enabled():
            self._calls = {}
            self._acts = []
            self._act_hist = {}

    def _on_activation(self, name: str, kind: int, output: Any) -> None:
        if not (self._recording and torch.is_grad_enabled()
                and isinstance(output, torch.Tensor)):
            return
        calls = self._calls.get(name, 0)
        self._calls[name] = calls + 1
        if calls:
            name = f"{name}#{calls}"
        t = output.detach()
        if t.numel() == 0:
            return
        if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()             # a new tensor already
        else:
            t = t.clone()
        # A copy, because a later in-place operation (`x.mul_(2)`, an in-place ReLU of the
        # next layer) may change the output; the statistics of all modules are computed
        # together at the step (see _activation_stats): one copy here costs less than the
        # handful of small reductions per module it replaces.
        self._acts.append((name, kind, t))
        if self.histogram_bins is not None:
            values = t.to(torch.float64).flatten().numpy(force=True)
            self._act_hist[name] = _histogram(values[np.isfinite(values)], self.histogram_bins)

    @torch.no_grad()
    def _pre_step(self, *_args) -> None:
        step = self.steps_taken
        grads = [(n, p.grad) for n, p in self._named_params if p.grad is not None]
        norms: list[float] = []
        bad = None
        if grads:
            tensors = [g for _, g in grads]
            if self._recording:
                norms = _grad_norms(tensors)
                finite = all(math.isfinite(v) for v in norms)
            else:                   # one fused norm, one sum, one isfinite
                finite = math.isfinite(torch.stack(torch._foreach_norm(tensors)).sum().item())
            if not finite:
                bad = self._first_nonfinite()   # None if only a float32 norm overflowed
        if bad is not None:
            name, value = bad
            if self.nonfinite is None:
                self.nonfinite = {"step": step, "parameter": name, "value": value}
            self.nonfinite_steps.append(step)
            if self.raise_on_nonfinite:
                self._pending = None
                raise NonFiniteGradientError(
                    f"the gradient of parameter {name!r} has {value} entries at step {step}; "
                    "the update was not applied. Lower the learning rate or weight scale, "
                    "clip gradients, or pass raise_on_nonfinite=False to record and go on.")
        if not self._recording:
            self._pending = None
            return
        record: dict[str, Any] = {"step": step, "loss": None}
        if self._loss is not None and self._loss[0] == step:
            record["loss"] = self._loss[1]
        record["grad_norm"] = dict(zip((n for n, _ in grads), norms))
        record["activation"] = self._activation_stats()
        record["update_ratio"] = {}
        if self.histogram_bins is not None:
            record["grad_hist"] = {n: _grad_histogram(g, self.histogram_bins) for n, g in grads}
            record["act_hist"] = dict(self._act_hist)
        self._pending = record
        if self.optimizer is not None and self._ratio_params:
            if self._buffers is None:
                self._buffers = _RatioBuffers([p for _, p in self._ratio_params])
            self._data_norms = self._buffers.snapshot()

    @torch.no_grad()
    def _post_step(self, *_args) -> None:
        record, self._pending = self._pending, None
        if record is not None:
            if self._data_norms is not None and self._buffers is not None:
                record["update_ratio"] = self._update_ratios()
            self.records.append(record)
        self._data_norms = None
        self.steps_taken += 1
        self._recording = self.steps_taken % self.every == 0
        self._acts = []
        self._calls = {}
        self._act_hist = {}
        self._forward_hooks(self._recording)

    # -- computations ----------------------------------------------------------------

    def _first_nonfinite(self) -> tuple[str, str] | None:
        for name, p in self._named_params:
            g = p.grad
            if g is not None and not bool(torch.isfinite(g).all()):
                return name, "nan" if bool(torch.isnan(g).any()) else "inf"
        return None

    def _activation_stats(self) -> dict[str, dict[str, float]]:
        """Mean, std and saturated share of every recorded output, batched by shape and kind.

        Two passes, mean then the centred sum of squares: accurate also when |mean| >> std
        (a saturated sigmoid). Outputs of one shape, dtype and kind are stacked, so a deep
        net's 20 activations cost a few reductions, not a few each.
        """
        if not self._acts:
            return {}
        groups: dict[tuple, list[int]] = {}
        for i, (_, kind, t) in enumerate(self._acts):
            groups.setdefault((tuple(t.shape), t.dtype, kind), []).append(i)
        stats: dict[str, dict[str, float]] = {}
        scratch = self._scratch
        for (shape, dtype, kind), index in groups.items():
            # Work buffers kept between steps: a fresh tensor of this size would be a fresh
            # memory mapping, and its page faults cost more than the arithmetic.
            x = scratch.get("x", (len(index), *shape), dtype)
            torch.stack([self._acts[i][2] for i in index], out=x)
            x = x.view(len(index), -1)
            work = scratch.get("work", tuple(x.shape), dtype)
            mean = x.mean(dim=1)
            torch.sub(x, mean[:, None], out=work)
            torch.mul(work, work, out=work)
            sum_sq = work.sum(dim=1)
            # Counts are exact: float sums of 0/1 below 2**24 entries per row (else float64).
            # For a ReLU (outputs >= 0) sign() is 1 where the unit is active, so the
            # saturated share is the complement; it is the cheapest of these counts.
            if kind == _RELU:
                torch.sign(x, out=work)
            else:
                flags = scratch.get("flags", tuple(x.shape), torch.bool)
                if kind == _SIGMOID:
                    torch.logical_or(x < 0.01, x > 0.99, out=flags)
                elif kind == _TANH:
                    torch.gt(x.abs(), 0.99, out=flags)
                else:
                    torch.le(x, 0, out=flags)
                work.copy_(flags)
            count = work.sum(dim=1, dtype=torch.float32 if x.shape[1] < 2**24
                             else torch.float64)
            n = x.shape[1]
            for i, m, q, c in zip(index, mean.tolist(), sum_sq.tolist(), count.tolist()):
                stats[self._acts[i][0]] = {"mean": m, "std": math.sqrt(max(q, 0.0) / n),
                                           "saturation": (n - c) / n if kind == _RELU
                                           else c / n}
        # In the order the modules ran, as before.
        return {name: stats[name] for name, _, _ in self._acts}

    def _update_ratios(self) -> dict[str, float]:
        update_norms = self._buffers.update_norms()
        data_norms = self._data_norms
        ratios = {}
        for i, (s_update, s_data) in enumerate(zip(update_norms, data_norms)):
            # ‖u - mean u‖ / ‖d - mean d‖ = std(u) / std(d): both have numel entries.
            if s_data > 0 and s_update > 0 and math.isfinite(s_update / s_data):
                ratios[self._ratio_params[i][0]] = math.log10(s_update / s_data)
        return ratios


class _RatioBuffers:
    """A copy of the parameters before a step, in one ``(count, numel)`` buffer per size.

    So that the centred norms of all parameters of one size take a few batched operations
    instead of a few per parameter.
    """

    def __init__(self, params: list[torch.Tensor]):
        self.params = params
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(params):
            groups.setdefault((p.numel(), p.dtype, p.device), []).append(i)
        self.views: list[torch.Tensor] = [None] * len(params)  # type: ignore[list-item]
        self.groups: list[tuple[list[int], torch.Tensor]] = []
        for (numel, dtype, device), index in groups.items():
            buffer = torch.empty((len(index), numel), dtype=dtype, device=device)
            for row, i in enumerate(index):
                self.views[i] = buffer[row].view(params[i].shape)
            self.groups.append((index, buffer))
        self.order = [i for index, _ in self.groups for i in index]
        self.work = [torch.empty_like(b) for _, b in self.groups]

    def _centred_norms(self) -> list[float]:
        norms = []
        for (_, b), work in zip(self.groups, self.work):
            torch.sub(b, b.mean(dim=1, keepdim=True), out=work)  # no new allocation
            norms.append(torch.linalg.vector_norm(work, dim=1))
        flat = _floats(norms)
        result = [0.0] * len(self.params)
        for position, i in enumerate(self.order):
            result[i] = flat[position]
        return result

    def snapshot(self) -> list[float]:
        """Copy the parameters; return ``‖p - mean p‖`` of each."""
        torch._foreach_copy_(self.views, self.params)
        return self._centred_norms()

    def update_norms(self) -> list[float]:
        """After the step: ``‖u - mean u‖`` of each update ``u = p_before - p_after``."""
        torch._foreach_sub_(self.views, self.params)
        return self._centred_norms()


class _Scratch:
    """Work tensors reused from step to step, one per (role, shape, dtype)."""

    def __init__(self):
        self._tensors: dict[tuple, torch.Tensor] = {}

    def get(self, role: str, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
        key = (role, shape, dtype)
        if key not in self._tensors:
            self._tensors[key] = torch.empty(shape, dtype=dtype)
        return self._tensors[key]


def records_matrix(records: Sequence[dict[str, Any]], kind: str, stat: str | None = None):
    """Turn monitor records into an array of recorded steps × names (lesson 16).

    Args:
        records: :attr:`Monitor.records`, or any list of such dicts.
        kind: ``"grad_norm"``, ``"update_ratio"`` or ``"activation"``.
        stat: for ``"activation"``, one of ``"mean"``, ``"std"``, ``"saturation"``
            (required there; must be None otherwise).

    Returns:
        ``(steps, names, values)``: the recorded steps (int ndarray), the names in the
        order the records list them (parameters in ``named_parameters()`` order, modules in
        call order; a name first seen in a later record is placed after its predecessor
        there), and a float ndarray of shape ``(len(steps), len(names))``, NaN where a
        record lacks a name.
    """
    check_choice("kind", kind, MATRIX_KINDS)
    if kind == "activation":
        if stat is None:
            raise ValueError("kind='activation' needs stat='mean', 'std' or 'saturation'")
        check_choice("stat", stat, ACTIVATION_STATS)
    elif stat is not None:
        raise ValueError(f"stat applies only to kind='activation'; got stat={stat!r} "
                         f"with kind={kind!r}")
    steps = np.array([r["step"] for r in records], dtype=int)
    # A name missing from early records (an update ratio is skipped on a step where the
    # parameter did not change) goes right after the name it follows where it appears, so
    # that the order stays the parameters' (or modules') order, not the order of discovery.
    names: list[str] = []
    seen: set[str] = set()
    for r in records:
        previous = None
        for name in r.get(kind, {}):
            if name not in seen:
                names.insert(names.index(previous) + 1 if previous is not None else 0, name)
                seen.add(name)
            previous = name
    values = np.full((len(records), len(names)), np.nan)
    column = {name: j for j, name in enumerate(names)}
    for i, r in enumerate(records):
        for name, v in r.get(kind, {}).items():
            values[i, column[name]] = v[stat] if stat is not None else v
    return steps, list(names), values


@torch.no_grad()
def member_saturation(model: EnsembleMLP, inputs: torch.Tensor) -> np.ndarray:
    """The saturated share of each block's activation output, for every ensemble member.

    The same rule as a :class:`Monitor` record's ``"saturation"`` (see the module
    docstring), for an :class:`~gradflowkit.ensemble.EnsembleMLP`, whose members a Monitor
    cannot tell apart (lesson 16). One forward pass of ``inputs`` in the model's current
    mode (call ``model.eval()`` first for batch norm's running statistics).

    Args:
        model: an :class:`~gradflowkit.ensemble.EnsembleMLP`.
        inputs: ``(batch, in_features)`` shared by the members, or ``(S, batch, …)``.

    Returns:
        Float array ``(S, depth)``: member ``s``'s row is what a Monitor on
        ``model.member(s)`` records for ``blocks.<l>.act`` on the same inputs.
    """
    if not isinstance(model, EnsembleMLP):
        raise TypeError(f"model must be an EnsembleMLP, got {type(model).__name__}; for one "
                        "net, read the saturation from a Monitor's records")
    outputs: list[torch.Tensor] = []
    handles = [block.act.register_forward_hook(
        lambda _m, _a, out: outputs.append(out.detach())) for block in model.blocks]
    try:
        model(model._inputs(inputs))
    finally:
        for h in handles:
            h.remove()
    shares = []
    for block, out in zip(model.blocks, outputs):
        kind = _saturation_kind(block.act)
        if kind == _SIGMOID:
            flags = (out < 0.01) | (out > 0.99)
        elif kind == _TANH:
            flags = out.abs() > 0.99
        else:
            flags = out <= 0
        shares.append(flags.flatten(1).double().mean(1))
    return torch.stack(shares, dim=1).numpy()


def _saturation_kind(module: nn.Module) -> int:
    if isinstance(module, nn.Sigmoid):
        return _SIGMOID
    if isinstance(module, nn.Tanh):
        return _TANH
    if isinstance(module, nn.ReLU):
        return _RELU
    return _RECTIFIER


def _floats(tensors: list[torch.Tensor]) -> list[float]:
    """Python numbers from 1-d tensors, in order: one ``tolist`` when they share a dtype."""
    if len({t.dtype for t in tensors}) == 1:
        return torch.cat(tensors).tolist()
    return [v for t in tensors for v in t.tolist()]


def _grad_norms(grads: list[torch.Tensor]) -> list[float]:
    """Frobenius norms in float64, on recorded steps only.

    float64 because float32 squares under- or overflow for tiny or huge gradients, and
    because a fused float32 reduction can differ in the last bits from one process to the
    next (its vectorized partial sums depend on memory alignment): recorded numbers are
    then reproducible to the digits anyone prints.
    """
    return torch.stack(torch._foreach_norm(grads, 2, dtype=torch.float64)).tolist()


def _histogram(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    if values.size == 0:
        return np.zeros(bins, dtype=np.int64), np.linspace(0.0, 1.0, bins + 1)
    return np.histogram(values, bins=bins)


def _grad_histogram(grad: torch.Tensor, bins: int) -> tuple[np.ndarray, np.ndarray]:
    g = grad.detach().to(torch.float64).abs().flatten().numpy(force=True)
    g = g[np.isfinite(g) & (g > 0)]
    return _histogram(np.log10(g), bins)
