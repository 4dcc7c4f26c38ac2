"""What the Monitor watches (gradflowkit.monitor_watch): Transformer layers' activation
functions, recurrent layers, Hugging Face activation classes by name, the saturation rules,
and the warnings about what it cannot see. Oracles: the tensors read by hooks of our own."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradflowkit.monitor import Monitor, MonitorWarning
from gradflowkit.monitor_stats import saturated
from gradflowkit.monitor_watch import (RECTIFIER, RELU, SIGMOID, SOFTPLUS, TANH, clean_name,
                                       saturation_kind, unwatched, watches)


def _one_step(model, *inputs, **monitor_kwargs):
    with Monitor(model, **monitor_kwargs) as mon:
        out = model(*inputs)
        out = out[0] if isinstance(out, tuple) else out
        out.float().square().mean().backward()
        mon.step()
    return mon.records[0]


def _stats(t: torch.Tensor, kind: str) -> dict[str, float]:
    t = t.detach().double()
    return {"mean": float(t.mean()), "std": float(t.std(correction=0)),
            "saturation": float(saturated(t, kind).double().mean())}


def _close(stats, oracle, rel=1e-5):
    for key in ("mean", "std", "saturation"):
        assert stats[key] == pytest.approx(oracle[key], rel=rel, abs=1e-7), key


@pytest.mark.parametrize("activation, fn, kind", [("relu", F.relu, RELU),
                                                  ("gelu", F.gelu, RECTIFIER)])
def test_transformer_layer_activation_function_is_read_at_its_dropout(activation, fn, kind):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.1,
                                       activation=activation, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    assert not isinstance(model.layers[0].activation, nn.Module)   # F.relu / F.gelu
    seen = {}
    for i, lay in enumerate(model.layers):   # oracle: the activation of linear1's output
        lay.linear1.register_forward_hook(
            lambda _m, _a, out, i=i: seen.__setitem__(i, fn(out.detach()).clone()))
    record = _one_step(model, torch.randn(3, 5, 16))
    assert list(record["activation"]) == ["layers.0.activation", "layers.1.activation"]
    for i in range(2):
        _close(record["activation"][f"layers.{i}.activation"], _stats(seen[i], kind))


def test_transformer_layer_with_an_activation_module_is_watched_as_a_module():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, activation=nn.GELU(),
                                       batch_first=True)
    mon = Monitor(layer)
    assert mon.watched == ["activation"] and not mon.unwatched


def test_transformer_layer_with_an_unknown_function_is_named_unwatched():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, activation=torch.sigmoid)
    with pytest.warns(MonitorWarning, match=r"activation \(function sigmoid\)"):
        mon = Monitor(layer)
    assert mon.unwatched == ["activation (function sigmoid)"]


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU, nn.RNN])
def test_recurrent_layers_record_their_output_sequence(cell):
    torch.manual_seed(1)
    rnn = cell(4, 6, num_layers=2, batch_first=True)
    x = torch.randn(3, 7, 4)
    with torch.no_grad():
        oracle = rnn(x)[0]
    record = _one_step(rnn, x)
    _close(record["activation"][""], _stats(oracle, TANH))


def test_packed_sequences_record_the_packed_entries():
    torch.manual_seed(2)
    lstm = nn.LSTM(3, 5)
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(6, 2, 3), [6, 4])

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = lstm

        def forward(self, p):
            return self.lstm(p)[0].data

    with torch.no_grad():
        oracle = lstm(packed)[0].data
    record = _one_step(Net(), packed)
    _close(record["activation"]["lstm"], _stats(oracle, TANH))


def test_relu_rnn_uses_the_relu_rule():
    assert saturation_kind(nn.RNN(2, 2, nonlinearity="relu")) == RELU
    assert saturation_kind(nn.RNN(2, 2)) == TANH


@pytest.mark.parametrize("module, kind", [
    (nn.Sigmoid(), SIGMOID), (nn.Hardsigmoid(), SIGMOID), (nn.Tanh(), TANH),
    (nn.Softsign(), TANH), (nn.Hardtanh(), TANH), (nn.Hardtanh(0.0, 2.0), RECTIFIER),
    (nn.ReLU(), RELU), (nn.ReLU6(), RELU), (nn.Softplus(), SOFTPLUS),
    (nn.Softplus(beta=2.0), RECTIFIER), (nn.GELU(), RECTIFIER), (nn.SiLU(), RECTIFIER),
    (nn.ELU(), RECTIFIER), (nn.Mish(), RECTIFIER), (nn.LeakyReLU(), RECTIFIER)])
def test_saturation_kinds(module, kind):
    assert saturation_kind(module) == kind


def test_softplus_saturation_is_where_its_slope_is_below_one_percent():
    z = torch.linspace(-8, 2, 1001, dtype=torch.float64)
    out = F.softplus(z)
    slope = torch.sigmoid(z)             # d softplus / dz
    flagged = saturated(out, SOFTPLUS)
    # softplus(z) < 0.01 <=> z < log(e^0.01 - 1) ~ -4.60, where sigmoid(z) < ~0.00995.
    assert bool((slope[flagged] < 0.01).all()) and bool((slope[~flagged] >= 0.0099).all())


@pytest.mark.parametrize("activation", [nn.SiLU(), nn.Mish(), nn.ELU(), nn.Softplus(),
                                        nn.Hardswish(), nn.SELU(), nn.ReLU6()])
def test_common_activations_are_watched_by_default_with_exact_stats(activation):
    torch.manual_seed(3)
    linear = nn.Linear(4, 8)
    model = nn.Sequential(linear, activation)
    x = torch.randn(10, 4)
    with torch.no_grad():
        oracle = activation(linear(x))
    record = _one_step(model, x)
    _close(record["activation"]["1"], _stats(oracle, saturation_kind(activation)))


def test_hugging_face_activation_classes_match_by_name_without_transformers():
    class NewGELUActivation(nn.Module):     # the class name is what is matched
        def forward(self, x):
            return 0.5 * x * (1 + torch.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))

    model = nn.Sequential(nn.Linear(3, 3), NewGELUActivation())
    assert [w.name for w in watches(model, Monitor.__init__.__kwdefaults__[
        "activation_types"])] == ["1"]
    record = _one_step(model, torch.randn(5, 3))
    assert set(record["activation"]) == {"1"}


def test_activation_types_accept_class_names():
    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    model = nn.Sequential(nn.Linear(2, 2), Swish())
    with pytest.warns(MonitorWarning, match=r"1 \(Swish\)"):
        Monitor(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record = _one_step(model, torch.randn(3, 2), activation_types=("Swish",))
    assert set(record["activation"]) == {"1"}


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 1)

    def forward(self, x):
        return self.b(F.relu(self.a(x)))


def test_a_model_with_only_functional_activations_gets_a_warning():
    with pytest.warns(MonitorWarning, match=r"no activation of _Functional is watched.*F\.relu"):
        mon = Monitor(_Functional())
    assert mon.watched == []


def test_no_warning_when_no_activation_is_asked_for():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Monitor(_Functional(), activation_types=())


def test_unwatched_names_torch_and_custom_activation_like_modules():
    class MyActivation(nn.Module):
        def forward(self, x):
            return x

    model = nn.Sequential(nn.Linear(2, 2), nn.Threshold(0.1, 0.0), MyActivation(),
                          nn.Softmax(dim=-1), nn.Identity())
    assert unwatched(model, (nn.ReLU,)) == ["1 (Threshold)", "2 (MyActivation)"]


def test_the_warning_is_given_once_per_monitor():
    model = nn.Sequential(nn.Linear(2, 2), nn.Threshold(0.1, 0.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mon = Monitor(model, activation_types=(nn.ReLU,))
        with mon:
            for _ in range(3):
                model(torch.randn(2, 2)).sum().backward()
                mon.step()
    assert sum(issubclass(w.category, MonitorWarning) for w in caught) == 2   # two kinds


def test_clean_name_drops_compiled_wrappers_only():
    assert clean_name("_orig_mod.blocks.0._orig_mod.act") == "blocks.0.act"
    assert clean_name("_orig_mod") == ""
    assert clean_name("my_orig_mod.x") == "my_orig_mod.x"


def test_bad_activation_types_say_what_they_must_be():
    with pytest.raises(TypeError, match="nn.Module subclasses or class names"):
        Monitor(nn.Linear(2, 2), activation_types=("",))
    with pytest.raises(TypeError, match="nn.Module subclasses or class names"):
        Monitor(nn.Linear(2, 2), activation_types=[nn.ReLU])
