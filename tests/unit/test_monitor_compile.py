"""The Monitor under torch.compile (inductor, the default backend): the user's names, and
every recorded step's statistics equal to those of the same model trained eagerly, with 1
and 2 threads, every 1, 2 and 3 steps. Oracle: an eager Monitor on an identical model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradflowkit.monitor import Monitor


class _Block(nn.Module):
    """A residual block with in-place ReLUs and `out += x` (torchvision's layout)."""

    def __init__(self, width: int):
        super().__init__()
        self.l1 = nn.Linear(width, width)
        self.r1 = nn.ReLU(inplace=True)
        self.l2 = nn.Linear(width, width)
        self.r2 = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.l2(self.r1(self.l1(x)))
        out += x
        return self.r2(out)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.Tanh(), _Block(32), _Block(32), nn.Linear(32, 4))


def _train(model: nn.Module, run, every: int, steps: int = 6) -> Monitor:
    """Train `model` by calling `run` (the model or its compiled wrapper)."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 12, generator=g), torch.randint(0, 4, (64,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with Monitor(run, opt, every=every) as mon:
        for _ in range(steps):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(run(x), y)
            mon.log(loss)
            loss.backward()
            opt.step()
    return mon


@pytest.fixture
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def _assert_same_records(eager: Monitor, compiled: Monitor) -> None:
    assert [r["step"] for r in compiled.records] == [r["step"] for r in eager.records]
    for a, b in zip(eager.records, compiled.records):
        for kind in ("grad_norm", "update_ratio", "activation"):
            assert list(b[kind]) == list(a[kind]), (b["step"], kind)
        for name, stats in a["activation"].items():
            assert 0.0 <= b["activation"][name]["saturation"] <= 1.0
            for key, value in stats.items():
                assert b["activation"][name][key] == pytest.approx(value, rel=1e-4, abs=1e-6), \
                    (b["step"], name, key)
        for name, value in a["grad_norm"].items():
            assert b["grad_norm"][name] == pytest.approx(value, rel=1e-4)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("every", [1, 2, 3])
def test_compiled_records_equal_eager_records(threads, every):
    eager = _train(m := _model(), m, every)
    torch._dynamo.reset()
    compiled_model = _model()
    compiled = _train(compiled_model, torch.compile(compiled_model), every)
    assert eager.records and all(r["activation"] for r in eager.records)
    assert compiled.watched == eager.watched == ["1", "2.r1", "2.r2", "3.r1", "3.r2"]
    assert list(compiled.parameter_shapes) == list(eager.parameter_shapes)
    _assert_same_records(eager, compiled)


def test_monitor_given_the_model_while_its_compiled_wrapper_trains():
    """The hooks are traced into the graph: the monitor notices and keeps them."""
    eager = _train(m := _model(), m, every=2)
    torch._dynamo.reset()
    model = _model()
    wrapper = torch.compile(model)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 12, generator=g), torch.randint(0, 4, (64,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with Monitor(model, opt, every=2) as mon:
        for _ in range(6):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(wrapper(x), y)
            mon.log(loss)
            loss.backward()
            opt.step()
    _assert_same_records(eager, mon)


def test_compiled_names_have_no_orig_mod():
    model = _model()
    compiled = torch.compile(model)
    mon = Monitor(compiled)
    assert all("_orig_mod" not in n for n in [*mon.parameter_shapes, *mon.watched])
    model[2] = torch.compile(model[2])       # a compiled submodule
    mon = Monitor(model)
    assert "2.l1.weight" in mon.parameter_shapes and "2.r1" in mon.watched
