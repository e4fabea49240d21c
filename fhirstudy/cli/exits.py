"""Exit codes, and the one place where an error that ended a command becomes one line on stderr."""
from __future__ import annotations

import os
import sys

from fhirstudy.config import BY_KEY, ConfigError
from fhirstudy.errors import FhirStudyError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 70, 130
DEBUG_ENV = BY_KEY["DEBUG"].env


class UsageError(FhirStudyError):
    """A mistake in the command line or its files, found before any work: exit 2."""


def error_line(exc: Exception) -> tuple[int, str]:
    """The exit code and the one line for an error that ended a command."""
    from fhirstudy.outputs import OutputError

    message = " ".join(str(exc).split())
    if isinstance(exc, (UsageError, OutputError, ConfigError)):
        return EXIT_USAGE, f"error: {message}"
    if isinstance(exc, FhirStudyError):
        return EXIT_FAILED, f"error: {message}"
    return EXIT_INTERNAL, (f"error: internal error: {type(exc).__name__}: {message}; "
                           f"run with {DEBUG_ENV}=1 for the traceback")


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
