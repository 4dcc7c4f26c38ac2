"""gradflowkit.seeding: one switch (GRADFLOW_SEED) behind every random draw of the book.

Oracles: NumPy's SeedSequence and zlib's CRC-32 written out by hand, torch's and NumPy's own
generators seeded with the derived value, and the environment variable itself."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from gradflowkit import seeding
from gradflowkit.seeding import (SEED_ENV, base_seed, derive_seed, ensemble_seeds, generator,
                                 numpy_rng, resolve_seed, seed_all)


@pytest.fixture
def seed_env(monkeypatch):
    """Set GRADFLOW_SEED for one test (restored afterwards)."""
    def set_to(value):
        if value is None:
            monkeypatch.delenv(SEED_ENV, raising=False)
        else:
            monkeypatch.setenv(SEED_ENV, value)
    return set_to


@pytest.mark.parametrize("raw, expected", [(None, 0), ("", 0), ("  ", 0), ("0", 0), ("5", 5),
                                           (" 17 ", 17), ("4294967295", 2**32 - 1)])
def test_base_seed_reads_the_variable(seed_env, raw, expected):
    seed_env(raw)
    assert base_seed() == expected


@pytest.mark.parametrize("raw, msg", [("abc", r"GRADFLOW_SEED must be a non-negative integer"),
                                      ("1.5", r"non-negative integer such as 0 or 5"),
                                      ("-1", r"between 0 and 4294967295, got -1"),
                                      ("4294967296", r"between 0 and")])
def test_bad_seed_variable_is_a_clear_error(seed_env, raw, msg):
    seed_env(raw)
    with pytest.raises(ValueError, match=msg):
        derive_seed("x")


def test_derive_seed_is_seedsequence_of_base_and_crc32(seed_env):
    """The documented recipe, redone by hand: ints as themselves, strings as CRC-32 + 2**32."""
    seed_env("3")
    words = [3, zlib.crc32(b"lesson-7") + 2**32, 5]
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    expected = ((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)
    assert derive_seed("lesson-7", 5) == expected
    assert 0 <= expected < 2**63


def test_same_keys_same_seed_other_keys_or_base_other_seed(seed_env):
    seed_env("0")
    a = derive_seed("lesson-3", "init")
    assert derive_seed("lesson-3", "init") == a
    assert derive_seed("lesson-3", "data") != a
    assert derive_seed("lesson-3") != a
    assert derive_seed("init", "lesson-3") != a       # order matters
    seed_env("1")
    assert derive_seed("lesson-3", "init") != a
    seed_env(None)
    assert derive_seed("lesson-3", "init") == a       # unset = 0


def test_string_and_integer_keys_never_collide(seed_env):
    seed_env("0")
    crc = zlib.crc32(b"a")
    assert derive_seed("a") != derive_seed(crc)


@pytest.mark.parametrize("key, exc, msg", [(1.5, TypeError, r"seed keys must be str or int"),
                                           (True, TypeError, r"got bool True"),
                                           (-1, ValueError, r"\[0, 2\*\*32\), got -1"),
                                           (2**32, ValueError, r"got 4294967296")])
def test_bad_keys(key, exc, msg):
    with pytest.raises(exc, match=msg):
        derive_seed(key)


def test_generators_are_seeded_with_the_derived_seed(seed_env):
    seed_env("9")
    s = derive_seed("g", 1)
    expected = torch.randn(4, generator=torch.Generator().manual_seed(s))
    assert torch.equal(torch.randn(4, generator=generator("g", 1)), expected)
    np.testing.assert_array_equal(numpy_rng("g", 1).random(3),
                                  np.random.default_rng(s).random(3))


def test_seed_all_seeds_torch_and_returns_the_numpy_stream(seed_env):
    seed_env("2")
    rng = seed_all("lesson-1")
    first = torch.rand(3)
    torch.manual_seed(derive_seed("lesson-1"))
    assert torch.equal(first, torch.rand(3))
    np.testing.assert_array_equal(rng.random(2), numpy_rng("lesson-1", "numpy").random(2))


def test_ensemble_seeds_are_the_indexed_derived_seeds(seed_env):
    seed_env("4")
    seeds = ensemble_seeds(5, "lesson-7", "sweep")
    assert seeds == [derive_seed("lesson-7", "sweep", i) for i in range(5)]
    assert len(set(seeds)) == 5
    with pytest.raises(ValueError, match=r"n must be >= 1, got 0"):
        ensemble_seeds(0, "x")


def test_resolve_seed_prefers_an_explicit_seed(seed_env):
    seed_env("6")
    assert resolve_seed(11, "helper") == 11
    assert resolve_seed(None, "helper") == derive_seed("helper")
    with pytest.raises(ValueError, match=r"seed must be >= 0, got -2"):
        resolve_seed(-2, "helper")


def test_the_variable_name_is_the_documented_one():
    assert seeding.SEED_ENV == "GRADFLOW_SEED"
