"""train_classifier must print nothing on stderr: a warning there fails the book build."""

from __future__ import annotations

import warnings

import torch

from gradflowkit.data import Split
from gradflowkit.nets import DeepMLP
from gradflowkit.training import train_classifier


def test_train_classifier_emits_no_warnings(seeded):
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    net = DeepMLP(2, 4, out_features=3, activation="sigmoid")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning becomes a test failure
        history = train_classifier(net, Split(x, y, x, y), steps=5, lr=0.1, batch_size=8)
    assert len(history.loss) == 5
    assert all(isinstance(v, float) for v in history.loss)
