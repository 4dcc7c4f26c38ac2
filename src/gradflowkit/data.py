"""Small real data sets that ship inside installed packages (nothing is downloaded).

The book uses scikit-learn's bundled 8×8 handwritten digits: 1,797 images, 64 features,
10 classes (an optional dependency of the package; the book pins it). The file is read
straight from scikit-learn's installed data folder, without importing scikit-learn: the
import alone takes ~0.8 s, paid by every lesson that trains on the digits. The unit tests
check the result against ``sklearn.datasets.load_digits``.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .seeding import resolve_seed
from .validation import check_float


class Split(NamedTuple):
    """A train/test split of a classification data set, as tensors."""

    x_train: torch.Tensor  # (n_train, n_features), standardized with the train statistics
    y_train: torch.Tensor  # (n_train,) int64 class labels
    x_test: torch.Tensor   # (n_test, n_features), standardized with the train statistics
    y_test: torch.Tensor   # (n_test,) int64 class labels


def load_digits(test_fraction: float = 0.25, *, seed: int | None = None,
                dtype: torch.dtype = torch.float32) -> Split:
    """scikit-learn's 8×8 digits, shuffled, split and standardized per feature.

    Args:
        test_fraction: share of the 1,797 images held out (default 0.25; in ``(0, 1)``).
        seed: seed of the shuffle (default None: derived from ``GRADFLOW_SEED``, so the
            split changes with the book's seed switch).
        dtype: floating dtype of the features (default float32).

    Returns:
        A :class:`Split`. Features with zero variance in the training set are left at 0.
    """
    test_fraction = check_float("test_fraction", test_fraction, positive=True)
    if test_fraction >= 1:
        raise ValueError(f"test_fraction must be < 1, got {test_fraction}")
    seed = resolve_seed(seed, "digits-split")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype such as torch.float32, "
                        f"got {dtype!r}")
    data, target = _digits_arrays()
    x = torch.tensor(data, dtype=torch.float64)  # copies: the cached arrays stay intact
    y = torch.tensor(target, dtype=torch.int64)
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


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Pixels (1797, 64) and labels (1797,) from scikit-learn's bundled ``digits.csv.gz``."""
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("load_digits reads the digits that ship with scikit-learn: "
                          "pip install scikit-learn")
    package = Path(next(iter(spec.submodule_search_locations)))
    path = package / "datasets" / "data" / "digits.csv.gz"
    if not path.exists():
        raise FileNotFoundError(f"scikit-learn is installed but {path} is missing; "
                                "reinstall scikit-learn")
    table = np.loadtxt(path, delimiter=",")
    data, target = table[:, :-1], table[:, -1].astype(np.int64)
    data.flags.writeable = target.flags.writeable = False  # shared by every call (cached)
    return data, target
