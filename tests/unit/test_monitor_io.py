"""Records that leave the process: Monitor.save / Monitor.load (JSON Lines, non-finite
floats and histograms included) and the log_fn callback."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from gradflowkit.monitor import Monitor, MonitorLog


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN (a NaN loss after the NaN step is kept as NaN)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def _run(tmp_path, **kwargs):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, opt, every=2, raise_on_nonfinite=False, **kwargs)
    with mon:
        for step in range(5):
            opt.zero_grad()
            loss = model(torch.randn(8, 3)).square().mean()
            mon.log(loss)
            loss.backward()
            if step == 3:
                model[0].weight.grad[0, 0] = math.nan
            opt.step()
    return mon


def test_save_and_load_round_trip_with_histograms_and_nonfinite(tmp_path):
    mon = _run(tmp_path, histogram_bins=5)
    mon.records[0]["activation"]["1"]["std"] = math.nan       # a NaN in a record
    path = mon.save(tmp_path / "run.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + len(mon.records)
    for line in lines:                       # standard JSON: no NaN / Infinity tokens
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard {c}"))
    log = Monitor.load(path)
    assert isinstance(log, MonitorLog)
    assert log.every == 2 and log.steps_taken == 5
    assert log.nonfinite == mon.nonfinite == {"step": 3, "parameter": "0.weight", "value": "nan"}
    assert log.nonfinite_steps == mon.nonfinite_steps == [3, 4]   # the NaN was applied
    assert log.parameter_shapes == mon.parameter_shapes
    assert log.watched == ["1"]
    assert len(log.records) == len(mon.records)
    for a, b in zip(mon.records, log.records):
        for key in ("step", "loss", "grad_norm", "update_ratio", "activation"):
            assert _same(a[key], b[key]), key
        for name, (counts, edges) in a["grad_hist"].items():
            np.testing.assert_array_equal(b["grad_hist"][name][0], counts)
            np.testing.assert_array_equal(b["grad_hist"][name][1], edges)
    assert math.isnan(log.records[0]["activation"]["1"]["std"])
    for kind in ("grad_norm", "update_ratio"):
        np.testing.assert_array_equal(log.matrix(kind)[2], mon.matrix(kind)[2])


def test_log_fn_gets_every_record_once_complete(tmp_path):
    seen = []
    mon = _run(tmp_path, log_fn=seen.append)
    assert seen == mon.records and [r["step"] for r in seen] == [0, 2, 4]
    assert seen[0]["update_ratio"] and seen[1]["update_ratio"]   # before the NaN step


def test_log_fn_must_be_callable():
    with pytest.raises(TypeError, match="log_fn must be callable"):
        Monitor(nn.Linear(2, 2), log_fn="tensorboard")


def test_loss_must_be_one_number():
    mon = Monitor(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="one element"):
        mon.log(torch.ones(3))
    with pytest.raises(TypeError, match="float or a one-element tensor"):
        mon.log("0.5")


@pytest.mark.parametrize("text, match", [
    ("", "not written by Monitor.save"),
    ("{not json", "not JSON Lines"),
    ('{"format": "something else"}', "not written by Monitor.save"),
    ('{"format": "gradflowkit.monitor.records", "version": 99}', "format version 99"),
])
def test_load_rejects_other_files(tmp_path, text, match):
    path = tmp_path / "x.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        Monitor.load(path)


def test_load_of_a_missing_file_says_how_to_write_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Monitor.save\(path\)"):
        Monitor.load(tmp_path / "missing.jsonl")
