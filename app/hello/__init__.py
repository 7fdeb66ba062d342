"""hello: the sample Flask app deployed by this project's Ansible roles.

Run it with ``gunicorn hello.wsgi:app`` from the app root (the directory that
contains this package). Static files under ``hello/static/`` are served by
nginx at ``/static/`` in production and by Flask itself in development.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from hello import jobs
from . import admin

# /api/sleep waits at most this long (milliseconds).
SLEEP_MAX_MS = 2000

__version__ = "1.0.0"

APP_NAME = "hello"

#: The app root: the directory holding the ``hello`` package, i.e. one
#: deployed release. An optional ``RELEASE`` file there names the release.
DEFAULT_APP_ROOT = Path(__file__).resolve().parent.parent

UNKNOWN_RELEASE = "unknown"

# A plain decimal number: optional sign, digits with an optional fraction,
# optional exponent. ASCII only, so no "1_000", no "٣", no "nan"/"inf".
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_MAX_NUMBER_LEN = 64

Number = int | float


class ParameterError(ValueError):
    """A query parameter is missing or is not an acceptable value."""


def read_release(app_root: Path, environ: Mapping[str, str] | None = None) -> str:
    """Return the id of the running release.

    ``APP_RELEASE`` from the environment wins (the systemd unit sets it);
    otherwise the first line of ``<app_root>/RELEASE``; otherwise "unknown".
    """
    env = os.environ if environ is None else environ
    release = env.get("APP_RELEASE", "").strip()
    if release:
        return release
    try:
        lines = (app_root / "RELEASE").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return UNKNOWN_RELEASE
    release = lines[0].strip() if lines else ""
    return release or UNKNOWN_RELEASE


def parse_number(name: str, args: Mapping[str, str]) -> Number:
    """Parse query parameter ``name`` as a finite int or float."""
    raw = args.get(name)
    if raw is None or not raw.strip():
        raise ParameterError(f"missing parameter '{name}'")
    text = raw.strip()
    if len(text) > _MAX_NUMBER_LEN or not _NUMBER_RE.fullmatch(text):
        raise ParameterError(f"parameter '{name}' must be a number")
    if "." not in text and "e" not in text.lower():
        return int(text)
    value = float(text)
    if not math.isfinite(value):
        raise ParameterError(f"parameter '{name}' must be a finite number")
    return value


def _is_api_path(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def _json_error(message: str, status: int) -> Response:
    response = jsonify(status="error", error=message)
    response.status_code = status
    return response


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory.

    ``config`` overrides the defaults (tests pass ``TESTING``, ``APP_ROOT``
    and so on). The release id is read once, at start-up: a release never
    changes while its processes run.
    """
    app = Flask(__name__)  # static folder hello/static, served at /static

    secret_key = os.environ.get("SECRET_KEY", "")
    app.config.from_mapping(
        SECRET_KEY=secret_key or secrets.token_hex(32),
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        APP_ROOT=str(DEFAULT_APP_ROOT),
        # The job queue (see hello.jobs); unset: /api/jobs/* answer 503.
        CELERY_BROKER_URL=os.environ.get("CELERY_BROKER_URL", ""),
        CELERY_RESULT_BACKEND=os.environ.get("CELERY_RESULT_BACKEND", ""),
    )
    if config:
        app.config.update(config)
    if "RELEASE" not in app.config:
        app.config["RELEASE"] = read_release(Path(app.config["APP_ROOT"]))
    if not secret_key and not app.testing:
        app.logger.warning(
            "SECRET_KEY is not set; using a random per-process key "
            "(sessions will not survive restarts or span workers)"
        )

    # nginx is the one proxy in front of gunicorn: trust one hop of
    # X-Forwarded-For/-Proto/-Host/-Port.
    app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
        app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1
    )

    _register_routes(app)
    jobs.init_app(app)
    admin.register(app)  # /admin/ (hello/admin.py)
    app.register_error_handler(HTTPException, _handle_http_exception)
    return app


def _register_routes(app: Flask) -> None:
    @app.get("/")
    def index() -> str:
        return render_template(
            "index.html",
            app_name=APP_NAME,
            release=app.config["RELEASE"],
            version=__version__,
        )

    @app.get("/healthz")
    def healthz() -> Response:
        # host: which machine answered (several app hosts behind a load balancer)
        response = jsonify(
            status="OK",
            release=app.config["RELEASE"],
            version=__version__,
            host=socket.gethostname(),
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/api/add")
    def api_add() -> ResponseReturnValue:
        try:
            a = parse_number("a", request.args)
            b = parse_number("b", request.args)
        except ParameterError as exc:
            return _json_error(str(exc), 400)
        total = a + b
        if isinstance(total, float) and not math.isfinite(total):
            return _json_error("sum of 'a' and 'b' is out of range", 400)
        return jsonify(status="OK", sum=total)

    @app.get("/api/sleep")
    def api_sleep() -> ResponseReturnValue:
        # An I/O-bound request (waiting, not computing): what the worker
        # classes differ on. Bounded so one request cannot hold a worker long.
        raw = request.args.get("ms", "")
        if not raw.isdigit() or int(raw) > SLEEP_MAX_MS:
            return _json_error(f"'ms' must be a whole number of milliseconds from 0 to {SLEEP_MAX_MS}", 400)
        time.sleep(int(raw) / 1000)
        return jsonify(status="OK", slept_ms=int(raw))

    @app.get("/api/time")
    def api_time() -> Response:
        # A fresh value per request, so a cached answer is recognisable
        # (nginx microcaching: apps[].cache). ?cookie=1 sets a cookie and
        # ?nostore=1 forbids caching: responses a cache must not keep.
        response = jsonify(status="OK", ns=time.time_ns())
        if request.args.get("cookie") == "1":
            response.set_cookie("seen", "1")
        if request.args.get("nostore") == "1":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/api/whoami")
    def api_whoami() -> Response:
        return jsonify(status="OK", client=request.remote_addr, scheme=request.scheme)


def _handle_http_exception(exc: HTTPException) -> ResponseReturnValue:
    """JSON errors under /api/; Flask's usual HTML error pages elsewhere."""
    if exc.code is None or not _is_api_path(request.path):
        return exc
    message = "not found" if exc.code == 404 else exc.name.lower()
    response = _json_error(message, exc.code)
    for header, value in exc.get_headers():
        if header.lower() != "content-type":  # keeps e.g. Allow on a 405
            response.headers[header] = value
    return response
