"""``fhirstudy reindex``: rebuild the search index of a store, online."""
from __future__ import annotations

import argparse
import sys

from fhirstudy.cli.arguments import add_db, positive
from fhirstudy.cli.exits import EXIT_OK

NAME = "reindex"
HELP = "rebuild the search index for the search parameters served (online)"
DEFAULT_BATCH = 500  # resources per transaction


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``reindex``."""
    add_db(p)
    p.add_argument("--batch", type=positive, default=DEFAULT_BATCH, metavar="N",
                   help=f"resources per transaction (default {DEFAULT_BATCH})")


def run(args: argparse.Namespace) -> int:
    """Rebuild the search index of the store at --db for the search parameters this fhirstudy
    serves (online: searches and writes go on; a progress bar on a terminal)."""
    from fhirstudy.store import open_store
    from fhirstudy.store.reindex import reindex

    store = open_store(args.db, check_index=False)
    try:
        if sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            with Progress("reindexing", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          transient=True) as bar:
                task = bar.add_task("reindex", total=None)
                report = reindex(store, batch=args.batch,
                                 progress=lambda done, total: bar.update(task, completed=done, total=total))
        else:
            report = reindex(store, batch=args.batch)
    finally:
        store.close()
    print(f"reindexed {report.resources} resources ({report.rewritten} written meanwhile, done again) "
          f"in {report.transactions} transactions, {report.seconds:.1f} s -> {args.db}", file=sys.stderr)
    return EXIT_OK
