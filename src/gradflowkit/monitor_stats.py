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


#: A float32 norm below ``sqrt(n) * FLOAT32_NORM_FLOOR`` (``n`` entries), or one that
#: overflowed, is computed again in float64: squares of entries under ~1e-19 underflow in
#: float32 (each loses < 1.2e-38, so above the floor the norm is off by < 1e-12), and norms
#: above 1.8e19 overflow.
FLOAT32_NORM_FLOOR = 1e-12


def _norm_groups(grads: Sequence[torch.Tensor]) -> dict[tuple, list[int]]:
    """Positions of ``grads`` by (device, dtype of their norms): half precision in float32."""
    groups: dict[tuple, list[int]] = {}
    for i, g in enumerate(grads):
        dtype = g.dtype if g.dtype in (torch.float32, torch.float64) else torch.float32
        groups.setdefault((g.device, dtype), []).append(i)
    return groups


#: Rows longer than this are reduced in chunks of this length, because torch's float32 norm
#: of one long row drifts (relative error 4e-5 at 2.4 M random entries, 4e-4 at 11 M; 1e-5 at
#: 40 000 entries of which 200 are large), while chunk norms combined in float64 keep
#: ~1e-8 at the same speed (measured).
NORM_CHUNK = 2 ** 8

#: Gradients up to this size share one fused float32 norm (one dispatch for all of them;
#: relative error ~1e-7 on random entries, up to ~1e-5 on adversarial ones); longer ones
#: go through :func:`row_norms`.
FUSED_NORM_MAX = 2 ** 15


def _chunked(x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The rows of a 2-D ``x`` as ``(rows, k, NORM_CHUNK)`` chunks and the ``(rows, rest)``
    tail (views, no copy); ``(None, x)`` for rows too short to chunk."""
    rows, n = x.shape
    k = n // NORM_CHUNK
    if k <= 1:
        return None, x
    tail = x[:, k * NORM_CHUNK:] if n > k * NORM_CHUNK else None
    return x[:, :k * NORM_CHUNK].view(rows, k, NORM_CHUNK), tail


def row_norms(x: torch.Tensor) -> torch.Tensor:
    """The Euclidean norm of each row of a 2-D ``x``, accurate for long rows, in float64.

    ``x``'s own precision for the chunks (one read-only pass), float64 to combine them.
    """
    dtype = stat_dtype(x.device)
    body, tail = _chunked(x)
    squares = 0.0 if body is None else \
        torch.linalg.vector_norm(body, dim=2).to(dtype).square().sum(dim=1)
    if tail is not None:
        squares = squares + torch.linalg.vector_norm(tail, dim=1).to(dtype).square()
    return squares.sqrt()


def row_sums(x: torch.Tensor) -> torch.Tensor:
    """The sum of each row of a 2-D ``x``, chunked as :func:`row_norms`, in float64.

    A float64 ``sum(dtype=...)`` would first copy ``x`` (20 times slower on a CPU).
    """
    dtype = stat_dtype(x.device)
    body, tail = _chunked(x)
    sums = 0.0 if body is None else body.sum(dim=2).to(dtype).sum(dim=1)
    if tail is not None:
        sums = sums + tail.sum(dim=1).to(dtype)
    return sums


def grad_norms(grads: Sequence[torch.Tensor]) -> list[tuple[list[int], torch.Tensor]]:
    """Frobenius norms of ``grads``, one float64 tensor per device and dtype.

    Summed in the gradients' own precision (float32 for half precision), one read-only
    pass: float64 would first copy every gradient (25 times slower on a CPU for a
    ResNet-18, measured). Small gradients share one fused norm; long ones are reduced by
    :func:`row_norms`. The few norms that :func:`needs_exact_norm` picks are redone by
    :func:`exact_norms`.

    Returns:
        ``[(indices into grads, norms)]``, one entry per device and dtype.
    """
    out = []
    for (device, dtype), index in _norm_groups(grads).items():
        part = [grads[i] for i in index]
        small = [j for j, g in enumerate(part) if g.numel() <= FUSED_NORM_MAX]
        norms: list[torch.Tensor | None] = [None] * len(part)
        if small:
            fused = torch._foreach_norm([part[j] for j in small], 2, dtype=dtype)
            for j, v in zip(small, fused):
                norms[j] = v.to(stat_dtype(device))
        for j, g in enumerate(part):
            if norms[j] is None:
                norms[j] = row_norms(g.to(dtype).reshape(1, -1))[0]
        out.append((index, torch.stack(norms)))
    return out


def needs_exact_norm(norm: float, numel: int) -> bool:
    """Whether the float32 ``norm`` of a gradient of ``numel`` entries may be off.

    Zero (every entry may have underflowed), tiny, or overflowed (inf); not NaN, which
    only a NaN entry gives.
    """
    return norm == math.inf or norm < math.sqrt(numel) * FLOAT32_NORM_FLOOR


def exact_norms(grads: Sequence[torch.Tensor]) -> list[float]:
    """Norms of ``grads`` in float64, scaled by the largest entry: no under- or overflow.

    For the few gradients :func:`needs_exact_norm` picks; one host transfer (per device).
    Infinite entries give inf, a NaN gives NaN.
    """
    batch = HostBatch()
    handles = []
    for g in grads:
        x = g.detach().to(stat_dtype(g.device))
        scale = x.abs().max()
        ok = torch.isfinite(scale) & (scale > 0)
        safe = torch.where(ok, scale, 1.0)
        handles.append(batch.add(torch.where(ok, safe * torch.linalg.vector_norm(x / safe),
                                             scale)))
    values = batch.fetch()
    return [values[h][0] for h in handles]


def all_finite(grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One boolean tensor per device and dtype: whether every entry of its gradients is finite.

    A float32 norm of huge finite entries can overflow to inf: a False here is confirmed
    entry by entry before an alarm (``Monitor._first_nonfinite``).
    """
    return [torch.isfinite(torch.stack(torch._foreach_norm([grads[i] for i in index], 2,
                                                           dtype=dtype)).sum())
            for (_, dtype), index in _norm_groups(grads).items()]


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
        sum_sq = row_norms(centred).square()
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


#: One-pass centred norms (``Σx² - (Σx)²/n``) are trusted where the centred part is at
#: least this share of ``Σx²``: the float32 sums are good to ~1e-7, so the centred square
#: is then good to ~1e-4 (the log10 ratio to ~2e-5). Other rows are computed again exactly.
ONE_PASS_SHARE = 1e-3


def centred_norms(x: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
    """``‖row - mean row‖`` of each row of a 2-D ``x`` (float64): mean, subtract, norm.

    Accurate also when ``|mean| >> std`` (a LayerNorm weight near 1): the mean is summed by
    :func:`row_sums`, as a plain float32 sum's error would shift the rows by an amount
    comparable to their spread. ``work`` is a buffer of ``x``'s shape, so no row is copied.
    On a CPU 5 times faster than torch.std's Welford pass (measured).
    """
    mean = (row_sums(x) / x.shape[1]).to(x.dtype)[:, None]
    torch.sub(x, mean, out=work)
    return row_norms(work)


def one_pass_centred_norms(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred norms of the rows of ``x`` from ``Σx`` and ``Σx²``, and where to redo them.

    Two read-only passes and no write, against three passes and a write for
    :func:`centred_norms`. Returns ``(norms, trusted)``, float64 and bool per row.
    """
    n = x.shape[1]
    squares = row_norms(x).square()
    centred = squares - row_sums(x).square() / n
    return centred.clamp(min=0).sqrt(), centred >= ONE_PASS_SHARE * squares


def log_ratio(update_norm: torch.Tensor, data_norm: torch.Tensor) -> torch.Tensor:
    """``log10(update_norm / data_norm)``, NaN where either is 0 or the ratio not finite
    (the ratios the Monitor skips)."""
    ratio = torch.log10(update_norm / data_norm)
    ok = (data_norm > 0) & (update_norm > 0) & torch.isfinite(ratio)
    return torch.where(ok, ratio, torch.nan)


class RatioBuffers:
    """A copy of the parameters before a step, in one ``(count, numel)`` buffer per size.

    So that the centred norms of all parameters of one size take a few batched operations
    instead of a few per parameter. Buffers live on each parameter's device. On a CPU the
    centred norms of large parameters are taken in one pass (:func:`one_pass_centred_norms`)
    and the few rows it cannot trust are redone exactly in :meth:`read`, after the record's
    transfer: a host check that is free there and would cost a GPU a synchronization.
    """

    def __init__(self, params: list[torch.Tensor]):
        self.params = params
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(params):
            groups.setdefault((p.numel(), p.dtype, p.device), []).append(i)
        self.views: list[torch.Tensor] = [None] * len(params)  # type: ignore[list-item]
        self.groups: list[tuple[list[int], torch.Tensor]] = []
        self.one_pass: list[bool] = []
        for (numel, dtype, device), index in groups.items():
            buffer = torch.empty((len(index), numel), dtype=dtype, device=device)
            for row, i in enumerate(index):
                self.views[i] = buffer[row].view(params[i].shape)
            self.groups.append((index, buffer))
            self.one_pass.append(device.type == "cpu" and numel > FUSED_NORM_MAX)
        self.work = [torch.empty_like(b) for _, b in self.groups]

    def _centred_norms(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per buffer: ``(norms, trusted or None)``."""
        return [one_pass_centred_norms(b) if one else (centred_norms(b, work), None)
                for (_, b), work, one in zip(self.groups, self.work, self.one_pass)]

    def snapshot(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Copy the parameters; return ``‖p - mean p‖`` of each, per buffer."""
        torch._foreach_copy_(self.views, self.params)
        return self._centred_norms()

    def log_ratios(self, data_norms: list[tuple[torch.Tensor, torch.Tensor | None]],
                   batch: HostBatch) -> list[tuple[int, int, int | None]]:
        """After the step: queue ``log10(‖u - mean u‖ / ‖d - mean d‖)`` of each update
        ``u = p_before - p_after`` (NaN where the ratio is skipped: see Monitor).

        Returns ``[(group, ratio handle, trusted handle or None)]`` for :meth:`read`.
        """
        torch._foreach_sub_(self.views, self.params)
        queued = []
        for g, ((u, u_ok), (d, d_ok)) in enumerate(zip(self._centred_norms(), data_norms)):
            trusted = None if u_ok is None else batch.add(u_ok & d_ok)
            queued.append((g, batch.add(log_ratio(u, d)), trusted))
        return queued

    def read(self, queued: list[tuple[int, int, int | None]],
             values: list[list[float]]) -> dict[int, float]:
        """The fetched ratios, ``{parameter position: log10 ratio}`` (NaN: skipped); rows
        the one-pass norms could not trust are computed exactly from the buffers now."""
        ratios: dict[int, float] = {}
        for g, handle, trusted in queued:
            index, buffer = self.groups[g]
            for row, (i, v) in enumerate(zip(index, values[handle])):
                if trusted is not None and not values[trusted][row]:
                    v = self._exact_log_ratio(buffer[row:row + 1], self.params[i])
                ratios[i] = v
        return ratios

    def _exact_log_ratio(self, update: torch.Tensor, param: torch.Tensor) -> float:
        work = torch.empty_like(update)
        u = centred_norms(update, work)
        d = centred_norms(param.detach().reshape(1, -1) + update, work)  # p_before
        return float(log_ratio(u, d)[0])


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
