"""Tests of the ensemble and after-addition-ReLU helpers of gradflowkit.residual.

Oracles: single nets (EnsembleMLP.member) measured with the single-net helpers
(stream_norms, signal_stats) or with autograd directly, a hand-written loop of the
original ResNet block relu(x + F(x)), and fresh EnsembleMLP.build calls for reconfigure.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradflowkit import DeepMLP
from gradflowkit.ensemble import EnsembleMLP
from gradflowkit.propagation import signal_stats
from gradflowkit.residual import (member_signal_stats, member_stream_norms,
                                  post_relu_outputs, reconfigure, stream_norms)


def _ensemble(**options):
    return EnsembleMLP.build([3, 4, 5], depth=5, width=6, **options)


@pytest.mark.parametrize("options", [dict(), dict(residual=True, branch_layers=2),
                                     dict(residual=True, in_features=4),
                                     dict(residual=True, norm="batch")])
def test_member_stream_norms_match_single_nets(options):
    ens = _ensemble(**options)
    x = torch.randn(7, options.get("in_features", 6))
    got = member_stream_norms(ens, x)
    assert got.shape == (3, 6) and got.dtype == np.float64
    for i in range(3):
        np.testing.assert_allclose(got[i], stream_norms(ens.member(i), x), rtol=1e-5)


def test_member_stream_norms_per_member_inputs():
    ens = _ensemble(residual=True)
    x = torch.randn(3, 7, 6)
    got = member_stream_norms(ens, x)
    for i in range(3):
        np.testing.assert_allclose(got[i], stream_norms(ens.member(i), x[i]), rtol=1e-5)


@pytest.mark.parametrize("options", [dict(residual=True), dict(),
                                     dict(residual=True, norm="batch", branch_layers=2)])
def test_member_signal_stats_match_signal_stats(options):
    ens = _ensemble(**options)
    x = torch.randn(8, 6)
    got = member_signal_stats(ens, x, generator=torch.Generator().manual_seed(9))
    gen = torch.Generator().manual_seed(9)     # member i: the i-th draw of the generator
    for i in range(3):
        want = signal_stats(ens.member(i), x, generator=gen)
        np.testing.assert_allclose(got.forward[i], want.forward, rtol=1e-5)
        np.testing.assert_allclose(got.backward[i], want.backward, rtol=1e-4)


def test_member_signal_stats_autograd_oracle_float64():
    ens = EnsembleMLP.build([1, 2], depth=4, width=5, residual=True, dtype=torch.float64)
    x = torch.randn(6, 5, dtype=torch.float64)
    seed = torch.randn(2, 6, 5, dtype=torch.float64)
    got = member_signal_stats(ens, x, grad_output=seed)
    for i in range(2):
        net = ens.member(i)
        states = net.hidden_states(x.clone().requires_grad_(True))
        grads = torch.autograd.grad(states[-1], states[:-1], grad_outputs=seed[i])
        want = [g.std(correction=0).item() for g in grads] + [seed[i].std(correction=0).item()]
        np.testing.assert_allclose(got.backward[i], want, rtol=1e-12)
        np.testing.assert_allclose(got.mean_square[i],
                                   [(h ** 2).mean().item() for h in states], rtol=1e-12)
        np.testing.assert_allclose(got.forward[i],
                                   [h.std(correction=0).item() for h in states], rtol=1e-12)


def test_member_helpers_reject_single_nets_and_bad_gradients():
    with pytest.raises(TypeError, match="EnsembleMLP"):
        member_stream_norms(DeepMLP(2, 3), torch.randn(2, 3))
    ens = _ensemble(residual=True)
    with pytest.raises(ValueError, match="shape"):
        member_signal_stats(ens, torch.randn(4, 6), grad_output=torch.randn(3, 5, 6))


def test_post_relu_outputs_loop_oracle(float64):
    torch.manual_seed(0)
    net = DeepMLP(6, 5, residual=True, branch_layers=2, branch_scale=0.7,
                  shortcut_scale=0.9).double()
    x = torch.randn(4, 5)
    states, branches = post_relu_outputs(net, x)
    h = x
    for i, block in enumerate(net.blocks):     # relu(λ x + s W2 relu(W1 x + b1) + s b2)
        w1, b1 = block.linear.weight, block.linear.bias
        w2, b2 = block.linear2.weight, block.linear2.bias
        f = 0.7 * (torch.relu(h @ w1.T + b1) @ w2.T + b2)
        torch.testing.assert_close(branches[i], f.detach())
        h = torch.relu(0.9 * h + f).detach()
        torch.testing.assert_close(states[i + 1], h)
    assert all((s >= 0).all() for s in states[1:])


def test_post_relu_outputs_differs_from_identity_form():
    torch.manual_seed(0)
    net = DeepMLP(3, 8, residual=True).double()
    x = torch.randn(5, 8, dtype=torch.float64)
    post, _ = post_relu_outputs(net, x)
    assert not torch.allclose(post[-1], net(x).detach())
    with pytest.raises(ValueError, match="not residual"):
        post_relu_outputs(DeepMLP(2, 3), torch.randn(2, 3))


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("changes, options", [
    (dict(depth=3), dict(residual=True)),
    (dict(depth=2, branch_scale=0.5), dict(residual=True, branch_layers=2)),
    (dict(shortcut_scale=0.9, branch_scale=0.1), dict(residual=True, norm="batch")),
    (dict(depth=2), dict(in_features=3)),                  # plain, with a stem
    (dict(norm="batch"), dict(residual=True)),
    (dict(depth=3, norm="layer", branch_scale=0.2), dict(residual=True, branch_layers=2)),
    (dict(norm=None), dict(residual=True, norm="batch")),
])
def test_reconfigure_equals_a_fresh_build(changes, options):
    seeds = [7, 8]
    ens = EnsembleMLP.build(seeds, 5, 6, **options)
    new = reconfigure(ens, **changes)
    fresh_options = dict(options, **{k: v for k, v in changes.items() if k != "depth"})
    fresh = EnsembleMLP.build(seeds, changes.get("depth", 5), 6, **fresh_options)
    assert new.config == fresh.config and _same_state(new, fresh)
    x = torch.randn(4, options.get("in_features", 6))
    torch.testing.assert_close(new(x), fresh(x), rtol=0, atol=0)
    assert _same_state(new, fresh)            # also the batch-norm running statistics
    assert len(ens.blocks) == 5 and ens.config.depth == 5        # the original is intact
    assert new.blocks[0].linear.weight is ens.blocks[0].linear.weight   # shared tensors
    if "branch_scale" in changes:
        assert ens.blocks[0].branch_scale == ens.config.branch_scale == 1.0


def test_reconfigure_zero_init_last_keeps_the_other_weights():
    ens = EnsembleMLP.build([7, 8], 5, 6, residual=True, branch_layers=2)
    new = reconfigure(ens, depth=4, zero_init_last=True)
    assert new.config.zero_init_last and new.config.depth == 4
    old, got = ens.state_dict(), new.state_dict()
    for key, value in got.items():
        if ".linear2." in key:                    # zeroed (biases start at zero anyway)
            assert torch.count_nonzero(value) == 0
            assert key.endswith("bias") or torch.count_nonzero(old[key]) > 0
        else:
            assert torch.equal(value, old[key])
    x = torch.randn(3, 6)
    assert torch.equal(new(x), x.expand(2, 3, 6))               # every block: identity
    assert torch.count_nonzero(ens.blocks[0].linear2.weight) > 0    # model not zeroed
    assert ens.state_dict().keys() == old.keys() and not ens.config.zero_init_last


def test_reconfigure_refuses_bad_depths():
    ens = EnsembleMLP.build([1], 3, 4, residual=True)
    with pytest.raises(ValueError, match="at most"):
        reconfigure(ens, depth=4)
    headed = EnsembleMLP.build([1], 3, 4, residual=True, out_features=2)
    with pytest.raises(ValueError, match="head"):
        reconfigure(headed, depth=2)
    assert reconfigure(headed, branch_scale=0.5).config.branch_scale == 0.5
