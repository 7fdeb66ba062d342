"""The load counter (molecule/deploy/tests/load.py) against bad servers on
this machine: every request it sends is counted once, as ok or failed,
whatever the server does. These servers are unix sockets in a temporary
directory (and one TLS listener on 127.0.0.1), so nothing leaves the machine.

The "zero failed requests" figures of the molecule scenarios are only as
good as this count. LOAD_PY=path runs the same tests against another copy
of the tool (how they were seen failing against the old one)."""

from __future__ import annotations

import json
import os
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOAD_PY = Path(os.environ.get("LOAD_PY", ROOT / "molecule/deploy/tests/load.py"))

OK_BODY = b'{"status": "OK"}'


def ok_reply(body: bytes = OK_BODY, status: str = "200 OK") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


def read_request(sock: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return
        data += chunk


def reset(sock: socket.socket) -> None:
    """Close with a RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# What each bad server does with a request (after reading it).
def good(sock):
    sock.sendall(ok_reply())


def malformed_status(sock):
    sock.sendall(b"HTTX/1.1 two hundred\r\n\r\n")


def garbage(sock):
    sock.sendall(b"\x00\x01 not http at all\r\n\r\n")


def reset_mid_body(sock):
    reply = ok_reply(body=b"x" * 1000)
    sock.sendall(reply[: len(reply) - 900])
    time.sleep(0.05)
    reset(sock)


def closed_mid_body(sock):
    reply = ok_reply(body=b"x" * 1000)
    sock.sendall(reply[: len(reply) - 900])


def no_reply(sock):
    pass  # closes without a byte: RemoteDisconnected


def header_line_too_long(sock):
    sock.sendall(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n")


def wrong_status(sock):
    sock.sendall(ok_reply(b'{"status": "error"}', status="503 Service Unavailable"))


def redirect(sock):
    sock.sendall(b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://x/\r\nContent-Length: 0\r\n\r\n")


def slow(delay: float):
    def handler(sock):
        time.sleep(delay)
        sock.sendall(ok_reply())
    return handler


def alternating():
    """Good, bad, good, bad...: the counts must still add up."""
    lock, n = threading.Lock(), [0]

    def handler(sock):
        with lock:
            n[0] += 1
            mine = n[0]
        (good if mine % 2 else malformed_status)(sock)
    return handler


class Server:
    """A threaded server on a unix socket (or TLS on 127.0.0.1) that hands
    every connection to `behaviour` after reading the request."""

    def __init__(self, behaviour, path: Path | None = None, tls: ssl.SSLContext | None = None):
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                sock = self.request
                if tls is not None:
                    try:
                        sock = tls.wrap_socket(sock, server_side=True)
                    except (ssl.SSLError, OSError):
                        return
                try:
                    read_request(sock)
                    behaviour(sock)
                except OSError:
                    pass
                outer.handled += 1

        self.handled = 0
        # a deep accept queue: a full one refuses unix-socket connects (BlockingIOError)
        socketserver.ThreadingUnixStreamServer.request_queue_size = 128
        socketserver.ThreadingTCPServer.request_queue_size = 128
        if tls is None:
            self.server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        else:
            self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(behaviour, tls: ssl.SSLContext | None = None) -> tuple[str, Server]:
        path = tmp_path / f"s{len(servers)}.sock"
        server = Server(behaviour, path, tls)
        servers.append(server)
        target = str(path) if tls is None else f"https://127.0.0.1:{server.server.server_address[1]}"
        return target, server

    yield start
    for server in servers:
        server.close()


def load(target: str, *args: str, requests: int = 20, threads: int = 4, seconds: float = 30,
         timeout: float = 60) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, str(LOAD_PY), target, "hello.test", "/healthz", "--max-requests", str(requests),
         "--max-seconds", str(seconds), "--threads", str(threads), *args],
        capture_output=True, text=True, timeout=timeout)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def assert_counted(result: dict, sent: int | None = None) -> None:
    assert result["ok"] + result["failed"] == result["sent"], result
    assert sum(result["errors"].values()) == result["failed"], result
    if sent is not None:
        assert result["sent"] == sent, result


def test_a_good_server_gets_every_request_counted_ok(serve):
    target, server = serve(good)
    rc, result = load(target, requests=40)
    assert_counted(result, sent=40)
    assert result["ok"] == 40 and result["failed"] == 0, result
    assert rc == 0
    assert server.handled == 40


@pytest.mark.parametrize(
    ("behaviour", "errors"),
    [
        (malformed_status, {"BadStatusLine"}),
        (garbage, {"BadStatusLine"}),
        (reset_mid_body, {"IncompleteRead", "ConnectionResetError"}),
        (closed_mid_body, {"IncompleteRead"}),
        (no_reply, {"RemoteDisconnected"}),
        (header_line_too_long, {"LineTooLong"}),
        (wrong_status, {"HTTP 503"}),
        (redirect, {"HTTP 301"}),
    ],
    ids=lambda v: getattr(v, "__name__", None) or "/".join(sorted(v)),
)
def test_every_bad_answer_is_counted_as_failed(serve, behaviour, errors):
    target, _ = serve(behaviour)
    rc, result = load(target, requests=12)
    assert_counted(result, sent=12)
    assert result["failed"] == 12 and result["ok"] == 0, result
    assert set(result["errors"]) <= errors, result
    assert rc == 1


def test_a_reply_slower_than_the_timeout_is_failed(serve):
    target, _ = serve(slow(1.5))
    rc, result = load(target, "--timeout", "0.3", requests=4, threads=2)
    assert_counted(result, sent=4)
    assert result["failed"] == 4, result
    assert set(result["errors"]) == {"TimeoutError"}, result
    assert rc == 1


def test_a_slow_reply_within_the_timeout_is_ok_and_its_latency_recorded(serve):
    target, _ = serve(slow(0.4))
    rc, result = load(target, "--timeout", "5", requests=4, threads=2)
    assert_counted(result, sent=4)
    assert result["ok"] == 4, result
    assert result["max_latency_ms"] >= 400, result
    assert rc == 0


def test_nothing_listening_is_counted_as_failed(tmp_path):
    rc, result = load(str(tmp_path / "nobody.sock"), requests=10)
    assert_counted(result, sent=10)
    assert result["failed"] == 10, result
    assert rc == 1


def test_a_mix_of_good_and_bad_answers_adds_up(serve):
    target, server = serve(alternating())
    rc, result = load(target, requests=50, threads=8)
    assert_counted(result, sent=50)
    assert result["ok"] == 25 and result["failed"] == 25, result
    assert server.handled == 50
    assert rc == 1


def test_the_stop_file_ends_the_load_and_says_so(serve, tmp_path):
    target, _ = serve(slow(0.02))
    stop = tmp_path / "stop"
    proc = subprocess.Popen(
        [sys.executable, str(LOAD_PY), target, "hello.test", "/", "--stop-file", str(stop), "--max-requests", "100000",
         "--max-seconds", "60", "--threads", "4"], stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    stopped_at = time.time()
    stop.touch()
    out, _ = proc.communicate(timeout=30)
    result = json.loads(out)
    assert_counted(result)
    assert result["stopped_by"] == "stop-file", result
    assert 0 < result["sent"] < 100000, result
    assert result["first_start"] < stopped_at <= result["last_end"] + 0.5, result
    assert proc.returncode == 0


def test_the_deadline_ends_the_load_and_says_so(serve):
    target, _ = serve(slow(0.05))
    rc, result = load(target, requests=100000, seconds=1, threads=2)
    assert_counted(result)
    assert result["stopped_by"] == "max-seconds", result
    assert rc == 0


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory):
    """A self-signed certificate for hello.test (key, cert)."""
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=hello.test",
                    "-addext", "subjectAltName=DNS:hello.test"], check=True, capture_output=True)
    return key, cert


def test_https_target_verifies_the_name_and_counts(serve, tls_pair):
    key, cert = tls_pair
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    target, _ = serve(good, tls=ctx)
    rc, result = load(target, "--cafile", str(cert), requests=10)
    assert_counted(result, sent=10)
    assert result["ok"] == 10, result
    assert rc == 0
    # a CA that did not issue the certificate: every handshake fails, and counts
    rc, result = load(target, requests=6)  # the system CAs only
    assert_counted(result, sent=6)
    assert result["failed"] == 6 and set(result["errors"]) == {"SSLCertVerificationError"}, result


def test_rate_paces_the_requests_and_counts_them_all(serve):
    """--rate 20: 30 requests from 6 threads start over at least 29/20 s, not in a burst."""
    target, server = serve(good)
    started = time.monotonic()
    rc, result = load(target, "--rate", "20", requests=30, threads=6)
    took = time.monotonic() - started
    assert_counted(result, sent=30)
    assert result["ok"] == 30 and rc == 0, result
    assert server.handled == 30
    # the 30th request may start 29/20 s after the schedule began, no sooner;
    # first_start is taken when the first request really started, which can
    # lag the schedule's start by a scheduler tick (seen: 1.4499 s)
    assert result["last_end"] - result["first_start"] >= 29 / 20 - 0.05, result
    assert took < 10, took


def test_without_rate_the_load_runs_flat_out(serve):
    target, _ = serve(good)
    rc, result = load(target, requests=30, threads=6)
    assert_counted(result, sent=30)
    assert result["last_end"] - result["first_start"] < 29 / 20, result
