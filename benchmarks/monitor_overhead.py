"""Overhead of :class:`gradflowkit.monitor.Monitor` on a training step (lesson 16, issue 5).

Median time of one training step (zero_grad, forward, loss, backward, SGD step) WITH the
monitor divided by the median WITHOUT it, measured interleaved in one run: chunks of steps
with and without the monitor alternate on the same model and optimizer, so that a slow
phase of the machine hits both sides. One thread (``torch.set_num_threads(1)``), as in the
lessons. Four models:

- where users are (:mod:`gradflowkit.reference_models`): a GPT-2-style Transformer (4
  pre-LN blocks, width 128, sequence 64, batch 8, vocabulary 1024, AdamW) and a ResNet-18
  layout CNN (width 64, 64×64 inputs, batch 16, SGD with momentum);
- tiny nets, where the dispatch of a few small kernels dominates a step: a 20-layer ReLU
  MLP (:class:`~gradflowkit.nets.DeepMLP`) and a small residual net with in-place ReLUs and
  ``out += x`` (:class:`~gradflowkit.nets.InplaceResidualMLP`), batch 64, width 128.

Targets: ``every_step <= 1.10`` and ``every_10_steps <= 1.02``, the max over the two
user-sized models; the tiny nets' ratios are reported beside them (``tiny``).

Run ``python benchmarks/monitor_overhead.py [--steps 300] [--repeats 15]``: it prints JSON
(about 2 minutes on one core; the user-sized models run a tenth of the steps).

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
from gradflowkit.reference_models import GPTStyle, resnet18_layout  # noqa: E402

BATCH = 64     # examples per step of the tiny nets
WIDTH = 128    # units per layer in the tiny nets
CLASSES = 10   # outputs of the linear heads
VOCAB, CONTEXT, GPT_BATCH = 1024, 64, 8
IMAGE, CNN_BATCH = 64, 16
TARGETS = {"every_step": 1.10, "every_10_steps": 1.02}


def _gpt2_4x128():
    model = GPTStyle(vocab=VOCAB, width=128, layers=4, heads=4, context=CONTEXT)
    ids = torch.randint(0, VOCAB, (GPT_BATCH, CONTEXT + 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def loss():
        logits = model(ids[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    return model, opt, loss


def _resnet18():
    model = resnet18_layout(width=64, classes=CLASSES)
    x = torch.randn(CNN_BATCH, 3, IMAGE, IMAGE)
    y = torch.randint(0, CLASSES, (CNN_BATCH,))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    return model, opt, lambda: F.cross_entropy(model(x), y)


def _tiny(make):
    def build():
        model = make()
        x = torch.randn(BATCH, WIDTH)
        y = torch.randint(0, CLASSES, (BATCH,))
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        return model, opt, lambda: F.cross_entropy(model(x), y)
    return build


#: name: (build() -> (model, optimizer, loss()), share of the steps run, size in words)
MODELS = {
    "gpt2_4x128": (_gpt2_4x128, 0.1, "GPTStyle(4 pre-LN blocks, width 128, 4 heads, vocab "
                   "1024), sequence 64, batch 8, AdamW"),
    "resnet18": (_resnet18, 0.1, "resnet18_layout(width 64), 64x64 inputs, batch 16, SGD "
                 "momentum 0.9"),
    "mlp20": (_tiny(lambda: DeepMLP(depth=20, width=WIDTH, out_features=CLASSES)), 1.0,
              "DeepMLP(depth=20, width=128, relu) + head, batch 64"),
    "residual4": (_tiny(lambda: InplaceResidualMLP(width=WIDTH, depth=4, out_features=CLASSES)),
                  1.0, "InplaceResidualMLP(width=128, depth=4) + head, batch 64"),
}
USER_MODELS = ("gpt2_4x128", "resnet18")


def _ratio(build, every: int, repeats: int, steps: int) -> dict:
    """Median step time with / without a Monitor(every=every), interleaved in chunks."""
    torch.manual_seed(0)
    model, opt, loss = build()

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss().backward()
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


def measure(repeats: int = 15, steps: int = 300) -> dict:
    """Overhead ratios of the monitor, per model, and the max over the user-sized models.

    Args:
        repeats: number of with/without alternations per configuration (default 15).
        steps: timed training steps per side and configuration of a tiny net (default
            300; the user-sized models run a tenth, at least ``2 * repeats``), split into
            ``repeats`` chunks; one more round of chunks is run first as warm-up.

    Returns:
        ``{"every_step": max ratio, "every_10_steps": max ratio (both over USER_MODELS),
        "tiny": {the same over the tiny nets}, "per_model": {model: {"every_step": {...},
        "every_10_steps": {...}}}, "targets": ..., "sizes": ...}``.
    """
    torch.set_num_threads(1)
    per_model: dict[str, dict] = {}
    for name, (build, share, _) in MODELS.items():
        n = max(2 * repeats, round(share * steps))
        per_model[name] = {"every_step": _ratio(build, 1, repeats, n),
                           "every_10_steps": _ratio(build, 10, repeats, n)}
    tiny = [m for m in MODELS if m not in USER_MODELS]
    result = {key: max(per_model[m][key]["ratio"] for m in USER_MODELS) for key in TARGETS}
    result["met"] = {key: result[key] <= target for key, target in TARGETS.items()}
    result["tiny"] = {key: max(per_model[m][key]["ratio"] for m in tiny) for key in TARGETS}
    result["targets"] = TARGETS
    result["sizes"] = {name: size for name, (_, _, size) in MODELS.items()}
    result["sizes"]["threads"] = torch.get_num_threads()
    result["per_model"] = per_model
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="alternations (default 15)")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per side")
    args = parser.parse_args()
    print(json.dumps(measure(args.repeats, args.steps), indent=2))
