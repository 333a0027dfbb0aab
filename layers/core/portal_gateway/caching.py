"""The execution environment's small caches: an LRU whose entries expire (customer ids by mapping key, users'
status). Shared by billing and identity, so it belongs to neither."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class BoundedCache:
    """A small LRU per execution environment whose entries expire after `ttl_seconds`: mapping key -> customer id
    (so a mapping an operator changed with link/unlink is followed within that time), and users' status."""

    def __init__(self, capacity: int = 4096, ttl_seconds: float = 300, clock: Callable[[], float] = time.monotonic):
        self.capacity = capacity
        self.ttl = ttl_seconds
        self._clock = clock
        self._items: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            if self._clock() - found[1] >= self.ttl:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return found[0]

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = (value, self._clock())
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def discard(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)
