"""`make demo` run twice: the first run converges the bare demo VM, the
second reports `changed=0` in its PLAY RECAP (the README's promise) on the
converge's fast path, and the URL it prints answers over HTTPS, verified
against the printed CA.

It drives scripts/demo.sh exactly as `make demo` does, under the demo lock
(/tmp/flask-stack-demo.lock, shared with anyone else who runs the demo on
this machine), and always ends with `scripts/demo.sh down`. It takes a full
converge of site.yml plus a re-converge (about 10 minutes here)."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCK = Path("/tmp/flask-stack-demo.lock")
LOCK_WAIT_S = 1800


def demo(*args: str, timeout: int = 2400) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{ROOT / '.venv/bin'}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run(["scripts/demo.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def recap(out: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host."""
    tail = out.rsplit("PLAY RECAP", 1)
    assert len(tail) == 2, out[-3000:]
    hosts = {}
    for line in tail[1].splitlines():
        m = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if m:
            hosts[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    assert hosts, out[-3000:]
    return hosts


@pytest.fixture
def demo_lock():
    with LOCK.open("a") as fh:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, f"{LOCK} still held by another demo user after {LOCK_WAIT_S} s"
                time.sleep(5)
        try:
            yield
        finally:
            demo("down", timeout=300)
            fcntl.flock(fh, fcntl.LOCK_UN)


def test_make_demo_rerun_reports_changed_0(demo_lock):
    demo("down", timeout=300)
    first = demo("up")
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    first_recap = recap(first.stdout)
    assert any(c["changed"] > 0 for c in first_recap.values()), first_recap  # it did converge a bare VM

    second = demo("up")
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    counters = recap(second.stdout)
    print(f"\nmake demo re-run: {counters}")
    # nothing changed since the first run: site.yml's fast path (README,
    # "The no-op converge's fast path") ends after its one remote check
    assert "Converge path: fast" in second.stdout, second.stdout[-4000:]
    for host, c in counters.items():
        assert c["changed"] == 0, (host, c, second.stdout[-4000:])
        assert c["failed"] == 0 and c["unreachable"] == 0, (host, c)

    # the printed URL answers over HTTPS, verified against the printed CA
    url = re.search(r"^URL: (https://\S+)$", second.stdout, re.M).group(1)
    ca = re.search(r"^CA: (\S+)$", second.stdout, re.M).group(1)
    m = re.match(r"https://([^:/]+):(\d+)/", url)
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", ca, "--resolve",
                        f"{m.group(1)}:{m.group(2)}:127.0.0.1", "-o", "/dev/null", "-w", "%{http_code}", url],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout == "200", r.stderr
