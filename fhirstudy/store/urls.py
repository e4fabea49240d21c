"""Database URLs fhirstudy takes, and one clear line for each it cannot use.

Supported: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite://`` (memory)
and ``postgresql://user:password@host:port/database`` (also ``postgres://`` and
``postgresql+psycopg://``; needs ``pip install 'fhirstudy[postgres]'``).
"""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from fhirstudy.errors import StoreError

SUPPORTED = "sqlite:///path.db (a file), sqlite:// (memory) or postgresql://user@host/database"
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
MEMORY = ("sqlite://", "sqlite:///:memory:")


def database_url(url: str) -> str:
    """``url`` as SQLAlchemy takes it (PostgreSQL through psycopg 3), or :class:`StoreError`
    saying what is wrong with it: not a URL, an unsupported database, a SQLite file in a folder
    that does not exist."""
    if not isinstance(url, str) or "://" not in url:
        hint = f"; for a SQLite file write sqlite:///{Path(url).resolve()}" if isinstance(url, str) and url else ""
        raise StoreError(f"{url!r} is not a database URL{hint} (fhirstudy takes {SUPPORTED})")
    scheme, rest = url.split("://", 1)
    if scheme.lower() in POSTGRES_SCHEMES:
        return "postgresql+psycopg://" + rest
    if scheme.lower() != "sqlite":
        raise StoreError(f"fhirstudy does not support {scheme}:// databases; it takes {SUPPORTED}")
    if url in MEMORY:
        return url
    try:
        path = sa.engine.make_url(url).database
    except sa_exc.ArgumentError as exc:
        raise StoreError(f"{url!r} is not a database URL ({exc}); fhirstudy takes {SUPPORTED}") from exc
    if path and not path.startswith("file:"):
        folder = Path(path).expanduser().resolve().parent
        if not folder.is_dir():
            raise StoreError(f"cannot open the SQLite database {path}: the folder {folder} does not exist")
    return url


def driver_missing(url: str, exc: ImportError) -> StoreError:
    """The error for a database whose driver is not installed."""
    if url.startswith("postgresql"):
        return StoreError("PostgreSQL needs the psycopg driver, which is not installed: "
                          "pip install 'fhirstudy[postgres]'")
    return StoreError(f"the database driver for {url.split('://')[0]} is not installed: {exc}")
