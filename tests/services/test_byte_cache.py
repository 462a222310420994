"""ByteBoundedCache: the entries' bytes never exceed the bound, the least recently used go
first, and a value over the bound is not kept; threads cannot break the accounting."""

from __future__ import annotations

import random
import sys
import threading

import numpy as np
import pytest

from services.byte_cache import ByteBoundedCache
from workers.data.bundle import DataBundle


def _cache(max_bytes: int, **kwargs) -> ByteBoundedCache[str, bytes]:
    return ByteBoundedCache(max_bytes, size_of=len, **kwargs)


def test_least_recently_used_goes_first():
    cache = _cache(30)
    for key in "abc":
        cache.put(key, b"x" * 10)
    assert cache.get("a") == b"x" * 10  # now b is the least recently used
    cache.put("d", b"y" * 10)
    assert "b" not in cache and all(k in cache for k in "acd")
    assert cache.get("b", b"default") == b"default"


def test_bytes_are_counted_and_replacing_a_key_frees_its_old_bytes():
    cache = _cache(100)
    cache.put("a", b"1" * 40)
    cache.put("b", b"2" * 50)
    assert cache.nbytes == 90 and len(cache) == 2
    cache.put("a", b"3" * 10)
    assert cache.nbytes == 60 and cache.get("a") == b"3" * 10
    cache.put("c", b"4" * 45)  # 105 > 100: b (least recent) goes, a stays
    assert cache.nbytes == 55 and "b" not in cache and "a" in cache
    cache.clear()
    assert cache.nbytes == 0 and len(cache) == 0


def test_a_value_over_the_bound_is_not_kept_and_evicts_nothing():
    cache = _cache(100)
    cache.put("small", b"s" * 60)
    cache.put("big", b"b" * 30)
    assert cache.put("big", b"B" * 101) is False
    # the stale value under that key is gone too; the other entry is untouched
    assert "big" not in cache and cache.get("small") == b"s" * 60 and cache.nbytes == 60
    assert cache.put("exact", b"e" * 100) is True and cache.nbytes == 100
    assert len(cache) == 1


def test_an_optional_bound_in_entries():
    cache = _cache(1_000, max_items=2)
    for key in "abc":
        cache.put(key, b"x")
    assert len(cache) == 2 and "a" not in cache


@pytest.mark.parametrize("kwargs", [{"max_bytes": 0}, {"max_bytes": 10, "max_items": 0}])
def test_bounds_must_be_positive(kwargs):
    with pytest.raises(ValueError, match="must be > 0"):
        ByteBoundedCache(size_of=len, **kwargs)


def test_data_bundles_are_sized_by_their_arrays():
    bundle = DataBundle(np.zeros((10, 3), np.float32), np.zeros(10, np.int64),
                        np.zeros((4, 3), np.float32), np.zeros(4, np.int64), None, None,
                        "classification", 2)
    assert bundle.nbytes == 10 * 3 * 4 + 10 * 8 + 4 * 3 * 4 + 4 * 8
    cache = ByteBoundedCache(bundle.nbytes, size_of=lambda b: b.nbytes)
    cache.put("one", bundle)
    assert cache.nbytes == bundle.nbytes
    assert cache.put("two", bundle) and "one" not in cache


def test_concurrent_puts_keep_the_accounting_exact():
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to provoke races
    cache = _cache(5_000)
    keys = [f"k{i}" for i in range(200)]

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(2_000):
            key = rng.choice(keys)
            cache.put(key, b"v" * rng.randrange(0, 600)) if rng.random() < 0.7 else cache.get(key)

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    held = [value for key in keys if (value := cache.get(key)) is not None]
    assert len(held) == len(cache)
    assert cache.nbytes == sum(len(v) for v in held) <= 5_000
