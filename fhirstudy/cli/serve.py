"""``fhirstudy serve``: the FHIR REST endpoint under gunicorn (or Flask's server with --dev).

The options become ``create_app`` config keys; what they leave unset comes from
:mod:`fhirstudy.config` (``FHIRSTUDY_<KEY>``) inside ``create_app``."""
from __future__ import annotations

import argparse
import errno
import sys

from fhirstudy.cli.arguments import add_db, megabytes, megabytes_or_zero, port, positive
from fhirstudy.cli.exits import EXIT_OK, UsageError

NAME = "serve"
HELP = "serve the FHIR REST endpoint"
DEFAULT_PORT = 8080
DEFAULT_WORKERS = 2
DEFAULT_THREADS = 32


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``serve``."""
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port, default=DEFAULT_PORT)
    add_db(p)
    p.add_argument("--workers", type=positive, default=DEFAULT_WORKERS,
                   help=f"gunicorn worker processes (default {DEFAULT_WORKERS})")
    p.add_argument("--threads", type=positive, default=DEFAULT_THREADS,
                   help=f"requests each worker serves at once (gunicorn gthread; default {DEFAULT_THREADS})")
    p.add_argument("--dev", action="store_true", help="use Flask's development server instead of gunicorn")
    p.add_argument("--cache-mb", type=megabytes_or_zero, default=None, metavar="MB",
                   help="search responses kept per worker until the next write (default 64; 0: none)")
    p.add_argument("--max-body-mb", type=megabytes, default=None, metavar="MB",
                   help="largest request body taken, larger ones get 413 (default 8, or "
                        "$FHIRSTUDY_MAX_BODY_BYTES in bytes)")
    p.add_argument("--base-url", metavar="URL", default=None,
                   help="the public base URL put in fullUrl, Location and links (default "
                        "$FHIRSTUDY_BASE_URL; without one, taken from each request's Host header)")
    p.add_argument("--write-token", metavar="TOKEN", default=None,
                   help="accept writes (PUT, POST, DELETE) from clients presenting this bearer token "
                        "(default: $FHIRSTUDY_WRITE_TOKEN; without one, writes are refused)")


def app_config(args: argparse.Namespace) -> dict:
    """The ``create_app`` config keys the options set."""
    config = {"DATABASE_URL": args.db}
    if args.cache_mb is not None:
        config["SEARCH_CACHE_BYTES"] = int(args.cache_mb * 2**20)
    if args.max_body_mb is not None:
        config["MAX_BODY_BYTES"] = int(args.max_body_mb * 2**20)
    if args.base_url:
        config["BASE_URL"] = args.base_url
    if args.write_token:
        config["WRITE_TOKEN"] = args.write_token
    return config


def run(args: argparse.Namespace) -> int:
    """Serve the FHIR REST endpoint: gunicorn by default, Flask's server with --dev."""
    from fhirstudy.errors import StoreError
    from fhirstudy.server import create_app

    config = app_config(args)
    check_listen(args.host, args.port)
    try:
        app = create_app(config)
    except StoreError as exc:
        raise UsageError(f"cannot open the database --db {args.db}: {exc}") from None
    print(f"serving FHIR R5 at http://{args.host}:{args.port}/ from {args.db}", file=sys.stderr)
    if args.dev:
        app.run(host=args.host, port=args.port)
        return EXIT_OK
    from fhirstudy.server.wsgi import run_gunicorn

    run_gunicorn(app, host=args.host, port=args.port, workers=args.workers, threads=args.threads)
    return EXIT_OK


def check_listen(host: str, port: int) -> None:
    """UsageError unless the server can listen on ``host``:``port`` (checked the way gunicorn binds,
    with SO_REUSEADDR, before anything else is started)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: not an address this machine has ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {host} is in use (another fhirstudy serve?); "
                                 f"stop it or choose another with --port (PORT= for make run)") from None
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
