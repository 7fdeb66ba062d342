"""The job API without a running queue: input checks, 503s, configuration.

The end-to-end tests with a real Redis and a real worker are in
test_jobs_e2e.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from hello import create_app, jobs, tasks

APP_DIR = Path(__file__).resolve().parent.parent
JOB_ID = "0b8e5f0e-1111-4222-8333-444455556666"

#: "A couple of seconds at most" for a 503 when Redis cannot be reached.
MAX_503_SECONDS = 3.0


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "APP_RELEASE",
        "SECRET_KEY",
        tasks.BROKER_ENV,
        tasks.BACKEND_ENV,
        tasks.HEARTBEAT_ENV,
        tasks.VISIBILITY_ENV,
    ):
        monkeypatch.delenv(name, raising=False)


def make_app(tmp_path: Path, **config: Any) -> Flask:
    return create_app({"TESTING": True, "APP_ROOT": str(tmp_path), **config})


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    """No broker configured: the default and deploy scenarios run like this."""
    with make_app(tmp_path).test_client() as test_client:
        yield test_client


def closed_port() -> int:
    """A local TCP port that nothing listens on (bound, never listened)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def assert_json_error(response: Any, status: int, fragment: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["status"] == "error"
    assert fragment in body["error"], body


# --- bad input: 400 before anything is queued ------------------------------

BAD_ADD_BODIES = [
    ('{"a": 2}', "missing field 'b'"),
    ('{"b": 2}', "missing field 'a'"),
    ("{}", "missing field 'a'"),
    ('{"a": "2", "b": 3}', "field 'a' must be a number"),
    ('{"a": 2, "b": null}', "field 'b' must be a number"),
    ('{"a": [2], "b": 3}', "field 'a' must be a number"),
    ('{"a": {"x": 1}, "b": 3}', "field 'a' must be a number"),
    ('{"a": true, "b": 3}', "field 'a' must be a number"),
    ('{"a": 2, "b": false}', "field 'b' must be a number"),
    ('{"a": NaN, "b": 3}', "field 'a' must be a finite number"),
    ('{"a": Infinity, "b": 3}', "field 'a' must be a finite number"),
    ('{"a": 2, "b": -Infinity}', "field 'b' must be a finite number"),
    ('{"a": 1e400, "b": 3}', "field 'a' must be a finite number"),
    ('{"a": 1e300, "b": 3}', "field 'a' is out of range"),
    ('{"a": 9007199254740992, "b": 3}', "field 'a' is out of range"),
    ('{"a": 2, "b": -9007199254740992}', "field 'b' is out of range"),
    ('{"a": 2, "b": 3, "c": 4}', "unexpected field 'c'"),
    ("[2, 3]", "request body must be a JSON object"),
    ('"a=2&b=3"', "request body must be a JSON object"),
    ("null", "request body must be a JSON object"),
    ("a=2&b=3", "request body must be a JSON object"),
    ('{"a": 2, "b": 3', "request body must be a JSON object"),
    ("", "request body must be a JSON object"),
    (b"\xff\xfe{}", "request body must be a JSON object"),
]


@pytest.mark.parametrize(("body", "message"), BAD_ADD_BODIES)
def test_add_rejects_bad_input(
    client: FlaskClient, body: str | bytes, message: str
) -> None:
    response = client.post(
        "/api/jobs/add", data=body, content_type="application/json"
    )
    assert_json_error(response, 400, message)


def test_add_body_need_not_say_json(client: FlaskClient) -> None:
    """A JSON body is read whatever the Content-Type (curl -d sends form)."""
    response = client.post(
        "/api/jobs/add",
        data='{"a": 2, "b": 3}',
        content_type="application/x-www-form-urlencoded",
    )
    # Valid input, so the answer is the no-broker 503, not a 400.
    assert_json_error(response, 503, "no job queue configured")


@pytest.mark.parametrize(
    "body",
    [
        '{"a": 2, "b": 3, "pad": "' + "x" * jobs.MAX_BODY_BYTES + '"}',
        '{"a": ' + "9" * 5000 + ', "b": 3}',
    ],
)
def test_add_oversized_body_is_413_json(client: FlaskClient, body: str) -> None:
    response = client.post("/api/jobs/add", data=body, content_type="application/json")
    assert_json_error(response, 413, "request entity too large")


BAD_SLEEP_BODIES = [
    ("{}", "missing field 'seconds'"),
    ('{"seconds": 0}', "greater than 0 and at most 30"),
    ('{"seconds": -1}', "greater than 0 and at most 30"),
    ('{"seconds": 30.5}', "greater than 0 and at most 30"),
    ('{"seconds": 31}', "greater than 0 and at most 30"),
    ('{"seconds": 1e9}', "greater than 0 and at most 30"),
    ('{"seconds": "5"}', "field 'seconds' must be a number"),
    ('{"seconds": true}', "field 'seconds' must be a number"),
    ('{"seconds": NaN}', "field 'seconds' must be a finite number"),
    ('{"seconds": 5, "a": 1}', "unexpected field 'a'"),
    ("5", "request body must be a JSON object"),
]


@pytest.mark.parametrize(("body", "message"), BAD_SLEEP_BODIES)
def test_sleep_rejects_bad_input(client: FlaskClient, body: str, message: str) -> None:
    response = client.post(
        "/api/jobs/sleep", data=body, content_type="application/json"
    )
    assert_json_error(response, 400, message)


@pytest.mark.parametrize(
    "job_id",
    [
        "not-a-uuid",
        "0b8e5f0e11114222833344445555666",
        JOB_ID + "0",
        "{" + JOB_ID + "}",
        "urn:uuid:" + JOB_ID,
        JOB_ID.replace("0", "g"),
        JOB_ID.replace("-", ""),
        "０b8e5f0e-1111-4222-8333-444455556666",  # a fullwidth digit
    ],
)
def test_state_rejects_non_uuid(client: FlaskClient, job_id: str) -> None:
    assert_json_error(client.get(f"/api/jobs/{job_id}"), 400, "job id must be a UUID")


def test_heartbeat_is_not_a_job_id(client: FlaskClient) -> None:
    """/api/jobs/heartbeat is its own route, not a 400 for a bad job id."""
    assert_json_error(client.get("/api/jobs/heartbeat"), 503, "no job queue")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/jobs/add"),
        ("GET", "/api/jobs/sleep"),
        ("POST", "/api/jobs/heartbeat"),
        ("POST", f"/api/jobs/{JOB_ID}"),
        ("DELETE", f"/api/jobs/{JOB_ID}"),
    ],
)
def test_wrong_method_is_json_405(client: FlaskClient, method: str, path: str) -> None:
    assert_json_error(client.open(path, method=method), 405, "method not allowed")


# --- no broker configured: 503, the rest of the site unchanged --------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/jobs/add", {"a": 2, "b": 3}),
        ("POST", "/api/jobs/sleep", {"seconds": 1}),
        ("GET", f"/api/jobs/{JOB_ID}", None),
        ("GET", "/api/jobs/heartbeat", None),
    ],
)
def test_no_broker_is_503(
    client: FlaskClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = client.open(path, method=method, json=body)
    assert_json_error(response, 503, "no job queue configured")


def test_no_broker_rest_of_site_serves(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/add?a=2&b=3").get_json()["sum"] == 5
    assert client.get("/").status_code == 200


def test_blank_broker_is_no_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(tasks.BROKER_ENV, "  ")
    client = make_app(tmp_path).test_client()
    response = client.post("/api/jobs/add", json={"a": 2, "b": 3})
    assert_json_error(response, 503, "no job queue configured")


# --- broker unreachable: 503 quickly ------------------------------------


@pytest.fixture
def down_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    """The broker URL comes from the environment, as in production."""
    monkeypatch.setenv(
        tasks.BROKER_ENV, f"redis://:secret@127.0.0.1:{closed_port()}/0"
    )
    return make_app(tmp_path).test_client()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/jobs/add", {"a": 2, "b": 3}),
        ("POST", "/api/jobs/sleep", {"seconds": 1}),
        ("GET", f"/api/jobs/{JOB_ID}", None),
        ("GET", "/api/jobs/heartbeat", None),
    ],
)
def test_broker_down_is_503_fast(
    down_client: FlaskClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for _ in range(2):  # and again: no state left broken by the first
        start = time.monotonic()
        response = down_client.open(path, method=method, json=body)
        elapsed = time.monotonic() - start
        assert_json_error(response, 503, "job queue unavailable: cannot reach Redis")
        assert elapsed < MAX_503_SECONDS, f"503 took {elapsed:.1f} s"
    assert "secret" not in response.get_data(as_text=True)
    assert "secret" not in caplog.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/jobs/add", {"a": 2, "b": 3}),
        ("GET", f"/api/jobs/{JOB_ID}", None),
        ("GET", "/api/jobs/heartbeat", None),
    ],
)
def test_broker_hung_is_503_fast(
    tmp_path: Path, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """A "Redis" that accepts connections and never answers: no hang."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        app = make_app(tmp_path, CELERY_BROKER_URL=f"redis://:pw@127.0.0.1:{port}/0")
        start = time.monotonic()
        response = app.test_client().open(path, method=method, json=body)
        elapsed = time.monotonic() - start
        assert_json_error(response, 503, "job queue unavailable: cannot reach Redis")
        assert elapsed < MAX_503_SECONDS, f"503 took {elapsed:.1f} s"
        queue = app.extensions[jobs.EXTENSION]
        queue.backend.client.connection_pool.disconnect()
        queue.close()


def test_broker_down_rest_of_site_serves(down_client: FlaskClient) -> None:
    assert down_client.post("/api/jobs/add", json={"a": 1, "b": 1}).status_code == 503
    assert down_client.get("/healthz").status_code == 200
    assert down_client.get("/api/add?a=2&b=3").get_json()["sum"] == 5


def test_bad_input_is_400_even_with_broker_down(down_client: FlaskClient) -> None:
    response = down_client.post("/api/jobs/add", json={"a": "x", "b": 1})
    assert_json_error(response, 400, "field 'a' must be a number")


# --- configuration ---------------------------------------------------------


def test_celery_app_settings() -> None:
    app = tasks.make_celery({tasks.BROKER_ENV: "redis://:pw@127.0.0.1:6379/0"})
    conf = app.conf
    assert conf.broker_url == "redis://:pw@127.0.0.1:6379/0"
    assert conf.result_backend == "redis://:pw@127.0.0.1:6379/0"
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"
    assert conf.result_expires == 86400
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert visibility >= 10 * tasks.MAX_SLEEP_SECONDS
    schedule = conf.beat_schedule["heartbeat"]
    assert schedule["task"] == tasks.HEARTBEAT_TASK
    assert schedule["schedule"] == 10


def test_result_backend_from_env() -> None:
    app = tasks.make_celery(
        {
            tasks.BROKER_ENV: "redis://:pw@127.0.0.1:6379/0",
            tasks.BACKEND_ENV: "redis://:pw@127.0.0.1:6379/1",
        }
    )
    assert app.conf.result_backend == "redis://:pw@127.0.0.1:6379/1"


@pytest.mark.parametrize(("raw", "seconds"), [("2", 2.0), ("0.5", 0.5), (" 30 ", 30)])
def test_heartbeat_seconds(raw: str, seconds: float) -> None:
    assert tasks.heartbeat_seconds({tasks.HEARTBEAT_ENV: raw}) == seconds
    app = tasks.make_celery({tasks.HEARTBEAT_ENV: raw})
    assert app.conf.beat_schedule["heartbeat"]["schedule"] == seconds


@pytest.mark.parametrize("raw", ["0", "-1", "ten", "nan", "inf", "1e9"])
def test_heartbeat_seconds_rejects(raw: str) -> None:
    with pytest.raises(tasks.ConfigError, match=f"HELLO_HEARTBEAT_SECONDS={raw!r}"):
        tasks.heartbeat_seconds({tasks.HEARTBEAT_ENV: raw})


def test_visibility_timeout_from_env() -> None:
    app = tasks.make_celery({tasks.VISIBILITY_ENV: "60"})
    assert app.conf.broker_transport_options["visibility_timeout"] == 60
    assert tasks.visibility_timeout({}) == 300


@pytest.mark.parametrize("raw", ["30", "0", "-5", "1.5", "abc", "86401"])
def test_visibility_timeout_rejects(raw: str) -> None:
    with pytest.raises(tasks.ConfigError, match=f"HELLO_VISIBILITY_TIMEOUT={raw!r}"):
        tasks.make_celery({tasks.VISIBILITY_ENV: raw})


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_worker_and_beat_refuse_to_start_without_broker(
    command: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    extra = ["--pool", "solo"] if command == "worker" else [
        "--schedule", str(tmp_path / "beat-schedule")
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "hello.tasks:celery", command, *extra],
        cwd=APP_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode != 0
    assert "CELERY_BROKER_URL is not set" in proc.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [(tasks.HEARTBEAT_ENV, "soon"), (tasks.VISIBILITY_ENV, "5")],
)
def test_bad_job_setting_stops_the_web_app_at_start(name: str, value: str) -> None:
    """gunicorn imports hello.wsgi: a bad value fails there, naming it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "HELLO_"))}
    env[name] = value
    proc = subprocess.run(
        [sys.executable, "-c", "import hello.wsgi"],
        cwd=APP_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode != 0
    assert f"{name}={value!r}" in proc.stderr
