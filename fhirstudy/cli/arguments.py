"""The command line's parser and its argument types: each type turns one word into a value or
says, in one line, what was wrong (argparse then exits 2)."""
from __future__ import annotations

import argparse
import os

from fhirstudy.cli.exits import EXIT_USAGE
from fhirstudy.config import DEFAULT_DATABASE_URL
from fhirstudy.errors import FhirStudyError

DEFAULT_DB = DEFAULT_DATABASE_URL
MAX_JOBS = 256  # worker processes at most (-j)


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (what, and where to read more)."""

    def error(self, message: str):
        """Print the one line and exit 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_inputs(p: argparse.ArgumentParser) -> None:
    """The arguments of a command that converts records: INPUTs, --format, --quiet, --jobs."""
    from fhirstudy.sources import FORMATS

    p.add_argument("inputs", nargs="+", metavar="INPUT", help="a file or a folder of records")
    p.add_argument("--format", choices=FORMATS, help="skip detection and read INPUT as this format")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print warnings")
    p.add_argument("-j", "--jobs", type=jobs, default=1, metavar="N",
                   help=f"map and validate in N processes (default 1, at most {MAX_JOBS})")


def add_no_narrative(p: argparse.ArgumentParser, help: str) -> None:
    """The --no-narrative flag (``args.no_narrative``): resources without the ``text`` fhirstudy
    generates, for a store that does not want them; ``help`` says it for the command."""
    p.add_argument("--no-narrative", action="store_true", help=help)


def add_db(p: argparse.ArgumentParser, what: str = "database URL") -> None:
    """The --db URL argument."""
    p.add_argument("--db", default=DEFAULT_DB, metavar="URL", help=f"{what} (default {DEFAULT_DB})")


def missing_inputs(inputs: list[str]) -> list[str]:
    """The files and folders named on the command line that do not exist."""
    return [i for i in inputs if not os.path.lexists(i)]


def positive(text: str, maximum: int | None = None) -> int:
    """An argparse type: a whole number from 1 (to ``maximum``)."""
    from fhirstudy.limits import MAX_INTEGER, parse_integer

    try:
        return parse_integer(text, "the value", minimum=1, maximum=maximum or MAX_INTEGER)
    except FhirStudyError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("the value ")) from None


def jobs(text: str) -> int:
    """An argparse type: worker processes, 1 to :data:`MAX_JOBS`."""
    return positive(text, MAX_JOBS)


def count(where: str, minimum: int, maximum: int):
    """An argparse type: a whole number from ``minimum`` to ``maximum`` (fhirstudy.limits.parse_integer)."""
    from fhirstudy.limits import parse_integer

    def parse(text: str) -> int:
        try:
            return parse_integer(text, where, minimum=minimum, maximum=maximum)
        except FhirStudyError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def port(text: str) -> int:
    """An argparse type: a TCP port (1 to 65535, ASCII digits)."""
    return count("--port", 1, 65535)(text)


def megabytes_or_zero(text: str) -> float:
    """An argparse type: a size in MB, 0 or more (``--cache-mb``)."""
    return 0.0 if text.strip() in ("0", "0.0") else megabytes(text)


def megabytes(text: str) -> float:
    """An argparse type: a size in MB above zero (``--max-body-mb``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be above zero")
    return value


def seconds(maximum: float):
    """An argparse type: a number of seconds above 0 and at most ``maximum``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 < value <= maximum:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 and at most {maximum:g}, "
                                             f"not {text!r}")
        return value

    return parse


def url(text: str) -> str:
    """An argparse type: a FHIR base (or token) URL with http:// or https://."""
    from fhirstudy.errors import PushError
    from fhirstudy.push.client import check_base_url

    try:
        return check_base_url(text, "the URL")
    except PushError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
