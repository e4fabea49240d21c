"""The stored form of a resource's JSON: a zstd frame compressed with a dictionary kept in the
database, and the one place stored bytes are turned back into the JSON every caller reads.

``fhirstudy_dictionary`` (:data:`fhirstudy.store.schema.dictionary`) holds the dictionaries by id;
a new database gets fhirstudy's default one (id 1, ``mappings/content-dictionary.json``, trained
by ``tools/train_content_dictionary.py`` from the converted seeds and ClinicalTrials.gov samples).
Each content value is a zstd frame without the 4-byte magic number whose header names the
dictionary it was compressed with (zstd's own Dictionary_ID field, one byte below 256), so a
dictionary trained later (:func:`train_dictionary`) is used for new writes while every older
row still reads with its own.  Compression is zstd level :data:`LEVEL`: a few microseconds per
resource each way.

:class:`Codec` belongs to one store (its compressors are per thread: zstd contexts are not
shared between threads); :meth:`Codec.decode` is what every read of ``resource.content`` and
``resource_history.content`` goes through, so callers get the exact bytes that were written.
"""
from __future__ import annotations

import base64
import threading

import orjson
import sqlalchemy as sa
import zstandard

from fhirstudy import mappings
from fhirstudy.errors import StoreError
from fhirstudy.store.schema import dictionary, resource

LEVEL = 3  # zstd level: fast enough for every write, most of the gain of higher levels with a dictionary
DICTIONARY_SIZE = 64 * 1024  # bytes of a trained dictionary
TRAIN_SAMPLES = 5000  # stored resources a new dictionary is trained from at most
DEFAULT_DICTIONARY = "content-dictionary.json"
_FORMAT = zstandard.FORMAT_ZSTD1_MAGICLESS  # every value is a frame: the magic number says nothing


def default_dictionary() -> tuple[int, bytes]:
    """fhirstudy's default dictionary (``mappings/content-dictionary.json``): its id and bytes."""
    table = mappings.load(DEFAULT_DICTIONARY)
    return table["id"], base64.b64decode(table["dictionary"])


class Codec:
    """Compresses JSON for the content columns with the newest dictionary of the database at
    ``engine`` and decompresses with whichever dictionary a value names."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._dictionaries: dict[int, zstandard.ZstdCompressionDict] = {}
        self._local = threading.local()  # per thread: {("c"|"d", id): (de)compressor}
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self, conn: sa.Connection | None = None) -> None:
        """Read the database's dictionaries (after another process trained one)."""
        if conn is None:
            with self.engine.connect() as own:
                return self.refresh(own)
        found = {row.id: zstandard.ZstdCompressionDict(row.content)
                 for row in conn.execute(sa.select(dictionary.c.id, dictionary.c.content))}
        with self._lock:
            self._dictionaries.update(found)

    @property
    def current(self) -> int:
        """The id of the dictionary new content is compressed with (the newest)."""
        return max(self._dictionaries)

    def encode(self, data: bytes) -> bytes:
        """``data`` (JSON bytes) as the content column holds it."""
        return self._coder("c", self.current).compress(data)

    def decode(self, blob: bytes | memoryview) -> bytes:
        """The JSON bytes a content value holds, exactly as they were encoded."""
        blob = bytes(blob)
        try:
            dict_id = zstandard.get_frame_parameters(blob, format=_FORMAT).dict_id
        except zstandard.ZstdError as exc:
            raise StoreError(f"a stored resource is not readable ({exc}); was the database written "
                             f"by another program?") from exc
        if dict_id not in self._dictionaries:
            self.refresh()
            if dict_id not in self._dictionaries:
                raise StoreError(f"a stored resource names compression dictionary {dict_id}, which "
                                 f"the database does not hold")
        return self._coder("d", dict_id).decompress(blob)

    def _coder(self, kind: str, dict_id: int):
        coders = getattr(self._local, "coders", None)
        if coders is None:
            coders = self._local.coders = {}
        coder = coders.get((kind, dict_id))
        if coder is None:
            data = self._dictionaries[dict_id]
            if kind == "c":
                params = zstandard.ZstdCompressionParameters.from_level(
                    LEVEL, format=_FORMAT, write_content_size=True, write_checksum=False, write_dict_id=True)
                coder = zstandard.ZstdCompressor(dict_data=data, compression_params=params)
            else:
                coder = zstandard.ZstdDecompressor(dict_data=data, format=_FORMAT)
            coders[(kind, dict_id)] = coder
        return coder


def add_default_dictionary(conn: sa.Connection) -> None:
    """Give a database without dictionaries fhirstudy's default one."""
    if conn.execute(sa.select(dictionary.c.id).limit(1)).first() is None:
        dict_id, data = default_dictionary()
        conn.execute(sa.insert(dictionary).values(id=dict_id, content=data))


def train_dictionary(codec: Codec, samples: int = TRAIN_SAMPLES, size: int = DICTIONARY_SIZE) -> int:
    """Train a dictionary from (up to ``samples``) stored resources, store it under the next id
    and compress new content with it; its id.  Rows written before keep theirs."""
    with codec.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(resource)
                             .where(resource.c.deleted.is_(False))).scalar_one()
        step = max(1, total // samples)
        blobs = conn.execute(sa.select(resource.c.content).where(resource.c.deleted.is_(False),
                                                                 resource.c.pk % step == 0)
                             .order_by(resource.c.pk).limit(samples)).scalars().all()
    data = [codec.decode(blob) for blob in blobs]
    if len(data) < 10:
        raise StoreError(f"a dictionary needs at least 10 stored resources to learn from, not {len(data)}")
    with codec.engine.begin() as conn:
        dict_id = (conn.execute(sa.select(sa.func.max(dictionary.c.id))).scalar() or 0) + 1
        trained = zstandard.train_dictionary(size, data, level=LEVEL, dict_id=dict_id)
        conn.execute(sa.insert(dictionary).values(id=dict_id, content=trained.as_bytes()))
    codec.refresh()
    return dict_id


def dictionary_json(dict_id: int, data: list[bytes], source: str, size: int = DICTIONARY_SIZE) -> bytes:
    """``mappings/content-dictionary.json`` for a dictionary trained from ``data`` (the tool's work)."""
    trained = zstandard.train_dictionary(size, data, level=LEVEL, dict_id=dict_id)
    table = {"id": dict_id, "level": LEVEL, "size": size, "samples": len(data), "trainedFrom": source,
             "zstandard": zstandard.__version__, "dictionary": base64.b64encode(trained.as_bytes()).decode()}
    return orjson.dumps(table, option=orjson.OPT_INDENT_2) + b"\n"
