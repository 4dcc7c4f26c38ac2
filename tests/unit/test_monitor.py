"""Monitor: gradient norms, activation statistics and update ratios against hand-computed
oracles; step counting, hook removal, non-finite gradients, validation, in-place models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import gradflowkit.monitor_stats as monitor_stats
from gradflowkit.monitor import (DEFAULT_ACTIVATION_TYPES, Monitor, MonitorWarning,
                                 NonFiniteGradientError, records_matrix,
                                 weight_matrix_names)
from gradflowkit.nets import DeepMLP, InplaceResidualMLP


def _identity_net(activation: nn.Module, width: int = 2) -> nn.Sequential:
    """Linear layer with W = I, b = 0, then ``activation``: its output is activation(x)."""
    linear = nn.Linear(width, width)
    with torch.no_grad():
        linear.weight.copy_(torch.eye(width))
        linear.bias.zero_()
    return nn.Sequential(linear, activation)


def _set_grads(model: nn.Module, grads: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        p.grad = grads[name].to(p.dtype).reshape(p.shape).clone()


def _no_hooks_left(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> bool:
    for m in model.modules():
        if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks:
            return False
    if optimizer is not None:
        return not (optimizer._optimizer_step_pre_hooks
                    or optimizer._optimizer_step_post_hooks)
    return True


# -- gradient norms ---------------------------------------------------------------------

def test_grad_norms_of_hand_set_gradients_without_optimizer():
    model = nn.Linear(3, 2)
    with Monitor(model) as mon:
        _set_grads(model, {"weight": torch.full((6,), 2.0), "bias": torch.tensor([3.0, 4.0])})
        mon.step()
    (record,) = mon.records
    assert record["step"] == 0
    # float32 gradients, float32 norms: to a few ulps.
    assert record["grad_norm"] == pytest.approx({"weight": 2.0 * math.sqrt(6), "bias": 5.0},
                                                rel=1e-6)
    assert list(record["grad_norm"]) == ["weight", "bias"]   # named_parameters() order
    assert record["update_ratio"] == {}
    assert record["loss"] is None


def test_grad_norms_through_the_optimizer_hook():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with Monitor(model, optimizer=opt) as mon:
        for scale in (1.0, 10.0):
            _set_grads(model, {"weight": scale * torch.tensor([1.0, 2.0, 2.0, 4.0]),
                               "bias": scale * torch.tensor([0.0, 12.0])})
            opt.step()
    assert [r["step"] for r in mon.records] == [0, 1]
    for record, scale in zip(mon.records, (1.0, 10.0)):
        assert record["grad_norm"]["weight"] == pytest.approx(5.0 * scale, rel=1e-12)
        assert record["grad_norm"]["bias"] == pytest.approx(12.0 * scale, rel=1e-12)


@pytest.mark.parametrize("value", [1e-30, 1e-12, 1e30, 3e38])
def test_grad_norms_without_under_or_overflow_of_float32_squares(value):
    # 1e-30 ** 2 underflows in float32, 1e30 ** 2 overflows; the norm 2 * 3e38 is itself
    # beyond float32, and still recorded exactly (oracle: the closed form).
    model = nn.Linear(4, 1, bias=False)
    with Monitor(model) as mon:
        model.weight.grad = torch.full((1, 4), value)
        mon.step()
    assert mon.records[0]["grad_norm"]["weight"] == pytest.approx(2 * value, rel=1e-6)
    assert mon.nonfinite is None


@pytest.mark.parametrize("norm, numel, exact", [
    (2.0, 4, False), (0.0, 4, True), (1.5e-12, 4, True), (3e-12, 4, False), (3e-12, 16, True),
    (math.inf, 4, True), (math.nan, 4, False)])
def test_which_float32_norms_are_computed_again(norm, numel, exact):
    # A NaN is the finiteness check's business, not a norm to refine.
    assert monitor_stats.needs_exact_norm(norm, numel) is exact


def test_exact_norms_of_zero_infinite_and_nan_gradients():
    nan, inf = math.nan, math.inf
    got = monitor_stats.exact_norms([torch.zeros(3), torch.tensor([1.0, inf]),
                                     torch.tensor([nan, 1.0]), torch.tensor([3e-40, 4e-40])])
    assert got[:2] == [0.0, inf] and math.isnan(got[2])
    assert got[3] == pytest.approx(5e-40, rel=1e-6)     # subnormal float32 entries


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_gradients_get_float32_norms(dtype):
    # A bfloat16 sum of squares keeps ~3 digits; the norm is summed in float32.
    g = torch.Generator().manual_seed(4)
    grad = (torch.rand(4096, generator=g) + 0.5).to(dtype)
    ((_, stacked),) = monitor_stats.grad_norms([grad])
    assert float(stacked[0]) == pytest.approx(float(grad.double().norm()), rel=1e-6)


@pytest.mark.parametrize("rows, n", [(1, 100), (3, 2 ** 14), (2, 2 ** 15 + 7), (1, 3_000_001)])
def test_row_norms_of_long_float32_rows_match_float64(rows, n):
    # torch's own float32 norm of 3 M entries is off by ~1e-4; chunked it keeps ~1e-7.
    x = torch.rand(rows, n, generator=torch.Generator().manual_seed(n)) + 0.5
    got = monitor_stats.row_norms(x)
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(x.double().norm(dim=1).tolist(), rel=2e-7)


@pytest.mark.parametrize("rows, n", [(1, 100), (3, 2 ** 14), (2, 2 ** 15 + 7), (1, 3_000_001)])
def test_row_sums_of_long_float32_rows_match_float64(rows, n):
    x = 1 + 1e-3 * torch.randn(rows, n, generator=torch.Generator().manual_seed(n))
    # Each chunk is summed in float32 (a few ulps), the chunks in float64: no drift with n.
    got = monitor_stats.row_sums(x)
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(x.double().sum(dim=1).tolist(), rel=1e-7)


def test_row_norms_of_a_few_large_entries_among_many_tiny_ones():
    # The update of a gain of which only the first 200 entries are used: 200 entries of
    # ~1e-3, then 39 800 of 4e-6. torch's own float32 norm is off by 7e-6 here (once the
    # running sums are large, the tiny squares are rounded away one by one).
    g = torch.Generator().manual_seed(6)
    x = torch.full((1, 40_000), 4e-6)
    x[0, :200] = 1e-3 * (torch.rand(200, generator=g) + 0.5)
    oracle = float(x.double().norm())
    assert float(monitor_stats.row_norms(x)[0]) == pytest.approx(oracle, rel=1e-7)


def test_float32_norms_agree_with_float64_on_realistic_gradients():
    g = torch.Generator().manual_seed(3)
    grads = [torch.randn(n, generator=g) * s for n, s in ((10, 1e-9), (100_003, 1.0),
                                                          (2_000_000, 1e-3), (7, 1e6))]
    ((index, stacked),) = monitor_stats.grad_norms(grads)
    assert index == [0, 1, 2, 3]
    assert stacked.tolist() == pytest.approx([float(t.double().norm()) for t in grads],
                                                rel=2e-7)


def test_parameters_without_grad_are_skipped():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    with Monitor(model) as mon:
        model[1].weight.grad = torch.ones(1, 2)
        mon.step()
    assert list(mon.records[0]["grad_norm"]) == ["1.weight"]


def test_grad_norms_match_autograd_in_a_real_step(float64):
    model = DeepMLP(depth=3, width=5, out_features=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 5), torch.randint(0, 2, (8,))
    with Monitor(model, optimizer=opt) as mon:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        expected = {n: float(p.grad.norm()) for n, p in model.named_parameters()}
        opt.step()
    assert mon.records[0]["grad_norm"] == pytest.approx(expected, rel=1e-12)


# -- activation statistics ----------------------------------------------------------------

def _pop_stats(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def _sigmoid(v):
    return 1 / (1 + math.exp(-v))


def _gelu(v):
    return 0.5 * v * (1 + math.erf(v / math.sqrt(2)))


@pytest.mark.parametrize("activation, inputs, fn, saturated", [
    # ReLU: 2 of 4 outputs are 0.
    (nn.ReLU(), [-1.0, 2.0, 3.0, -4.0], lambda v: max(v, 0.0), 0.5),
    # Sigmoid: sigmoid(-10) < 0.01 and sigmoid(10) > 0.99 saturate; sigmoid(0), (2) not.
    (nn.Sigmoid(), [-10.0, 0.0, 10.0, 2.0], _sigmoid, 0.5),
    # Tanh: |tanh(±3)| = 0.99505 > 0.99; tanh(0.5), tanh(2.5) = 0.9866 do not.
    (nn.Tanh(), [-3.0, 0.5, 3.0, 2.5], math.tanh, 0.5),
    # LeakyReLU: outputs of -1 and -3 are negative: 2 of 4 <= 0.
    (nn.LeakyReLU(0.1), [-1.0, 2.0, -3.0, 4.0], lambda v: v if v > 0 else 0.1 * v, 0.5),
    # GELU: 3 of 4 outputs (of -2, -0.5, 0) are <= 0.
    (nn.GELU(), [-2.0, -0.5, 0.0, 1.5], _gelu, 0.75),
])
def test_activation_stats_closed_form(float64, activation, inputs, fn, saturated):
    model = _identity_net(activation)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.tensor(inputs).reshape(2, 2)
    with Monitor(model, optimizer=opt) as mon:
        model(x).sum().backward()
        opt.step()
    mean, std = _pop_stats([fn(v) for v in inputs])
    stats = mon.records[0]["activation"]["1"]
    assert stats["mean"] == pytest.approx(mean, rel=1e-12, abs=1e-15)
    assert stats["std"] == pytest.approx(std, rel=1e-9)
    assert stats["saturation"] == saturated


def test_activation_std_accurate_when_saturated_float32(float32):
    # Sigmoid outputs all near 1 with a tiny spread: E[x²] - E[x]² cancels badly in
    # float32; the monitor must still give the spread (oracle: float64 on the same values).
    x = 6.0 + 1e-2 * torch.randn(64, 16)
    model = _identity_net(nn.Sigmoid(), width=16)
    with Monitor(model) as mon:
        out = model(x)
        out.sum().backward()
        mon.step()
    oracle = out.detach().double()
    stats = mon.records[0]["activation"]["1"]
    # std/mean ~ 2.5e-5: float32 sums would leave no correct digit; float64 sums keep ~6.
    assert stats["std"] == pytest.approx(float(oracle.std(correction=0)), rel=1e-4)
    assert stats["mean"] == pytest.approx(float(oracle.mean()), rel=1e-7)
    assert stats["saturation"] == float((oracle > 0.99).double().mean())


def test_default_activation_types_and_custom_types():
    assert {nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.Mish, nn.ELU,
            nn.Softplus, nn.LSTM, nn.GRU, "NewGELUActivation", "GELUActivation"} \
        <= set(DEFAULT_ACTIVATION_TYPES)
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.Softplus())
    with Monitor(model) as mon:
        model(torch.randn(3, 2)).sum().backward()
        mon.step()
    assert list(mon.records[0]["activation"]) == ["1", "3"]
    with pytest.warns(MonitorWarning, match=r"1 activation-like part\(s\) of the model: 1 \(ReLU\)"):
        mon = Monitor(model, activation_types=(nn.Softplus, nn.Linear))
    with mon:
        model(torch.randn(3, 2)).sum().backward()
        mon.step()
    assert list(mon.records[0]["activation"]) == ["0", "2", "3"]
    with Monitor(model, activation_types=()) as mon:     # no warning: asked for none
        model(torch.randn(3, 2)).sum().backward()
        mon.step()
    assert mon.records[0]["activation"] == {}


class _SharedActivation(nn.Module):
    """One ReLU module called twice in a forward pass."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 2)
        self.b = nn.Linear(2, 2)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.b(self.act(self.act(self.a(x)) - 1.0))


def test_module_called_twice_is_recorded_per_call(float64):
    model = _SharedActivation()
    x = torch.randn(5, 2)
    with Monitor(model) as mon:
        model(x).sum().backward()
        mon.step()
    with torch.no_grad():
        first = torch.relu(model.a(x))
        second = torch.relu(first - 1.0)
    acts = mon.records[0]["activation"]
    assert list(acts) == ["act", "act#1"]
    for name, values in (("act", first), ("act#1", second)):
        assert acts[name]["mean"] == pytest.approx(float(values.mean()), rel=1e-12)
        assert acts[name]["saturation"] == float((values <= 0).double().mean())


def test_no_grad_forward_passes_are_ignored(float64):
    model = _identity_net(nn.ReLU())
    train_x, eval_x = torch.tensor([[1.0, 3.0]]), torch.tensor([[-5.0, -5.0]])
    with Monitor(model) as mon:
        model(train_x).sum().backward()
        with torch.no_grad():
            model(eval_x)            # an evaluation between backward and step
        mon.step()
    assert mon.records[0]["activation"]["1"]["mean"] == pytest.approx(2.0)


# -- update-to-data ratio -----------------------------------------------------------------

def test_update_ratio_against_manual_snapshot_and_sgd_formula(float64):
    model = DeepMLP(depth=2, width=6, out_features=3)
    with torch.no_grad():
        model.blocks[0].linear.bias.copy_(torch.randn(6))   # non-zero: has a ratio too
    lr = 0.05
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    with Monitor(model, optimizer=opt) as mon:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        before = {n: p.detach().clone().numpy() for n, p in model.named_parameters()}
        grads = {n: p.grad.clone().numpy() for n, p in model.named_parameters()}
        opt.step()
    after = {n: p.detach().numpy() for n, p in model.named_parameters()}
    ratios = mon.records[0]["update_ratio"]
    # Zero-initialized biases have std(p_before) = 0: no ratio.
    assert set(ratios) == {n for n in before if before[n].std() > 0}
    assert "blocks.0.linear.bias" in ratios and "blocks.1.linear.bias" not in ratios
    for name, ratio in ratios.items():
        snapshot = np.log10(np.std(after[name] - before[name]) / np.std(before[name]))
        sgd = np.log10(lr * np.std(grads[name]) / np.std(before[name]))  # update = -lr g
        assert ratio == pytest.approx(snapshot, rel=1e-10)
        assert ratio == pytest.approx(sgd, rel=1e-10)


def test_update_ratio_float32_model_matches_float64_oracle(float32):
    model = InplaceResidualMLP(width=8, depth=2, out_features=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    with Monitor(model, optimizer=opt) as mon:
        for _ in range(2):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            before = {n: p.detach().double().clone() for n, p in model.named_parameters()}
            opt.step()
    for name, ratio in mon.records[-1]["update_ratio"].items():
        p = dict(model.named_parameters())[name].detach().double()
        oracle = math.log10(float((p - before[name]).std() / before[name].std()))
        assert ratio == pytest.approx(oracle, abs=1e-5)


class _Scaled(nn.Module):
    """A large weight matrix and a large parameter near 1 with a tiny spread (a norm's gain)."""

    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n) / n)
        self.gain = nn.Parameter(1 + 1e-4 * torch.randn(n * n))

    def forward(self, x):
        return (x @ self.weight) * self.gain[: x.shape[1]]


def test_update_ratio_of_large_parameters_one_pass_and_its_exact_fallback(float32):
    # 200 x 200 = 40 000 entries: on a CPU the one-pass centred norms; the gain has
    # |mean| / std = 1e4, where Σx² - (Σx)²/n keeps no digit in float32 and the exact
    # two-pass norm must be used (oracle: float64 on the same values).
    model = _Scaled(200)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(8, 200)
    with Monitor(model, optimizer=opt, activation_types=()) as mon:
        for _ in range(2):
            opt.zero_grad()
            model(x).square().mean().backward()
            before = {n: p.detach().double().clone() for n, p in model.named_parameters()}
            opt.step()
            assert mon._buffers.one_pass == [True]     # one buffer, both rows
    _, trusted = monitor_stats.one_pass_centred_norms(model.gain.detach().reshape(1, -1))
    assert not bool(trusted[0])
    for name, ratio in mon.records[-1]["update_ratio"].items():
        p = dict(model.named_parameters())[name].detach().double()
        oracle = math.log10(float((p - before[name]).std() / before[name].std()))
        assert ratio == pytest.approx(oracle, abs=1e-5), name
    assert set(mon.records[-1]["update_ratio"]) == {"weight", "gain"}


@pytest.mark.parametrize("spread, trusted", [(1.0, True), (0.1, True), (1e-3, False)])
def test_one_pass_centred_norms_against_float64(spread, trusted):
    x = 1 + spread * torch.randn(2, 50_000, generator=torch.Generator().manual_seed(5))
    norms, ok = monitor_stats.one_pass_centred_norms(x)
    assert ok.tolist() == [trusted, trusted]
    oracle = (x.double() - x.double().mean(dim=1, keepdim=True)).norm(dim=1)
    if trusted:
        assert norms.tolist() == pytest.approx(oracle.tolist(), rel=1e-4)


def test_update_ratio_skips_scalars_frozen_and_unchanged_parameters():
    model = nn.Sequential(nn.Linear(3, 3), nn.PReLU(), nn.Linear(3, 3))
    model[2].weight.requires_grad_(False)
    opt = torch.optim.SGD([model[0].weight, model[0].bias, model[1].weight], lr=0.1)
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
    with Monitor(model, optimizer=opt) as mon:
        model(torch.randn(4, 3)).sum().backward()
        model[0].bias.grad = None        # not updated: std of the update is 0
        opt.step()
    # PReLU's weight has 1 entry, 2.weight is frozen, 2.bias is not in the optimizer.
    assert list(mon.records[0]["update_ratio"]) == ["0.weight"]


# -- step counting ------------------------------------------------------------------------

@pytest.mark.parametrize("every", [1, 3, 4])
def test_every_k_records_steps_0_k_2k(every, float64):
    model = _identity_net(nn.ReLU(), width=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    n_steps = 10
    with Monitor(model, optimizer=opt, every=every) as mon:
        for s in range(n_steps):
            opt.zero_grad()
            out = model(torch.tensor([[float(s)]]))   # the activation's mean is s
            out.sum().backward()
            mon.log(loss=float(s) + 0.5)
            opt.step()
    expected = list(range(0, n_steps, every))
    assert [r["step"] for r in mon.records] == expected
    assert mon.steps_taken == n_steps
    # Each record holds the activations of the forward pass before its step.
    assert [r["activation"]["1"]["mean"] for r in mon.records] == expected
    assert [r["loss"] for r in mon.records] == [s + 0.5 for s in expected]


def test_every_k_without_optimizer():
    model = nn.Linear(1, 1)
    with Monitor(model, every=2) as mon:
        for _ in range(5):
            model(torch.ones(1, 1)).sum().backward()
            mon.step()
    assert [r["step"] for r in mon.records] == [0, 2, 4]


def test_reattach_continues_counting_and_second_attach_raises():
    model = nn.Linear(1, 1)
    mon = Monitor(model, every=2)
    mon.attach()
    with pytest.raises(RuntimeError, match="already attached"):
        mon.attach()
    model(torch.ones(1, 1)).sum().backward()
    mon.step()
    mon.detach()
    mon.detach()                         # twice is fine
    assert _no_hooks_left(model)
    with mon:
        for _ in range(3):
            mon.step()
    assert [r["step"] for r in mon.records] == [0, 2]


def test_step_misuse_raises():
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, optimizer=opt) as mon:
        with pytest.raises(RuntimeError, match="do not call Monitor.step"):
            mon.step()
    with pytest.raises(RuntimeError, match="not attached"):
        Monitor(model).step()


# -- hooks ---------------------------------------------------------------------------------

def test_every_hook_is_removed_on_exit():
    model = DeepMLP(depth=3, width=4, out_features=2, activation="tanh")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, optimizer=opt, every=2, histogram_bins=5) as mon:
        assert model.blocks[0].act._forward_hooks and opt._optimizer_step_pre_hooks
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(2, 4)).sum().backward()
            opt.step()
    assert _no_hooks_left(model, opt)
    assert len(mon.records) == 2


def test_hooks_are_removed_when_the_block_raises():
    model = DeepMLP(depth=2, width=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(KeyError, match="boom"):
        with Monitor(model, optimizer=opt):
            model(torch.randn(2, 4)).sum().backward()
            opt.step()
            raise KeyError("boom")
    assert _no_hooks_left(model, opt)


def test_no_module_backward_hooks_are_used():
    model = InplaceResidualMLP(width=4, depth=2)
    with Monitor(model) as mon:
        assert not any(m._backward_hooks or m._backward_pre_hooks for m in model.modules())
        assert all(p._backward_hooks is None for p in model.parameters())
        model(torch.randn(2, 4)).sum().backward()
        mon.step()


# -- non-finite gradients -------------------------------------------------------------------

def _three_layer_model() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.ReLU(),
                          nn.Linear(2, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def _clean_grads(model):
    for p in model.parameters():
        p.grad = torch.ones_like(p)


@pytest.mark.parametrize("bad, value", [(math.inf, "inf"), (-math.inf, "inf"),
                                        (math.nan, "nan")])
def test_nonfinite_raises_before_the_update_naming_first_parameter(bad, value):
    model, opt = _three_layer_model()
    with pytest.raises(NonFiniteGradientError) as info:
        with Monitor(model, optimizer=opt, every=5) as mon:
            for _ in range(2):
                _clean_grads(model)
                opt.step()
            _clean_grads(model)
            model[4].weight.grad[0, 1] = math.nan    # a later parameter, also bad
            model[2].bias.grad[1] = bad              # the first bad one in order
            before = [p.detach().clone() for p in model.parameters()]
            opt.step()                               # step 2: not a recorded step
    assert isinstance(info.value, FloatingPointError)
    assert "'2.bias'" in str(info.value) and "step 2" in str(info.value)
    assert mon.nonfinite == {"step": 2, "parameter": "2.bias", "value": value}
    assert mon.nonfinite_steps == [2]
    for p, b in zip(model.parameters(), before):     # the bad update was not applied
        assert torch.equal(p.detach(), b)
    assert _no_hooks_left(model, opt)
    assert [r["step"] for r in mon.records] == [0]


def test_nan_wins_over_inf_in_the_same_tensor():
    model, opt = _three_layer_model()
    with Monitor(model, optimizer=opt, raise_on_nonfinite=False) as mon:
        _clean_grads(model)
        model[0].weight.grad[0, 0] = math.inf
        model[0].weight.grad[1, 1] = math.nan
        opt.step()
    assert mon.nonfinite == {"step": 0, "parameter": "0.weight", "value": "nan"}


def test_nonfinite_without_raise_records_and_goes_on():
    model, opt = _three_layer_model()
    with Monitor(model, optimizer=opt, raise_on_nonfinite=False) as mon:
        for s in range(4):
            _clean_grads(model)
            if s in (1, 3):
                model[4].bias.grad[0] = math.inf if s == 1 else math.nan
            opt.step()
    assert mon.nonfinite == {"step": 1, "parameter": "4.bias", "value": "inf"}
    assert mon.nonfinite_steps == [1, 3]
    assert [r["step"] for r in mon.records] == [0, 1, 2, 3]
    assert mon.records[1]["grad_norm"]["4.bias"] == math.inf
    assert math.isnan(mon.records[3]["grad_norm"]["4.bias"])
    assert not torch.isfinite(model[4].bias).all()   # the update was applied


def test_nonfinite_without_optimizer_raises_from_step():
    model = nn.Linear(2, 1)
    with Monitor(model) as mon:
        model.weight.grad = torch.tensor([[1.0, math.nan]])
        with pytest.raises(NonFiniteGradientError, match="'weight'.*step 0"):
            mon.step()
    assert mon.nonfinite == {"step": 0, "parameter": "weight", "value": "nan"}


def test_huge_finite_float32_gradients_are_not_flagged():
    # The float32 norm of 16 entries of 1e38 overflows to inf, yet every entry is finite.
    model = nn.Linear(4, 4, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with Monitor(model, optimizer=opt, every=2) as mon:
        for _ in range(2):                    # step 1 is not recorded: the float32 check
            model.weight.grad = torch.full((4, 4), 1e38)
            opt.step()
    assert mon.nonfinite is None
    assert mon.records[0]["grad_norm"]["weight"] == pytest.approx(4e38, rel=1e-6)


# -- argument validation --------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(model=lambda x: x), TypeError, "torch.nn.Module"),
    (dict(every=0), ValueError, "every must be >= 1"),
    (dict(every=1.5), TypeError, "every must be an int"),
    (dict(optimizer="sgd"), TypeError, "torch.optim.Optimizer"),
    (dict(model=nn.ReLU()), ValueError, "no parameters"),
    (dict(activation_types=[nn.ReLU]), TypeError, "tuple of nn.Module subclasses"),
    (dict(activation_types=(int,)), TypeError, "tuple of nn.Module subclasses"),
    (dict(activation_types=(nn.ReLU(),)), TypeError, "tuple of nn.Module subclasses"),
    (dict(histogram_bins=0), ValueError, "histogram_bins must be >= 1"),
    (dict(raise_on_nonfinite=1), TypeError, "raise_on_nonfinite"),
])
def test_argument_validation(kwargs, error, match):
    kwargs = {"model": nn.Linear(2, 2), **kwargs}
    with pytest.raises(error, match=match):
        Monitor(**kwargs)


def test_nonfinite_error_is_a_floating_point_error():
    assert issubclass(NonFiniteGradientError, FloatingPointError)


# -- matrices and histograms ----------------------------------------------------------------

def test_matrix_puts_nan_where_a_name_is_missing():
    records = [
        {"step": 0, "grad_norm": {"a": 1.0}, "update_ratio": {},
         "activation": {"r": {"mean": 0.1, "std": 1.0, "saturation": 0.5}}},
        {"step": 5, "grad_norm": {"a": 2.0, "b": 3.0}, "update_ratio": {"a": -3.0},
         "activation": {"r": {"mean": 0.2, "std": 2.0, "saturation": 0.25}}},
    ]
    steps, names, values = records_matrix(records, "grad_norm")
    np.testing.assert_array_equal(steps, [0, 5])
    assert names == ["a", "b"]
    np.testing.assert_array_equal(values, [[1.0, np.nan], [2.0, 3.0]])
    _, names, values = records_matrix(records, "activation", stat="saturation")
    assert names == ["r"]
    np.testing.assert_array_equal(values, [[0.5], [0.25]])
    _, names, values = records_matrix(records, "update_ratio")
    np.testing.assert_array_equal(values, [[np.nan], [-3.0]])


def test_monitor_matrix_shape_and_errors():
    model = DeepMLP(depth=2, width=3)
    with Monitor(model, every=2) as mon:
        for _ in range(5):
            model(torch.randn(4, 3)).sum().backward()
            mon.step()
    steps, names, values = mon.matrix("activation", stat="std")
    assert list(steps) == [0, 2, 4] and names == ["blocks.0.act", "blocks.1.act"]
    assert values.shape == (3, 2)
    with pytest.raises(ValueError, match="needs stat"):
        mon.matrix("activation")
    with pytest.raises(ValueError, match="stat must be one of"):
        mon.matrix("activation", stat="median")
    with pytest.raises(ValueError, match="applies only"):
        mon.matrix("grad_norm", stat="mean")
    with pytest.raises(ValueError, match="kind must be one of"):
        mon.matrix("loss")


def test_histograms_match_numpy(float64):
    model = _identity_net(nn.Tanh(), width=3)
    x = torch.randn(20, 3)
    with Monitor(model, histogram_bins=4) as mon:
        out = model(x)
        out.sum().backward()
        model[0].weight.grad[0, 0] = 0.0      # zeros are left out of log10|g|
        mon.step()
    record = mon.records[0]
    counts, edges = record["act_hist"]["1"]
    oracle_counts, oracle_edges = np.histogram(out.detach().numpy().ravel(), bins=4)
    np.testing.assert_array_equal(counts, oracle_counts)
    np.testing.assert_allclose(edges, oracle_edges)
    g = model[0].weight.grad.numpy().ravel()
    counts, edges = record["grad_hist"]["0.weight"]
    oracle_counts, oracle_edges = np.histogram(np.log10(np.abs(g[g != 0])), bins=4)
    np.testing.assert_array_equal(counts, oracle_counts)
    np.testing.assert_allclose(edges, oracle_edges)
    assert counts.sum() == 8


def test_no_histograms_by_default():
    model = nn.Linear(2, 2)
    with Monitor(model) as mon:
        model(torch.randn(1, 2)).sum().backward()
        mon.step()
    assert "grad_hist" not in mon.records[0] and "act_hist" not in mon.records[0]


# -- in-place residual model ----------------------------------------------------------------

def _manual_activation_stats(model: InplaceResidualMLP, x: torch.Tensor) -> dict:
    """The stats of every ReLU output from a hook-free forward pass written out by hand."""
    stats = {}
    with torch.no_grad():
        for i, block in enumerate(model.blocks):
            h = torch.clamp(x @ block.linear1.weight.T + block.linear1.bias, min=0)
            out = torch.clamp(h @ block.linear2.weight.T + block.linear2.bias + x, min=0)
            for name, v in ((f"blocks.{i}.act1", h), (f"blocks.{i}.act2", out)):
                stats[name] = {"mean": float(v.mean()), "std": float(v.std(correction=0)),
                               "saturation": float((v <= 0).double().mean())}
            x = out
    return stats


def test_inplace_residual_activation_stats_match_hook_free_forward(float64):
    model = InplaceResidualMLP(width=6, depth=3, out_features=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    xs = [torch.randn(9, 6) for _ in range(3)]
    with Monitor(model, optimizer=opt) as mon:
        for s, x in enumerate(xs):
            expected = _manual_activation_stats(model, x)
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
            got = mon.records[s]["activation"]
            assert list(got) == list(expected)
            for name in expected:
                assert got[name] == pytest.approx(expected[name], rel=1e-10, abs=1e-14)


def test_training_with_the_monitor_is_bit_identical(float32):
    def train(monitored: bool) -> list[torch.Tensor]:
        torch.manual_seed(7)
        model = InplaceResidualMLP(width=8, depth=3, out_features=4)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
        mon = Monitor(model, optimizer=opt, every=2, histogram_bins=10)
        if monitored:
            mon.attach()
        for _ in range(6):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        mon.detach()
        assert len(mon.records) == (3 if monitored else 0)
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(train(False), train(True)):
        assert torch.equal(a, b)


def test_inplace_residual_backward_with_monitor_runs_with_deep_mlp_too(float32):
    model = DeepMLP(depth=4, width=8, out_features=2, residual=True, branch_layers=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(model, optimizer=opt) as mon:
        opt.zero_grad()
        model(torch.randn(5, 8)).sum().backward()
        opt.step()
    assert set(mon.records[0]["activation"]) == {f"blocks.{i}.act" for i in range(4)}
    assert len(mon.records[0]["grad_norm"]) == len(list(model.parameters()))


def test_module_hooks_only_before_recorded_steps():
    model = _identity_net(nn.ReLU())
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    hooked = []
    with Monitor(model, optimizer=opt, every=3) as mon:
        for _ in range(7):
            hooked.append(bool(model[1]._forward_hooks))
            model(torch.ones(1, 2)).sum().backward()
            opt.step()
    assert hooked == [True, False, False, True, False, False, True]
    assert [r["step"] for r in mon.records] == [0, 3, 6]
    assert all(r["activation"]["1"]["mean"] == 1.0 for r in mon.records)


def test_loss_tensor_is_detached_and_only_kept_for_its_step():
    model = nn.Linear(1, 1)
    with Monitor(model, every=2) as mon:
        for s in range(4):
            loss = model(torch.ones(1, 1)).sum() * 0 + s
            loss.backward()
            if s != 2:
                mon.log(loss)
            mon.step()
    assert [r["loss"] for r in mon.records] == [0.0, None]


def test_activation_stats_are_of_the_output_before_a_later_inplace_change():
    """The statistics are computed at the step from a copy made in the hook: an in-place
    change of the output after the module ran (here `h.mul_(3)`) must not show."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 6)
            self.act = nn.GELU()      # saves its input for backward: h may change in place

        def forward(self, x):
            h = self.act(self.lin(x))
            h.mul_(3.0)
            return h.sum()

    torch.manual_seed(0)
    net, x = Net(), torch.randn(7, 5)
    expected = nn.functional.gelu(net.lin(x)).detach().double()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with Monitor(net, optimizer=opt) as mon:
        net(x).backward()
        opt.step()
    stats = mon.records[0]["activation"]["act"]
    assert stats["mean"] == pytest.approx(float(expected.mean()), rel=1e-6, abs=1e-7)
    assert stats["std"] == pytest.approx(float(expected.std(correction=0)), rel=1e-5)
    assert stats["saturation"] == pytest.approx(float((expected <= 0).double().mean()))


def test_records_matrix_keeps_a_late_name_in_its_place():
    """A parameter missing from the first record (its update ratio was skipped) must not
    move to the end: names keep the order the records list them in."""
    records = [
        {"step": 0, "update_ratio": {"b": -3.0, "c": -2.5}},
        {"step": 1, "update_ratio": {"a": -4.0, "b": -3.1, "c": -2.6}},
        {"step": 2, "update_ratio": {"a": -4.1, "b": -3.2, "x": -1.0, "c": -2.7}},
    ]
    steps, names, values = records_matrix(records, "update_ratio")
    assert names == ["a", "b", "x", "c"]
    assert np.isnan(values[0, 0]) and values[2, 2] == -1.0 and values[1, 3] == -2.6


def test_weight_matrix_names_by_shape_or_by_name():
    names = ["0.weight", "0.bias", "norm.weight", "head.weight"]
    shapes = {"0.weight": (4, 3), "0.bias": (4,), "norm.weight": (4,), "head.weight": (2, 4)}
    assert weight_matrix_names(names, shapes) == ["0.weight", "head.weight"]
    assert weight_matrix_names(names) == ["0.weight", "norm.weight", "head.weight"]
    assert weight_matrix_names(["x.weight"], {}) == []         # an unknown shape: not a matrix
