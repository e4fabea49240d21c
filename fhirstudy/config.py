"""Configuration, read in one place: every setting fhirstudy takes from the environment.

:data:`SETTINGS` is the table: each :class:`Setting` has a key (``DATABASE_URL``), the
environment variable that sets it (``FHIRSTUDY_<KEY>``), a type, a named default and a line of
help.  :func:`read` returns typed values for the keys asked for, the way Flask's
``Config.from_prefixed_env`` reads ``FLASK_*`` variables; ``create_app`` hands the result to
``app.config.from_mapping``, so its ``test_config`` (and the command line) still wins.  An empty
variable counts as not set.  A value that is not of the setting's type is a :class:`ConfigError`
naming the variable: a 400-style :class:`fhirstudy.errors.InvalidRequest` for the server, one
line and exit 2 for the command line.

May import: :mod:`fhirstudy.errors` and :mod:`fhirstudy.limits` only (the readers' data loader,
:mod:`fhirstudy.mappings`, uses it, so nothing downstream, no web or SQL library).

``python -m fhirstudy.config`` prints the README's table of settings (:func:`markdown_table`).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fhirstudy import limits
from fhirstudy.errors import InvalidRequest

PREFIX = "FHIRSTUDY_"
DEFAULT_DATABASE_URL = "sqlite:///fhirstudy.db"
DEFAULT_SEARCH_CACHE_BYTES = 64 * 2**20   # search responses kept per app until the next write
DEFAULT_SEARCH_TIMEOUT_MS = 5000          # statements of one search or history request
DEFAULT_EXPORT_RETENTION_SECONDS = 3600   # a finished export's files are kept this long
DEFAULT_EXPORT_MAX_JOBS = 4               # export jobs queued or running at once (429 past it)
DEFAULT_EXPORT_POLL_SECONDS = 2           # a job's status polled more often: 429 (also Retry-After)
DEFAULT_EXPORT_STALE_SECONDS = 30         # a running job not heard of this long is run again
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(InvalidRequest):
    """A setting's value is not of its type (``where``: the environment variable)."""


def text(raw: str, where: str) -> str:
    """A setting's type: any text."""
    return raw


def path(raw: str, where: str) -> Path:
    """A setting's type: a file system path."""
    return Path(raw)


def flag(raw: str, where: str) -> bool:
    """A setting's type: 1 or 0 (also true/false, yes/no, on/off)."""
    word = raw.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ConfigError(f"{where} must be 1 or 0 (true/false, yes/no, on/off), not {raw!r}", expression=where)


def integer(minimum: int) -> Callable[[str, str], int]:
    """A setting's type: a whole number of at least ``minimum`` (:func:`fhirstudy.limits.parse_integer`)."""
    def parse(raw: str, where: str) -> int:
        try:
            return limits.parse_integer(raw, where, minimum=minimum)
        except InvalidRequest as exc:
            raise ConfigError(str(exc), expression=where) from None
    parse.__doc__ = f"a whole number, {minimum} or more"
    return parse


@dataclass(frozen=True)
class Setting:
    """One setting: ``key`` (also the ``create_app`` config key), its type (``parse(raw, where)``),
    its named default and what it does."""

    key: str
    parse: Callable[[str, str], Any]
    default: Any
    help: str

    @property
    def env(self) -> str:
        """The environment variable that sets it."""
        return PREFIX + self.key


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", text, DEFAULT_DATABASE_URL,
            "the store `create_app` opens: `sqlite:///path.db` or `postgresql://user:pw@host/db` "
            "(the commands take `--db URL`)"),
    Setting("BASE_URL", text, None,
            "the public base URL put in `fullUrl`, `Location` and links (`serve --base-url`); "
            "without one, taken from each request's `Host`"),
    Setting("WRITE_TOKEN", text, None,
            "the bearer token writes to the server must present (`serve --write-token`); "
            "without one, writes are refused (403)"),
    Setting("SEARCH_CACHE_BYTES", integer(0), DEFAULT_SEARCH_CACHE_BYTES,
            "search responses kept per worker until the next write (`serve --cache-mb`); 0 turns it off"),
    Setting("MAX_BODY_BYTES", integer(1), limits.MAX_BODY_BYTES,
            "the largest request body taken, larger ones get 413 (`serve --max-body-mb`)"),
    Setting("MAX_URL_BYTES", integer(1), limits.MAX_URL_BYTES, "path and query string of one request (414 past it)"),
    Setting("MAX_HEADER_BYTES", integer(1), limits.MAX_HEADER_BYTES, "one header line, name and value (431 past it)"),
    Setting("MAX_HEADER_FIELDS", integer(1), limits.MAX_HEADER_FIELDS, "header lines of one request (431 past it)"),
    Setting("SEARCH_TIMEOUT_MS", integer(0), DEFAULT_SEARCH_TIMEOUT_MS,
            "time for the statements of one search or `_history` request (400 `too-costly` past it); 0: no limit"),
    Setting("EXPORT_DIR", path, None,
            "where Bulk Data export files are written (default: `<db file>.exports/` beside a SQLite "
            "database, else `fhirstudy-exports/` in the working directory)"),
    Setting("EXPORT_RETENTION_SECONDS", integer(1), DEFAULT_EXPORT_RETENTION_SECONDS,
            "how long a finished (or failed) export and its files are kept (the manifest's `Expires`)"),
    Setting("EXPORT_MAX_JOBS", integer(1), DEFAULT_EXPORT_MAX_JOBS,
            "export jobs queued or running at once; a kick-off past it gets 429 with `Retry-After`"),
    Setting("EXPORT_POLL_SECONDS", integer(0), DEFAULT_EXPORT_POLL_SECONDS,
            "the least time between two status polls of one running export (429 when sooner; the "
            "`Retry-After` given); 0: no limit"),
    Setting("EXPORT_STALE_SECONDS", integer(1), DEFAULT_EXPORT_STALE_SECONDS,
            "a running export whose worker has not been heard of this long (killed) is run again "
            "from the start, by any worker"),
    Setting("EXPORT_PAGE_PAUSE_MS", integer(0), 0,
            "a pause after each page an export writes, so that a long export leaves the database to "
            "searches and writes; 0: none"),
    Setting("MAPPINGS_DIR", path, None,
            "a folder of mapping tables read instead of the package's own (`fhirstudy/mappings/`)"),
    Setting("PUSH_TOKEN", text, None, "the bearer token `fhirstudy push` sends (`push --token`)"),
    Setting("CTGOV_API", text, None,
            "the ClinicalTrials.gov API v2 base URL `fetch` and `sync` read (`--api`; default "
            "https://clinicaltrials.gov/api/v2): a mirror or a stand-in"),
    Setting("DEBUG", flag, False, "1: a command's internal error shows its traceback instead of one line"),
)
BY_KEY: Mapping[str, Setting] = MappingProxyType({s.key: s for s in SETTINGS})
SERVER_KEYS = ("DATABASE_URL", "BASE_URL", "WRITE_TOKEN", "SEARCH_CACHE_BYTES",
               "MAX_BODY_BYTES", "MAX_URL_BYTES", "MAX_HEADER_BYTES", "MAX_HEADER_FIELDS",
               "EXPORT_DIR", "EXPORT_RETENTION_SECONDS", "EXPORT_MAX_JOBS", "EXPORT_POLL_SECONDS",
               "EXPORT_STALE_SECONDS", "EXPORT_PAGE_PAUSE_MS")


def read(keys: Iterable[str] | None = None, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The settings ``keys`` (all of :data:`SETTINGS` when None), each from ``FHIRSTUDY_<KEY>`` in
    ``environ`` as its type, else its default; ConfigError for a value not of its type."""
    chosen = SETTINGS if keys is None else [_setting(key) for key in keys]
    values = {}
    for setting in chosen:
        raw = environ.get(setting.env)
        values[setting.key] = setting.default if raw is None or raw == "" else setting.parse(raw, setting.env)
    return values


def value(key: str, environ: Mapping[str, str] = os.environ) -> Any:
    """The one setting ``key`` (see :func:`read`)."""
    return read((key,), environ)[key]


def _setting(key: str) -> Setting:
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"{key!r} is not a fhirstudy setting (see fhirstudy.config.SETTINGS)") from None


def _shown(setting: Setting) -> str:
    default = setting.default
    if default is None:
        return "not set"
    if isinstance(default, bool):
        return "0" if not default else "1"
    if isinstance(default, int) and default >= 2**10 and default % 2**10 == 0:
        mib, kib = divmod(default, 2**20)
        return f"{default} ({mib} MiB)" if not kib else f"{default} ({default // 2**10} KiB)"
    return f"`{default}`" if isinstance(default, str) else str(default)


def markdown_table() -> str:
    """The README's table of settings, made from :data:`SETTINGS`."""
    lines = ["| environment variable | type | default | what it sets |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        kind = (s.parse.__doc__ or s.parse.__name__).removeprefix("A setting's type: ").rstrip(".")
        lines.append(f"| `{s.env}` | {kind} | {_shown(s)} | {s.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
