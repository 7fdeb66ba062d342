"""Cluster-scenario helpers: the hosts, requests through the load balancer
(from the probe, over HTTPS verified against Pebble's root), HAProxy's view
of its servers, bounded load, and playbook runs with a changed app."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from playbook import ROOT, Run, copy_app, run

SCENARIO = Path(__file__).resolve().parents[1]
LB = "flask-stack-cluster-lb"
WEBS = ["flask-stack-cluster-web1", "flask-stack-cluster-web2"]
REDIS = "flask-stack-cluster-redis"
# the worker group in inventory order (molecule writes a group's hosts sorted
# by name): the Redis host (worker-only), then the web hosts. Beat runs on
# the first one.
WORKERS = [REDIS, *WEBS]
PROBE = "flask-stack-cluster-acme"
APP = "/srv/apps/hello"
# the load counter the deploy scenario uses (every request counted once)
LOAD_PY = ROOT / "molecule/deploy/tests/load.py"
ROOT_PEM = "/tmp/pebble-root.pem"


def scenario_apps() -> list[dict]:
    raw = (SCENARIO / "molecule.yml").read_text().replace("${MOLECULE_PROJECT_DIRECTORY}", str(ROOT))
    raw = raw.replace("${MOLECULE_DISTRO:-debian12}", os.environ.get("MOLECULE_DISTRO", "debian12"))
    return yaml.safe_load(raw)["provisioner"]["inventory"]["group_vars"]["all"]["apps"]


def exec_in(container: str, *cmd: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container, *cmd], capture_output=True, text=True, timeout=timeout)


def address(container: str) -> str:
    out = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                          container], capture_output=True, text=True, check=True).stdout.strip()
    assert out, container
    return out


def hostname(container: str) -> str:
    return exec_in(container, "hostname").stdout.strip()


def pebble_root() -> None:
    """Pebble's issuing root (it changes with every Pebble start) on the probe."""
    script = ("import ssl, urllib.request; c = ssl._create_unverified_context();"
              f"open('{ROOT_PEM}', 'wb').write(urllib.request.urlopen('https://localhost:15000/roots/0', context=c).read())")
    r = exec_in(PROBE, "python3", "-c", script)
    assert r.returncode == 0, r.stderr


def lb_request(method: str, path: str, body: dict | None = None, verify: bool = True) -> tuple[int, dict, dict]:
    """One request from the probe to https://hello.test/ (the LB): status, headers, JSON body."""
    script = f"""
import http.client, json, ssl, sys
ctx = ssl.create_default_context(cafile={ROOT_PEM!r}) if {verify!r} else ssl._create_unverified_context()
c = http.client.HTTPSConnection("hello.test", 443, context=ctx, timeout=15)
body = sys.argv[3] if len(sys.argv) > 3 else None
c.request(sys.argv[1], sys.argv[2], body=body, headers={{"Content-Type": "application/json"}} if body else {{}})
r = c.getresponse()
data = r.read().decode()
print(json.dumps([r.status, dict(r.getheaders()), data]))
"""
    args = [method, path] + ([json.dumps(body)] if body is not None else [])
    r = exec_in(PROBE, "python3", "-c", script, *args)
    assert r.returncode == 0, r.stderr
    status, headers, data = json.loads(r.stdout)
    try:
        parsed = json.loads(data) if data else {}
    except json.JSONDecodeError:
        parsed = {"raw": data}
    return status, headers, parsed


def servers(backend: str = "app_hello") -> dict[str, str]:
    """HAProxy's runtime view: server name -> status (UP, DOWN, MAINT, DRAIN...)."""
    r = exec_in(LB, "sh", "-c", "echo 'show stat' | socat stdio unix-connect:/run/haproxy/admin.sock")
    assert r.returncode == 0, r.stderr
    head, *rows = [line for line in r.stdout.splitlines() if line.strip()]
    cols = head.lstrip("# ").split(",")
    result = {}
    for row in rows:
        rec = dict(zip(cols, row.split(","), strict=False))
        if rec["pxname"] == backend and rec["svname"] not in ("FRONTEND", "BACKEND"):
            result[rec["svname"]] = rec["status"]
    return result


def rotation(backend: str = "app_hello") -> dict[str, str]:
    """servers() without HAProxy's transition counters: "UP 1/2" (one check
    failed, still taking traffic) is UP, "DOWN 1/2" is DOWN."""
    return {name: status.split()[0] for name, status in servers(backend).items()}


def lb_server_events(since: float, backend: str = "app_hello") -> list[str]:
    """HAProxy's log of its servers' state changes since the epoch second
    `since` (journald on the LB), oldest first: "Server app_hello/<name> is
    going DOWN for maintenance...", "... is UP, reason: Layer7 check passed..."."""
    r = exec_in(LB, "journalctl", "-q", "--no-pager", "-o", "cat", "-t", "haproxy", "--since", f"@{int(since) - 1}")
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if f"Server {backend}/" in line]


def assert_each_host_back_up_by_its_checks(events: list[str], names: list[str]) -> None:
    """A roll over `names`, in order: each server went to maintenance, then
    came back UP because its health checks passed (not because `enable
    server` said so before any check ran), and only then was the next one
    drained: at no time was the only server in rotation one no check had seen."""
    def first(after: int, pattern: str) -> int | None:
        return next((i for i, e in enumerate(events) if i > after and re.search(pattern, e)), None)

    up = -1
    for name in names:
        drained = first(-1, rf"/{re.escape(name)} (is going DOWN for|was DOWN and now enters) maintenance")
        assert drained is not None and drained > up, (name, "drained before the host before it was UP", events)
        up = first(drained, rf"/{re.escape(name)} is UP, reason: Layer\d check passed")
        assert up is not None, (name, "never came back UP on a passing health check", events)


def release(container: str) -> str:
    return exec_in(container, "readlink", f"{APP}/current").stdout.strip().rsplit("/", 1)[-1]


def hook_runs(container: str) -> int:
    return len(exec_in(container, "cat", f"{APP}/shared/hook-ran").stdout.splitlines())


class Load:
    """Bounded load from the probe through the LB (https://hello.test, verified):
    4 threads paced at 25 requests per second (a request every 40 ms through
    each drain and switch; flat out, the TLS handshakes took a core from the
    deploy under test)."""

    def __init__(self, path: str = "/api/add?a=5&b=6", max_requests: int = 100000, max_seconds: int = 600):
        subprocess.run(["docker", "cp", str(LOAD_PY), f"{PROBE}:/tmp/load.py"], check=True)
        exec_in(PROBE, "rm", "-f", "/tmp/load.stop")
        self.proc = subprocess.Popen(
            ["docker", "exec", PROBE, "python3", "/tmp/load.py", "https://hello.test:443", "hello.test", path,
             "--cafile", ROOT_PEM, "--stop-file", "/tmp/load.stop", "--max-requests", str(max_requests),
             "--max-seconds", str(max_seconds), "--threads", "4", "--rate", "25"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> dict:
        exec_in(PROBE, "touch", "/tmp/load.stop")
        out, err = self.proc.communicate(timeout=660)
        assert self.proc.returncode in (0, 1), err
        result = json.loads(out)
        assert result["ok"] + result["failed"] == result["sent"], result
        return result


def playbook(name: str, extra: dict, tmp_path: Path) -> Run:
    """playbooks/<name> against the scenario's inventory with extra as variables."""
    return run(os.environ["MOLECULE_INVENTORY_FILE"], ROOT / "playbooks" / name,
               extra_vars=extra, vars_dir=tmp_path, timeout=900)


@pytest.fixture(scope="session", autouse=True)
def _root_on_probe():
    pebble_root()


@pytest.fixture
def app_copy(tmp_path):
    return copy_app(tmp_path / "app")


@pytest.fixture
def deploy(tmp_path):
    """deploy(src) runs playbooks/deploy.yml with the hello app built from src."""

    def run(src: Path, **extra) -> Run:
        apps = scenario_apps()
        apps[0]["src"] = str(src)
        return playbook("deploy.yml", {"apps": apps, **extra}, tmp_path)

    return run


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


