"""SignalRecorder and signal_ratio (lesson 14) against per-member layer_profile and autograd."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradflowkit.data import Split
from gradflowkit.ensemble import EnsembleMLP
from gradflowkit.gradients import layer_profile
from gradflowkit.profiles import SignalRecorder, signal_ratio
from gradflowkit.tasks import ClassificationTask
from gradflowkit.trainer import train


def _toy_split(n=64, d=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    return Split(x, y, x[:8], y[:8])


def _signal_by_autograd(model, x, y):
    """‖∂L/∂x_l‖ of one DeepMLP via torch.autograd.grad on its block inputs."""
    h = model.stem(x) if model.stem is not None else x
    states = [h]
    for block in model.blocks:
        h = block(h)
        states.append(h)
    grads = torch.autograd.grad(F.cross_entropy(model.head(h), y), states)
    return np.array([g.norm().item() for g in grads])


@pytest.mark.parametrize("options", [dict(norm="batch"),
                                     dict(residual=True, branch_layers=2, norm="batch"),
                                     dict(residual=True, branch_scale=0.5)])
def test_recorder_equals_each_members_own_profile(options):
    data = _toy_split()
    ens = EnsembleMLP.build([3, 4, 5], 4, 8, in_features=6, out_features=3,
                            dtype=torch.float64, **options)
    x, y = data.x_train[:32].double(), data.y_train[:32]
    members = [ens.member(i) for i in range(3)]        # copies before the recorder runs
    rec = SignalRecorder(x, y)
    rec(0, ens)
    for i, net in enumerate(members):
        oracle = _signal_by_autograd(net, x, y)
        np.testing.assert_allclose(rec.profiles[0, i], oracle, rtol=1e-10)
        np.testing.assert_allclose(rec.profiles[0, i], layer_profile(
            ens.member(i), x, lambda out: F.cross_entropy(out, y)).signal, rtol=1e-10)


def test_recorder_as_trainer_callback_records_every_checkpoint_and_leaves_grads():
    data = _toy_split()
    ens = EnsembleMLP.build([0, 1], 3, 8, in_features=6, out_features=3, norm="batch")
    rec = SignalRecorder(data.x_train[:32], data.y_train[:32])
    record = train(ens, ClassificationTask(data, batch_size=16), steps=10, lr=0.01,
                   record_every=4, callback=rec, seeds=[0, 1])
    assert rec.steps == [0, 4, 8, 10]
    assert rec.profiles.shape == (4, 2, 4)
    assert np.all(np.isfinite(rec.profiles)) and np.all(rec.profiles > 0)
    assert record.loss.shape == (2, 10)
    # the recorder's pass does not touch the parameters' gradients
    ens.zero_grad(set_to_none=True)
    rec(11, ens)
    assert all(p.grad is None for p in ens.parameters())


def test_recorder_rejects_a_single_net_and_bad_labels():
    data = _toy_split()
    with pytest.raises(ValueError, match="rows but y has"):
        SignalRecorder(data.x_train[:10], data.y_train[:9])
    with pytest.raises(TypeError, match="1-D tensor of labels"):
        SignalRecorder(data.x_train[:10], [0] * 10)
    rec = SignalRecorder(data.x_train[:10], data.y_train[:10])
    with pytest.raises(ValueError, match="nothing recorded"):
        rec.profiles
    with pytest.raises(TypeError, match="records an EnsembleMLP, got Linear; for one net"):
        rec(0, torch.nn.Linear(6, 3))


def test_signal_ratio_is_first_block_over_last():
    p = np.array([[[0.1, 4.0, 2.0, 1.0], [0.2, 9.0, 3.0, 3.0]]])   # (1, 2, depth + 1)
    np.testing.assert_allclose(signal_ratio(p), [[4.0, 3.0]])
    np.testing.assert_allclose(signal_ratio(p, first=0), [[0.1, 0.2 / 3]])
    with pytest.raises(ValueError, match="first must be below"):
        signal_ratio(p, first=3)
    with pytest.raises(ValueError, match="depth \\+ 1 >= 2"):
        signal_ratio(np.ones((3, 1)))
