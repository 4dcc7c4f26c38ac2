"""gradflowkit.gradients.member_backward_signals / prefix_signal_profile and the ensemble
form of gradflowkit.saturation (slope_profile, preactivations, variant).

Oracles: each member as a plain DeepMLP (EnsembleMLP.member), cut to the first `depth`
blocks by hand, measured with input_gradients (autograd) and slope_profile; nets built
from the same seeds with the other options (EnsembleMLP.build / DeepMLP)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradflowkit import DeepMLP, input_gradients
from gradflowkit.ensemble import EnsembleMLP, member_cross_entropy, signal_profile
from gradflowkit.gradients import member_backward_signals, prefix_signal_profile
from gradflowkit.saturation import preactivations, slope_profile, variant

SEEDS = [5, 8, 13]
OPTIONS = dict(in_features=6, out_features=3, activation="tanh", init="xavier")


def _cut(member: DeepMLP, depth: int) -> DeepMLP:
    """Oracle: a DeepMLP of `depth` blocks holding the member's stem, first blocks, head."""
    cfg = member.config
    options = {k: v for k, v in cfg.__dict__.items() if k not in ("depth", "width")}
    net = DeepMLP(depth, cfg.width, **options).double()
    if member.stem is not None:
        net.stem.load_state_dict(member.stem.state_dict())
    for mine, theirs in zip(net.blocks, member.blocks[:depth]):
        mine.load_state_dict(theirs.state_dict())
    net.head.load_state_dict(member.head.state_dict())
    return net


@pytest.mark.parametrize("depth", [2, 5])
@pytest.mark.parametrize("options", [OPTIONS, dict(OPTIONS, in_features=7),
                                     dict(OPTIONS, residual=True, activation="relu")])
def test_member_signals_equal_each_cut_member_alone(depth, options):
    ens = EnsembleMLP.build(SEEDS, 5, 6, dtype=torch.float64, **options)
    x = torch.randn(4, options["in_features"], dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1])
    grads = member_backward_signals(ens, x, lambda out: member_cross_entropy(out, y),
                                    depth=depth)
    assert len(grads) == depth + 1 and grads[0].shape == (3, 4, 6)
    norms = prefix_signal_profile(ens, x, lambda out: member_cross_entropy(out, y),
                                  depth=depth)
    assert norms.shape == (3, depth + 1)
    for i in range(len(SEEDS)):
        net = _cut(ens.member(i), depth)
        modules = {f"b{k}": b for k, b in enumerate(net.blocks)} | {"head": net.head}
        ref = list(input_gradients(net, x, lambda out: F.cross_entropy(out, y),
                                   modules).values())
        for g, r in zip(grads, ref):
            torch.testing.assert_close(g[i], r, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(norms[i], [float(r.norm()) for r in ref], rtol=1e-10)


def test_full_depth_equals_signal_profile():
    ens = EnsembleMLP.build(SEEDS, 4, 6, **OPTIONS)
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 0, 1])
    loss = lambda out: member_cross_entropy(out, y)  # noqa: E731
    np.testing.assert_allclose(prefix_signal_profile(ens, x, loss),
                               signal_profile(ens, x, loss), rtol=1e-6)


def test_member_signals_reject_bad_arguments():
    ens = EnsembleMLP.build(SEEDS, 3, 6, **OPTIONS)
    x, y = torch.randn(2, 6), torch.tensor([0, 1])
    loss = lambda out: member_cross_entropy(out, y)  # noqa: E731
    with pytest.raises(ValueError, match="depth must be between 1 and"):
        member_backward_signals(ens, x, loss, depth=4)
    with pytest.raises(ValueError, match="inputs must have shape"):
        member_backward_signals(ens, torch.randn(2, 2, 6), loss)
    with pytest.raises(ValueError, match="one loss per member"):
        member_backward_signals(ens, x, lambda out: out.sum())
    with pytest.raises(TypeError, match="must be an EnsembleMLP"):
        member_backward_signals(ens.member(0), x, loss)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_ensemble_slope_profile_is_each_members(float64, activation):
    ens = EnsembleMLP.build(SEEDS, 4, 6, dtype=torch.float64, in_features=6,
                            activation=activation, init="normal", weight_scale=3.0)
    x = torch.randn(9, 6)
    profile = slope_profile(ens, x, threshold=0.05)
    zs = preactivations(ens, x)
    assert profile.mean.shape == profile.rms.shape == profile.saturated.shape == (3, 4)
    assert zs[0].shape == (3, 9, 6)
    for i in range(len(SEEDS)):
        ref = slope_profile(ens.member(i), x, threshold=0.05)
        np.testing.assert_allclose(profile.mean[i], ref.mean, rtol=1e-12)
        np.testing.assert_allclose(profile.rms[i], ref.rms, rtol=1e-12)
        np.testing.assert_array_equal(profile.saturated[i], ref.saturated)
        for z, z_ref in zip(zs, preactivations(ens.member(i), x)):
            torch.testing.assert_close(z[i], z_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [0.5, 2.0, 4.0, 1.7])
def test_variant_is_the_net_built_with_those_options(scale):
    base = EnsembleMLP.build(SEEDS, 3, 6, **dict(OPTIONS, activation="sigmoid",
                                                 init="normal"))
    new = variant(base, activation="tanh", weight_scale=scale)
    ref = EnsembleMLP.build(SEEDS, 3, 6, **dict(OPTIONS, activation="tanh", init="normal",
                                                weight_scale=scale))
    assert new.config == ref.config
    for (name, a), b in zip(new.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), name                   # the same draws, bit for bit
    x = torch.randn(4, 6)
    assert torch.equal(new(x), ref(x))
    assert base.config.activation == "sigmoid" and base.config.weight_scale == 1.0
    torch.testing.assert_close(base(x), EnsembleMLP.build(
        SEEDS, 3, 6, **dict(OPTIONS, activation="sigmoid", init="normal"))(x))


def test_variant_of_a_single_net_and_errors():
    torch.manual_seed(3)
    net = DeepMLP(3, 5, activation="tanh", init="xavier")
    torch.manual_seed(3)
    ref = DeepMLP(3, 5, activation="relu", init="xavier", weight_scale=2.0)
    new = variant(net, activation="relu", weight_scale=2.0)
    x = torch.randn(2, 5)
    assert torch.equal(new(x), ref(x)) and isinstance(new.blocks[0].act, torch.nn.ReLU)
    with pytest.raises(ValueError, match="activation"):
        variant(net, activation="swish")
    with pytest.raises(ValueError, match="weight_scale"):
        variant(net, weight_scale=-1.0)
    with pytest.raises(ValueError, match="carry no draws"):
        variant(DeepMLP(2, 4, weight_scale=0.0), weight_scale=1.0)
    with pytest.raises(TypeError, match="DeepMLP or an EnsembleMLP"):
        variant(torch.nn.Linear(2, 2), activation="tanh")


def test_member_relative_change_is_each_members(float64):
    from gradflowkit.gradients import member_relative_change
    from gradflowkit.training import relative_change, snapshot

    ens = EnsembleMLP.build(SEEDS, 3, 6, dtype=torch.float64, **OPTIONS)
    before = snapshot(ens)
    members_before = [snapshot(ens.member(i)) for i in range(len(SEEDS))]
    with torch.no_grad():
        for p in ens.parameters():
            p.add_(0.1 * torch.randn_like(p))
    change = member_relative_change(before, ens)
    for i in range(len(SEEDS)):
        ref = relative_change(members_before[i], ens.member(i))
        for name in ("blocks.0.linear.weight", "head.weight"):
            assert change[name][i] == pytest.approx(ref[name], rel=1e-12)
    assert np.all(np.isinf(change["blocks.0.linear.bias"]))   # zero bias that moved
    with pytest.raises(KeyError, match="no parameters"):
        member_relative_change({"nope": torch.zeros(3, 2)}, ens)
