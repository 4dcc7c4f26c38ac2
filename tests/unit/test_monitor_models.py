"""The Monitor on model families people train: torch's Transformer encoder (activation as a
string and as a module), LSTM and GRU models, Hugging Face GPT-2 and BERT from tiny configs
(random weights, nothing downloaded), a torchvision-layout ResNet-18; and the training
set-ups around them: gradient accumulation, GradScaler, bf16 autocast, DDP with gloo on 2
processes. Oracles: hooks and gradients read directly, all-reduced gradients, torch's own
skip of a GradScaler step."""

from __future__ import annotations

import math
import os
import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from gradflowkit.monitor import Monitor, NonFiniteGradientError
from gradflowkit.reference_models import GPTStyle, resnet18_layout

transformers = pytest.importorskip("transformers", reason="pinned in requirements.txt")


def _quiet_monitor(model, *args, **kwargs) -> Monitor:
    """A Monitor that must not warn: everything activation-like in the model is watched."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return Monitor(model, *args, **kwargs)


def _train(model, batches, loss_fn, *, every=1, optimizer=None, steps=3):
    opt = optimizer or torch.optim.AdamW(model.parameters(), lr=1e-3)
    mon = _quiet_monitor(model, opt, every=every)
    with mon:
        for step in range(steps):
            x, y = batches(step)
            opt.zero_grad()
            loss = loss_fn(model, x, y)
            mon.log(loss)
            loss.backward()
            opt.step()
    return mon


def _finite_record(record, watched):
    assert list(record["activation"]) == watched or set(record["activation"]) >= set(watched)
    values = [v for s in record["activation"].values() for v in s.values()]
    values += list(record["grad_norm"].values()) + list(record["update_ratio"].values())
    assert values and all(math.isfinite(v) for v in values)
    for stats in record["activation"].values():
        assert 0.0 <= stats["saturation"] <= 1.0


# -- torch's own families -------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["relu", "gelu", nn.GELU()])
def test_transformer_encoder_all_layers_watched(activation):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, activation=activation,
                                       batch_first=True, norm_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 3, enable_nested_tensor=False),
                          nn.Linear(32, 5))
    data = lambda step: (torch.randn(4, 10, 32), torch.randint(0, 5, (4, 10)))
    loss = lambda m, x, y: nn.functional.cross_entropy(m(x).flatten(0, 1), y.flatten())
    mon = _train(model, data, loss)
    watched = [f"0.layers.{i}.activation" for i in range(3)]
    assert mon.watched == watched
    for record in mon.records:
        _finite_record(record, watched)


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_recurrent_models_watched(cell):
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = cell(3, 16, num_layers=2, batch_first=True)
            self.head = nn.Linear(16, 1)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    data = lambda step: (torch.randn(8, 20, 3), torch.randn(8, 1))
    mon = _train(Net(), data, lambda m, x, y: (m(x) - y).square().mean())
    assert mon.watched == ["rnn"]
    for record in mon.records:
        _finite_record(record, ["rnn"])


def test_gpt_style_model_watches_the_gelu_function_of_every_block():
    torch.manual_seed(0)
    model = GPTStyle(vocab=64, width=32, layers=3, heads=2, context=16)
    data = lambda step: (_tokens(step), None)
    loss = lambda m, x, y: nn.functional.cross_entropy(m(x[:, :-1]).flatten(0, 1),
                                                       x[:, 1:].flatten())
    mon = _train(model, data, loss)
    watched = [f"blocks.layers.{i}.activation" for i in range(3)]
    assert mon.watched == watched
    for record in mon.records:
        _finite_record(record, watched)


# -- Hugging Face Transformers, tiny configs ---------------------------------------------------

def _tokens(step, vocab=64, batch=4, length=12):
    g = torch.Generator().manual_seed(step)
    return torch.randint(0, vocab, (batch, length), generator=g)


def test_hugging_face_gpt2_watches_new_gelu_with_exact_stats():
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64,
                                     n_positions=16, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    seen = {}
    for i, block in enumerate(model.transformer.h):     # oracle: the act of c_fc's output
        block.mlp.c_fc.register_forward_hook(
            lambda _m, _a, out, i=i, act=block.mlp.act: seen.__setitem__(
                i, act(out.detach()).double()))
    loss = lambda m, x, y: m(input_ids=x, labels=x).loss
    mon = _train(model, lambda s: (_tokens(s), None), loss)
    watched = ["transformer.h.0.mlp.act", "transformer.h.1.mlp.act"]
    assert mon.watched == watched
    for record in mon.records:
        _finite_record(record, watched)
    last = mon.records[-1]["activation"]
    for i in range(2):
        assert last[watched[i]]["mean"] == pytest.approx(float(seen[i].mean()), rel=1e-5)
        assert last[watched[i]]["std"] == pytest.approx(float(seen[i].std(correction=0)),
                                                        rel=1e-5)
    assert "transformer.wte.weight" in mon.records[0]["update_ratio"]


def test_hugging_face_bert_watches_gelu_and_the_pooler_tanh():
    torch.manual_seed(0)
    config = transformers.BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                                     intermediate_size=64, vocab_size=64,
                                     max_position_embeddings=16, num_labels=3)
    model = transformers.BertForSequenceClassification(config)
    loss = lambda m, x, y: m(input_ids=x, labels=y).loss
    mon = _train(model, lambda s: (_tokens(s), torch.tensor([0, 1, 2, 1])), loss)
    watched = [f"bert.encoder.layer.{i}.intermediate.intermediate_act_fn" for i in range(2)]
    watched.append("bert.pooler.activation")
    assert mon.watched == watched
    for record in mon.records:
        _finite_record(record, watched)


# -- a torchvision-layout ResNet-18 -------------------------------------------------------------

def test_resnet18_layout_records_all_17_relu_calls():
    torch.manual_seed(0)
    model = resnet18_layout(width=16)
    data = lambda step: (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    mon = _train(model, data, lambda m, x, y: nn.functional.cross_entropy(m(x), y),
                 optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    names = list(mon.records[0]["activation"])
    assert len(names) == 17 and names[0] == "2" and names[1:3] == ["4.0.relu", "4.0.relu#1"]
    for record in mon.records:
        _finite_record(record, names)


# -- training set-ups -----------------------------------------------------------------------

def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))


def test_gradient_accumulation_records_the_accumulated_gradient():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    parts = [torch.randn(8, 4) for _ in range(3)]
    with _quiet_monitor(model, opt) as mon:
        opt.zero_grad()
        for x in parts:                            # three micro-batches, one step
            (model(x).square().mean() / 3).backward()
        oracle = {n: float(p.grad.double().norm()) for n, p in model.named_parameters()}
        opt.step()
    assert mon.steps_taken == 1
    assert mon.records[0]["grad_norm"] == pytest.approx(oracle, rel=1e-6)   # a float32 norm


def test_grad_scaler_skipped_steps_are_not_steps_and_raise_no_alarm():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 127, growth_interval=1000)
    taken = 0
    with _quiet_monitor(model, opt) as mon:
        for _ in range(16):      # the scaled gradients overflow until the scale is halved
            opt.zero_grad()       # about 8 times
            scaler.scale(1e3 * model(torch.randn(8, 4)).square().mean()).backward()
            before = [p.detach().clone() for p in model.parameters()]
            scaler.step(opt)      # skips opt.step() on inf: no hook runs
            scaler.update()
            taken += any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert mon.nonfinite is None
    assert 0 < taken < 16 and mon.steps_taken == taken
    assert all(math.isfinite(v) for r in mon.records for v in r["grad_norm"].values())


def test_bf16_autocast_records_and_names_a_nan():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with _quiet_monitor(model, opt) as mon:
        for step in range(3):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(torch.randn(8, 4)).float().square().mean()
            loss.backward()
            if step == 2:
                model[2].weight.grad[0, 0] = math.nan
            before = model[2].weight.detach().clone()
            with pytest.raises(NonFiniteGradientError, match="'2.weight'") if step == 2 \
                    else _nothing():
                opt.step()
    assert torch.equal(model[2].weight.detach(), before)        # the NaN was not applied
    assert [r["step"] for r in mon.records] == [0, 1]
    assert all(0 <= r["activation"]["1"]["saturation"] <= 1 for r in mon.records)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# -- DDP with gloo, 2 processes on 127.0.0.1 --------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        model = nn.parallel.DistributedDataParallel(_mlp())
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(rank))
        with Monitor(model, opt) as mon:
            opt.zero_grad()
            model(x).square().mean().backward()
            local = [p.grad.clone() for p in model.parameters()]
            opt.step()
        # Oracle: every rank's gradient is the mean of the ranks' own gradients.
        own = _mlp()
        own(x).square().mean().backward()
        mean = [p.grad.clone() for p in own.parameters()]
        for g in mean:
            dist.all_reduce(g)
            g /= world
        torch.save({"records": mon.records, "local": local, "mean": mean,
                    "names": [n for n, _ in own.named_parameters()]}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_gloo_two_processes_norms_match_the_all_reduce(tmp_path):
    mp.spawn(_ddp_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for result in ranks:
        norms = result["records"][0]["grad_norm"]
        names = [f"module.{n}" for n in result["names"]]
        assert list(norms) == names
        for name, g in zip(names, result["mean"]):
            assert norms[name] == pytest.approx(float(g.double().norm()), rel=1e-6)
    assert ranks[0]["records"][0]["grad_norm"] == pytest.approx(
        ranks[1]["records"][0]["grad_norm"], rel=1e-12)


def test_reference_models_shapes_and_errors():
    assert resnet18_layout(width=8, classes=3)(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert GPTStyle(vocab=10, width=8, layers=1, heads=2, context=5)(
        torch.zeros(2, 5, dtype=torch.long)).shape == (2, 5, 10)
    with pytest.raises(ValueError, match="must divide width"):
        GPTStyle(width=10, heads=3)
    with pytest.raises(ValueError, match="longer than the context"):
        GPTStyle(vocab=10, width=8, layers=1, heads=2, context=4)(torch.zeros(1, 5).long())
    with pytest.raises(ValueError, match="width must be >= 1"):
        resnet18_layout(width=0)


def test_gpt_style_is_causal():
    torch.manual_seed(0)
    model = GPTStyle(vocab=10, width=8, layers=2, heads=2, context=6).eval()
    ids = torch.randint(0, 10, (1, 6))
    changed = ids.clone()
    changed[0, 4] = (ids[0, 4] + 1) % 10
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


# -- diagnose(): no false alarm on healthy models ---------------------------------------------

def _healthy_cases():
    """Each model family trained the way its users train it, at a published setting:
    AdamW at 1e-3 for the Transformers (GPT-3 Small used 6e-4, Brown et al. 2020, Table
    2.1) and SGD with momentum 0.9 at Goyal et al.'s (2017) linear scaling rule,
    0.1 x batch / 256, for the ResNet."""
    encoder_layer = nn.TransformerEncoderLayer(32, 4, 64, activation="gelu", batch_first=True,
                                               norm_first=True)
    encoder = nn.Sequential(nn.TransformerEncoder(encoder_layer, 3, enable_nested_tensor=False),
                            nn.Linear(32, 5))
    seq = lambda m, x, y: nn.functional.cross_entropy(m(x).flatten(0, 1), y.flatten())
    lm = lambda m, x, y: nn.functional.cross_entropy(m(x[:, :-1]).flatten(0, 1),
                                                     x[:, 1:].flatten())
    gpt2 = lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16, bos_token_id=0,
        eos_token_id=0))
    bert = lambda: transformers.BertForSequenceClassification(transformers.BertConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64,
        vocab_size=64, max_position_embeddings=16, num_labels=3))
    return {
        "TransformerEncoder": (lambda: encoder, lambda s: (torch.randn(4, 10, 32),
                                                           torch.randint(0, 5, (4, 10))), seq),
        "GPTStyle": (lambda: GPTStyle(vocab=64, width=32, layers=3, heads=2, context=16),
                     lambda s: (_tokens(s), None), lm),
        "HF GPT-2": (gpt2, lambda s: (_tokens(s), None),
                     lambda m, x, y: m(input_ids=x, labels=x).loss),
        "HF BERT": (bert, lambda s: (_tokens(s), torch.tensor([0, 1, 2, 1])),
                    lambda m, x, y: m(input_ids=x, labels=y).loss),
        "ResNet-18 layout": (lambda: resnet18_layout(width=16),
                             lambda s: (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))),
                             lambda m, x, y: nn.functional.cross_entropy(m(x), y)),
    }


@pytest.mark.parametrize("family", list(_healthy_cases()))
def test_diagnose_raises_no_false_alarm_on_healthy_models(family):
    torch.manual_seed(0)
    make, data, loss = _healthy_cases()[family]
    model = make()
    opt = (torch.optim.SGD(model.parameters(), lr=0.1 * 4 / 256, momentum=0.9)
           if family.startswith("ResNet") else None)
    mon = _train(model, data, loss, optimizer=opt, steps=12)
    found = mon.diagnose()
    assert [f.key for f in found] == [], mon.report()
    assert "no finding" in mon.report()
