"""gradflowkit.ensemble: S DeepMLP nets computed together must be the S nets computed alone.

Oracle: each member built as a plain DeepMLP right after torch.manual_seed(seed), run on its
own (forward, backward, batch-norm statistics), and gradflowkit.gradients / F.cross_entropy
for the per-member measurements."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradflowkit import DeepMLP, layer_profile, parameter_grad_norms
from gradflowkit.ensemble import (EnsembleMLP, member_cross_entropy, member_grad_norms,
                                  signal_profile)

SEEDS = [3, 14, 15]
CONFIGS = {
    "relu-he": dict(in_features=6, out_features=4),
    "sigmoid-xavier": dict(in_features=6, out_features=4, activation="sigmoid",
                           init="xavier", weight_scale=1.5),
    "tanh-no-stem-no-head": dict(activation="tanh", init="orthogonal"),
    "residual-1": dict(in_features=6, out_features=4, residual=True, shortcut_scale=0.9,
                       branch_scale=0.5),
    "residual-2-zero": dict(in_features=6, out_features=4, residual=True, branch_layers=2,
                            zero_init_last=True),
    "residual-2-layernorm": dict(in_features=6, out_features=4, residual=True,
                                 branch_layers=2, norm="layer", activation="gelu"),
    "residual-2-gain": dict(in_features=6, out_features=4, residual=True, branch_layers=2,
                            branch_gain=0.3),
    "batchnorm": dict(in_features=6, out_features=4, norm="batch"),
    "no-bias": dict(in_features=6, out_features=4, bias=False, activation="leaky_relu"),
}


def singles(depth, width, options, seeds=SEEDS):
    nets = []
    for s in seeds:
        torch.manual_seed(s)
        nets.append(DeepMLP(depth, width, **options).double())
    return nets


def inputs(options, batch=7, width=5):
    features = options.get("in_features") or width
    return torch.randn(batch, features, dtype=torch.float64)


@pytest.mark.parametrize("name", CONFIGS)
def test_forward_equals_each_member_alone(name):
    options = CONFIGS[name]
    ens = EnsembleMLP.build(SEEDS, 3, 5, dtype=torch.float64, **options)
    x = inputs(options)
    out = ens(x)
    for i, net in enumerate(singles(3, 5, options)):
        torch.testing.assert_close(out[i], net(x), rtol=0, atol=1e-12)
        states = ens.hidden_states(x)
        for s_ens, s_net in zip(states, net.hidden_states(x)):
            torch.testing.assert_close(s_ens[i], s_net, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", CONFIGS)
def test_gradients_equal_each_member_alone(name):
    options = CONFIGS[name]
    ens = EnsembleMLP.build(SEEDS, 3, 5, dtype=torch.float64, **options)
    x = inputs(options)
    ens(x).pow(2).mean(dim=(1, 2)).sum().backward()
    for i, net in enumerate(singles(3, 5, options)):
        net(x).pow(2).mean().backward()
        for (name_e, p_e), (name_n, p_n) in zip(ens.named_parameters(), net.named_parameters()):
            assert name_e == name_n
            torch.testing.assert_close(p_e.grad[i], p_n.grad, rtol=0, atol=1e-12)


def test_per_member_inputs():
    options = CONFIGS["relu-he"]
    ens = EnsembleMLP.build(SEEDS, 2, 5, dtype=torch.float64, **options)
    xs = torch.randn(len(SEEDS), 4, 6, dtype=torch.float64)
    out = ens(xs)
    for i, net in enumerate(singles(2, 5, options)):
        torch.testing.assert_close(out[i], net(xs[i]), rtol=0, atol=1e-12)


def test_batchnorm_running_statistics_and_eval_mode():
    options = CONFIGS["batchnorm"]
    ens = EnsembleMLP.build(SEEDS, 2, 5, dtype=torch.float64, **options)
    nets = singles(2, 5, options)
    for _ in range(3):
        x = inputs(options)
        ens(x)
        for net in nets:
            net(x)
    ens.eval()
    x = inputs(options)
    out = ens(x)
    for i, net in enumerate(nets):
        net.eval()
        torch.testing.assert_close(out[i], net(x), rtol=0, atol=1e-12)
        for key, value in net.state_dict().items():
            stacked = ens.state_dict()[key]
            torch.testing.assert_close(stacked[i] if stacked.ndim else stacked, value,
                                       rtol=0, atol=1e-12)


def test_batchnorm_needs_two_rows_in_training():
    ens = EnsembleMLP.build([0, 1], 1, 4, in_features=3, norm="batch")
    with pytest.raises(ValueError, match=r"at least 2 rows per member, got 1"):
        ens(torch.randn(1, 3))
    ens.eval()
    assert ens(torch.randn(1, 3)).shape == (2, 1, 4)


def test_float32_members_match_too():
    ens = EnsembleMLP.build(SEEDS, 4, 8, in_features=6, out_features=3)
    x = torch.randn(5, 6)
    for i, s in enumerate(SEEDS):
        torch.manual_seed(s)
        net = DeepMLP(4, 8, in_features=6, out_features=3)
        torch.testing.assert_close(ens(x)[i], net(x), rtol=1e-6, atol=1e-6)


def test_build_leaves_the_global_generator_alone_and_member_draws_nothing():
    state = torch.get_rng_state()
    ens = EnsembleMLP.build(SEEDS, 2, 4)
    assert torch.equal(torch.get_rng_state(), state)
    ens.member(1)
    assert torch.equal(torch.get_rng_state(), state)


def test_member_is_an_independent_copy():
    ens = EnsembleMLP.build(SEEDS, 2, 4, in_features=3, out_features=2, dtype=torch.float64)
    net = ens.member(2)
    assert isinstance(net, DeepMLP) and net.config == ens.config
    assert net.blocks[0].linear.weight.dtype == torch.float64
    torch.testing.assert_close(net.blocks[1].linear.weight, ens.blocks[1].linear.weight[2],
                               rtol=0, atol=0)
    with torch.no_grad():
        net.blocks[1].linear.weight.add_(1.0)
    assert not torch.equal(net.blocks[1].linear.weight, ens.blocks[1].linear.weight[2])
    rebuilt = EnsembleMLP([ens.member(i) for i in range(3)])
    x = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(rebuilt(x), ens(x), rtol=0, atol=0)


def test_member_keeps_training_mode():
    ens = EnsembleMLP.build(SEEDS, 1, 4, norm="batch")
    ens.eval()
    assert not ens.member(0).training


@pytest.mark.parametrize("call, exc, msg", [
    (lambda: EnsembleMLP([]), ValueError, r"at least one member"),
    (lambda: EnsembleMLP([torch.nn.Linear(2, 2)]), TypeError, r"member 0 must be a DeepMLP"),
    (lambda: EnsembleMLP([DeepMLP(2, 4), DeepMLP(3, 4)]), ValueError,
     r"member 1 has config .* every member needs the same config"),
    (lambda: EnsembleMLP.build([], 2, 4), ValueError, r"seeds is empty"),
    (lambda: EnsembleMLP.build([-1], 2, 4), ValueError, r"seed must be >= 0"),
    (lambda: EnsembleMLP.build([0, 1], 2, 4).member(2), IndexError,
     r"member 2 does not exist: the ensemble has 2"),
    (lambda: EnsembleMLP.build([0, 1], 2, 4)(torch.randn(3, 2, 4)), ValueError,
     r"x must have shape \(batch, features\) or \(2, batch, features\), got \(3, 2, 4\)"),
])
def test_clear_errors(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


@pytest.mark.parametrize("name", ["relu-he", "residual-2-zero", "batchnorm"])
def test_signal_profile_equals_layer_profile_per_member(name):
    options = CONFIGS[name]
    ens = EnsembleMLP.build(SEEDS, 4, 5, dtype=torch.float64, **options)
    x, y = inputs(options), torch.randint(0, 4, (7,))
    profile = signal_profile(ens, x, lambda out: member_cross_entropy(out, y))
    assert profile.shape == (len(SEEDS), 5)
    for i in range(len(SEEDS)):
        expected = layer_profile(ens.member(i), x, lambda out: F.cross_entropy(out, y)).signal
        np.testing.assert_allclose(profile[i], expected, rtol=1e-12)
    assert all(p.grad is None for p in ens.parameters())   # parameter grads untouched


def test_signal_profile_checks_its_arguments():
    ens = EnsembleMLP.build(SEEDS, 2, 4, in_features=3, out_features=2)
    with pytest.raises(ValueError, match=r"one loss per member, shape \(3,\), got \(\)"):
        signal_profile(ens, torch.randn(4, 3), lambda out: out.sum())
    with pytest.raises(TypeError, match=r"must be an EnsembleMLP, got DeepMLP"):
        signal_profile(DeepMLP(2, 4), torch.randn(4, 4), lambda out: out.sum())


def test_member_grad_norms_equal_each_members_parameter_grad_norms():
    options = CONFIGS["residual-2-layernorm"]
    ens = EnsembleMLP.build(SEEDS, 2, 5, dtype=torch.float64, **options)
    x, y = inputs(options), torch.randint(0, 4, (7,))
    member_cross_entropy(ens(x), y).sum().backward()
    norms = member_grad_norms(ens)
    for i, net in enumerate(singles(2, 5, options)):
        F.cross_entropy(net(x), y).backward()
        for name, value in parameter_grad_norms(net).items():
            assert norms[name][i] == pytest.approx(value, rel=1e-12)


def test_member_cross_entropy_is_per_member_mean_cross_entropy():
    out = torch.randn(3, 5, 4, dtype=torch.float64)
    shared = torch.randint(0, 4, (5,))
    own = torch.randint(0, 4, (3, 5))
    got_shared, got_own = member_cross_entropy(out, shared), member_cross_entropy(out, own)
    for i in range(3):
        assert got_shared[i].item() == pytest.approx(F.cross_entropy(out[i], shared).item())
        assert got_own[i].item() == pytest.approx(F.cross_entropy(out[i], own[i]).item())
