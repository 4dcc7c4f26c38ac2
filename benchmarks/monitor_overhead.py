"""Overhead of :class:`gradflowkit.monitor.Monitor` on a training step (lesson 16, issue 5).

Median time of one training step (zero_grad, forward, loss, backward, SGD step) WITH the
monitor divided by the median WITHOUT it, measured interleaved in one run: chunks of steps
with and without the monitor alternate on the same model and optimizer, so that a slow
phase of the machine hits both sides. One thread (``torch.set_num_threads(1)``), as in the
lessons. Two models: a 20-layer ReLU MLP (:class:`~gradflowkit.nets.DeepMLP`) and a small
residual net with in-place ReLUs and ``out += x``
(:class:`~gradflowkit.nets.InplaceResidualMLP`).

Targets: ``every_step <= 1.10`` and ``every_10_steps <= 1.02`` (the max over the models).

Run ``python benchmarks/monitor_overhead.py [--batch 64] [--steps 300] [--repeats 15]``: it
prints JSON (about 15 s at the defaults on one core).

What costs what (width 128, one core): every optimizer step, the non-finite check reads
every gradient once (one fused norm, ~0.2 ms for the MLP's 0.33 M parameters, as the
gradients are no longer in cache after the backward pass); a recorded step adds a few
element-wise passes over each watched activation (~20-40 µs per 64×128 output, growing with
the batch as the forward pass does) and over the parameters (update ratio). The check and
the update ratio do not grow with the batch, so the ratios fall as the batch grows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gradflowkit.monitor import Monitor  # noqa: E402
from gradflowkit.nets import DeepMLP, InplaceResidualMLP  # noqa: E402

BATCH = 64     # examples per step
WIDTH = 128    # units per layer in both models
CLASSES = 10   # outputs of the linear head
MODELS = {
    "mlp20": lambda: DeepMLP(depth=20, width=WIDTH, out_features=CLASSES),
    "residual4": lambda: InplaceResidualMLP(width=WIDTH, depth=4, out_features=CLASSES),
}
TARGETS = {"every_step": 1.10, "every_10_steps": 1.02}


def _ratio(make_model, every: int, repeats: int, steps: int, batch: int) -> dict:
    """Median step time with / without a Monitor(every=every), interleaved in chunks."""
    torch.manual_seed(0)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(batch, WIDTH)
    y = torch.randint(0, CLASSES, (batch,))

    def train_step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    mon = Monitor(model, optimizer=opt, every=every)
    chunk = max(1, steps // repeats)
    chunk += (-chunk) % every        # whole multiples of `every`: same share recorded
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(repeats + 1):
        order = (False, True) if r % 2 == 0 else (True, False)
        for monitored in order:
            if monitored:
                mon.attach()
            try:
                for _ in range(chunk):
                    t0 = time.perf_counter()
                    train_step()
                    times[monitored].append(time.perf_counter() - t0)
            finally:
                if monitored:
                    mon.detach()
        if r == 0:                   # the first round is warm-up: discard it
            times = {False: [], True: []}
    without, with_ = statistics.median(times[False]), statistics.median(times[True])
    return {"ratio": with_ / without, "ms_without": 1e3 * without, "ms_with": 1e3 * with_,
            "steps_each": len(times[True]), "records": len(mon.records)}


def measure(repeats: int = 15, steps: int = 300, batch: int = BATCH) -> dict:
    """Overhead ratios of the monitor, per model and the max over the models.

    Args:
        repeats: number of with/without alternations per configuration (default 15).
        steps: timed training steps per side and configuration (default 300), split into
            ``repeats`` chunks; one more round of chunks is run first as warm-up.
        batch: examples per training step (default 64); the monitor's cost does not
            grow with it, the step's does.

    Returns:
        ``{"every_step": max ratio, "every_10_steps": max ratio, "per_model": {model:
        {"every_step": {...}, "every_10_steps": {...}}}, "targets": ..., "sizes": ...}``.
    """
    torch.set_num_threads(1)
    per_model: dict[str, dict] = {}
    for name, make in MODELS.items():
        per_model[name] = {"every_step": _ratio(make, 1, repeats, steps, batch),
                           "every_10_steps": _ratio(make, 10, repeats, steps, batch)}
    result = {key: max(m[key]["ratio"] for m in per_model.values()) for key in TARGETS}
    result["met"] = {key: result[key] <= target for key, target in TARGETS.items()}
    result["targets"] = TARGETS
    result["sizes"] = {"batch": batch, "width": WIDTH, "classes": CLASSES,
                       "mlp20": "DeepMLP(depth=20, width=128, relu) + head",
                       "residual4": "InplaceResidualMLP(width=128, depth=4) + head",
                       "threads": torch.get_num_threads()}
    result["per_model"] = per_model
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="alternations (default 15)")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per side")
    parser.add_argument("--batch", type=int, default=BATCH, help="examples per step (64)")
    args = parser.parse_args()
    print(json.dumps(measure(args.repeats, args.steps, args.batch), indent=2))
