"""The ``fhirstudy`` command: convert, load, reindex, serve, push, validate.

One module per command (``convert``, ``load``, ``reindex``, ``serve``, ``push``, ``validate``:
each declares NAME, HELP, ``add_arguments`` and ``run``), listed once in
:data:`fhirstudy.cli.main.COMMANDS`; beside them ``arguments`` (the parser and argument types),
``progress`` (what stderr shows as a run goes), ``summary`` (counts, summary line, report) and
``exits`` (exit codes, the one line an error becomes).  The room at the end of the flow: it may
import every other room of fhirstudy (most of them lazily, inside a command's ``run``, so that
``--help`` stays quick); nothing imports it.

Exit codes: 0 when every record converted (or every file is valid), 1 when some failed (each
reported on stderr with file, record number, field and reason), 2 on usage errors and bad
``FHIRSTUDY_*`` settings (one line on stderr saying what and where, before any work), 70 on an
internal error (one line; set FHIRSTUDY_DEBUG=1 for the traceback). No traceback reaches the user.
convert, load and validate end with a one-line summary on stderr, also when they fail; on a
terminal a progress display on stderr shows the work as it goes (stdout carries only the output).
"""
from __future__ import annotations

from fhirstudy.cli.arguments import DEFAULT_DB, MAX_JOBS
from fhirstudy.cli.exits import (DEBUG_ENV, EXIT_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE,
                                 UsageError)
from fhirstudy.cli.load import MAX_STORE_FAILURES_IN_A_ROW
from fhirstudy.cli.main import COMMANDS, main
from fhirstudy.cli.push import PUSH_AUTH_HINT, PUSH_IDS
from fhirstudy.cli.serve import DEFAULT_PORT
from fhirstudy.cli.summary import SKIPPED_NAMES_SHOWN

__all__ = ["COMMANDS", "DEBUG_ENV", "DEFAULT_DB", "DEFAULT_PORT", "EXIT_FAILED", "EXIT_INTERNAL",
           "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "MAX_JOBS", "MAX_STORE_FAILURES_IN_A_ROW", "PUSH_AUTH_HINT",
           "PUSH_IDS", "SKIPPED_NAMES_SHOWN", "UsageError", "main"]
