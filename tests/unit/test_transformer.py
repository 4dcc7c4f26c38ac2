"""Tests of gradflowkit.transformer against torch's own layers and float64 autograd."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradflowkit.tasks import ReversalTask
from gradflowkit.trainer import train
from gradflowkit.transformer import (EnsembleTransformer, deepnorm_constants,
                                     ffn_grad_norms, layer_norm_jacobian,
                                     member_token_loss, reversal_batch)


@pytest.mark.parametrize("n", [2, 5, 16])
@pytest.mark.parametrize("eps", [0.0, 1e-5, 0.3])
def test_layer_norm_jacobian_matches_autograd(n, eps):
    x = torch.randn(n, dtype=torch.float64) * 3 + 1
    g = torch.rand(n, dtype=torch.float64) + 0.5
    f = lambda v: torch.nn.functional.layer_norm(v, (n,), eps=eps) * g  # noqa: E731
    auto = torch.autograd.functional.jacobian(f, x)
    assert torch.allclose(layer_norm_jacobian(x, g, eps=eps), auto, atol=1e-12)


def test_layer_norm_jacobian_kills_mean_and_radial_directions():
    x = torch.randn(8, dtype=torch.float64) * 4
    jac = layer_norm_jacobian(x)
    z = (x - x.mean()) / x.std(unbiased=False)
    assert torch.allclose(jac @ torch.ones(8, dtype=torch.float64),
                          torch.zeros(8, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(jac @ z, torch.zeros(8, dtype=torch.float64), atol=1e-12)
    sv = torch.linalg.svdvals(jac)          # n - 2 singular values equal to 1/σ
    sigma = x.std(unbiased=False)
    assert torch.allclose(sv[:6], torch.full((6,), 1 / sigma, dtype=torch.float64))
    assert sv[6:].abs().max() < 1e-12


def test_layer_norm_jacobian_validates():
    with pytest.raises(ValueError, match="at least 2"):
        layer_norm_jacobian(torch.ones(1))
    with pytest.raises(ValueError, match="constant"):
        layer_norm_jacobian(torch.ones(4))
    with pytest.raises(ValueError, match="gain must have shape"):
        layer_norm_jacobian(torch.randn(4), torch.ones(3))


def _torch_layer(ens, member, layer, norm_first):
    """nn.TransformerEncoderLayer holding the weights of one member's layer."""
    blk = ens.blocks[layer]
    d = ens.width
    ref = nn.TransformerEncoderLayer(d, ens.heads, blk.w_1.shape[2], dropout=0.0,
                                     batch_first=True, norm_first=norm_first)
    ref = ref.double()
    with torch.no_grad():
        w = lambda k: getattr(blk, k)[member].T  # noqa: E731 - x @ W is Linear(W.T)
        b = lambda k: getattr(blk, k)[member]  # noqa: E731
        ref.self_attn.in_proj_weight.copy_(torch.cat([w("w_q"), w("w_k"), w("w_v")]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([b("b_q"), b("b_k"), b("b_v")]))
        ref.self_attn.out_proj.weight.copy_(w("w_o"))
        ref.self_attn.out_proj.bias.copy_(b("b_o"))
        ref.linear1.weight.copy_(w("w_1"))
        ref.linear1.bias.copy_(b("b_1"))
        ref.linear2.weight.copy_(w("w_2"))
        ref.linear2.bias.copy_(b("b_2"))
        for i in (1, 2):
            getattr(ref, f"norm{i}").weight.copy_(b(f"ln{i}_g"))
            getattr(ref, f"norm{i}").bias.copy_(b(f"ln{i}_b"))
    return ref


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_blocks_match_torch_encoder_layer(norm):
    ens = EnsembleTransformer([3, 4, 5], 2, 8, 2, 7, 5, norm=norm).double()
    with torch.no_grad():                      # non-trivial biases and gains
        for name, p in ens.named_parameters():
            if "_b" in name or "_g" in name or ".b_" in name:
                p.add_(0.3 * torch.randn_like(p))
    ids = torch.randint(7, (4, 5))
    logits, stream = ens(ids, keep_stream=True)
    for m in range(3):
        x = stream[0][m]
        for layer in range(2):
            ref = _torch_layer(ens, m, layer, norm == "pre").eval()
            x = ref(x)
            assert torch.allclose(x, stream[layer + 1][m], atol=1e-10)
        if norm == "pre":
            x = nn.functional.layer_norm(x, (8,)) * ens.final_g[m] + ens.final_b[m]
        out = x @ ens.head[m] + ens.head_b[m]
        assert torch.allclose(out, logits[m], atol=1e-10)


def test_deepnorm_block_and_init():
    alpha, beta = deepnorm_constants(6)
    assert math.isclose(alpha, 12 ** 0.25) and math.isclose(beta, 48 ** -0.25)
    ens = EnsembleTransformer([1, 2], 6, 16, 2, 5, 4, norm="deepnorm").double()
    plain = EnsembleTransformer([1, 2], 6, 16, 2, 5, 4, norm="post").double()
    for k in ("w_v", "w_o", "w_1", "w_2"):        # β-scaled, same draws
        assert torch.allclose(getattr(ens.blocks[2], k), beta * getattr(plain.blocks[2], k))
    for k in ("w_q", "w_k"):
        assert torch.equal(getattr(ens.blocks[2], k), getattr(plain.blocks[2], k))
    ids = torch.randint(5, (3, 4))
    _, stream = ens(ids, keep_stream=True)
    blk = ens.blocks[0]
    x = stream[0][1]
    ln = lambda v, i: (nn.functional.layer_norm(v, (16,)) * getattr(blk, f"ln{i}_g")[1]  # noqa
                       + getattr(blk, f"ln{i}_b")[1])
    ref = _torch_layer(ens, 1, 0, False)
    attn = ref.self_attn(x, x, x, need_weights=False)[0]
    y = ln(alpha * x + attn, 1)
    y = ln(alpha * y + ref.linear2(torch.relu(ref.linear1(y))), 2)
    assert torch.allclose(y, stream[1][1], atol=1e-10)


def test_members_are_their_seeds_and_independent():
    big = EnsembleTransformer([11, 12, 13], 2, 8, 2, 6, 4)
    one = EnsembleTransformer([12], 2, 8, 2, 6, 4)
    for (name, p), q in zip(big.named_parameters(), one.parameters()):
        assert torch.equal(p[1], q[0]), name
    ids = torch.randint(6, (5, 4))
    assert torch.allclose(big(ids)[1], one(ids)[0], atol=1e-6)


def test_ffn_grad_norms_match_a_loop():
    ens = EnsembleTransformer([1, 2, 3], 3, 8, 2, 6, 4, norm="post")
    ids, targets = reversal_batch(torch.Generator().manual_seed(0), 5, 4, 6)
    out = ffn_grad_norms(ens, ids, targets)
    assert out["w2"].shape == (3, 3) and out["stream_std"].shape == (3, 4)
    for m, seed in enumerate([1, 2, 3]):
        one = EnsembleTransformer([seed], 3, 8, 2, 6, 4, norm="post")
        loss = torch.nn.functional.cross_entropy(one(ids)[0].reshape(-1, 6),
                                                 targets.reshape(-1))
        loss.backward()
        want = [blk.w_2.grad.norm().item() for blk in one.blocks]
        assert np.allclose(out["w2"][m], want, rtol=1e-4)
        assert math.isclose(out["loss"][m], loss.item(), rel_tol=1e-5)


def test_member_token_loss_and_reversal():
    ids, targets = reversal_batch(torch.Generator().manual_seed(1), 4, 6, 9, members=2)
    assert ids.shape == (2, 4, 6) and torch.equal(targets[..., 0], ids[..., -1])
    logits = torch.randn(2, 4, 6, 9)
    want = [torch.nn.functional.cross_entropy(logits[m].reshape(-1, 9),
                                              targets[m].reshape(-1)) for m in range(2)]
    assert torch.allclose(member_token_loss(logits, targets), torch.stack(want))
    with pytest.raises(ValueError, match="length must be >= 2"):
        reversal_batch(torch.Generator(), 4, 1, 9)


def test_training_with_warmup_matches_torch_adam_with_lambda_lr():
    """The trainer on ReversalTask with a per-member warm-up, member by member, against
    torch.optim.Adam and LambdaLR on a copy of one member (the same batches)."""
    seeds, steps, lrs, warm = [5, 6], 4, [0.01, 0.02], [0, 3]
    ens = EnsembleTransformer(seeds, 2, 8, 2, 5, 4, norm="pre")
    task = ReversalTask(vocab=5, length=4, batch_size=4, test_size=8)
    rec = train(ens, task, steps=steps, lr=lrs, optimizer="adam", warmup=warm,
                seeds=[11, 12])
    oracle = ReversalTask(vocab=5, length=4, batch_size=4)
    oracle.start([11, 12], steps)
    for m, (seed, lr, wu) in enumerate(zip(seeds, lrs, warm)):
        one = EnsembleTransformer([seed], 2, 8, 2, 5, 4, norm="pre")
        opt = torch.optim.Adam(one.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t, wu=wu: 1.0 if wu == 0 else min(1.0, (t + 1) / wu))
        for step in range(steps):
            ids, targets = oracle.batch(step)
            opt.zero_grad()
            loss = member_token_loss(one(ids[m:m + 1]), targets[m:m + 1])[0]
            assert math.isclose(loss.item(), rec.loss[m, step], rel_tol=1e-4)
            loss.backward()
            opt.step()
            sched.step()
        for (name, p), q in zip(ens.named_parameters(), one.parameters()):
            # The key bias's true gradient is 0 (softmax ignores a constant added to a
            # query's scores); Adam blows its rounding noise up to steps of size lr.
            if not name.endswith("b_k"):
                assert torch.allclose(p[m], q[0], atol=1e-5), name
    acc = rec.metrics["test_accuracy"]
    assert acc.shape == (2,) and np.all((0 <= acc) & (acc <= 1))
    assert np.all(rec.stopped_at == -1)


def test_reversal_task_batches_and_accuracy():
    task = ReversalTask(vocab=7, length=5, batch_size=3, test_size=6)
    with pytest.raises(RuntimeError, match="start"):
        task.batch(0)
    task.start([4, 4, 9], steps=2)
    ids, targets = task.batch(1)
    assert ids.shape == (3, 3, 5) and torch.equal(targets, ids.flip(-1))
    assert torch.equal(ids[0], ids[1]) and not torch.equal(ids[0], ids[2])  # same seed
    assert int(ids.max()) < 7 and int(ids.min()) >= 0

    class Oracle(torch.nn.Module):       # answers the reversal, or a constant token
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2))

        def forward(self, x):
            right = torch.nn.functional.one_hot(x.flip(-1), 7).float()
            return torch.stack([right, torch.zeros_like(right)])

    acc = task.evaluate(Oracle())["test_accuracy"]
    ids, targets = task.test_batch()
    assert acc[0] == 1.0 and math.isclose(acc[1], float((targets == 0).double().mean()))
    with pytest.raises(ValueError, match="vocab must be >= 2"):
        ReversalTask(vocab=1, length=4)


def test_training_stops_a_diverged_member():
    ens = EnsembleTransformer([1, 2], 1, 8, 2, 5, 4, norm="post")
    with torch.no_grad():
        ens.head[1] = float("nan")             # member 1 is broken from the start
    before = [p[0].clone() for p in ens.parameters()]
    rec = train(ens, ReversalTask(5, 4, batch_size=4, test_size=4), steps=3, lr=0.01,
                optimizer="adam")
    assert rec.stopped_at.tolist() == [-1, 0] and np.isnan(rec.metrics["test_accuracy"][1])
    assert np.isnan(rec.loss[1]).all() and np.isfinite(rec.loss[0]).all()
    assert any(not torch.equal(b, p[0]) for b, p in zip(before, ens.parameters()))


def test_validation():
    with pytest.raises(ValueError, match="must divide"):
        EnsembleTransformer([1], 1, 6, 4, 5, 4)
    with pytest.raises(ValueError, match="norm must be one of"):
        EnsembleTransformer([1], 1, 8, 2, 5, 4, norm="middle")
    ens = EnsembleTransformer([1], 1, 8, 2, 5, 4)
    with pytest.raises(ValueError, match="longer than"):
        ens(torch.zeros(2, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="warmup must be integers"):
        train(ens, ReversalTask(5, 4), steps=1, lr=0.1, warmup=-1)
