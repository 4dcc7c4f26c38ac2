"""Unit tests of gradflowkit.data.load_digits against scikit-learn's own copy of the data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradflowkit.seeding import derive_seed
from gradflowkit.data import Split, _digits_arrays, load_digits

sklearn_datasets = pytest.importorskip("sklearn.datasets")


@pytest.fixture(scope="module")
def raw():
    bunch = sklearn_datasets.load_digits()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)


@pytest.fixture(scope="module")
def split():
    return load_digits()


def test_shapes_and_dtypes(split):
    assert isinstance(split, Split)
    assert split.x_train.shape == (1348, 64) and split.x_test.shape == (449, 64)
    assert split.y_train.shape == (1348,) and split.y_test.shape == (449,)
    assert len(split.y_train) + len(split.y_test) == 1797
    assert split.x_train.dtype == split.x_test.dtype == torch.float32
    assert split.y_train.dtype == split.y_test.dtype == torch.int64
    labels = torch.cat([split.y_train, split.y_test])
    assert set(labels.tolist()) == set(range(10))


@pytest.mark.parametrize("test_fraction, n_test", [(0.25, 449), (0.1, 180), (0.5, 898),
                                                   (1e-6, 1)])
def test_test_fraction(test_fraction, n_test):
    s = load_digits(test_fraction)
    assert len(s.y_test) == n_test and len(s.y_train) == 1797 - n_test


def test_train_columns_are_standardized(split):
    x = split.x_train.double()
    std = x.std(0)
    has_variance = std > 1e-6
    assert 50 <= int(has_variance.sum()) < 64  # a few border pixels are always 0
    torch.testing.assert_close(x.mean(0), torch.zeros(64, dtype=torch.float64),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(std[has_variance], torch.ones(int(has_variance.sum()),
                                                              dtype=torch.float64),
                               rtol=1e-5, atol=0)
    assert torch.count_nonzero(x[:, ~has_variance]) == 0  # zero-variance columns left at 0
    assert torch.isfinite(split.x_test).all()


def _row_multiset(rows, labels):
    """Sorted (image, label) tuples: digits has duplicate images, so compare multisets."""
    return sorted(map(tuple, np.column_stack([rows, labels]).round(6)))


def test_rows_are_the_sklearn_rows_standardized_with_train_statistics(raw, split):
    """Oracle: redo the documented recipe with numpy on scikit-learn's raw data (the same
    seeded permutation; mean and unbiased std of the training rows; 1 where std = 0)."""
    data, target = raw
    s64 = load_digits(dtype=torch.float64, seed=0)
    order = torch.randperm(1797, generator=torch.Generator().manual_seed(0)).numpy()
    train_rows, test_rows = data[order[449:]], data[order[:449]]
    mean, std = train_rows.mean(0), train_rows.std(0, ddof=1)
    std = np.where(std > 0, std, 1.0)
    np.testing.assert_allclose(s64.x_train.numpy(), (train_rows - mean) / std, atol=1e-12)
    np.testing.assert_allclose(s64.x_test.numpy(), (test_rows - mean) / std, atol=1e-12)
    np.testing.assert_array_equal(s64.y_train.numpy(), target[order[449:]])
    np.testing.assert_array_equal(s64.y_test.numpy(), target[order[:449]])
    # Independently of the permutation: together the rows are exactly the data set.
    back = np.concatenate([s64.x_train.numpy(), s64.x_test.numpy()]) * std + mean
    labels = np.concatenate([s64.y_train.numpy(), s64.y_test.numpy()])
    assert _row_multiset(back, labels) == _row_multiset(data, target)
    # The float32 default is the float64 result rounded.
    torch.testing.assert_close(load_digits(seed=0).x_train, s64.x_train.float())


def test_deterministic_per_seed():
    a, b = load_digits(seed=3), load_digits(seed=3)
    for ta, tb in zip(a, b):
        assert torch.equal(ta, tb)


def test_different_seeds_give_different_splits(split):
    other = load_digits(seed=1)
    assert not torch.equal(split.y_train, other.y_train)
    assert not torch.equal(split.x_test, other.x_test)
    # Same class balance overall, whatever the seed.
    both = lambda s: torch.bincount(torch.cat([s.y_train, s.y_test]), minlength=10)  # noqa: E731
    assert torch.equal(both(split), both(other))


def test_default_split_follows_the_seed_switch(monkeypatch):
    """Oracle: the default seed is seeding.derive_seed("digits-split") of GRADFLOW_SEED."""
    monkeypatch.setenv("GRADFLOW_SEED", "0")
    default0 = load_digits()
    assert torch.equal(default0.y_test, load_digits(seed=derive_seed("digits-split")).y_test)
    monkeypatch.setenv("GRADFLOW_SEED", "7")
    default7 = load_digits()
    assert torch.equal(default7.y_test, load_digits(seed=derive_seed("digits-split")).y_test)
    assert not torch.equal(default0.y_test, default7.y_test)


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(test_fraction=0.0), ValueError, r"^test_fraction must be > 0"),
    (dict(test_fraction=-0.2), ValueError, r"^test_fraction must be > 0"),
    (dict(test_fraction=1.0), ValueError, r"^test_fraction must be < 1"),
    (dict(test_fraction=0.9999), ValueError, r"^test_fraction=0.9999 leaves 0 training rows"),
    (dict(test_fraction=math.nan), ValueError, r"^test_fraction must be finite"),
    (dict(test_fraction="0.2"), TypeError, r"^test_fraction must be a real number"),
    (dict(seed=1.5), TypeError, r"^seed must be an int"),
    (dict(dtype=torch.int64), TypeError, r"^dtype must be a floating torch.dtype"),
    (dict(dtype="float32"), TypeError, r"^dtype must be a floating torch.dtype"),
])
def test_bad_arguments(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        load_digits(**kwargs)


def test_digits_are_read_without_importing_sklearn_and_equal_sklearns():
    import subprocess
    import sys
    code = ("import sys; from gradflowkit.data import _digits_arrays; d, t = _digits_arrays();"
            "print('sklearn' in sys.modules, d.shape, t.shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split(maxsplit=1)
    assert out[0] == "False"                      # the whole point: no sklearn import
    from sklearn.datasets import load_digits as sk_load_digits
    oracle = sk_load_digits()
    data, target = _digits_arrays()
    assert np.array_equal(data, oracle.data) and data.dtype == oracle.data.dtype
    assert np.array_equal(target, oracle.target)


def test_digits_without_sklearn_says_how_to_fix(monkeypatch):
    import importlib.util
    _digits_arrays.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    try:
        with pytest.raises(ImportError, match="pip install scikit-learn"):
            load_digits()
    finally:
        _digits_arrays.cache_clear()
