"""Deploy-scenario helpers: run playbooks against the molecule host with a
changed copy of the sample app, and ask the running app what it serves."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from playbook import ROOT, Run, copy_app, run, start  # noqa: F401 - Run: the fixtures' result type

SCENARIO = Path(__file__).resolve().parents[1]
CONTAINER = f"flask-stack-deploy-{os.environ.get('MOLECULE_DISTRO', 'debian12')}"


def scenario_vars() -> dict:
    raw = (SCENARIO / "molecule.yml").read_text().replace("${MOLECULE_PROJECT_DIRECTORY}", str(ROOT))
    raw = raw.replace("${MOLECULE_DISTRO:-debian12}", os.environ.get("MOLECULE_DISTRO", "debian12"))
    return yaml.safe_load(raw)["provisioner"]["inventory"]["group_vars"]["web"]


def playbook(name: str, extra: dict, tmp_path: Path, wait: bool = True):
    """playbooks/<name> against the scenario's inventory with extra as variables:
    a Run, or with wait=False the running process (output on its stdout)."""
    args = (os.environ["MOLECULE_INVENTORY_FILE"], ROOT / "playbooks" / name)
    if not wait:
        return start(*args, extra_vars=extra, vars_dir=tmp_path)
    return run(*args, extra_vars=extra, vars_dir=tmp_path, timeout=600)


@pytest.fixture
def app_copy(tmp_path):
    """A copy of the sample app to change before deploying it."""
    return copy_app(tmp_path / "app")


@pytest.fixture
def deploy(tmp_path):
    """deploy(src, **vars) runs playbooks/deploy.yml with the hello app built from src."""

    def run(src: Path, wait: bool = True, **extra):
        apps = scenario_vars()["apps"]
        apps[0]["src"] = str(src)
        return playbook("deploy.yml", {"apps": apps, **extra}, tmp_path, wait=wait)

    return run


@pytest.fixture
def rollback(tmp_path):
    def run(**extra):
        return playbook("rollback.yml", {"rollback_app": "hello", **extra}, tmp_path)

    return run


def exec_in(*cmd: str, timeout: int = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", CONTAINER, *cmd], capture_output=True, text=True, timeout=timeout)


def health() -> tuple[int, dict | None]:
    """(status, body) of /healthz through the live socket, as nginx would ask.
    A request that arrives during a restart waits in systemd's socket until
    the new gunicorn answers: give it the bound the README promises for that
    wait (40 s, as test_redeploy_under_load in default), not less (one probe
    of 10 s ran out during a restart at load 16)."""
    r = exec_in("curl", "-s", "-o", "/dev/stdout", "-w", "\n%{http_code}", "--max-time", "40",
                "--unix-socket", "/run/gunicorn/hello.sock", "http://hello.test/healthz", timeout=60)
    body, _, code = r.stdout.rpartition("\n")
    try:
        return int(code or 0), json.loads(body) if body else None
    except json.JSONDecodeError:
        return int(code or 0), None


def serving() -> str:
    status, body = health()
    assert status == 200, (status, body)
    return body["release"]


def listdir(path: str) -> list[str]:
    return sorted(exec_in("ls", "-1", path).stdout.split())


def link_target(path: str) -> str:
    return exec_in("readlink", path).stdout.strip()


class Load:
    """Bounded load inside the web host against the app's socket (load.py):
    8 threads, paced at `rate` requests per second (0: flat out). Paced, a
    request is in flight every few milliseconds through the switch the test
    watches, while the deploy beside it keeps the CPU (flat out, the load
    took a core from it and every job running alongside)."""

    def __init__(self, path: str = "/api/add?a=5&b=6", max_requests: int = 20000, max_seconds: int = 300,
                 rate: float = 50):
        subprocess.run(["docker", "cp", str(Path(__file__).with_name("load.py")), f"{CONTAINER}:/tmp/load.py"], check=True)
        exec_in("rm", "-f", "/tmp/load.stop")
        self.proc = subprocess.Popen(
            ["docker", "exec", CONTAINER, "python3", "/tmp/load.py", "/run/gunicorn/hello.sock", "hello.test", path,
             "--stop-file", "/tmp/load.stop", "--max-requests", str(max_requests), "--max-seconds", str(max_seconds),
             "--threads", "8", "--rate", str(rate)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> dict:
        exec_in("touch", "/tmp/load.stop")
        out, err = self.proc.communicate(timeout=360)
        return parse(self.proc.returncode, out, err)


def parse(returncode: int, out: str, err: str) -> dict:
    """load.py's summary; its exit code is 0 (all ok) or 1 (some failed), and every request is counted."""
    assert returncode in (0, 1), err
    result = json.loads(out)
    assert result["ok"] + result["failed"] == result["sent"], result
    return result


def oom_kills() -> int:
    """OOM kills in the web host's memory cgroup (v1 memory.oom_control or v2 memory.events)."""
    script = (
        "p=$(sed -n 's/^[0-9]*:memory://p' /proc/1/cgroup); p=${p%/init.scope};"
        "f=/sys/fs/cgroup/memory$p/memory.oom_control; [ -r $f ] || { p=$(sed -n 's/^0:://p' /proc/1/cgroup);"
        " p=${p%/init.scope}; f=/sys/fs/cgroup$p/memory.events; }; sed -n 's/^oom_kill //p' $f"
    )
    return int(exec_in("sh", "-c", script).stdout.strip())
