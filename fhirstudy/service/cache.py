"""A per-process cache of search responses, valid while the database has not been written.

Apps beside the EHR ask the same few questions again and again (``condition=breast-cancer``). A
response is kept with the store's write generation (``SqlStore.generation()``, one indexed
lookup); any write anywhere, by any process, moves the generation on and the entry is ignored.
Bounded by total bytes, keys included (a search key is its arguments: a long query with a small
answer must not fill memory with keys), least recently used out first; a search whose arguments
exceed :data:`MAX_KEY_BYTES` is answered but not kept.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from fhirstudy.config import DEFAULT_SEARCH_CACHE_BYTES as DEFAULT_BYTES  # the named default, defined once

MAX_KEY_BYTES = 4 * 2**10  # searches with longer arguments are not cached
ENTRY_OVERHEAD = 256        # bytes charged per entry for the Python objects around key and body


def key_bytes(key: object) -> int:
    """Roughly the memory of ``key``: the length of its strings, over nested tuples."""
    if isinstance(key, (str, bytes)):
        return len(key)
    if isinstance(key, tuple):
        return sum(key_bytes(part) for part in key)
    return 8


class ResponseCache:
    """Response bodies by request key, each valid for one store generation."""

    def __init__(self, max_bytes: int = DEFAULT_BYTES):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, tuple[int, bytes, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple, generation: int) -> bytes | None:
        """The body stored for ``key`` at ``generation``, or None."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[0] != generation:
                return None
            self._entries.move_to_end(key)
            return hit[1]

    def put(self, key: tuple, generation: int, body: bytes) -> None:
        """Keep ``body`` for ``key`` at ``generation`` (not kept: a key past :data:`MAX_KEY_BYTES`,
        or key and body larger than the budget)."""
        size = key_bytes(key)
        if size > MAX_KEY_BYTES:
            return
        size += len(body) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self._entries[key] = (generation, body, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    @property
    def size(self) -> int:
        """Bytes charged for what the cache holds (keys, bodies and overhead)."""
        return self._bytes
