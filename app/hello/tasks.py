"""hello's background jobs: a Celery app with Redis as broker and result store.

Worker and beat load the module-level app object::

    python -m celery -A hello.tasks:celery worker --concurrency 2
    python -m celery -A hello.tasks:celery beat --schedule <state dir>/beat-schedule

Configuration comes from the environment only:

- ``CELERY_BROKER_URL``: the Redis broker, e.g.
  ``redis://:PASSWORD@127.0.0.1:6379/0`` or
  ``redis+socket://:PASSWORD@/run/redis-hello/redis.sock?virtual_host=0``.
  Unset means "no job queue": the web app answers 503 on /api/jobs/*, and
  worker and beat refuse to start.
- ``CELERY_RESULT_BACKEND``: where results and the heartbeat are kept;
  defaults to the broker URL. It must be a Redis URL (``redis://``,
  ``rediss://`` or ``socket://``).
- ``HELLO_HEARTBEAT_SECONDS``: how often beat schedules the heartbeat job
  (default 10).
- ``HELLO_VISIBILITY_TIMEOUT``: seconds after which a job whose worker
  vanished without acknowledging it (kill -9) is delivered again (default
  300; more than the longest job, 30 s).

The web process only publishes and reads (``send_task`` by name, result
metadata), so it does not need the task functions; it builds its own Celery
app with :func:`make_celery`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task, signals

BROKER_ENV = "CELERY_BROKER_URL"
BACKEND_ENV = "CELERY_RESULT_BACKEND"
HEARTBEAT_ENV = "HELLO_HEARTBEAT_SECONDS"
VISIBILITY_ENV = "HELLO_VISIBILITY_TIMEOUT"

DEFAULT_HEARTBEAT_SECONDS = 10.0
MAX_HEARTBEAT_SECONDS = 86400.0

#: Redis key holding the ISO 8601 UTC time of the last heartbeat job.
HEARTBEAT_KEY = "hello:heartbeat"

#: Task names: the web side publishes by name, the worker registers these.
ADD_TASK = "hello.add"
SLEEP_TASK = "hello.sleep"
HEARTBEAT_TASK = "hello.heartbeat"

#: The longest job: ``sleep`` accepts 0 < seconds <= MAX_SLEEP_SECONDS.
MAX_SLEEP_SECONDS = 30

#: An unacknowledged job goes back to the queue this long after its worker
#: vanished (kill -9, lost host). Far above the longest job, so a job that
#: is still running is never handed to a second worker.
VISIBILITY_TIMEOUT_SECONDS = 300
MAX_VISIBILITY_TIMEOUT_SECONDS = 86400

#: Results (and their state) are kept this long.
RESULT_EXPIRES_SECONDS = 86400

#: Connect/read timeouts towards Redis for worker and beat.
CONNECT_TIMEOUT_SECONDS = 2.0
SOCKET_TIMEOUT_SECONDS = 5.0

#: The web side's timeouts: shorter, so that a request answers 503 within
#: about two seconds (one publish retry included) when Redis is down,
#: unreachable or hung, instead of holding a gunicorn worker.
WEB_TIMEOUT_SECONDS = 1.0


class ConfigError(ValueError):
    """An environment variable has a value the job queue cannot use."""


def broker_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The broker URL from the environment, or None when it is unset/blank."""
    env = os.environ if environ is None else environ
    return env.get(BROKER_ENV, "").strip() or None


def heartbeat_seconds(environ: Mapping[str, str] | None = None) -> float:
    """``HELLO_HEARTBEAT_SECONDS`` as a number of seconds (default 10)."""
    env = os.environ if environ is None else environ
    raw = env.get(HEARTBEAT_ENV, "").strip()
    if not raw:
        return DEFAULT_HEARTBEAT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= MAX_HEARTBEAT_SECONDS:
        raise ConfigError(
            f"{HEARTBEAT_ENV}={raw!r}: must be a number of seconds, "
            f"greater than 0 and at most {MAX_HEARTBEAT_SECONDS:g}"
        )
    return value


def visibility_timeout(environ: Mapping[str, str] | None = None) -> int:
    """``HELLO_VISIBILITY_TIMEOUT`` in seconds (default 300)."""
    env = os.environ if environ is None else environ
    raw = env.get(VISIBILITY_ENV, "").strip()
    if not raw:
        return VISIBILITY_TIMEOUT_SECONDS
    if not raw.isdigit() or not (
        MAX_SLEEP_SECONDS < int(raw) <= MAX_VISIBILITY_TIMEOUT_SECONDS
    ):
        raise ConfigError(
            f"{VISIBILITY_ENV}={raw!r}: must be a whole number of seconds, more "
            f"than the longest job ({MAX_SLEEP_SECONDS}) and at most "
            f"{MAX_VISIBILITY_TIMEOUT_SECONDS}"
        )
    return int(raw)


def make_celery(
    environ: Mapping[str, str] | None = None, *, web: bool = False
) -> Celery:
    """A Celery app configured from ``environ`` (default: ``os.environ``).

    ``web=True``: the web process's app, with the short Redis timeouts.
    """
    env = os.environ if environ is None else environ
    connect_timeout = WEB_TIMEOUT_SECONDS if web else CONNECT_TIMEOUT_SECONDS
    socket_timeout = WEB_TIMEOUT_SECONDS if web else SOCKET_TIMEOUT_SECONDS
    broker = broker_url(env)
    backend = env.get(BACKEND_ENV, "").strip() or broker
    interval = heartbeat_seconds(env)
    visibility = visibility_timeout(env)
    app = Celery("hello", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        # JSON only: a message from the queue is never unpickled.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        # A job is acknowledged after it ran, not when it was received: a
        # worker that dies mid-job leaves it in the queue for another one.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Each worker process reserves one job at a time.
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_track_started=True,
        result_expires=RESULT_EXPIRES_SECONDS,
        # Publishing is tried once: the web request answers 503 rather than
        # waiting for a broker that is down.
        task_publish_retry=False,
        broker_connection_timeout=connect_timeout,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": visibility,
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": socket_timeout,
        },
        redis_socket_connect_timeout=connect_timeout,
        redis_socket_timeout=socket_timeout,
        beat_schedule={
            "heartbeat": {
                "task": HEARTBEAT_TASK,
                "schedule": interval,
                # A heartbeat nobody ran in time is worthless: drop it
                # instead of piling them up while the workers are down.
                "options": {"expires": interval},
            },
        },
    )
    return app


def utc_now_iso() -> str:
    """The current time, ISO 8601, UTC, second precision (``...+00:00``)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


celery = make_celery()


@celery.task(name=ADD_TASK)
def add(a: int | float, b: int | float) -> int | float:
    """The trivial job: ``a + b``."""
    return a + b


@celery.task(name=SLEEP_TASK)
def sleep(seconds: int | float) -> int | float:
    """The slow job: sleeps ``seconds`` and returns them."""
    if not 0 < seconds <= MAX_SLEEP_SECONDS:
        raise ValueError(f"seconds must be in (0, {MAX_SLEEP_SECONDS}]")
    time.sleep(seconds)
    return seconds


@celery.task(name=HEARTBEAT_TASK, bind=True, ignore_result=True)
def heartbeat(self: Task) -> str:
    """Record the time in Redis (``hello:heartbeat``); beat schedules this."""
    now = utc_now_iso()
    self.app.backend.client.set(HEARTBEAT_KEY, now)
    return now


def _require_broker(**_: Any) -> None:
    if broker_url() is None:
        # SystemExit passes through Celery's signal dispatch (which logs and
        # swallows ordinary exceptions), so the process stops here.
        raise SystemExit(
            f"hello.tasks: {BROKER_ENV} is not set; a worker or beat needs "
            "the Redis broker URL (redis://:PASSWORD@HOST:PORT/DB)"
        )


signals.celeryd_init.connect(_require_broker, weak=False)
signals.beat_init.connect(_require_broker, weak=False)
