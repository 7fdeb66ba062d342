"""Tests for the hello sample app, using Flask's test client."""

from __future__ import annotations

import importlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request, session
from flask.testing import FlaskClient

import hello
from hello import create_app


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the caller's environment out of the tests."""
    monkeypatch.delenv("APP_RELEASE", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)


@pytest.fixture
def app_root(tmp_path: Path) -> Path:
    """An empty app root, so no real RELEASE file is picked up."""
    return tmp_path


def make_app(app_root: Path, **config: Any) -> Flask:
    return create_app({"TESTING": True, "APP_ROOT": str(app_root), **config})


@pytest.fixture
def app(app_root: Path) -> Flask:
    return make_app(app_root)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as test_client:
        yield test_client


# --- / ----------------------------------------------------------------------


def test_index_renders_html(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert "<!doctype html>" in body.lower()
    assert "hello" in body
    assert hello.__version__ in body


def test_index_shows_release(monkeypatch: pytest.MonkeyPatch, app_root: Path) -> None:
    monkeypatch.setenv("APP_RELEASE", "20260101T120000Z")
    body = make_app(app_root).test_client().get("/").get_data(as_text=True)
    assert '<code class="release">20260101T120000Z</code>' in body


def test_index_escapes_release(monkeypatch: pytest.MonkeyPatch, app_root: Path) -> None:
    monkeypatch.setenv("APP_RELEASE", "<b>x</b>")
    body = make_app(app_root).test_client().get("/").get_data(as_text=True)
    assert "<b>x</b>" not in body
    assert "&lt;b&gt;x&lt;/b&gt;" in body


def test_index_links_stylesheet(client: FlaskClient) -> None:
    body = client.get("/").get_data(as_text=True)
    assert re.search(r'<link rel="stylesheet" href="/static/style\.css">', body)


def test_index_is_csp_clean(client: FlaskClient) -> None:
    """No inline script or style: default-src 'self' must be enough."""
    body = client.get("/").get_data(as_text=True).lower()
    assert "<script" not in body
    assert "<style" not in body
    assert "style=" not in body
    assert re.search(r"\son[a-z]+=", body) is None  # no inline event handlers
    assert "javascript:" not in body
    # Every referenced resource is same-origin.
    for url in re.findall(r'(?:href|src)="([^"]*)"', body):
        assert url.startswith("/"), url
        assert not url.startswith("//"), url


def test_static_stylesheet_served(client: FlaskClient) -> None:
    response = client.get("/static/style.css")
    try:
        assert response.status_code == 200
        assert response.mimetype == "text/css"
        assert b"body" in response.data
    finally:
        response.close()


def test_static_folder_is_hello_static(app: Flask) -> None:
    # nginx serves <release>/hello/static/ at /static/: the layouts must agree.
    assert app.static_url_path == "/static"
    assert app.static_folder is not None
    assert Path(app.static_folder) == Path(hello.__file__).parent / "static"
    assert (Path(app.static_folder) / "style.css").is_file()


# --- /api/add ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("5", "6", 11),
        ("-3", "10", 7),
        ("0", "0", 0),
        ("+2", "3", 5),
        ("1.5", "2", 3.5),
        ("0.25", "0.5", 0.75),
        (".5", "1.", 1.5),
        ("1e3", "1", 1001.0),
        ("-2.5", "2.5", 0.0),
        (" 4 ", "1", 5),
    ],
)
def test_add(client: FlaskClient, a: str, b: str, expected: float) -> None:
    response = client.get("/api/add", query_string={"a": a, "b": b})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"status": "OK", "sum": expected}
    assert type(response.get_json()["sum"]) is type(expected)


def test_add_integers_stay_integers_in_json(client: FlaskClient) -> None:
    response = client.get("/api/add?a=5&b=6")
    assert re.search(rb'"sum":\s*11\b(?!\.)', response.data)
    assert response.get_json() == {"status": "OK", "sum": 11}


def test_add_float_in_json(client: FlaskClient) -> None:
    response = client.get("/api/add?a=1.5&b=2")
    assert re.search(rb'"sum":\s*3\.5\b', response.data)


def test_add_big_integers_are_exact(client: FlaskClient) -> None:
    response = client.get(f"/api/add?a={10**30}&b=1")
    assert response.get_json()["sum"] == 10**30 + 1


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("b=1", "a"),
        ("a=1", "b"),
        ("", "a"),
        ("a=&b=1", "a"),
        ("a=%20&b=1", "a"),
        ("a=x&b=1", "a"),
        ("a=1&b=y", "b"),
        ("a=nan&b=1", "a"),
        ("a=NaN&b=1", "a"),
        ("a=1&b=inf", "b"),
        ("a=-inf&b=1", "a"),
        ("a=Infinity&b=1", "a"),
        ("a=1e999&b=1", "a"),
        ("a=1&b=-1e400", "b"),
        ("a=1_000&b=1", "a"),
        ("a=0x10&b=1", "a"),
        ("a=1,5&b=1", "a"),
        ("a=%D9%A3&b=1", "a"),  # ARABIC-INDIC DIGIT THREE
        ("a=1&b=" + "9" * 65, "b"),
        ("a=true&b=1", "a"),
    ],
)
def test_add_rejects_bad_input(client: FlaskClient, query: str, param: str) -> None:
    response = client.get(f"/api/add?{query}")
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    data = response.get_json()
    assert data["status"] == "error"
    assert set(data) == {"status", "error"}
    assert f"'{param}'" in data["error"]


def test_add_missing_parameter_message(client: FlaskClient) -> None:
    response = client.get("/api/add?b=1")
    assert response.get_json() == {"status": "error", "error": "missing parameter 'a'"}


def test_add_non_numeric_message(client: FlaskClient) -> None:
    response = client.get("/api/add?a=x&b=1")
    assert response.get_json() == {
        "status": "error",
        "error": "parameter 'a' must be a number",
    }


def test_add_overflowing_sum_is_rejected(client: FlaskClient) -> None:
    response = client.get("/api/add?a=1e308&b=1e308")
    assert response.status_code == 400
    data = response.get_json()
    assert data["status"] == "error"
    assert "out of range" in data["error"]


# --- /healthz ---------------------------------------------------------------


def test_healthz_unknown_release(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {
        "status": "OK",
        "release": "unknown",
        "version": "1.0.0",
        "host": socket.gethostname(),
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_version_constant() -> None:
    assert hello.__version__ == "1.0.0"


def test_healthz_release_from_env(
    monkeypatch: pytest.MonkeyPatch, app_root: Path
) -> None:
    monkeypatch.setenv("APP_RELEASE", "r-from-env")
    data = make_app(app_root).test_client().get("/healthz").get_json()
    assert data["release"] == "r-from-env"


def test_healthz_release_from_file(app_root: Path) -> None:
    (app_root / "RELEASE").write_text("r-from-file\n", encoding="utf-8")
    data = make_app(app_root).test_client().get("/healthz").get_json()
    assert data["release"] == "r-from-file"


def test_healthz_env_beats_file(
    monkeypatch: pytest.MonkeyPatch, app_root: Path
) -> None:
    (app_root / "RELEASE").write_text("r-from-file\n", encoding="utf-8")
    monkeypatch.setenv("APP_RELEASE", "r-from-env")
    data = make_app(app_root).test_client().get("/healthz").get_json()
    assert data["release"] == "r-from-env"


def test_healthz_blank_env_falls_back_to_file(
    monkeypatch: pytest.MonkeyPatch, app_root: Path
) -> None:
    (app_root / "RELEASE").write_text("r-from-file\n", encoding="utf-8")
    monkeypatch.setenv("APP_RELEASE", "  ")
    data = make_app(app_root).test_client().get("/healthz").get_json()
    assert data["release"] == "r-from-file"


def test_healthz_empty_file_is_unknown(app_root: Path) -> None:
    (app_root / "RELEASE").write_text("\n", encoding="utf-8")
    data = make_app(app_root).test_client().get("/healthz").get_json()
    assert data["release"] == "unknown"


def test_default_app_root_is_package_parent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # gunicorn runs from the app root, the directory holding `hello`.
    assert Path(hello.__file__).resolve().parent.parent == hello.DEFAULT_APP_ROOT
    monkeypatch.setenv("APP_RELEASE", "x")
    app = create_app({"TESTING": True})
    assert Path(app.config["APP_ROOT"]) == hello.DEFAULT_APP_ROOT


# --- /api/whoami and ProxyFix -----------------------------------------------


def test_whoami_direct(client: FlaskClient) -> None:
    response = client.get("/api/whoami")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "OK",
        "client": "127.0.0.1",
        "scheme": "http",
    }


def test_whoami_behind_proxy(client: FlaskClient) -> None:
    response = client.get(
        "/api/whoami",
        headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert response.get_json() == {
        "status": "OK",
        "client": "203.0.113.7",
        "scheme": "https",
    }


def test_proxyfix_trusts_one_hop_only(client: FlaskClient) -> None:
    # A client-supplied X-Forwarded-For is prepended to by nginx; only the
    # last (nginx-added) entry is trusted.
    response = client.get(
        "/api/whoami",
        headers={
            "X-Forwarded-For": "198.51.100.66, 203.0.113.7",
            "X-Forwarded-Proto": "https",
        },
    )
    assert response.get_json()["client"] == "203.0.113.7"


def test_proxyfix_host_and_port(app: Flask) -> None:
    @app.get("/_test/url")
    def _url() -> dict[str, str]:
        return {"host": request.host, "url": request.url_root}

    response = app.test_client().get(
        "/_test/url",
        headers={
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "example.org",
            "X-Forwarded-Port": "8443",
        },
    )
    assert response.get_json() == {
        "host": "example.org:8443",
        "url": "https://example.org:8443/",
    }


def test_proxyfix_installed(app: Flask) -> None:
    from werkzeug.middleware.proxy_fix import ProxyFix

    assert isinstance(app.wsgi_app, ProxyFix)
    assert (app.wsgi_app.x_for, app.wsgi_app.x_proto) == (1, 1)
    assert (app.wsgi_app.x_host, app.wsgi_app.x_port) == (1, 1)


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/nope", "/api/", "/api", "/api/add/extra", "/api/whoami/x/y"]
)
def test_api_unknown_path_is_json_404(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.get_json() == {"status": "error", "error": "not found"}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_api_wrong_method_is_json_405(client: FlaskClient, method: str) -> None:
    response = client.open("/api/add?a=1&b=2", method=method)
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert response.get_json() == {"status": "error", "error": "method not allowed"}
    assert "GET" in response.headers["Allow"]


def test_unknown_path_is_html_404(client: FlaskClient) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert b"Not Found" in response.data


def test_apiary_is_not_api(client: FlaskClient) -> None:
    # Only /api and /api/... are the API.
    response = client.get("/apiary")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


def test_non_api_wrong_method_is_html_405(client: FlaskClient) -> None:
    response = client.post("/healthz")
    assert response.status_code == 405
    assert response.mimetype == "text/html"


def test_missing_static_file_is_html_404(client: FlaskClient) -> None:
    response = client.get("/static/nope.css")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


def test_api_internal_error_is_json(app_root: Path) -> None:
    app = make_app(app_root, TESTING=False, PROPAGATE_EXCEPTIONS=False)

    @app.get("/api/_boom")
    def _boom() -> str:
        raise RuntimeError("boom")

    app.logger.disabled = True
    response = app.test_client().get("/api/_boom")
    assert response.status_code == 500
    assert response.get_json() == {
        "status": "error",
        "error": "internal server error",
    }


# --- configuration ----------------------------------------------------------


def test_secret_key_from_env(monkeypatch: pytest.MonkeyPatch, app_root: Path) -> None:
    monkeypatch.setenv("SECRET_KEY", "s3cret-from-env")
    assert make_app(app_root).config["SECRET_KEY"] == "s3cret-from-env"


def test_secret_key_random_fallback(app_root: Path) -> None:
    key1 = make_app(app_root).config["SECRET_KEY"]
    key2 = make_app(app_root).config["SECRET_KEY"]
    assert re.fullmatch(r"[0-9a-f]{64}", key1)
    assert key1 != key2


def test_cookie_flags_config(app: Flask) -> None:
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_session_cookie_flags_on_the_wire(app: Flask) -> None:
    @app.get("/_test/session")
    def _set_session() -> str:
        session["seen"] = True
        return "ok"

    response = app.test_client().get("/_test/session", base_url="https://localhost")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("session=")
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_wsgi_module_exposes_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", "for-the-wsgi-test")
    monkeypatch.setenv("APP_RELEASE", "wsgi-release")
    import hello.wsgi

    wsgi = importlib.reload(hello.wsgi)
    assert isinstance(wsgi.app, Flask)
    data = wsgi.app.test_client().get("/healthz").get_json()
    assert data == {"status": "OK", "release": "wsgi-release", "version": "1.0.0", "host": socket.gethostname()}


# --- /api/sleep ---------------------------------------------------------------


def test_sleep_waits_the_requested_time(client: FlaskClient) -> None:
    import time

    start = time.monotonic()
    response = client.get("/api/sleep?ms=200")
    elapsed = time.monotonic() - start
    assert response.status_code == 200
    assert response.get_json() == {"status": "OK", "slept_ms": 200}
    assert 0.2 <= elapsed < 1.5


@pytest.mark.parametrize("ms", ["", "-1", "abc", "1.5", "2001"])
def test_sleep_refuses_bad_or_long_waits(client: FlaskClient, ms: str) -> None:
    response = client.get("/api/sleep", query_string={"ms": ms})
    assert response.status_code == 400
    assert "'ms' must be a whole number" in response.get_json()["error"]


# --- /api/time (microcaching) -------------------------------------------------


def test_time_is_fresh_per_request_and_can_set_a_cookie_or_forbid_storing(client: FlaskClient) -> None:
    first = client.get("/api/time").get_json()
    second = client.get("/api/time").get_json()
    assert first["status"] == "OK" and second["ns"] > first["ns"]
    plain = client.get("/api/time")
    assert "Set-Cookie" not in plain.headers and "Cache-Control" not in plain.headers
    assert client.get("/api/time?cookie=1").headers["Set-Cookie"].startswith("seen=1")
    assert client.get("/api/time?nostore=1").headers["Cache-Control"] == "no-store"
