"""Moved to :mod:`fhirstudy.service.cache`; kept so old imports keep working."""
from fhirstudy.service.cache import DEFAULT_BYTES, ENTRY_OVERHEAD, MAX_KEY_BYTES, ResponseCache, key_bytes

__all__ = ["DEFAULT_BYTES", "ENTRY_OVERHEAD", "MAX_KEY_BYTES", "ResponseCache", "key_bytes"]
