"""One seed switch for the whole book: every random draw derives from ``GRADFLOW_SEED``.

A lesson never writes ``torch.manual_seed(0)``. It names what it draws, and this module turns
the name and the environment variable ``GRADFLOW_SEED`` (an integer >= 0, default 0) into a
seed::

    rng = seed_all("lesson-3")                 # torch's global generator and a numpy rng
    gen = generator("lesson-3", "overflow")    # a torch.Generator of its own
    seeds = ensemble_seeds(16, "lesson-7")     # one seed per member of an ensemble

``GRADFLOW_SEED=5 make book`` re-runs the whole book with other random numbers; every
assertion in the book is meant to hold for any value. Derived seeds for different names
are independent (NumPy's ``SeedSequence`` mixes the base seed with a hash of the names), and
they are the same on every machine and Python version (the hash is CRC-32, not ``hash()``).
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import torch

from .validation import check_int

#: The environment variable that sets the base seed of the book.
SEED_ENV = "GRADFLOW_SEED"

_MAX_BASE = 2**32 - 1


def base_seed() -> int:
    """The base seed: ``GRADFLOW_SEED`` as an integer, or 0 when it is unset or empty.

    Returns:
        An integer in ``[0, 2**32)``. Raises ``ValueError`` with the offending text when the
        variable is not a non-negative integer.
    """
    raw = os.environ.get(SEED_ENV, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw, 10)
    except ValueError:
        raise ValueError(f"{SEED_ENV} must be a non-negative integer such as 0 or 5, "
                         f"got {raw!r}; unset it for the default 0") from None
    if not 0 <= value <= _MAX_BASE:
        raise ValueError(f"{SEED_ENV} must be between 0 and {_MAX_BASE}, got {value}")
    return value


def _key_word(key: object) -> int:
    """A 33-bit word for one name: ints map to themselves, strings to CRC-32 + 2**32."""
    if isinstance(key, str):
        return zlib.crc32(key.encode("utf8")) + 2**32   # never equal to an int key
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
        raise TypeError(f"seed keys must be str or int, got {type(key).__name__} {key!r}")
    if not 0 <= int(key) < 2**32:
        raise ValueError(f"integer seed keys must be in [0, 2**32), got {key}")
    return int(key)


def derive_seed(*keys: str | int) -> int:
    """The seed for the draw named by ``keys``, under the current ``GRADFLOW_SEED``.

    Args:
        *keys: names of the draw, e.g. ``("lesson-7", "init", 3)``; strings or integers in
            ``[0, 2**32)``. The same keys give the same seed; other keys an independent one.

    Returns:
        A non-negative integer below ``2**63``, for ``torch.manual_seed`` or NumPy.
    """
    words = [base_seed()] + [_key_word(k) for k in keys]
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


def generator(*keys: str | int) -> torch.Generator:
    """A new CPU ``torch.Generator`` seeded with :func:`derive_seed` of ``keys``."""
    return torch.Generator().manual_seed(derive_seed(*keys))


def numpy_rng(*keys: str | int) -> np.random.Generator:
    """A new NumPy ``Generator`` seeded with :func:`derive_seed` of ``keys``."""
    return np.random.default_rng(derive_seed(*keys))


def seed_all(*keys: str | int) -> np.random.Generator:
    """Seed torch's global generator from ``keys`` and return a NumPy generator for them.

    The lessons call this once at the top (``rng = seed_all("lesson-3")``): code that draws
    from torch's global generator (``torch.randn``, ``nn.Linear``'s default init) is then
    reproducible and follows ``GRADFLOW_SEED``.

    Args:
        *keys: names of the stream, e.g. ``("lesson-3",)``.

    Returns:
        ``numpy_rng(*keys, "numpy")``.
    """
    torch.manual_seed(derive_seed(*keys))
    return numpy_rng(*keys, "numpy")


def ensemble_seeds(n: int, *keys: str | int) -> list[int]:
    """``n`` seeds, one per member of an ensemble named by ``keys``.

    Args:
        n: number of members (>= 1).
        *keys: names of the ensemble.

    Returns:
        ``[derive_seed(*keys, 0), …, derive_seed(*keys, n - 1)]``.
    """
    n = check_int("n", n, minimum=1)
    return [derive_seed(*keys, i) for i in range(n)]


def resolve_seed(seed: int | None, *keys: str | int) -> int:
    """``seed`` if one was given, else :func:`derive_seed` of ``keys`` (helper defaults).

    Args:
        seed: an explicit seed (an int >= 0) or None.
        *keys: names of the helper's draw, used when ``seed`` is None.

    Returns:
        The seed to use.
    """
    if seed is None:
        return derive_seed(*keys)
    return check_int("seed", seed, minimum=0)
