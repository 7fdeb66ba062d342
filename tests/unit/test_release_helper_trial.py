"""The release helper's trial poll (issue 12): a trial whose gunicorn is gone
stops polling at once instead of waiting out every retry, and a healthy
but slow one still gets every retry. Runs the helper itself against a
stand-in: a real HTTP server on a unix socket (the trial's socket) and a
`systemctl` on PATH that reports the unit states this test sets (no
systemd needed). The molecule deploy scenario runs the same trial against
real systemd units (test_release_helper.py, test_deploy.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HELPER = ROOT / "roles/app/files/flask-stack-release"
UNIT = "gunicorn-hello-candidate@20260101000000-abc"

# the stand-in systemctl: `show` prints the states in $STATES (JSON, one
# property block per unit asked for, as systemctl does); other verbs are
# written to $CALLS and succeed
SYSTEMCTL = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["CALLS"], "a") as fh:
    fh.write(json.dumps(args) + "\\n")
if args[0] == "show":
    states = json.load(open(os.environ["STATES"]))
    units = [a for a in args[1:] if not a.startswith("-") and a != args[args.index("-p") + 1]]
    print("\\n\\n".join("\\n".join(f"{{k}}={{v}}" for k, v in states.get(u, {{}}).items()) for u in units))
"""


class Trial:
    """The trial's socket (a real server answering what `answers` says, one
    entry per probe: a status, or None for no answer at all) and its units'
    states as the stand-in systemctl reports them."""

    def __init__(self, tmp_path: Path, answers: list[int | None]):
        self.dir = tmp_path
        self.sock_path = str(tmp_path / "trial.sock")
        self.states = tmp_path / "states.json"
        self.calls = tmp_path / "calls.jsonl"
        self.answers = list(answers)
        self.probes = 0
        # called (in the server's thread) when the first probe has arrived
        self.on_first_probe = None
        self.set(service={"ActiveState": "active", "Result": "success", "InvocationID": "first",
                          "ExecMainCode": "0", "ExecMainStatus": "0"},
                 socket={"ActiveState": "active", "Result": "success"})
        bindir = tmp_path / "bin"
        bindir.mkdir()
        (bindir / "systemctl").write_text(SYSTEMCTL.format(python=sys.executable))
        (bindir / "journalctl").write_text("#!/bin/sh\necho 'stand-in log line'\n")
        for tool in ("systemctl", "journalctl"):
            (bindir / tool).chmod(0o755)
        self.env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "STATES": str(self.states),
                    "CALLS": str(self.calls)}
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.sock_path)
        self.server.listen(16)
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def set(self, service: dict | None = None, socket: dict | None = None) -> None:
        current = json.loads(self.states.read_text()) if self.states.exists() else {}
        if service is not None:
            current[f"{UNIT}.service"] = {**current.get(f"{UNIT}.service", {}), **service}
        if socket is not None:
            current[f"{UNIT}.socket"] = {**current.get(f"{UNIT}.socket", {}), **socket}
        tmp = self.states.with_suffix(".new")
        tmp.write_text(json.dumps(current))
        tmp.replace(self.states)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.probes += 1
            conn.recv(4096)
            if self.probes == 1 and self.on_first_probe is not None:
                time.sleep(0.3)
                self.on_first_probe()
            status = self.answers.pop(0) if self.answers else None
            if status is None:
                self.held.append(conn)  # connected, never answered (as a socket whose service is not up)
                continue
            body = json.dumps({"status": "ok" if status == 200 else "starting"}).encode()
            conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, len(body), body))
            conn.close()

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()

    def run(self, *, timeout: float, retries: int, delay: float) -> tuple[int, dict, float]:
        start = time.monotonic()
        proc = subprocess.run([sys.executable, str(HELPER), "trial", f"--unit={UNIT}", f"--socket={self.sock_path}",
                               "--host=hello.test", f"--timeout={timeout}", f"--retries={retries}",
                               f"--delay={delay}"], env=self.env, capture_output=True, text=True, check=False,
                              timeout=120)
        seconds = time.monotonic() - start
        assert proc.stdout, proc.stderr
        return proc.returncode, json.loads(proc.stdout), seconds

    def verbs(self) -> list[list[str]]:
        return [json.loads(line) for line in self.calls.read_text().splitlines()]


@pytest.fixture
def trial(tmp_path):
    made: list[Trial] = []

    def make(answers: list[int | None]) -> Trial:
        # (a unix socket's path has a 108-byte limit: pytest keeps tmp_path
        # short, the test's name cut to 30 characters)
        made.append(Trial(tmp_path, answers))
        return made[-1]

    yield make
    for t in made:
        t.close()


def test_a_healthy_but_slow_release_gets_every_retry(trial):
    # unanswered twice (each probe waits out its timeout), then 503, then 200
    # on the last retry; its gunicorn stays up all along
    t = trial([None, None, 503, 200])
    rc, answer, _ = t.run(timeout=1, retries=3, delay=0.2)
    assert rc == 0, answer
    assert answer["status"] == 200
    assert t.probes == 4
    assert ["start", f"{UNIT}.service"] in t.verbs()


def test_a_slow_release_that_never_answers_uses_every_retry_and_fails(trial):
    t = trial([None, 503, 503])
    rc, answer, seconds = t.run(timeout=1, retries=2, delay=0.2)
    assert rc == 4, answer
    assert answer["status"] == 503 and "gone" not in answer, answer
    assert t.probes == 3
    assert seconds >= 1 + 2 * 0.2


def test_a_trial_whose_gunicorn_exited_stops_polling_at_once(trial):
    # the probe's connection waits in the socket; the trial's gunicorn exits
    # with status 3 (a worker failed to boot) while it waits
    t = trial([None] * 10)
    t.on_first_probe = lambda: t.set(service={"ActiveState": "failed", "Result": "exit-code", "ExecMainCode": "1",
                                              "ExecMainStatus": "3"})
    rc, answer, seconds = t.run(timeout=5, retries=5, delay=1)
    assert rc == 4, answer
    assert "exited before it answered (exit status 3, result exit-code)" in answer["msg"], answer
    assert answer["probes"] == 1 and t.probes == 1, answer
    # well before one probe's timeout (the old poll waited 6 x 5 s + 5 x 1 s)
    assert seconds < 5, seconds
    assert answer["log"] == ["stand-in log line"]
    verbs = t.verbs()
    assert ["stop", f"{UNIT}.service", f"{UNIT}.socket"] in verbs
    assert ["reset-failed", f"{UNIT}.service", f"{UNIT}.socket"] in verbs


def test_a_trial_started_again_by_a_probe_counts_as_exited(trial):
    # the socket started the failed service again for the pending probe: a
    # new invocation, activating
    t = trial([None] * 10)
    t.on_first_probe = lambda: t.set(service={"ActiveState": "activating", "InvocationID": "second"})
    rc, answer, seconds = t.run(timeout=5, retries=5, delay=1)
    assert rc == 4, answer
    assert "systemd started it again on a probe" in answer["msg"], answer
    assert answer["probes"] == 1 and seconds < 5, (answer, seconds)


def test_a_trial_whose_socket_failed_stops_after_the_refused_probe(trial):
    # the service hit its start limit; the socket failed with it and closed
    t = trial([])
    t.set(service={"ActiveState": "failed", "Result": "start-limit-hit", "InvocationID": "second"},
          socket={"ActiveState": "failed", "Result": "service-start-limit-hit"})
    t.server.close()
    os.unlink(t.sock_path)
    rc, answer, seconds = t.run(timeout=5, retries=5, delay=1)
    assert rc == 4, answer
    assert answer["msg"].startswith("Request failed: FileNotFoundError"), answer
    assert "socket " + UNIT + ".socket is failed (result service-start-limit-hit): nothing listens" in answer["msg"]
    assert answer["probes"] == 1 and seconds < 1, (answer, seconds)
