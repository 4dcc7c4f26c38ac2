"""Tests of gradflowkit.diagnosis: the table's data, each rule on hand-built records (just
above and just below its threshold), and real monitored runs of lesson 16's setups.

The real runs draw from ``gradflowkit.seeding``, so they follow ``GRADFLOW_SEED``: what they
assert must hold for any seed (checked for 0-9; the margins are in the comments).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from gradflowkit import DeepMLP
from gradflowkit import diagnosis as dg
from gradflowkit.data import load_digits
from gradflowkit.diagnosis import (CHECKED_KEYS, LESSON_DOCS, SYMPTOMS, Finding, Findings,
                                   diagnose, diagnose_monitor, lesson_number, lesson_path,
                                   lesson_url, module_kinds, plain_text, report,
                                   symptom_table_markdown)
from gradflowkit.monitor import Monitor
from gradflowkit.nets import InplaceResidualMLP
from gradflowkit.seeding import generator, seed_all

ROOT = Path(__file__).resolve().parents[2]
TARGET = re.compile(r"^\(([a-z0-9-]+)\)=\s*$", re.M)

# -- the table and its links --------------------------------------------------------------


def lesson_targets() -> dict[str, str]:
    """Oracle: every ``(label)=`` target of lessons/*.md, with its document."""
    targets = {}
    for path in sorted((ROOT / "lessons").glob("*.md")):
        for label in TARGET.findall(path.read_text(encoding="utf8")):
            targets[label] = f"lessons/{path.stem}"
    return targets


def test_lesson_labels_are_the_lessons_targets():
    targets = lesson_targets()
    lesson_labels = {k: v for k, v in targets.items() if k.startswith("lesson-")}
    assert LESSON_DOCS == lesson_labels        # a renamed label or file fails here
    cited = {label for s in SYMPTOMS for label in s.lessons}
    assert cited <= set(targets), f"not a target in lessons/*.md: {cited - set(targets)}"


def test_book_url_is_the_pages_address_of_the_configured_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)/?",
                         config["repository"]["url"])
    assert match, config["repository"]["url"]
    assert dg.BOOK_URL == f"https://{match[1]}.github.io/{match[2]}/"


def test_lesson_path_url_and_number():
    assert lesson_path("lesson-init") == "lessons/06-initialization.md"
    assert (ROOT / lesson_path("lesson-init")).is_file()
    assert lesson_url("lesson-init") == (dg.BOOK_URL
                                         + "lessons/06-initialization.html#lesson-init")
    assert lesson_url("lesson-diagnose", base="") == "lessons/16-diagnose.html#lesson-diagnose"
    assert [lesson_number(label) for label in LESSON_DOCS] == list(range(1, 21))
    with pytest.raises(ValueError, match="unknown lesson label 'lesson-nope'"):
        lesson_path("lesson-nope")


def test_symptom_rows_are_well_formed():
    keys = [s.key for s in SYMPTOMS]
    assert len(keys) == len(set(keys))
    assert set(CHECKED_KEYS) <= set(keys)
    assert all(s.symptom and s.cause and s.fix and s.lessons for s in SYMPTOMS)


def test_table_has_one_row_per_symptom_with_its_cells():
    lines = symptom_table_markdown().splitlines()
    assert lines[0] == "| Symptom | Likely cause | Fix | Lessons |"
    assert lines[1] == "|---|---|---|---|"
    assert len(lines) == 2 + len(SYMPTOMS)
    for line, s in zip(lines[2:], SYMPTOMS):
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert cells[:3] == [s.symptom, s.cause, s.fix]
        assert re.findall(r"\{ref\}`([^`]+)`", cells[3]) == list(s.lessons)


def test_lesson_16_renders_the_table_from_the_data():
    text = (ROOT / "lessons/16-diagnose.md").read_text(encoding="utf8")
    assert "Markdown(symptom_table_markdown())" in text
    assert "markdown_format: myst" in text        # else MyST-NB reads it as CommonMark
    assert "| Symptom | Likely cause |" not in text   # no hand-written copy left


@pytest.mark.parametrize("myst, text", [
    (r"the slope factor $\sigma' \le 1/4$ per layer", "the slope factor σ' ≤ 1/4 per layer"),
    ("some {term}`dead <dead unit>`, from", "some dead, from"),
    ("{term}`vanishing gradient`: gains $< 1$", "vanishing gradient: gains < 1"),
    (r"branch scale $1/\sqrt{L}$", "branch scale 1/√L"),
    (r"$\ln(\text{classes})$", "ln(classes)"),
    ("near $10^{-2}$ or higher", "near 10^-2 or higher"),
])
def test_plain_text(myst, text):
    assert plain_text(myst) == text


def test_plain_text_of_every_cell_has_no_markup():
    for s in SYMPTOMS:
        for cell in (s.symptom, s.cause, s.fix):
            assert not set(plain_text(cell)) & set("$\\{}`"), plain_text(cell)


# -- hand-built records: each rule just above (one finding) and just below (none) -----------

WEIGHTS = ["l0.weight", "l1.weight", "l2.weight", "l3.weight"]
SHAPES = {n: s for w in WEIGHTS for n, s in ((w, (4, 4)), (w.replace("weight", "bias"), (4,)))}
ACTS = ["a0", "a1", "a2"]


def records(n=12, *, grad=None, rho=None, sat=None, std=None, loss=None):
    """``n`` healthy records; each keyword is ``f(i) -> {name: value}`` overriding them."""
    out = []
    for i in range(n):
        g = {name: 1.0 for name in SHAPES}                 # biases too: never compared
        r = {w: -3.0 for w in WEIGHTS}
        act = {a: {"mean": 0.5, "std": 1.0, "saturation": 0.5} for a in ACTS}
        g.update(grad(i) if grad else {})
        r.update(rho(i) if rho else {})
        for a, v in (sat(i) if sat else {}).items():
            act[a]["saturation"] = v
        for a, v in (std(i) if std else {}).items():
            act[a]["std"] = v
        out.append({"step": 5 * i, "loss": loss(i) if loss else 2.3 - 0.01 * i,
                    "grad_norm": g, "activation": act, "update_ratio": r})
    return out


def keys_of(recs, *, kinds="relu", **kwargs):
    kinds = {a: kinds for a in ACTS} if isinstance(kinds, str) else kinds
    found = diagnose(recs, parameter_shapes=SHAPES, activation_kinds=kinds, **kwargs)
    return [f.key for f in found]


def thirds(n, a, b, c):
    """The value a in the first third of n records, b in the middle, c in the last."""
    return lambda i: a if i < n // 3 else (b if i < n - n // 3 else c)


def test_healthy_records_give_no_finding():
    assert keys_of(records()) == []


@pytest.mark.parametrize("name, make, key", [
    ("gradient ratio, vanishing",
     lambda x: records(grad=lambda i: {"l0.weight": dg.VANISHING_RATIO * x}), "vanishing"),
    ("gradient ratio, exploding",
     lambda x: records(grad=lambda i: {"l0.weight": dg.EXPLODING_RATIO / x}), "exploding"),
    ("update-ratio spread",
     lambda x: records(rho=lambda i: {"l0.weight": -3.0 - dg.RHO_SPREAD / x}), "vanishing"),
    ("update ratio too large",
     lambda x: records(rho=lambda i: {"l2.weight": dg.RHO_TOO_LARGE + 0.1 * (1 - x)}),
     "step-size"),
    ("update ratio too small everywhere",
     lambda x: records(rho=lambda i: {w: dg.RHO_TOO_SMALL - 0.1 * (1 - x)
                                      for w in WEIGHTS}), "step-size"),
    ("update ratios falling",
     lambda x: records(rho=lambda i: {w: thirds(12, -2.0, -2.0 - dg.RHO_FALL / 2 / x,
                                                -2.0 - dg.RHO_FALL / x)(i)
                                      for w in WEIGHTS}), "ratio-decay"),
    ("loss growth",
     lambda x: records(loss=lambda i: 2.0 * (dg.LOSS_GROWTH / x if i == 6 else 1.0)),
     "nonfinite"),
    ("stream growth",
     lambda x: records(std=lambda i: {"a2": dg.STREAM_GROWTH / x}), "residual-growth"),
    ("ReLU zero share",
     lambda x: records(sat=lambda i: {a: 0.5 if i == 0 else dg.DYING_ZERO_SHARE + 0.01 * (1 - x)
                                      for a in ACTS}), "dying-relu"),
    ("a silent ReLU layer",
     lambda x: records(sat=lambda i: {"a1": dg.SILENT_ZERO_SHARE + 0.01 * (1 - x)
                                      if i == 11 else 0.5}), "silent-death"),
])
@pytest.mark.parametrize("side", ["above", "below"])
def test_each_rule_fires_exactly_once_above_its_threshold(name, make, key, side):
    x = 0.5 if side == "above" else 2.0      # 0.5: past the threshold; 2: short of it
    assert keys_of(make(x)) == ([key] if side == "above" else [])


@pytest.mark.parametrize("side", ["above", "below"])
def test_saturation_of_tanh_layers(side):
    share = dg.SATURATED_SHARE + (0.01 if side == "above" else -0.01)
    recs = records(sat=lambda i: {"a1": share, "a0": 0.0, "a2": 0.0})
    assert keys_of(recs, kinds="tanh") == (["saturation"] if side == "above" else [])
    assert keys_of(recs, kinds="relu") == []   # a ReLU's zero share is not saturation


def test_sigmoid_slope_needs_a_vanishing_gradient_and_sigmoids():
    vanishing = records(grad=lambda i: {"l0.weight": 1e-5},
                        sat=lambda i: {a: 0.0 for a in ACTS})
    assert keys_of(vanishing, kinds="sigmoid") == ["vanishing", "sigmoid-slope"]
    assert keys_of(vanishing, kinds="tanh") == ["vanishing"]
    assert keys_of(records(sat=lambda i: {a: 0.0 for a in ACTS}), kinds="sigmoid") == []


def test_zero_share_must_rise():
    flat = records(sat=lambda i: {a: 0.75 for a in ACTS})       # high from the start
    assert keys_of(flat) == []
    assert keys_of(flat, kinds="other") == []                   # a leaky ReLU: no rule


def test_silent_layer_after_an_alarm_is_the_alarm():
    recs = records(sat=lambda i: {"a1": 1.0 if i == 11 else 0.5})
    assert keys_of(recs, nonfinite={"step": 60, "parameter": "l0.weight",
                                    "value": "nan"}) == ["nonfinite"]


def test_alarm_and_nonfinite_records():
    alarm = {"step": 30, "parameter": "l1.weight", "value": "inf"}
    found = diagnose(records(), nonfinite=alarm, nonfinite_steps=[30, 35, 40, 45, 50, 55],
                     parameter_shapes=SHAPES)
    assert [f.key for f in found] == ["nonfinite"]
    assert "step 30 (l1.weight: inf)" in found[0].evidence
    assert "6 steps with a non-finite gradient (30 to 55)" in found[0].evidence
    assert any("records from step 30 on" in u for u in found.unseen)
    # Records alone: a NaN gradient norm or loss, no alarm.
    nan_grad = records(grad=lambda i: {"l2.weight": math.nan} if i >= 4 else {})
    assert keys_of(nan_grad) == ["nonfinite"]
    assert keys_of(records(loss=lambda i: math.inf if i == 7 else 2.0)) == ["nonfinite"]


def test_records_after_the_alarm_feed_no_other_rule():
    # After a NaN update everything is garbage: here, a huge gradient ratio.
    recs = records(grad=lambda i: {"l0.weight": 1e9} if i >= 6 else {})
    assert keys_of(recs, nonfinite={"step": 30, "parameter": "l0.weight",
                                    "value": "nan"}) == ["nonfinite"]


# -- what the records cannot show, and odd but valid records --------------------------------

def unseen_text(found: Findings) -> str:
    return " ".join(found.unseen)


def test_empty_records():
    found = diagnose([])
    assert found == [] and "no record" in unseen_text(found)
    assert "no record" in report(found)


def test_records_without_activations_update_ratios_or_loss():
    recs = [{"step": s, "loss": None, "grad_norm": {w: 1.0 for w in WEIGHTS},
             "activation": {}, "update_ratio": {}} for s in range(3)]
    found = diagnose(recs, parameter_shapes=SHAPES)
    text = report(found)
    assert found == []
    assert "no activation was recorded" in text and "activation_types" in text
    assert "no update ratio was recorded" in text and "optimizer" in text
    assert "no loss was logged" in text


def test_unknown_shapes_and_kinds_are_said():
    found = diagnose(records())
    assert found == []
    assert "parameter shapes unknown" in unseen_text(found)
    assert "activation types unknown" in unseen_text(found)


@pytest.mark.parametrize("recs", [
    [{"step": 0}],                                                  # a bare record
    records(1),                                                     # a single record
    records(2, grad=lambda i: {w: math.nan for w in WEIGHTS}),      # NaN everywhere
    records(3, rho=lambda i: {w: math.nan for w in WEIGHTS}),
    [dict(r, activation={a: {"mean": math.nan, "std": math.nan, "saturation": math.nan}
                         for a in ACTS}) for r in records(4)],
    records(8, grad=lambda i: {w: 0.0 for w in WEIGHTS}),          # zero gradients
])
def test_valid_odd_records_never_raise(recs):
    for kinds in (None, {a: "relu" for a in ACTS}):
        found = diagnose(recs, parameter_shapes=SHAPES, activation_kinds=kinds)
        assert isinstance(report(found), str)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(records={"step": 0}), TypeError, "records must be a list"),
    (dict(records="abc"), TypeError, "records must be a list"),
    (dict(records=[1]), TypeError, r"records\[0\] must be a dict"),
    (dict(records=[{"loss": 1.0}]), ValueError, r"records\[0\] needs an int 'step'"),
    (dict(records=[{"step": 0, "grad_norm": [1.0]}]), TypeError, "'grad_norm'.*must be a dict"),
    (dict(records=[], nonfinite={"parameter": "x"}), TypeError, "nonfinite must be None"),
    (dict(records=[], nonfinite_steps="12"), TypeError, "nonfinite_steps must be a list"),
    (dict(records=[], parameter_shapes=[(4, 4)]), TypeError, "parameter_shapes must be"),
    (dict(records=[], activation_kinds={"a": "swish"}), ValueError, "must be one of"),
])
def test_bad_arguments(kwargs, error, match):
    records_ = kwargs.pop("records")
    with pytest.raises(error, match=match):
        diagnose(records_, **kwargs)


def test_report_format():
    found = diagnose(records(grad=lambda i: {"l0.weight": 1e-6}), parameter_shapes=SHAPES,
                     activation_kinds={a: "relu" for a in ACTS})
    text = report(found)
    first = text.split("\n\n")[0]
    assert first.startswith("1. Gradient norms fall") and "[vanishing]" in first
    assert "evidence: the gradient norm of l0.weight is 1.0e-06 times that of l3.weight" in first
    assert "likely cause: vanishing gradient" in first and "fix: ReLU-family" in first
    assert f"read: lesson 1 <{lesson_url('lesson-backprop')}>" in first
    assert all(len(line) <= 88 or "<https://" in line for line in text.splitlines())
    healthy = report(diagnose(records(), parameter_shapes=SHAPES,
                              activation_kinds={a: "relu" for a in ACTS}))
    words = " ".join(healthy.split())                    # without the line breaks
    assert words.startswith("no finding: checked non-finite gradients and losses; loss "
                            "growth; first/last gradient norm (l0.weight vs l3.weight)")
    assert "not checkable from a monitor's records: recurrent, scaled-shortcut" in words
    with pytest.raises(ValueError, match="width must be >= 40"):
        report(found, width=20)
    with pytest.raises(TypeError, match="Finding"):
        report(["vanishing"])


def test_finding_carries_the_row():
    found = diagnose(records(grad=lambda i: {"l0.weight": 1e-6}), parameter_shapes=SHAPES)
    (f,) = found
    row = next(s for s in SYMPTOMS if s.key == "vanishing")
    assert isinstance(f, Finding) and f.lessons == row.lessons
    assert f.symptom == plain_text(row.symptom) and f.cause == plain_text(row.cause)
    assert f.links == tuple(lesson_url(x) for x in row.lessons)


@pytest.mark.parametrize("rho, optimizer, fires", [
    (-1.0, None, True), (-1.0, "SGD", True), (-1.0, "AdamW", False),
    (dg.RHO_TOO_LARGE_ADAPTIVE - 0.05, "Adam", False),
    (dg.RHO_TOO_LARGE_ADAPTIVE + 0.05, "Adam", True)])
def test_step_size_limit_of_adaptive_optimizers(rho, optimizer, fires):
    recs = records(rho=lambda i: {"l2.weight": rho})
    assert (keys_of(recs, optimizer=optimizer) == ["step-size"]) is fires


@pytest.mark.parametrize("momentum, fires", [(0.0, True), (0.9, False), (0.5, True)])
def test_momentum_raises_the_sgd_step_size_limit(momentum, fires):
    # rho -1.0: above -1.5, below -1.5 + log10(1 / (1 - 0.9)) = -0.5, above -1.2 (m = 0.5).
    recs = records(rho=lambda i: {"l2.weight": -1.0})
    assert (keys_of(recs, optimizer="SGD", momentum=momentum) == ["step-size"]) is fires


def test_optimizer_must_be_a_class_name():
    with pytest.raises(TypeError, match="class name"):
        diagnose(records(), optimizer=torch.optim.SGD)


def test_module_kinds():
    sig = DeepMLP(3, 4, activation="sigmoid")
    assert module_kinds(sig) == {f"blocks.{i}.act": "sigmoid" for i in range(3)}
    assert set(module_kinds(InplaceResidualMLP(4, 2)).values()) == {"relu"}
    assert module_kinds(nn.Sequential(nn.Linear(2, 2), nn.LeakyReLU(), nn.Tanh())) == {
        "1": "other", "2": "tanh"}
    layer = nn.TransformerEncoderLayer(8, 2, 16, activation="relu")   # F.relu, read by the
    assert module_kinds(layer) == {"activation": "relu"}              # Monitor at dropout
    with pytest.raises(TypeError, match="torch.nn.Module"):
        module_kinds("net")


# -- real runs of lesson 16's setups under the Monitor ----------------------------------------

STEPS, EVERY = 100, 5


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(autouse=True)
def one_thread():
    """Small matrices: extra threads cost more than they save, most when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def monitored_run(digits, name, *, lr=0.05, every=EVERY, **options):
    """Lesson 16's 8-layer MLP on the digits, SGD with momentum, under a Monitor."""
    state = torch.get_rng_state()
    seed_all("test-diagnosis", "net", name)          # follows GRADFLOW_SEED
    model = DeepMLP(8, 32, in_features=64, out_features=10, **options)
    torch.set_rng_state(state)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    batches = generator("test-diagnosis", "batches", name)
    with Monitor(model, optimizer=opt, every=every, raise_on_nonfinite=False) as mon:
        for _ in range(STEPS):
            idx = torch.randint(len(digits.y_train), (64,), generator=batches)
            loss = F.cross_entropy(model(digits.x_train[idx]), digits.y_train[idx])
            opt.zero_grad()
            loss.backward()
            mon.log(loss)
            opt.step()
    return mon


def test_small_init_sigmoid_net_vanishes(digits):
    # 60 runs of lesson 16's setup: first/last ratio 2e-9 to 7e-9, no saturated output,
    # largest rho -1.9, rho falls by at most 0.4: exactly these two rows.
    mon = monitored_run(digits, "sigmoid", activation="sigmoid", init="normal",
                        weight_scale=0.05 * 32 ** 0.5)
    found = diagnose_monitor(mon)
    assert [f.key for f in found] == ["vanishing", "sigmoid-slope"]
    # Oracle for the evidence: the median ratio computed from the monitor's own matrix.
    _, names, grad = mon.matrix("grad_norm")
    ratio = np.median(grad[:, names.index("stem.weight")] / grad[:, names.index("head.weight")])
    assert ratio < 1e-6
    assert (f"the gradient norm of stem.weight is {float(f'{ratio:.1e}'):.1e} times that of "
            f"head.weight (median over {len(mon.records)} records)") in found[0].evidence
    assert diagnose(mon.records, nonfinite=mon.nonfinite, nonfinite_steps=mon.nonfinite_steps,
                    parameter_shapes=mon.parameter_shapes,
                    activation_kinds=module_kinds(mon.model)) == found


def test_unnormalized_residual_net_overflows(digits):
    # 60 runs: the first NaN at steps 4-14, the loss grew >= 2e6-fold before it, the
    # stream's std grew 14-52-fold over the 8 blocks at step 0.
    mon = monitored_run(digits, "residual", every=1, activation="relu", init="he",
                        residual=True)
    assert mon.nonfinite is not None
    found = diagnose_monitor(mon)
    keys = [f.key for f in found]
    assert "nonfinite" in keys and "residual-growth" in keys
    assert not {"vanishing", "exploding", "silent-death"} & set(keys)
    evidence = found[keys.index("nonfinite")].evidence
    assert (f"first non-finite gradient at step {mon.nonfinite['step']} "
            f"({mon.nonfinite['parameter']}: {mon.nonfinite['value']})") in evidence
    assert "-fold" in evidence                          # the loss ran away before it
    assert any(f"from step {mon.nonfinite['step']} on" in u for u in found.unseen)


def test_healthy_batch_norm_net_has_no_finding(digits):
    # 60 runs: first/last ratio 2.1-2.8, largest rho -1.94 to -2.02, rho falls by at most
    # 0.35, mean ReLU zero share at most 0.55, stream std ratio about 1.
    mon = monitored_run(digits, "batch-norm", activation="relu", init="he", norm="batch")
    found = diagnose_monitor(mon)
    assert found == [], report(found)
    assert report(found).startswith("no finding: checked")
    assert found.unseen == ()


def test_diagnose_monitor_needs_records():
    with pytest.raises(TypeError, match="for plain records call diagnose"):
        diagnose_monitor([])
