"""A bounded load generator: GET requests from a few threads, to an app's
unix socket or over HTTPS to a TCP address (nginx), until a stop file
appears, a request budget is spent or a deadline passes. Prints a JSON
summary.

    python3 load.py TARGET HOST PATH [--cafile F] --stop-file F --max-requests N --max-seconds S --threads T [--rate R]

TARGET is a unix socket path (/run/gunicorn/hello.sock) or https://ADDR:PORT
(the TLS handshake uses HOST as the server name and verifies against
--cafile). Every request is counted exactly once: `ok` (status 200 and the
whole body read) or `failed` (anything else, any exception included), so
`ok + failed == sent` always. The summary also says what stopped the load
(`stopped_by`: stop-file, max-requests or max-seconds) and when, in epoch
seconds, the first request started and the last one ended.

--rate R paces the load: at most R requests start per second, all threads
together (0, the default: each thread sends its next request as soon as its
last one ended, flat out). A paced load still keeps a request in flight
every 1/R s through a deploy's switch, which is what the tests prove,
without taking a core from the deploy it watches.

Exit code: 0 when every request was ok, 1 when some failed, 2 when the
count does not add up (a bug in this tool).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import ssl
import sys
import threading
import time
from urllib.parse import urlsplit


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a fixed address, with the virtual host as SNI and verified name."""

    def __init__(self, address: tuple[str, int], server_name: str, context: ssl.SSLContext, timeout: float):
        super().__init__(server_name, address[1], timeout=timeout, context=context)
        self.address = address
        self.server_name = server_name
        self.tls_context = context

    def connect(self) -> None:
        raw = socket.create_connection(self.address, timeout=self.timeout)
        self.sock = self.tls_context.wrap_socket(raw, server_hostname=self.server_name)


def connection_factory(target: str, host: str, cafile: str, timeout: float):
    if target.startswith("https://"):
        url = urlsplit(target)
        context = ssl.create_default_context(cafile=cafile or None)
        context.set_alpn_protocols(["http/1.1"])
        address = (url.hostname, url.port or 443)
        return lambda: PinnedHTTPSConnection(address, host, context, timeout)
    return lambda: UnixConnection(target, timeout)


def one_request(connect, host: str, path: str) -> str | None:
    """None when the answer is a 200 with its whole body, else why not."""
    conn = connect()
    try:
        conn.request("GET", path, headers={"Host": host, "Connection": "close"})
        resp = conn.getresponse()
        resp.read()  # a body cut short raises IncompleteRead
        return None if resp.status == 200 else f"HTTP {resp.status}"
    finally:
        conn.close()


def run(args: argparse.Namespace) -> dict:
    connect = connection_factory(args.target, args.host, args.cafile, args.timeout)
    lock = threading.Lock()
    stats: dict = {"sent": 0, "ok": 0, "failed": 0, "errors": {}, "max_latency_ms": 0.0,
                   "stopped_by": "", "first_start": None, "last_end": None}
    deadline = time.monotonic() + args.max_seconds
    # paced: request n may start at begin + n / rate (a shared schedule, so a
    # thread that waited on a slow answer does not make up for it in a burst
    # larger than the threads)
    begin = time.monotonic()

    def stop_reason() -> str:
        if stats["sent"] >= args.max_requests:
            return "max-requests"
        if args.stop_file and os.path.exists(args.stop_file):
            return "stop-file"
        if time.monotonic() >= deadline:
            return "max-seconds"
        return ""

    def worker() -> None:
        while True:
            with lock:
                reason = stop_reason()
                if reason:
                    stats["stopped_by"] = stats["stopped_by"] or reason
                    return
                stats["sent"] += 1
                slot = begin + (stats["sent"] - 1) / args.rate if args.rate > 0 else 0.0
            if slot:
                time.sleep(max(0.0, slot - time.monotonic()))
            with lock:
                if stats["first_start"] is None:
                    stats["first_start"] = time.time()
            start = time.monotonic()
            try:
                error = one_request(connect, args.host, args.path)
            except Exception as exc:  # every failure counts, whatever its type
                error = type(exc).__name__
            took = (time.monotonic() - start) * 1000
            with lock:
                stats["last_end"] = time.time()
                stats["max_latency_ms"] = max(stats["max_latency_ms"], round(took, 1))
                if error:
                    stats["failed"] += 1
                    stats["errors"][error] = stats["errors"].get(error, 0) + 1
                else:
                    stats["ok"] += 1

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("target", help="unix socket path, or https://ADDR:PORT")
    ap.add_argument("host")
    ap.add_argument("path")
    ap.add_argument("--cafile", default="")
    ap.add_argument("--stop-file", default="")
    ap.add_argument("--max-requests", type=int, default=5000)
    ap.add_argument("--max-seconds", type=float, default=120)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--rate", type=float, default=0, help="requests started per second, all threads (0: flat out)")
    ap.add_argument("--timeout", type=float, default=30, help="per request, seconds")
    stats = run(ap.parse_args(argv))
    print(json.dumps(stats))
    if stats["ok"] + stats["failed"] != stats["sent"]:
        return 2
    return 1 if stats["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
