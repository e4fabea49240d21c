"""A per-process cache of search responses, valid while the database has not been written.

Apps beside the EHR ask the same few questions again and again (``condition=breast-cancer``). A
response is kept with the store's write generation (``SqlStore.generation()``, one indexed
lookup); any write anywhere, by any process, moves the generation on and the entry is ignored.
Bounded by total bytes, least recently used out first.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

DEFAULT_BYTES = 64 * 2**20


class ResponseCache:
    """Response bodies by request key, each valid for one store generation."""

    def __init__(self, max_bytes: int = DEFAULT_BYTES):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, tuple[int, bytes]] = OrderedDict()
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
        """Keep ``body`` for ``key`` at ``generation`` (bodies larger than the budget are not kept)."""
        if len(body) > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old[1])
            self._entries[key] = (generation, body)
            self._bytes += len(body)
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= len(dropped)
