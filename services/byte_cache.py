"""An LRU cache bounded by the bytes its values hold, not only by their count.

A count alone does not bound memory when one entry can be a user's dataset: 32 entries of
hundreds of MB each stay in the API process. Here the total of `size_of(value)` over the
entries never exceeds `max_bytes`; a value larger than that is simply not kept.

cachetools' `LRUCache` keeps the order and the byte total (its `getsizeof`); this adds the lock
(cachetools is not thread-safe), the optional bound in entries, and `put` saying whether it kept
the value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteBoundedCache(Generic[K, V]):
    """Least recently used entries go first; safe to share between threads (the API checks
    submissions on a thread pool).

    Args:
        max_bytes: the most the entries may hold together.
        size_of: a value's bytes (e.g. `lambda bundle: bundle.nbytes`); called once, on put.
        max_items: an optional bound in entries as well.
    """

    def __init__(self, max_bytes: int, size_of: Callable[[V], int],
                 max_items: int | None = None):
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        if max_items is not None and max_items <= 0:
            raise ValueError(f"max_items must be > 0 or None, got {max_items}")
        self.max_bytes, self.max_items = max_bytes, max_items
        self._size_of = size_of
        # Each entry is (value, its size), so that the size is measured once, outside the lock.
        self._entries: LRUCache[K, tuple[V, int]] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda entry: entry[1])
        self._lock = threading.Lock()

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value under `key` (now the most recently used), or `default`."""
        with self._lock:
            entry = self._entries.get(key)
        return default if entry is None else entry[0]

    def put(self, key: K, value: V) -> bool:
        """Keep `value` under `key`, evicting the least recently used entries to make room.

        Returns:
            False when the value alone is over `max_bytes`: it is not kept, and neither is an
            older value under the same key (it would be stale).
        """
        size = int(self._size_of(value))  # outside the lock: it may walk the value
        if size < 0:
            raise ValueError(f"size_of gave {size} bytes for key {key!r}; it must be >= 0")
        with self._lock:
            self._entries.pop(key, None)
            if size > self.max_bytes:  # LRUCache would refuse it with ValueError
                return False
            self._entries[key] = (value, size)
            while self.max_items is not None and len(self._entries) > self.max_items:
                self._entries.popitem()  # the least recently used
            return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    @property
    def nbytes(self) -> int:
        """The bytes the entries hold now, as `size_of` counted them."""
        with self._lock:
            return int(self._entries.currsize)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Whether `key` is cached, without making it recently used."""
        with self._lock:
            return key in self._entries
