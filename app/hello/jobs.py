"""The job API under /api/jobs/: enqueue jobs, read their state, heartbeat.

The web process publishes jobs by name and reads results from the result
backend; the Celery worker (``hello.tasks``) runs them. Every failure to
reach Redis is a 503 with a JSON error, answered within a few seconds; bad
input is a 400 naming the field.
"""

from __future__ import annotations

import math
import re
from typing import Any

from celery import Celery
from celery.backends.redis import RedisBackend
from celery.result import denied_join_result
from flask import Flask, Response, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from hello.tasks import (
    ADD_TASK,
    HEARTBEAT_KEY,
    MAX_SLEEP_SECONDS,
    SLEEP_TASK,
    make_celery,
)

#: ``app.extensions`` key of the web side's Celery app (None: no broker).
EXTENSION = "hello.jobs"

#: Numbers must be exact in every JSON consumer: |n| <= 2**53 - 1.
MAX_ABS_NUMBER = 2**53 - 1

#: A job request body is a tiny JSON object.
MAX_BODY_BYTES = 1024

_UUID_RE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    re.ASCII | re.IGNORECASE,
)

# What reaching Redis can raise: kombu wraps connection errors in
# OperationalError (a KombuError); redis-py raises RedisError subclasses;
# the socket layer raises OSError (TimeoutError is one).
_QUEUE_ERRORS = (KombuError, RedisError, OSError)

#: One quick second try: it replaces a pooled connection that went stale
#: (Redis restarted) without making a client wait for a broker that is down.
_PUBLISH_RETRY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}

NO_QUEUE_MESSAGE = "no job queue configured"
QUEUE_DOWN_MESSAGE = "job queue unavailable: cannot reach Redis"

Number = int | float


class InputError(ValueError):
    """The request body is not an acceptable job request."""


def init_app(app: Flask) -> None:
    """Build the web side's Celery app from the Flask config; add routes.

    ``CELERY_BROKER_URL`` unset or blank: the job endpoints answer 503 and
    nothing else changes.
    """
    broker = (app.config.get("CELERY_BROKER_URL") or "").strip()
    celery_app: Celery | None = None
    if broker:
        environ = {
            "CELERY_BROKER_URL": broker,
            "CELERY_RESULT_BACKEND": app.config.get("CELERY_RESULT_BACKEND") or "",
        }
        celery_app = make_celery(environ, web=True)
    app.extensions[EXTENSION] = celery_app
    _register_routes(app)


def _json_error(message: str, status: int) -> Response:
    response = jsonify(status="error", error=message)
    response.status_code = status
    return response


def _queue() -> Celery | None:
    celery_app: Celery | None = current_app.extensions[EXTENSION]
    return celery_app


def _queue_down(exc: BaseException) -> Response:
    # The exception text names host and port, never the password.
    current_app.logger.warning("job queue unreachable: %s: %s", type(exc).__name__, exc)
    return _json_error(QUEUE_DOWN_MESSAGE, 503)


def _json_body() -> dict[str, Any]:
    request.max_content_length = MAX_BODY_BYTES  # larger: 413, as JSON
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise InputError("request body must be a JSON object")
    return body


def _number(body: dict[str, Any], name: str) -> Number:
    if name not in body:
        raise InputError(f"missing field '{name}'")
    value = body[name]
    # bool is an int subclass in Python; true/false are not numbers.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"field '{name}' must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"field '{name}' must be a finite number")
    if abs(value) > MAX_ABS_NUMBER:
        raise InputError(
            f"field '{name}' is out of range (at most {MAX_ABS_NUMBER} in magnitude)"
        )
    return value


def _only_fields(body: dict[str, Any], *names: str) -> None:
    extra = sorted(set(body) - set(names))
    if extra:
        raise InputError(f"unexpected field '{extra[0]}'")


def _enqueue(name: str, args: list[Number]) -> ResponseReturnValue:
    queue = _queue()
    if queue is None:
        return _json_error(NO_QUEUE_MESSAGE, 503)
    try:
        # The web side never waits for a result, so it must not subscribe
        # to each job's result channel (the Redis backend would, keeping one
        # subscription per job for the life of the process).
        with denied_join_result():
            result = queue.send_task(
                name, args=args, retry=True, retry_policy=_PUBLISH_RETRY
            )
    except _QUEUE_ERRORS as exc:
        return _queue_down(exc)
    return jsonify(id=result.id), 202


def _register_routes(app: Flask) -> None:
    @app.post("/api/jobs/add")
    def jobs_add() -> ResponseReturnValue:
        try:
            body = _json_body()
            _only_fields(body, "a", "b")
            a = _number(body, "a")
            b = _number(body, "b")
        except InputError as exc:
            return _json_error(str(exc), 400)
        return _enqueue(ADD_TASK, [a, b])

    @app.post("/api/jobs/sleep")
    def jobs_sleep() -> ResponseReturnValue:
        try:
            body = _json_body()
            _only_fields(body, "seconds")
            seconds = _number(body, "seconds")
            if not 0 < seconds <= MAX_SLEEP_SECONDS:
                raise InputError(
                    f"field 'seconds' must be greater than 0 and at most "
                    f"{MAX_SLEEP_SECONDS}, got {seconds}"
                )
        except InputError as exc:
            return _json_error(str(exc), 400)
        return _enqueue(SLEEP_TASK, [seconds])

    @app.get("/api/jobs/heartbeat")
    def jobs_heartbeat() -> ResponseReturnValue:
        queue = _queue()
        if queue is None:
            return _json_error(NO_QUEUE_MESSAGE, 503)
        backend = queue.backend
        if not isinstance(backend, RedisBackend):
            return _json_error("the heartbeat needs a Redis result backend", 503)
        try:
            raw = backend.client.get(HEARTBEAT_KEY)
        except _QUEUE_ERRORS as exc:
            return _queue_down(exc)
        last = raw.decode("ascii") if isinstance(raw, bytes) else raw
        return jsonify(last=last)

    @app.get("/api/jobs/<job_id>")
    def jobs_state(job_id: str) -> ResponseReturnValue:
        if job_id in ("add", "sleep"):  # GET on a POST-only route
            abort(405, valid_methods=["POST"])
        if not _UUID_RE.fullmatch(job_id):
            return _json_error("job id must be a UUID", 400)
        queue = _queue()
        if queue is None:
            return _json_error(NO_QUEUE_MESSAGE, 503)
        try:
            meta = queue.backend.get_task_meta(job_id.lower())
        except _QUEUE_ERRORS as exc:
            return _queue_down(exc)
        state = meta["status"]
        payload: dict[str, Any] = {"state": state}
        if state == "SUCCESS":
            payload["result"] = meta["result"]
        elif state == "FAILURE":
            # The exception type only: its message may say more than a
            # client should see.
            exc = meta["result"]
            payload["error"] = (
                type(exc).__name__ if isinstance(exc, BaseException) else "error"
            )
        return jsonify(payload)
