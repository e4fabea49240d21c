"""The ``fhirstudy`` command's entry point: :data:`COMMANDS` (one module per command), the parser
made from it, and :func:`main`, where errors become one line and an exit code."""
from __future__ import annotations

import argparse
import sys

from fhirstudy import __version__, config
from fhirstudy.cli import convert, export, fetch, load, match, push, reindex, serve, sync, validate
from fhirstudy.cli.arguments import Parser, missing_inputs
from fhirstudy.cli.exits import DEBUG_ENV, EXIT_FAILED, EXIT_INTERRUPTED, error_line, quiet_stdout

# Each command is a module with NAME, HELP, add_arguments(parser) and run(args) -> exit code; a new
# command is one module and one entry here (the order is the order of ``fhirstudy --help``).
COMMANDS = (convert, load, reindex, serve, push, validate, match, export, fetch, sync)


def parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command in :data:`COMMANDS`; with ``only`` (a command's name), only that
    command's arguments are built, the others named with their help (building a command's
    arguments imports what their choices and defaults come from: all of them took most of a
    second before any command ran)."""
    top = Parser(prog="fhirstudy", description="Clinical-trial records to FHIR R5.")
    top.add_argument("--version", action="version", version=f"fhirstudy {__version__}")
    sub = top.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        p = sub.add_parser(command.NAME, help=command.HELP)
        if only is None or command.NAME == only:
            command.add_arguments(p)
        p.set_defaults(func=command.run, parser=p)
    return top


def _command_named(argv: list[str]) -> str:
    """The command ``argv`` names: its first word that is not an option (the top level takes no
    option with a value), or "" when that is none of them (no command's arguments are built: the
    usage error or ``--help`` names the commands all the same)."""
    first = next((word for word in argv if not word.startswith("-")), None)
    return first if first in {command.NAME for command in COMMANDS} else ""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fhirstudy`` console script: the one place where errors become one line
    on stderr and an exit code (a traceback only with FHIRSTUDY_DEBUG=1)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    top = parser(_command_named(argv))
    args = top.parse_args(argv)
    try:
        debug = config.value("DEBUG")
    except config.ConfigError as exc:
        top.error(str(exc))
    missing = missing_inputs(getattr(args, "inputs", None) or getattr(args, "files", None) or [])
    if missing:
        top.error(f"no such file or folder: {', '.join(missing)}")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout's reader went away (| head): nothing more to say to it
        quiet_stdout()
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the last boundary: never a traceback
        if debug:
            raise
        code, line = error_line(exc)
        print(line, file=sys.stderr)
        return code


__all__ = ["COMMANDS", "DEBUG_ENV", "main", "parser"]
