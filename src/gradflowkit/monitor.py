"""Watch gradient flow while a model trains: a hook-based monitor (lesson 16).

A :class:`Monitor` hooks a model's activations (forward hooks) and its optimizer (step
pre- and post-hooks) and records, every ``every``-th optimizer step:

- ``grad_norm``: the Frobenius norm of each parameter's ``.grad`` (in the gradient's own
  precision, float32 for half precision; again in float64, without under- or overflow,
  where that is zero, tiny or overflowed);
- ``activation``: the mean, standard deviation and saturated share of the output of each
  watched activation (:mod:`~gradflowkit.monitor_watch` says which: torch's activation
  modules, recurrent layers, Hugging Face's activation classes, and the activation function
  of torch's Transformer layers);
- ``update_ratio``: ``log10(std(p_after - p_before) / std(p_before))`` per parameter the
  optimizer holds at that step, the update-to-data ratio (about -3 is Karpathy's rule of
  thumb for a healthy learning rate);
- optionally per-layer histograms of ``log10|grad|`` and of the activations.

Non-finite gradients are checked on every step, before the optimizer applies them. There
are no module backward hooks: they break on in-place operations such as
``nn.ReLU(inplace=True)`` and ``out += identity``, which the monitor therefore supports.
:func:`member_saturation` applies the monitor's saturation rule to every member of an
:class:`~gradflowkit.ensemble.EnsembleMLP` at once.

Saturation, the share of an output's entries that pass (almost) no gradient:

- ``Sigmoid``, ``Hardsigmoid``: output < 0.01 or > 0.99 (there the derivative ``s(1-s)``
  is below ~0.0099);
- ``Tanh``, ``Softsign``, ``Hardtanh(-1, 1)``, and the output sequence of ``nn.LSTM``,
  ``nn.GRU`` and a tanh ``nn.RNN``: ``|output| > 0.99`` (derivative ``1 - t²`` below ~0.02);
- ``Softplus``: output < 0.01 (its derivative, the sigmoid of the input, is then < 0.01);
- ``ReLU``, ``ReLU6``, a relu ``nn.RNN``, and every other watched type (``GELU``, ``SiLU``,
  ``ELU``, ``LeakyReLU``, Hugging Face's GELUs, ...): output <= 0, the off side, where a
  ReLU passes no gradient and the others little.

What it cannot see, and says so: an activation called as a function inside a ``forward``
(``F.relu(x)``) outside torch's Transformer layers, and the gates inside the fused kernels
of ``nn.LSTM`` / ``nn.GRU``. At construction the monitor warns (:class:`MonitorWarning`)
once if the model has activation-like modules it does not watch, or none at all.

Devices and synchronization: every buffer lives on the device and in the dtype of the
tensor it serves. On a GPU a step that is not recorded costs one host synchronization (the
finiteness check), a recorded step two (the check with the gradient norms, and one
transfer of the rest of the record), one more per extra device the parameters live on;
histograms, gradients whose float32 norm is zero, tiny or overflowed (recomputed in
float64, one transfer for all of them), and a step with a non-finite gradient cost more.

``torch.compile``: records are keyed by the model's own names (no ``_orig_mod.``). On a
compiled model the hooks stay registered between steps (a compiled graph does not see hooks
added later); the graph is specialized on whether the step is recorded, so steps that are
not recorded run the graph without the copies.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .ensemble import EnsembleMLP
from .monitor_stats import (HostBatch, RatioBuffers, Scratch, activation_histogram,
                            activation_stats, all_finite, finish_activation_stats,
                            exact_norms, grad_histogram, grad_norms, needs_exact_norm,
                            saturated)
from .monitor_watch import (DEFAULT_ACTIVATION_TYPES, ActivationTypes, Watch,
                            check_activation_types, clean_name, contains_compiled,
                            saturation_kind, unwatched, unwrap_compiled, watches)
from .validation import check_choice, check_int

__all__ = ["ACTIVATION_STATS", "DEFAULT_ACTIVATION_TYPES", "MATRIX_KINDS", "Monitor",
           "MonitorLog", "MonitorWarning", "NonFiniteGradientError", "member_saturation",
           "records_matrix"]

#: The activation statistics a record holds per module (see :meth:`Monitor.matrix`).
ACTIVATION_STATS: tuple[str, ...] = ("mean", "std", "saturation")

#: The record keys :func:`records_matrix` turns into arrays.
MATRIX_KINDS: tuple[str, ...] = ("grad_norm", "update_ratio", "activation")

#: The first line of a file written by :meth:`Monitor.save`.
FILE_FORMAT = "gradflowkit.monitor.records"
FILE_VERSION = 1


class NonFiniteGradientError(FloatingPointError):
    """A gradient has an inf or NaN entry; raised before the optimizer applies it."""


class MonitorWarning(UserWarning):
    """The monitor cannot see something it would record: it says what, once."""


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
    outputs make a module's statistics NaN. The update ratios are of the parameters the
    optimizer's param groups hold at that step (a group added later, a layer unfrozen,
    counts from its first step); they skip parameters with fewer than 2 entries, without
    ``requires_grad``, with ``std(p_before) = 0`` (e.g. zero-initialized) or that did not
    change (``std(update) = 0``). A step stopped by :class:`NonFiniteGradientError` leaves
    no record: the records end with the last step before the alarm.

    Cost: on a model that is not compiled the module hooks are registered only for the
    forward passes before recorded steps, so the other steps pay just the non-finite check
    (one fused norm over the gradients). ``benchmarks/monitor_overhead.py`` measures it.

    Args:
        model: the network to watch (compiled or not); it must have parameters.
        optimizer: a ``torch.optim.Optimizer`` to hook (default None: call :meth:`step`); it
            must hold at least one of the model's parameters.
        every: record every ``every``-th optimizer step, ``every >= 1`` (default 1).
            Non-finite gradients are checked on every step regardless.
        activation_types: a tuple of ``nn.Module`` subclasses or class names whose outputs
            are watched (default
            :data:`~gradflowkit.monitor_watch.DEFAULT_ACTIVATION_TYPES`); ``()`` watches
            none, and silences the warning about unwatched activations.
        histogram_bins: number of bins of the per-layer histograms, or None for no
            histograms (default None).
        raise_on_nonfinite: raise :class:`NonFiniteGradientError` on the first step with an
            inf or NaN gradient, before the update is applied (default True); if False,
            record it in :attr:`nonfinite` / :attr:`nonfinite_steps` and go on.
        log_fn: called as ``log_fn(record)`` with each record once it is complete (after
            the optimizer step), e.g. to write it to TensorBoard (default None).

    Attributes:
        records: the list of records, one per recorded step.
        nonfinite: None, or ``{"step": s, "parameter": name, "value": "inf" | "nan"}`` for
            the first step with a non-finite gradient (the first parameter in
            ``named_parameters()`` order; "nan" if that gradient has any NaN).
        nonfinite_steps: every step with a non-finite gradient (only filled with
            ``raise_on_nonfinite=False``, apart from the first).
        parameter_shapes: ``{param name: shape}``, e.g. to keep only weight matrices.
        watched: the names of the watched activations.
        optimizer_name: the optimizer's class name (None without one).
        optimizer_momentum: its first param group's ``momentum`` (0 if it has none).
        activation_kinds: ``{watched name: saturation rule}`` (``"sigmoid"``, ``"tanh"``,
            ``"relu"``, ``"softplus"``, ``"rectifier"``).
        unwatched: activation-like parts of the model that are not watched.
        steps_taken: optimizer steps seen while attached.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                 every: int = 1, activation_types: ActivationTypes = DEFAULT_ACTIVATION_TYPES,
                 histogram_bins: int | None = None, raise_on_nonfinite: bool = True,
                 log_fn: Callable[[dict[str, Any]], Any] | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}; "
                            "wrap a function in an nn.Module subclass")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got "
                            f"{type(optimizer).__name__}; pass e.g. "
                            "torch.optim.SGD(model.parameters(), lr=0.1)")
        self.every = check_int("every", every, minimum=1)
        activation_types = check_activation_types(activation_types)
        if histogram_bins is not None:
            histogram_bins = check_int("histogram_bins", histogram_bins, minimum=1)
        if not isinstance(raise_on_nonfinite, bool):
            raise TypeError(f"raise_on_nonfinite must be True or False, got "
                            f"{raise_on_nonfinite!r}")
        if log_fn is not None and not callable(log_fn):
            raise TypeError(f"log_fn must be callable (it is called with each record), got "
                            f"{type(log_fn).__name__}")
        base = unwrap_compiled(model)
        self._named_params = [(clean_name(n), p) for n, p in base.named_parameters()]
        if not self._named_params:
            raise ValueError(f"model ({type(model).__name__}) has no parameters: there are "
                             "no gradients to monitor; pass the model you train")
        self._param_name = {id(p): n for n, p in self._named_params}
        if optimizer is not None and not any(
                id(p) in self._param_name for g in optimizer.param_groups for p in g["params"]):
            raise ValueError(
                f"the optimizer holds none of the model's parameters ({type(model).__name__}, "
                f"{len(self._named_params)} parameters): pass the optimizer that trains this "
                "model, e.g. torch.optim.SGD(model.parameters(), lr=0.1)")
        self.model = model
        self.optimizer = optimizer
        self.optimizer_name = None if optimizer is None else type(optimizer).__name__
        momentum = optimizer.param_groups[0].get("momentum", 0.0) if optimizer else 0.0
        self.optimizer_momentum = float(momentum) if isinstance(momentum, (int, float)) \
            and 0 <= momentum < 1 else 0.0
        self.activation_types = activation_types
        self.histogram_bins = histogram_bins
        self.raise_on_nonfinite = raise_on_nonfinite
        self.log_fn = log_fn
        self.records: list[dict[str, Any]] = []
        self.nonfinite: dict[str, Any] | None = None
        self.nonfinite_steps: list[int] = []
        self.parameter_shapes = {n: tuple(p.shape) for n, p in self._named_params}
        self.steps_taken = 0
        self._base = base
        self._watches: list[Watch] = watches(base, activation_types)
        self.watched = [w.name for w in self._watches]
        self.activation_kinds = {w.name: w.kind for w in self._watches}
        self.unwatched = unwatched(base, activation_types)
        self._warned: set[str] = set()
        self._warn_unwatched()
        # A compiled graph keeps the hooks it was traced with: keep them registered.
        self._keep_hooks = contains_compiled(model)
        self._opt_handles: list[Any] = []
        self._fwd_handles: list[Any] = []
        self._attached = False
        self._recording = True   # whether the next step is recorded
        self._acts: list[tuple[str, str, torch.Tensor]] = []  # this forward pass's outputs
        self._forwards = 0                 # forward passes with grad since the last step
        self._loss: tuple[int, Any] | None = None
        self._pending: dict[str, Any] | None = None
        self._ratio_key: tuple[int, ...] = ()
        self._ratio_params: list[tuple[str, torch.Tensor]] = []
        self._buffers: RatioBuffers | None = None
        self._data_norms: list | None = None
        self._scratch = Scratch()

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
                self._opt_handles.append(self.optimizer.register_step_pre_hook(self._on_step))
                self._opt_handles.append(
                    self.optimizer.register_step_post_hook(self._post_step))
            self._recording = self.steps_taken % self.every == 0
            self._forward_hooks(self._recording or self._keep_hooks)
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
        self._ratio_key = ()
        self._data_norms = None

    def _remove_hooks(self) -> None:
        for handles in (self._fwd_handles, self._opt_handles):
            while handles:
                handles.pop().remove()

    def _forward_hooks(self, on: bool) -> None:
        """Hook the watched modules only before recorded steps: other steps pay nothing."""
        if on and not self._fwd_handles:
            self._fwd_handles.append(self._base.register_forward_pre_hook(self._on_forward))
            for w in self._watches:
                if w.read == "input":
                    hook = w.module.register_forward_pre_hook(
                        lambda _m, args, w=w: self._on_activation(w, args))
                else:
                    hook = w.module.register_forward_hook(
                        lambda _m, _a, out, w=w: self._on_activation(w, out))
                self._fwd_handles.append(hook)
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
            loss: the loss, a float or a one-element tensor (detached here, and read with
                the rest of the record: no extra synchronization); call it before
                ``optimizer.step()`` (or :meth:`step`), e.g. ``mon.log(loss)``.
        """
        if isinstance(loss, torch.Tensor):
            if loss.numel() != 1:
                raise ValueError(f"loss must have one element, got shape {tuple(loss.shape)}; "
                                 "log the reduced loss (e.g. loss.mean())")
            loss = loss.detach().reshape(())
        elif isinstance(loss, (int, float)) and not isinstance(loss, bool):
            loss = float(loss)
        else:
            raise TypeError(f"loss must be a float or a one-element tensor, got "
                            f"{type(loss).__name__}")
        self._loss = (self.steps_taken, loss)

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

    def diagnose(self):
        """The book's symptom -> cause -> fix table read against these records (lesson 16).

        Returns:
            :class:`~gradflowkit.diagnosis.Findings` (see
            :func:`~gradflowkit.diagnosis.diagnose`); ``report()`` prints them.
        """
        from .diagnosis import diagnose_monitor
        return diagnose_monitor(self)

    def report(self) -> str:
        """:meth:`diagnose` as a short text: one paragraph per finding, with lesson links."""
        from .diagnosis import report
        return report(self.diagnose())

    def save(self, path: str | Path) -> Path:
        """Write the records to ``path`` as JSON Lines; :meth:`load` reads them back.

        The first line holds the monitor's settings (``every``, ``parameter_shapes``,
        ``nonfinite``, ``nonfinite_steps``, ``steps_taken``, ``watched``, ``unwatched``,
        ``activation_kinds``, ``optimizer_name``, ``optimizer_momentum``),
        then one record a line. Histograms become lists; non-finite floats are written as
        the strings ``"nan"``, ``"inf"`` and ``"-inf"``, so every line is standard JSON.

        Returns:
            The path written.
        """
        path = Path(path)
        header = {"format": FILE_FORMAT, "version": FILE_VERSION, "every": self.every,
                  "steps_taken": self.steps_taken, "nonfinite": self.nonfinite,
                  "nonfinite_steps": self.nonfinite_steps,
                  "parameter_shapes": {n: list(s) for n, s in self.parameter_shapes.items()},
                  "watched": self.watched, "unwatched": self.unwatched,
                  "activation_kinds": self.activation_kinds,
                  "optimizer_name": self.optimizer_name,
                  "optimizer_momentum": self.optimizer_momentum}
        with path.open("w", encoding="utf8") as f:
            for line in [header, *self.records]:
                f.write(json.dumps(_to_json(line), allow_nan=False) + "\n")
        return path

    @staticmethod
    def load(path: str | Path) -> "MonitorLog":
        """Read a file written by :meth:`save`.

        Returns:
            A :class:`MonitorLog`: the records and settings, with :meth:`MonitorLog.matrix`.
        """
        return MonitorLog.read(path)

    # -- hooks -----------------------------------------------------------------------

    def _on_forward(self, _module, _args) -> None:
        if self._recording and torch.is_grad_enabled():
            self._acts.clear()
            self._forwards += 1

    def _on_activation(self, watch: Watch, value: Any) -> None:
        # Kept small, for torch.compile traces it: one copy per output, the rest at the step.
        # A copy, because a later in-place operation (`x.mul_(2)`, an in-place ReLU of the
        # next layer) may change the output.
        if torch.compiler.is_compiling():
            self._keep_hooks = True        # traced into a graph: it must stay registered
        if self._recording and torch.is_grad_enabled():
            t = watch.tensor(value)
            if t is not None and t.numel():
                self._acts.append((watch.name, watch.kind, t.detach().clone()))

    def _on_step(self, _optimizer, args: tuple, kwargs: dict):
        """The optimizer's step pre-hook: check and record now, or after the closure.

        With ``step(closure)`` (LBFGS, PyTorch Lightning) the gradients do not exist yet
        when the hook runs: the closure computes them inside ``step``. The closure is then
        wrapped, so that the check and the record follow its first call, before the update.
        """
        # torch passes the step's own arguments: args[0] is the optimizer itself.
        closure = kwargs.get("closure")
        if closure is None and len(args) > 1 and callable(args[1]):
            closure = args[1]
        if closure is None:
            self._pre_step()
            return None
        step = self.steps_taken
        first = True

        def monitored_closure():
            nonlocal first
            loss = closure()
            if first:
                first = False
                if isinstance(loss, torch.Tensor) and loss.numel() == 1 and (
                        self._loss is None or self._loss[0] != step):
                    self._loss = (step, loss.detach().reshape(()))
                self._pre_step()
            return loss
        if "closure" in kwargs:
            return args, {**kwargs, "closure": monitored_closure}
        return (args[0], monitored_closure, *args[2:]), kwargs

    @torch.no_grad()
    def _pre_step(self) -> None:
        step = self.steps_taken
        grads = [(n, p.grad) for n, p in self._named_params if p.grad is not None]
        tensors = [g for _, g in grads]
        # The step's one synchronization before the optimizer may apply the gradients: the
        # finiteness check, and on a recorded step the gradient norms with it.
        check = HostBatch()
        if self._recording:
            queued = [(index, check.add(t)) for index, t in grad_norms(tensors)]
        else:
            queued = [(None, check.add(t)) for t in all_finite(tensors)]
        values = check.fetch() if grads else []
        norms = [0.0] * len(grads)
        if self._recording:
            for index, handle in queued:
                for i, v in zip(index, values[handle]):
                    norms[i] = v
            finite = all(math.isfinite(v) for v in norms)
        else:
            finite = all(v[0] for v in values)
        bad = None if finite else self._first_nonfinite()   # None: a float32 norm overflowed
        if self._recording:
            redo = [i for i, v in enumerate(norms) if needs_exact_norm(v, tensors[i].numel())]
            for i, v in zip(redo, exact_norms([tensors[i] for i in redo])):
                norms[i] = v
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
        self._check_activations_seen(step)
        batch = HostBatch()
        acts = _numbered(self._acts)
        pending: dict[str, Any] = {
            "step": step, "batch": batch,
            "grad_norm": dict(zip((n for n, _ in grads), norms)),
            "acts": acts, "act_stats": activation_stats(acts, self._scratch, batch)}
        if self._loss is not None and self._loss[0] == step:
            loss = self._loss[1]
            pending["loss"] = (batch.add(loss), None) if isinstance(loss, torch.Tensor) \
                else (None, loss)
        if self.histogram_bins is not None:
            pending["grad_hist"] = {n: grad_histogram(g, self.histogram_bins) for n, g in grads}
            pending["act_hist"] = {n: activation_histogram(t, self.histogram_bins)
                                   for n, _, t in acts}
        self._pending = pending
        if self.optimizer is not None and self._refresh_ratio_params():
            self._data_norms = self._buffers.snapshot()

    @torch.no_grad()
    def _post_step(self, *_args) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            batch = pending["batch"]
            queued = []
            if self._data_norms is not None and self._buffers is not None:
                queued = self._buffers.log_ratios(self._data_norms, batch)
            values = batch.fetch()          # the record's one synchronization
            ratios = self._buffers.read(queued, values) if queued else {}
            record = self._record(pending, values, ratios)
            self.records.append(record)
            if self.log_fn is not None:
                self.log_fn(record)
        self._data_norms = None
        self.steps_taken += 1
        self._recording = self.steps_taken % self.every == 0
        self._acts.clear()   # the same list: a compiled graph appends to the one it traced
        self._forwards = 0
        self._forward_hooks(self._recording or self._keep_hooks)

    # -- computations ----------------------------------------------------------------

    def _record(self, pending: dict[str, Any], values: list[list[float]],
                ratios: dict[int, float]) -> dict[str, Any]:
        handle, loss = pending.get("loss", (None, None))
        if handle is not None:
            loss = values[handle][0]
        ratio = {i: v for i, v in ratios.items()
                 if math.isfinite(v)}                # NaN: skipped (see the class docstring)
        record: dict[str, Any] = {
            "step": pending["step"], "loss": loss,
            "grad_norm": pending["grad_norm"],
            "activation": finish_activation_stats(pending["acts"], pending["act_stats"],
                                                  values),
            "update_ratio": {self._ratio_params[i][0]: ratio[i] for i in sorted(ratio)}}
        if "grad_hist" in pending:
            record["grad_hist"] = pending["grad_hist"]
            record["act_hist"] = pending["act_hist"]
        return record

    def _refresh_ratio_params(self) -> bool:
        """The model's parameters in the optimizer's groups now; new buffers if they changed."""
        params = [(self._param_name[id(p)], p) for g in self.optimizer.param_groups
                  for p in g["params"]
                  if id(p) in self._param_name and p.requires_grad and p.numel() >= 2]
        key = tuple(id(p) for _, p in params)
        if key != self._ratio_key:
            self._ratio_key = key
            self._ratio_params = params
            self._buffers = RatioBuffers([p for _, p in params]) if params else None
        return self._buffers is not None

    def _first_nonfinite(self) -> tuple[str, str] | None:
        for name, p in self._named_params:
            g = p.grad
            if g is not None and not bool(torch.isfinite(g).all()):
                return name, "nan" if bool(torch.isnan(g).any()) else "inf"
        return None

    def _warn_unwatched(self) -> None:
        if not self.activation_types:
            return
        if self.unwatched:
            shown = ", ".join(self.unwatched[:6]) + (", ..." if len(self.unwatched) > 6 else "")
            self._warn_once("unwatched", (
                f"the monitor does not watch {len(self.unwatched)} activation-like part(s) of "
                f"the model: {shown}. Add their classes (or class names) to activation_types "
                "to record them, or pass activation_types=() to record no activation."))
        if not self._watches:
            self._warn_once("none", (
                f"no activation of {type(self._base).__name__} is watched: none of its modules "
                "is of activation_types, so records will have no activation statistics. An "
                "activation called as a function in forward (F.relu(x)) is invisible to module "
                "hooks: use a module (nn.ReLU()), or name its class in activation_types."))

    def _check_activations_seen(self, step: int) -> None:
        if self._watches and self._forwards and not self._acts:
            self._warn_once("unseen", (
                f"step {step}: {len(self._watches)} activations are watched, but the forward "
                "pass before it recorded none of them. If the model was compiled before the "
                "Monitor was created, create the Monitor with the compiled model (the hooks "
                "must exist when torch.compile traces the model)."))

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, MonitorWarning, stacklevel=4)


class MonitorLog:
    """Records read back by :meth:`Monitor.load`, with the monitor's settings.

    Attributes: ``records``, ``every``, ``steps_taken``, ``nonfinite``, ``nonfinite_steps``,
    ``parameter_shapes``, ``watched``, ``unwatched``, ``activation_kinds``,
    ``optimizer_name``, ``optimizer_momentum``, as on the
    :class:`Monitor` that wrote them; :meth:`diagnose` and :meth:`report` work as there.
    """

    def __init__(self, header: dict[str, Any], records: list[dict[str, Any]]):
        self.records = records
        self.every = header["every"]
        self.steps_taken = header["steps_taken"]
        self.nonfinite = header["nonfinite"]
        self.nonfinite_steps = list(header["nonfinite_steps"])
        self.parameter_shapes = {n: tuple(s) for n, s in header["parameter_shapes"].items()}
        self.watched = list(header["watched"])
        self.unwatched = list(header["unwatched"])
        self.activation_kinds = dict(header.get("activation_kinds", {}))
        self.optimizer_name = header.get("optimizer_name")
        self.optimizer_momentum = header.get("optimizer_momentum", 0.0)

    @classmethod
    def read(cls, path: str | Path) -> "MonitorLog":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no monitor records at {path}: write them with "
                                    "Monitor.save(path) first")
        lines = [line for line in path.read_text(encoding="utf8").splitlines() if line.strip()]
        try:
            rows = [json.loads(line) for line in lines]
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not JSON Lines written by Monitor.save: {error}") \
                from None
        if not rows or not isinstance(rows[0], dict) or rows[0].get("format") != FILE_FORMAT:
            raise ValueError(f"{path} was not written by Monitor.save (its first line must "
                             f"have \"format\": \"{FILE_FORMAT}\")")
        if rows[0].get("version") != FILE_VERSION:
            raise ValueError(f"{path} has format version {rows[0].get('version')!r}; this "
                             f"gradflowkit reads version {FILE_VERSION}")
        records = [_from_json(r) for r in rows[1:]]   # only records hold numbers as strings
        for r in records:
            for key in ("grad_hist", "act_hist"):
                if key in r:
                    r[key] = {n: (np.asarray(c), np.asarray(e)) for n, (c, e) in r[key].items()}
        return cls(rows[0], records)

    def matrix(self, kind: str, stat: str | None = None):
        """As :meth:`Monitor.matrix`."""
        return records_matrix(self.records, kind, stat)

    diagnose = Monitor.diagnose
    report = Monitor.report


def _numbered(acts: list[tuple[str, str, torch.Tensor]]) -> list[tuple[str, str, torch.Tensor]]:
    """``name``, ``name#1``, … for a module called several times in one forward pass."""
    calls: dict[str, int] = {}
    numbered = []
    for name, kind, t in acts:
        k = calls.get(name, 0)
        calls[name] = k + 1
        numbered.append((f"{name}#{k}" if k else name, kind, t))
    return numbered


_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _to_json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return _to_json(value.tolist())
    if isinstance(value, np.generic):
        return _to_json(value.item())
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def weight_matrix_names(names: Sequence[str],
                        shapes: dict[str, tuple[int, ...]] | None = None) -> list[str]:
    """The weight matrices among parameter ``names``, in their order (lesson 16's readers).

    With the parameters' ``shapes`` (:attr:`Monitor.parameter_shapes`): those with two or
    more dimensions. Without (bare records): the names that end in ``"weight"``, which
    also keeps a norm's gain; the shapes are the better rule when they are known.
    """
    if shapes is not None:
        return [n for n in names if len(shapes.get(n, ())) >= 2]
    return [n for n in names if n.endswith("weight")]


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
    shares = [saturated(out, saturation_kind(block.act)).flatten(1).double().mean(1)
              for block, out in zip(model.blocks, outputs)]
    return torch.stack(shares, dim=1).numpy()
