"""The job API end to end: a real redis-server, a real Celery worker and beat.

redis-server (the Debian package ``redis-server``) must be installed; these
tests fail, never skip, when it is not (``scripts/ensure-apt.sh redis-server``
installs it). Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from hello import create_app, jobs, tasks

APP_DIR = Path(__file__).resolve().parent.parent
PASSWORD = "e2e-test-password"
# The redis role's default ACL for the default user (roles/redis, variable
# redis_acl_rules): no @dangerous commands. Worker, beat and web run with it
# here, which proves Celery and kombu need none of them.
ACL_RULES = "~* &* +@all -@dangerous"
JOB_TIMEOUT = 15.0  # seconds a job may take from enqueue to SUCCESS here


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_for(
    what: str, check: Callable[[], Any], timeout: float, interval: float = 0.1
) -> Any:
    """Poll ``check`` until it returns a truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM (Celery's warm shutdown), then SIGKILL if it does not exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@dataclass
class Redis:
    port: int
    unixsocket: Path
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"

    def cli(self, *args: str, auth: bool = True) -> str:
        command = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port)]
        env = dict(os.environ, REDISCLI_AUTH=PASSWORD) if auth else None
        out = subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, timeout=10,
            check=False,
        )
        return out.stdout.strip()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--unixsocket", str(self.unixsocket),
                "--unixsocketperm", "700",
                "--user", "default", "reset", "on", f">{PASSWORD}", *ACL_RULES.split(),
                "--maxmemory-policy", "noeviction",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for("redis-server to answer PING", lambda: self.cli("PING") == "PONG", 10)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


def started_redis(workdir: Path) -> Redis:
    """A new redis-server on a free port; fails (never skips) without one."""
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            pytest.fail(
                f"{tool} is not installed: these tests need a real Redis. "
                "Install the Debian package with: scripts/ensure-apt.sh redis-server"
            )
    server = Redis(port=free_port(), unixsocket=workdir / "redis.sock", workdir=workdir)
    server.start()
    return server


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    """The Redis that the module's worker and beat use."""
    server = started_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def fresh_redis(tmp_path: Path) -> Iterator[Redis]:
    """A Redis of the test's own, with no worker."""
    server = started_redis(tmp_path)
    yield server
    server.stop()


def celery_env(broker: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    env.update({tasks.BROKER_ENV: broker, **extra})
    return env


def start_celery(
    env: dict[str, str], *args: str, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "hello.tasks:celery", *args],
            cwd=APP_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture(scope="module")
def worker(
    redis: Redis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    """A prefork worker with two processes: a sleep job does not block add."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = start_celery(
        celery_env(redis.url),
        "worker", "--pool", "prefork", "--concurrency", "2",
        "--without-mingle", "--without-gossip", "--loglevel", "INFO",
        log=log,
    )
    yield proc
    stop(proc)
    print(log.read_text(errors="replace"))


@pytest.fixture(scope="module")
def beat(
    redis: Redis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    workdir = tmp_path_factory.mktemp("beat")
    proc = start_celery(
        celery_env(redis.url, HELLO_HEARTBEAT_SECONDS="0.5"),
        "beat", "--schedule", str(workdir / "beat-schedule"), "--loglevel", "INFO",
        log=workdir / "beat.log",
    )
    yield proc
    stop(proc)


_web_apps: list[Flask] = []


def web_client(tmp_path: Path, broker: str) -> FlaskClient:
    app = create_app(
        {"TESTING": True, "APP_ROOT": str(tmp_path), "CELERY_BROKER_URL": broker}
    )
    _web_apps.append(app)
    return app.test_client()


@pytest.fixture(autouse=True)
def close_web_apps() -> Iterator[None]:
    """Close each test's Redis connections (unclosed sockets are errors)."""
    yield
    while _web_apps:
        queue = _web_apps.pop().extensions[jobs.EXTENSION]
        queue.backend.client.connection_pool.disconnect()
        queue.close()


@pytest.fixture
def client(
    redis: Redis, worker: subprocess.Popen[bytes], tmp_path: Path
) -> FlaskClient:
    return web_client(tmp_path, redis.url)


def enqueue(client: FlaskClient, path: str, body: dict[str, Any]) -> str:
    response = client.post(path, json=body)
    assert response.status_code == 202, response.get_data(as_text=True)
    job_id: str = response.get_json()["id"]
    assert str(uuid.UUID(job_id)) == job_id
    return job_id


def wait_state(
    client: FlaskClient, job_id: str, state: str = "SUCCESS"
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        response = client.get(f"/api/jobs/{job_id}")
        assert response.status_code == 200, response.get_data(as_text=True)
        body: dict[str, Any] = response.get_json()
        assert body["state"] != "FAILURE", body
        return body if body["state"] == state else None

    result: dict[str, Any] = wait_for(f"job {job_id} to be {state}", check, JOB_TIMEOUT)
    return result


def test_add_reaches_success(client: FlaskClient) -> None:
    job_id = enqueue(client, "/api/jobs/add", {"a": 2, "b": 3})
    assert wait_state(client, job_id) == {"state": "SUCCESS", "result": 5}


def test_add_floats_and_negatives(client: FlaskClient) -> None:
    job_id = enqueue(client, "/api/jobs/add", {"a": -1.5, "b": 0.25})
    assert wait_state(client, job_id)["result"] == -1.25


def test_sleep_runs_started_then_success(client: FlaskClient) -> None:
    job_id = enqueue(client, "/api/jobs/sleep", {"seconds": 1.5})
    start = time.monotonic()
    started = wait_state(client, job_id, "STARTED")
    assert started == {"state": "STARTED"}  # no result before SUCCESS
    # The other worker process still runs short jobs meanwhile.
    add_id = enqueue(client, "/api/jobs/add", {"a": 40, "b": 2})
    assert wait_state(client, add_id)["result"] == 42
    assert wait_state(client, job_id) == {"state": "SUCCESS", "result": 1.5}
    assert time.monotonic() - start >= 1.0


def test_unknown_job_is_pending(client: FlaskClient) -> None:
    response = client.get("/api/jobs/0b8e5f0e-1111-4222-8333-444455556666")
    assert response.status_code == 200
    assert response.get_json() == {"state": "PENDING"}


def test_uppercase_job_id_is_the_same_job(client: FlaskClient) -> None:
    job_id = enqueue(client, "/api/jobs/add", {"a": 1, "b": 1})
    wait_state(client, job_id)
    response = client.get(f"/api/jobs/{job_id.upper()}")
    assert response.get_json() == {"state": "SUCCESS", "result": 2}


def test_results_expire(client: FlaskClient, redis: Redis) -> None:
    job_id = enqueue(client, "/api/jobs/add", {"a": 1, "b": 2})
    wait_state(client, job_id)
    ttl = int(redis.cli("TTL", f"celery-task-meta-{job_id}"))
    assert 0 < ttl <= tasks.RESULT_EXPIRES_SECONDS


def test_heartbeat_advances(
    redis: Redis,
    worker: subprocess.Popen[bytes],
    beat: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    client = web_client(tmp_path, redis.url)

    def last() -> str | None:
        response = client.get("/api/jobs/heartbeat")
        assert response.status_code == 200, response.get_data(as_text=True)
        value: str | None = response.get_json()["last"]
        return value

    first = wait_for("a first heartbeat", last, JOB_TIMEOUT)
    stamp = datetime.fromisoformat(first)
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(seconds=JOB_TIMEOUT)
    wait_for("the heartbeat to advance", lambda: (last() or "") > first, 5)
    # Stored in Redis under the app's key, so every web host sees it.
    assert datetime.fromisoformat(redis.cli("GET", tasks.HEARTBEAT_KEY)) >= stamp


def test_heartbeat_never_recorded_is_null(fresh_redis: Redis, tmp_path: Path) -> None:
    """A Redis that never saw a heartbeat: {"last": null}."""
    response = web_client(tmp_path, fresh_redis.url).get("/api/jobs/heartbeat")
    assert response.status_code == 200
    assert response.get_json() == {"last": None}


def test_unix_socket_broker(
    redis: Redis, worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """The web side can reach Redis over its unix socket (redis+socket://).

    One URL serves as broker and result backend: both kombu and Celery's
    Redis backend read ``redis+socket://:PASSWORD@/path?virtual_host=DB``.
    """
    broker = f"redis+socket://:{PASSWORD}@{redis.unixsocket}?virtual_host=0"
    client = web_client(tmp_path, broker)
    job_id = enqueue(client, "/api/jobs/add", {"a": 20, "b": 22})
    assert wait_state(client, job_id) == {"state": "SUCCESS", "result": 42}
    assert client.get("/api/jobs/heartbeat").status_code == 200


def test_wrong_password_is_503(redis: Redis, tmp_path: Path) -> None:
    client = web_client(tmp_path, f"redis://:wrong@127.0.0.1:{redis.port}/0")
    for path, body in (("/api/jobs/add", {"a": 1, "b": 1}), ("/api/jobs/heartbeat", None)):
        response = client.open(path, method="POST" if body else "GET", json=body)
        assert response.status_code == 503, response.get_data(as_text=True)
        assert "cannot reach Redis" in response.get_json()["error"]


def test_redis_stopped_then_back(fresh_redis: Redis, tmp_path: Path) -> None:
    """Redis goes away under a running web app: 503 fast; back: 202 again."""
    server = fresh_redis
    client = web_client(tmp_path, server.url)
    assert client.post("/api/jobs/add", json={"a": 1, "b": 1}).status_code == 202
    server.stop()
    for path, body in (
        ("/api/jobs/add", {"a": 1, "b": 1}),
        ("/api/jobs/sleep", {"seconds": 1}),
        ("/api/jobs/heartbeat", None),
        ("/api/jobs/0b8e5f0e-1111-4222-8333-444455556666", None),
    ):
        start = time.monotonic()
        response = client.open(path, method="POST" if body else "GET", json=body)
        elapsed = time.monotonic() - start
        assert response.status_code == 503, (path, response.get_data(as_text=True))
        assert elapsed < 3, f"{path}: 503 took {elapsed:.1f} s"
    assert client.get("/healthz").status_code == 200
    server.start()  # same port: the pooled connections are stale now
    response = client.post("/api/jobs/add", json={"a": 1, "b": 1})
    assert response.status_code == 202, response.get_data(as_text=True)
    response = client.get("/api/jobs/heartbeat")
    assert response.status_code == 200, response.get_data(as_text=True)
