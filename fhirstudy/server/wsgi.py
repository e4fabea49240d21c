"""Running the Flask app under gunicorn, the production WSGI server."""
from __future__ import annotations

from gunicorn.app.base import BaseApplication


class _Gunicorn(BaseApplication):
    def __init__(self, app, options: dict):
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        return self._app


def run_gunicorn(app, host: str, port: int, workers: int = 2) -> None:
    """Serve ``app`` with gunicorn on host:port with ``workers`` processes, until stopped."""
    _Gunicorn(app, {"bind": f"{host}:{port}", "workers": workers, "accesslog": None,
                    "errorlog": "-", "loglevel": "warning"}).run()
