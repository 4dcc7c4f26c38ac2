"""The arithmetic of a :class:`~gradflowkit.monitor.Monitor` record, on the model's device.

Every statistic of a record is computed as a tensor on the device of the tensors it
describes, and all of them reach the host together (:class:`HostBatch`, one transfer per
device), so that on a GPU a recorded step costs one host synchronization (plus the one of
every step's finiteness check). :func:`to_host` is the only place that copies to the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .monitor_watch import RELU, SIGMOID, SOFTPLUS, TANH


def to_host(tensor: torch.Tensor) -> list:
    """``tensor.tolist()``: the monitor's one way to the host (tests count the calls)."""
    return tensor.tolist()


def stat_dtype(device: torch.device) -> torch.dtype:
    """float64 for sums and norms, except where the device has none (Apple's MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def by_device(tensors: Sequence[torch.Tensor]) -> dict[torch.device, list[int]]:
    """The positions of ``tensors`` grouped by device, in order (one reduction each)."""
    groups: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(t.device, []).append(i)
    return groups


class HostBatch:
    """The numbers of one record, gathered as tensors and copied to the host at once."""

    def __init__(self):
        self._parts: list[torch.Tensor] = []

    def add(self, tensor: torch.Tensor) -> int:
        """Queue ``tensor`` (any shape); returns its handle for :meth:`fetch`."""
        self._parts.append(tensor.detach().flatten())
        return len(self._parts) - 1

    def fetch(self) -> list[list[float]]:
        """Every queued tensor as a list of floats, in handle order."""
        values: list[list[float]] = [[] for _ in self._parts]
        for device, index in by_device(self._parts).items():
            dtype = stat_dtype(device)
            flat = to_host(torch.cat([self._parts[i].to(dtype) for i in index]))
            start = 0
            for i in index:
                n = self._parts[i].numel()
                values[i] = flat[start:start + n]
                start += n
        return values


def grad_norms(grads: Sequence[torch.Tensor]) -> list[tuple[list[int], torch.Tensor]]:
    """Frobenius norms of ``grads``, in float64, one stacked tensor per device.

    float64 because float32 squares under- or overflow for tiny or huge gradients, and
    because a fused float32 reduction can differ in the last bits from one process to the
    next (its vectorized partial sums depend on memory alignment): recorded numbers are
    then reproducible to the digits anyone prints.

    Returns:
        ``[(indices into grads, norms)]``, one entry per device.
    """
    return [(index, torch.stack(torch._foreach_norm([grads[i] for i in index], 2,
                                                    dtype=stat_dtype(device))))
            for device, index in by_device(grads).items()]


def all_finite(grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One boolean tensor per device: whether every entry of its gradients is finite.

    A float32 norm of huge finite entries can overflow to inf: a False here is confirmed
    entry by entry before an alarm (``Monitor._first_nonfinite``).
    """
    return [torch.isfinite(torch.stack(torch._foreach_norm([grads[i] for i in index])).sum())
            for index in by_device(grads).values()]


#: Outputs with fewer entries are stacked with the others of their shape before reducing.
STACK_BELOW = 2 ** 16


class Scratch:
    """Work tensors reused from step to step, one per (role, shape, dtype, device).

    A fresh tensor of a large size would be a fresh memory mapping, whose page faults cost
    more than the arithmetic.
    """

    def __init__(self):
        self._tensors: dict[tuple, torch.Tensor] = {}

    def get(self, role: str, shape: tuple, dtype: torch.dtype,
            device: torch.device) -> torch.Tensor:
        key = (role, shape, dtype, device)
        if key not in self._tensors:
            self._tensors[key] = torch.empty(shape, dtype=dtype, device=device)
        return self._tensors[key]


def activation_stats(acts: Sequence[tuple[str, str, torch.Tensor]], scratch: Scratch,
                     batch: HostBatch) -> list[tuple[list[int], int, int, int, int]]:
    """Queue the mean, centred sum of squares and saturated count of every output.

    Outputs of one shape, dtype, device and kind are stacked, so a deep
    net's 20 activations cost a few reductions, not a few each. Half-precision outputs
    are summed in float32.

    Args:
        acts: ``(name, kind, tensor)`` per recorded output.
        scratch: reused work buffers.
        batch: where the results are queued.

    Returns:
        ``[(indices into acts, entries per output, mean handle, sum-of-squares handle,
        count handle, kind)]`` for :func:`finish_activation_stats`.
    """
    groups: dict[tuple, list[int]] = {}
    for i, (_, kind, t) in enumerate(acts):
        # Large outputs alone: stacking them would copy more than it saves in dispatch.
        alone = i if t.numel() >= STACK_BELOW else -1
        groups.setdefault((tuple(t.shape), t.dtype, t.device, kind, alone), []).append(i)
    queued = []
    for (shape, dtype, device, kind, _), index in groups.items():
        if dtype in (torch.float16, torch.bfloat16) or not dtype.is_floating_point:
            dtype = torch.float32
        if len(index) == 1 and acts[index[0]][2].dtype == dtype:
            x = acts[index[0]][2].reshape(1, -1)       # the hook's copy: no second one
        else:
            x = scratch.get("x", (len(index), *shape), dtype, device)
            torch.stack([acts[i][2].to(dtype) for i in index], out=x)
            x = x.view(len(index), -1)
        # Two passes, mean then the centred norm: accurate also when |mean| >> std (a
        # saturated sigmoid), unlike sum(x²) - n·mean²; on CPU 5-10 times faster than
        # torch's Welford var_mean (measured).
        mean = x.mean(dim=1)
        centred = scratch.get("centred", tuple(x.shape), dtype, device)
        torch.sub(x, mean[:, None], out=centred)
        sum_sq = torch.linalg.vector_norm(centred, dim=1).square()
        # Counts are exact: float sums of 0/1 below 2**24 entries per row (else float64).
        # For a ReLU (outputs >= 0) sign() is 1 where the unit is active, so the saturated
        # share is the complement. Summing floats is the fast way on CPU: count_nonzero
        # and sums of bool tensors took 4 to 40 times longer (measured).
        work = centred        # free again: its centred values are reduced already
        if kind == RELU:
            torch.sign(x, out=work)
        else:
            work.copy_(saturated(x, kind,
                                 out=scratch.get("flags", tuple(x.shape), torch.bool, device)))
        count = work.sum(dim=1, dtype=torch.float32 if x.shape[1] < 2**24
                         else stat_dtype(device))
        queued.append((index, x.shape[1], batch.add(mean), batch.add(sum_sq),
                       batch.add(count), kind))
    return queued


def finish_activation_stats(acts: Sequence[tuple[str, str, torch.Tensor]], queued,
                            values: list[list[float]]) -> dict[str, dict[str, float]]:
    """The ``{"mean", "std", "saturation"}`` of every output, in the order they ran."""
    stats: dict[str, dict[str, float]] = {}
    for index, n, h_mean, h_sq, h_count, kind in queued:
        for i, m, q, c in zip(index, values[h_mean], values[h_sq], values[h_count]):
            stats[acts[i][0]] = {"mean": m, "std": math.sqrt(max(q, 0.0) / n),
                                 "saturation": (n - c) / n if kind == RELU else c / n}
    return {name: stats[name] for name, _, _ in acts}


def saturated(x: torch.Tensor, kind: str, out: torch.Tensor | None = None) -> torch.Tensor:
    """Where ``x`` (a module's output) is saturated under rule ``kind``: a bool tensor.

    Args:
        x: the output.
        kind: its saturation rule (see :func:`~gradflowkit.monitor_watch.saturation_kind`).
        out: a bool tensor of ``x``'s shape to write into (default None: a new one).
    """
    if kind == SIGMOID:
        return torch.logical_or(x < 0.01, x > 0.99, out=out)
    if kind == TANH:
        return torch.gt(x.abs(), 0.99, out=out)
    if kind == SOFTPLUS:
        return torch.lt(x, 0.01, out=out)
    return torch.le(x, 0, out=out)


class RatioBuffers:
    """A copy of the parameters before a step, in one ``(count, numel)`` buffer per size.

    So that the centred norms of all parameters of one size take a few batched operations
    instead of a few per parameter. Buffers live on each parameter's device.
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
        self.work = [torch.empty_like(b) for _, b in self.groups]

    def _centred_norms(self) -> list[tuple[list[int], torch.Tensor]]:
        # Centred explicitly (accurate when |mean| >> std, e.g. a LayerNorm weight near 1);
        # on CPU 5 times faster than torch.std's Welford pass (measured).
        norms = []
        for (index, b), work in zip(self.groups, self.work):
            torch.sub(b, b.mean(dim=1, keepdim=True), out=work)  # no new allocation
            norms.append((index, torch.linalg.vector_norm(work, dim=1)))
        return norms

    def snapshot(self) -> list[tuple[list[int], torch.Tensor]]:
        """Copy the parameters; return ``‖p - mean p‖`` of each, per buffer."""
        torch._foreach_copy_(self.views, self.params)
        return self._centred_norms()

    def log_ratios(self, data_norms: list[tuple[list[int], torch.Tensor]],
                   batch: HostBatch) -> list[tuple[list[int], int]]:
        """After the step: queue ``log10(‖u - mean u‖ / ‖d - mean d‖)`` of each update
        ``u = p_before - p_after`` (NaN where the ratio is skipped: see Monitor)."""
        torch._foreach_sub_(self.views, self.params)
        queued = []
        for (index, u), (_, d) in zip(self._centred_norms(), data_norms):
            u, d = u.to(stat_dtype(u.device)), d.to(stat_dtype(d.device))
            ratio = torch.log10(u / d)
            ok = (d > 0) & (u > 0) & torch.isfinite(ratio)
            queued.append((index, batch.add(torch.where(ok, ratio, torch.nan))))
        return queued


def histogram(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    if values.size == 0:
        return np.zeros(bins, dtype=np.int64), np.linspace(0.0, 1.0, bins + 1)
    return np.histogram(values, bins=bins)


def grad_histogram(grad: torch.Tensor, bins: int) -> tuple[np.ndarray, np.ndarray]:
    g = grad.detach().to(torch.float64).abs().flatten().numpy(force=True)
    g = g[np.isfinite(g) & (g > 0)]
    return histogram(np.log10(g), bins)


def activation_histogram(t: torch.Tensor, bins: int) -> tuple[np.ndarray, np.ndarray]:
    values = t.detach().to(torch.float64).flatten().numpy(force=True)
    return histogram(values[np.isfinite(values)], bins)
