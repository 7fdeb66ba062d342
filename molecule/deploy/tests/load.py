"""A bounded load generator that runs inside the web host: GET requests to
an app's unix socket from a few threads until a stop file appears, a
request budget is spent or a deadline passes. Prints a JSON summary.

    python3 load.py SOCKET HOST PATH --stop-file F --max-requests N --max-seconds S --threads T
"""

import argparse
import http.client
import json
import os
import socket
import threading
import time


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("host")
    ap.add_argument("path")
    ap.add_argument("--stop-file", default="")
    ap.add_argument("--max-requests", type=int, default=5000)
    ap.add_argument("--max-seconds", type=float, default=120)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()

    lock = threading.Lock()
    stats = {"sent": 0, "ok": 0, "failed": 0, "errors": {}, "max_latency_ms": 0.0}
    deadline = time.monotonic() + args.max_seconds

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                if stats["sent"] >= args.max_requests or (args.stop_file and os.path.exists(args.stop_file)):
                    return
                stats["sent"] += 1
            start = time.monotonic()
            try:
                conn = UnixConnection(args.socket, timeout=30)
                conn.request("GET", args.path, headers={"Host": args.host})
                status = conn.getresponse().status
                conn.close()
                error = None if status == 200 else f"HTTP {status}"
            except OSError as exc:
                error = type(exc).__name__
            took = (time.monotonic() - start) * 1000
            with lock:
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
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
