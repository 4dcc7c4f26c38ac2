"""Small real data sets that ship inside installed packages (nothing is downloaded).

The book uses scikit-learn's bundled 8×8 handwritten digits: 1,797 images, 64 features,
10 classes (an optional dependency of the package; the book pins it).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .validation import check_float, check_int


class Split(NamedTuple):
    """A train/test split of a classification data set, as tensors."""

    x_train: torch.Tensor  # (n_train, n_features), standardized with the train statistics
    y_train: torch.Tensor  # (n_train,) int64 class labels
    x_test: torch.Tensor   # (n_test, n_features), standardized with the train statistics
    y_test: torch.Tensor   # (n_test,) int64 class labels


def load_digits(test_fraction: float = 0.25, *, seed: int = 0,
                dtype: torch.dtype = torch.float32) -> Split:
    """scikit-learn's 8×8 digits, shuffled, split and standardized per feature.

    Args:
        test_fraction: share of the 1,797 images held out (default 0.25; in ``(0, 1)``).
        seed: seed of the shuffle (default 0).
        dtype: floating dtype of the features (default float32).

    Returns:
        A :class:`Split`. Features with zero variance in the training set are left at 0.
    """
    test_fraction = check_float("test_fraction", test_fraction, positive=True)
    if test_fraction >= 1:
        raise ValueError(f"test_fraction must be < 1, got {test_fraction}")
    seed = check_int("seed", seed)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype such as torch.float32, "
                        f"got {dtype!r}")
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("load_digits needs scikit-learn: pip install scikit-learn") from err
    bunch = _sk_load_digits()
    x = torch.as_tensor(bunch.data, dtype=torch.float64)
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    n_test = max(1, round(test_fraction * len(y)))
    if len(y) - n_test < 2:
        raise ValueError(f"test_fraction={test_fraction} leaves {len(y) - n_test} training "
                         "rows; at least 2 are needed to standardize, so lower it")
    x_train, x_test = x[n_test:], x[:n_test]
    mean, std = x_train.mean(0), x_train.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    standardize = lambda t: ((t - mean) / std).to(dtype)  # noqa: E731
    return Split(standardize(x_train), y[n_test:], standardize(x_test), y[:n_test])
