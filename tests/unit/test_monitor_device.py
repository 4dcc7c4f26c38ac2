"""The Monitor on every available device (CUDA skipped where there is none): buffers on the
tensors' device, records equal to the CPU's, and the host synchronizations it promises:
one per step for the finiteness check, one more per recorded step."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import gradflowkit.monitor_stats as monitor_stats
from gradflowkit.monitor import Monitor

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def _net(device: str) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, 3)).to(device)


def _train(device: str, every: int, steps: int, **kwargs) -> Monitor:
    model = _net(device)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 6, generator=g).to(device), torch.randint(0, 3, (32,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, opt, every=every, **kwargs) as mon:
        for _ in range(steps):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y.to(device))
            mon.log(loss)
            loss.backward()
            opt.step()
    return mon


@pytest.mark.parametrize("device", DEVICES)
def test_records_on_every_device_match_the_cpu(device):
    cpu, here = _train("cpu", 2, 5), _train(device, 2, 5)
    assert [r["step"] for r in here.records] == [0, 2, 4]
    for a, b in zip(cpu.records, here.records):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        for kind in ("grad_norm", "update_ratio"):
            assert b[kind] == pytest.approx(a[kind], rel=1e-3, abs=1e-5)
        for name, stats in a["activation"].items():
            assert b["activation"][name] == pytest.approx(stats, rel=1e-3, abs=1e-5)
    for tensor in here._scratch._tensors.values():
        assert tensor.device.type == device


def test_host_transfers_one_per_step_and_one_more_per_recorded_step(monkeypatch):
    calls = []
    real = monitor_stats.to_host

    def counting(tensor):
        calls.append(tensor.numel())
        return real(tensor)

    monkeypatch.setattr(monitor_stats, "to_host", counting)
    mon = _train("cpu", every=3, steps=7, histogram_bins=None)
    recorded = len(mon.records)
    assert recorded == 3 and len(calls) == 7 + recorded


@needs_cuda
def test_cuda_synchronizations_counted_by_torch():
    model = _net("cuda")
    x = torch.randn(32, 6, device="cuda")
    y = torch.randint(0, 3, (32,), device="cuda")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    steps, every = 6, 3
    with Monitor(model, opt, every=every) as mon:
        for _ in range(2):          # warm-up: allocations of the first steps
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for _ in range(steps):
                    opt.zero_grad()
                    loss = nn.functional.cross_entropy(model(x), y)
                    mon.log(loss)
                    loss.backward()
                    opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    recorded = sum(1 for s in range(2, 2 + steps) if s % every == 0)
    assert len(syncs) <= steps + recorded, [str(w.message)[:120] for w in syncs]
