"""Unit tests of gradflowkit.nets: DeepMLP structure, NetConfig checks, and each block's
output against the formula computed by hand from its weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradflowkit.activations import ACTIVATIONS, activate
from gradflowkit.nets import NORMS, DeepMLP, NetConfig


def _manual_branch(block, x, activation, norm):
    """F(x) of a block, from its weights: f(N(W1 x + b1)), then W2 h + b2 if present."""
    lin = block.linear
    z = x @ lin.weight.T + (lin.bias if lin.bias is not None else 0)
    if norm == "layer":
        z = F.layer_norm(z, (z.shape[-1],), block.norm.weight, block.norm.bias, block.norm.eps)
    elif norm == "batch":  # training mode: batch statistics, biased variance
        mean, var = z.mean(0), z.var(0, unbiased=False)
        z = (z - mean) / torch.sqrt(var + block.norm.eps) * block.norm.weight + block.norm.bias
    h = activate(activation, z)
    if block.linear2 is not None:
        h = h @ block.linear2.weight.T + (block.linear2.bias if block.linear2.bias is not None
                                          else 0)
    return h


def _randomize_(model, seed=0):
    """Give every parameter (biases, norm affine too) a random value so no term is zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


# --- structure ---------------------------------------------------------------------------

@pytest.mark.parametrize("depth, width, in_f, out_f", [
    (1, 4, None, None), (3, 8, 5, 2), (2, 6, 6, None), (4, 3, None, 10),
])
def test_shapes(depth, width, in_f, out_f, seeded):
    net = DeepMLP(depth, width, in_features=in_f, out_features=out_f)
    x = torch.randn(7, in_f or width)
    assert net(x).shape == (7, out_f or width)
    assert len(net.blocks) == depth
    assert (net.stem is None) == (in_f is None or in_f == width)
    assert (net.head is None) == (out_f is None)


def test_parameter_names_plain():
    net = DeepMLP(3, 8, in_features=5, out_features=2)
    names = [n for n, _ in net.named_parameters()]
    assert names == ["stem.weight", "stem.bias",
                     "blocks.0.linear.weight", "blocks.0.linear.bias",
                     "blocks.1.linear.weight", "blocks.1.linear.bias",
                     "blocks.2.linear.weight", "blocks.2.linear.bias",
                     "head.weight", "head.bias"]
    shapes = dict((n, tuple(p.shape)) for n, p in net.named_parameters())
    assert shapes["stem.weight"] == (8, 5)
    assert shapes["blocks.1.linear.weight"] == (8, 8)
    assert shapes["head.weight"] == (2, 8)


def test_parameter_names_residual_two_layers_with_norm_no_bias():
    net = DeepMLP(2, 4, residual=True, branch_layers=2, norm="layer", bias=False)
    names = {n for n, _ in net.named_parameters()}
    assert names == {f"blocks.{i}.{m}" for i in range(2)
                     for m in ("linear.weight", "norm.weight", "norm.bias", "linear2.weight")}


@pytest.mark.parametrize("norm, cls", [(None, nn.Identity), ("batch", nn.BatchNorm1d),
                                       ("layer", nn.LayerNorm)])
def test_norm_modules(norm, cls):
    net = DeepMLP(2, 4, norm=norm)
    assert all(type(b.norm) is cls for b in net.blocks)
    assert NORMS == (None, "batch", "layer")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_each_block_has_a_fresh_activation(name):
    net = DeepMLP(3, 4, activation=name)
    acts = [b.act for b in net.blocks]
    assert len({id(a) for a in acts}) == 3


def test_config_is_stored_and_frozen():
    net = DeepMLP(2, 4, activation="tanh", init="xavier", residual=True, branch_scale=0.5)
    assert net.config == NetConfig(depth=2, width=4, activation="tanh", init="xavier",
                                   residual=True, branch_scale=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        net.config.depth = 3


# --- initialization of the blocks --------------------------------------------------------

@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_blocks_use_the_configured_orthogonal_init_and_scale(scale, float64):
    net = DeepMLP(3, 16, init="orthogonal", weight_scale=scale)
    for b in net.blocks:
        w = b.linear.weight.detach()
        torch.testing.assert_close(w.T @ w, scale**2 * torch.eye(16), rtol=0, atol=1e-12)
        assert torch.count_nonzero(b.linear.bias) == 0


def test_init_zeros_gives_zero_blocks_but_a_nonzero_stem_and_head(seeded):
    net = DeepMLP(2, 4, in_features=3, out_features=2, init="zeros")
    assert all(torch.count_nonzero(b.linear.weight) == 0 for b in net.blocks)
    assert torch.count_nonzero(net.stem.weight) > 0
    assert torch.count_nonzero(net.head.weight) > 0


def test_seeded_construction_is_reproducible():
    torch.manual_seed(0)
    a = DeepMLP(3, 5, in_features=4, out_features=2)
    torch.manual_seed(0)
    b = DeepMLP(3, 5, in_features=4, out_features=2)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and torch.equal(pa, pb)


# --- block formulas ----------------------------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("norm", NORMS)
def test_plain_block_is_f_of_norm_of_affine(activation, norm, float64):
    net = DeepMLP(2, 5, activation=activation, norm=norm)
    _randomize_(net, seed=1)
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(2))
    for block in net.blocks:
        torch.testing.assert_close(block(x), _manual_branch(block, x, activation, norm))


@pytest.mark.parametrize("branch_layers", [1, 2])
@pytest.mark.parametrize("shortcut_scale, branch_scale", [(1.0, 1.0), (0.5, 2.0), (0.0, 0.3),
                                                          (-1.0, 1 / 3)])
@pytest.mark.parametrize("norm", NORMS)
def test_residual_block_formula(branch_layers, shortcut_scale, branch_scale, norm, float64):
    net = DeepMLP(2, 5, activation="tanh", residual=True, branch_layers=branch_layers,
                  shortcut_scale=shortcut_scale, branch_scale=branch_scale, norm=norm)
    _randomize_(net, seed=3)
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(4))
    for block in net.blocks:
        expected = shortcut_scale * x + branch_scale * _manual_branch(block, x, "tanh", norm)
        torch.testing.assert_close(block(x), expected)
    assert (net.blocks[0].linear2 is None) == (branch_layers == 1)


def test_forward_is_stem_blocks_head_by_hand(float64):
    net = DeepMLP(3, 4, in_features=6, out_features=2, activation="gelu", residual=True,
                  branch_layers=2, branch_scale=0.7)
    _randomize_(net, seed=5)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(6))
    h = x @ net.stem.weight.T + net.stem.bias
    for block in net.blocks:
        h = h + 0.7 * _manual_branch(block, h, "gelu", None)
    expected = h @ net.head.weight.T + net.head.bias
    torch.testing.assert_close(net(x), expected)


@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS if a != "sigmoid"])
@pytest.mark.parametrize("branch_layers", [1, 2])
@pytest.mark.parametrize("norm", NORMS)
def test_zero_init_last_makes_each_residual_block_the_identity(activation, branch_layers,
                                                                norm, float64):
    net = DeepMLP(4, 6, activation=activation, residual=True, branch_layers=branch_layers,
                  zero_init_last=True, norm=norm, weight_scale=3.0)
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(7))
    for block in net.blocks:
        last = block.linear2 if branch_layers == 2 else block.linear
        assert torch.count_nonzero(last.weight) == 0 and torch.count_nonzero(last.bias) == 0
        torch.testing.assert_close(block(x), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(net(x), x, rtol=0, atol=1e-12)
    if branch_layers == 2:  # the first layer of the branch keeps its random init
        assert torch.count_nonzero(net.blocks[0].linear.weight) > 0


def test_zero_init_last_with_shortcut_scale_is_that_multiple(float64):
    net = DeepMLP(3, 4, residual=True, branch_layers=2, zero_init_last=True, shortcut_scale=0.5)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(net(x), 0.125 * x, rtol=0, atol=1e-12)


def test_zero_init_last_sigmoid_with_two_branch_layers_is_the_identity(float64):
    net = DeepMLP(2, 4, activation="sigmoid", residual=True, branch_layers=2,
                  zero_init_last=True)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(net(x), x, rtol=0, atol=1e-12)


# --- hidden_states -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    dict(), dict(in_features=3, out_features=2), dict(residual=True, norm="layer"),
])
def test_hidden_states_are_the_block_inputs_and_last_output(kwargs, float64):
    net = DeepMLP(4, 5, **kwargs)
    _randomize_(net, seed=10)
    x = torch.randn(6, kwargs.get("in_features", 5), generator=torch.Generator().manual_seed(1))
    states = net.hidden_states(x)
    assert len(states) == 4 + 1
    assert all(s.shape == (6, 5) for s in states)
    first = x if net.stem is None else net.stem(x)
    torch.testing.assert_close(states[0], first)
    for i, block in enumerate(net.blocks):
        torch.testing.assert_close(states[i + 1], block(states[i]))
    out = net.head(states[-1]) if net.head is not None else states[-1]
    torch.testing.assert_close(out, net(x))
    assert states[-1].requires_grad  # still in the autograd graph


# --- NetConfig.validate and DeepMLP's argument errors --------------------------------------

@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(depth=0), ValueError, r"^depth must be >= 1"),
    (dict(depth=2.0), TypeError, r"^depth must be an int"),
    (dict(width=0), ValueError, r"^width must be >= 1"),
    (dict(in_features=0), ValueError, r"^in_features must be >= 1"),
    (dict(out_features=-1), ValueError, r"^out_features must be >= 1"),
    (dict(activation="swish"), ValueError, r"^activation must be one of .*'gelu'"),
    (dict(init="kaiming"), ValueError, r"^init must be one of .*'orthogonal'"),
    (dict(weight_scale=-1.0), ValueError, r"^weight_scale must be >= 0"),
    (dict(shortcut_scale=float("nan")), ValueError, r"^shortcut_scale must be finite"),
    (dict(branch_scale="1"), TypeError, r"^branch_scale must be a real number"),
    (dict(residual=True, branch_layers=3), ValueError, r"^branch_layers must be 1 or 2"),
    (dict(residual=True, branch_layers=0), ValueError, r"^branch_layers must be >= 1"),
    (dict(norm="group"), ValueError, r"^norm must be one of None, 'batch', 'layer'"),
    (dict(branch_layers=2), ValueError, r"branch_layers, zero_init_last and branch_gain apply "
                                        r"only to residual"),
    (dict(zero_init_last=True), ValueError, r"zero_init_last and branch_gain apply only"),
    (dict(branch_gain=0.0), ValueError, r"zero_init_last and branch_gain apply only"),
    (dict(residual=True, branch_gain="0"), TypeError, r"^branch_gain must be a real number"),
    (dict(residual=True, zero_init_last=True, activation="sigmoid"), ValueError,
     r"zero_init_last with branch_layers=1 and activation='sigmoid'"),
])
def test_bad_config(kwargs, exc, msg):
    full = dict(depth=2, width=4) | kwargs
    with pytest.raises(exc, match=msg):
        NetConfig(**full).validate()
    with pytest.raises(exc, match=msg):
        DeepMLP(**full)


def test_validate_returns_self():
    cfg = NetConfig(depth=1, width=1)
    assert cfg.validate() is cfg


def test_unknown_option_is_a_type_error_listing_the_allowed_ones():
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['activaton'\]; allowed: .*"
                                        r"activation.*zero_init_last"):
        DeepMLP(2, 4, activaton="tanh")
