"""Workers-scenario helpers: the web host and the probe ("the outside"),
the job API through nginx over HTTPS, unit PIDs, and playbook runs against
the scenario's inventory with changed apps."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from playbook import ROOT, Run, copy_app, run, start  # noqa: F401 - Run: the fixtures' result type

SCENARIO = Path(__file__).resolve().parents[1]
WEB = "flask-stack-workers-web"
PROBE = "flask-stack-workers-probe"
NETWORK = "flask-stack-workers"
APP = "/srv/apps/hello"


def scenario_vars() -> dict:
    raw = (SCENARIO / "molecule.yml").read_text().replace("${MOLECULE_PROJECT_DIRECTORY}", str(ROOT))
    raw = raw.replace("${MOLECULE_DISTRO:-debian12}", os.environ.get("MOLECULE_DISTRO", "debian12"))
    return yaml.safe_load(raw)["provisioner"]["inventory"]["group_vars"]["web"]


def exec_in(container: str, *cmd: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container, *cmd], capture_output=True, text=True, timeout=timeout)


def web(*cmd: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return exec_in(WEB, *cmd, timeout=timeout)


def https(method: str, path: str, body: dict | None = None, domain: str = "hello.test") -> tuple[int, dict | None]:
    """One request through nginx on the web host's 443, as a browser would send it."""
    cmd = ["curl", "-sk", "--max-time", "15", "-o", "/dev/stdout", "-w", "\n%{http_code}", "-X", method,
           "--resolve", f"{domain}:443:127.0.0.1", f"https://{domain}{path}"]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
    r = web(*cmd)
    text, _, code = r.stdout.rpartition("\n")
    try:
        return int(code or 0), json.loads(text) if text else None
    except json.JSONDecodeError:
        return int(code or 0), {"raw": text}


def enqueue(kind: str, body: dict) -> str:
    status, answer = https("POST", f"/api/jobs/{kind}", body)
    assert status == 202, (status, answer)
    return answer["id"]


def wait_all(ids: list[str], timeout: float = 120) -> dict[str, dict]:
    """Poll each job until it is SUCCESS or FAILURE (or the time is up)."""
    done: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(ids) and time.monotonic() < deadline:
        for job in ids:
            if job in done:
                continue
            status, answer = https("GET", f"/api/jobs/{job}")
            if status == 200 and answer and answer.get("state") in ("SUCCESS", "FAILURE"):
                done[job] = answer
        if len(done) < len(ids):
            time.sleep(0.5)
    return done


def main_pid(unit: str) -> int:
    return int(web("systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip() or 0)


def unit_env(unit: str) -> dict[str, str]:
    """The environment the unit's main process runs with right now."""
    raw = web("cat", f"/proc/{main_pid(unit)}/environ").stdout
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def app_env(app: str) -> dict[str, str]:
    """The env an app's units run with now, as its env file on the host says
    (/etc/flask-stack/<app>.env, KEY=<JSON value> lines), without the broker
    URLs the role derives: what a deploy must pass to change nothing."""
    env = {}
    for line in web("cat", f"/etc/flask-stack/{app}.env").stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#") and not key.startswith("CELERY_"):
            env[key] = json.loads(value)
    assert "SECRET_KEY" in env, env
    return env


def link_target(path: str) -> str:
    return web("readlink", path).stdout.strip()


def playbook(name: str, extra: dict, tmp_path: Path, wait: bool = True):
    """playbooks/<name> against the scenario's inventory with extra as variables:
    a Run, or with wait=False the running process, its output in a file (proc.log)."""
    args = (os.environ["MOLECULE_INVENTORY_FILE"], ROOT / "playbooks" / name)
    if not wait:
        log = tmp_path / f"run-{len(list(tmp_path.glob('run-*.log')))}.log"
        return start(*args, extra_vars=extra, vars_dir=tmp_path, log=log)
    return run(*args, extra_vars=extra, vars_dir=tmp_path, timeout=900)


@pytest.fixture
def app_copy(tmp_path):
    """A copy of the sample app to change before deploying it."""
    return copy_app(tmp_path / "app")


@pytest.fixture
def deploy(tmp_path):
    """deploy(hello={...}, second={...}, wait=True) runs playbooks/deploy.yml with the
    scenario's apps, each entry updated with the given fields."""

    def run(wait: bool = True, **changes):
        apps = scenario_vars()["apps"]
        for app in apps:
            for key, value in changes.get(app["name"], {}).items():
                if key == "env":
                    app["env"] = {**app["env"], **value}
                else:
                    app[key] = value
        return playbook("deploy.yml", {"apps": apps}, tmp_path, wait=wait)

    return run
