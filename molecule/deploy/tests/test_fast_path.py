"""The deploy's fast path (issue 12): a deploy that changes only code skips
the setup (users, env files, units, tools), makes a handful of round trips
through the release helper and still goes through the health gate; a change
to the setup, or -e deploy_full=true, takes the full path.
Runs after test_deploy.py on the same host (test_robust.py re-settles it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import ROOT, exec_in, link_target, listdir, playbook, scenario_vars, serving

APP = "/srv/apps/hello"
FAST = "Deploy path: fast"
# the fast path's module runs on the host: read the setup record; begin
# (lock, unpack, stamp, the environment's reuse and link); switch (trial,
# switch, live check, then the cleanup: unlock, list the job timers); the
# scenario's one timer (its service and timer written, systemd asked, timer
# started); fact gathering when the cache is cold
MAX_REMOTE = 8
# the fast path's tasks (every TASK line of the run, skipped ones and
# includes too): 27 on the demo (one app, no timers; 112 before issue 12's
# sixth pass), plus the scenario's timer (the scheduled jobs' seven tasks
# instead of their one skipped include), fact gathering when the cache is cold
MAX_TASKS = 35
# the gunicorn role's one systemd call runs on every full path (its unit
# templates run only where a file differs, so they may all be skipped)
SETUP_TASK = r"TASK \[gunicorn : Reload systemd if owed, enable and start the web units \(one call\)\][^\n]*\n(\S+):"
# the fast path skips the setup as one task (its roles are not even loaded)
SETUP_INCLUDE = r"TASK \[Set up the apps \(full path only\)\][^\n]*\n(\S+):"


def touch(app_copy, marker: str) -> None:
    page = app_copy / "hello/templates/index.html"
    page.write_text(page.read_text().replace("</", f"<!-- {marker} --></", 1))


def deploy(tmp_path, src, apps_change: dict | None = None, **extra):
    apps = scenario_vars()["apps"]
    apps[0]["src"] = str(src)
    apps[0].update(apps_change or {})
    return playbook("deploy.yml", {"apps": apps, **extra}, tmp_path)


def remote_calls(out: str, tmp_path) -> int:
    """Module runs on the host in one run's output (scripts/remote_tasks.py)."""
    log = tmp_path / "deploy.log"
    log.write_text(out)
    counted = subprocess.run([sys.executable, str(ROOT / "scripts/remote_tasks.py"), str(ROOT), str(log)],
                             capture_output=True, text=True, check=True)
    return int(re.search(r"remote module runs: (\d+)", counted.stdout).group(1))


def setup_ran(out: str) -> bool:
    """Whether the setup ran in this run (gunicorn's units were checked and
    synced with systemd: ok/changed), or the setup was skipped whole (its include task skipped, none of its tasks
    in the output)."""
    include = re.search(SETUP_INCLUDE, out)
    assert include, out[-3000:]
    if include.group(1) == "skipping":
        assert "TASK [gunicorn :" not in out, out[-3000:]
        return False
    m = re.search(SETUP_TASK, out)
    assert m, out[-3000:]
    return m.group(1) in ("ok", "changed")


def tasks(out: str) -> int:
    """The run's tasks: every TASK line (skipped tasks and includes too)."""
    return len(re.findall(r"^TASK \[", out, re.M))


def main_pid(unit: str = "gunicorn-hello.service") -> int:
    return int(exec_in("systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip() or 0)


def process_env(pid: int) -> dict[str, str]:
    raw = exec_in("cat", f"/proc/{pid}/environ").stdout
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def test_deploy_full_true_takes_the_full_path_and_records_the_setup(tmp_path, app_copy):
    run = deploy(tmp_path, app_copy, deploy_full=True)
    assert run.rc == 0, run.out[-3000:]
    assert "Deploy path: full (deploy_full)" in run.out, run.out[-3000:]
    assert setup_ran(run.out)
    # the record of that run: root's only
    assert exec_in("stat", "-c", "%U %a", "/etc/flask-stack/deploy-setup.sha256").stdout.split() == ["root", "600"]


def test_a_code_only_deploy_takes_the_fast_path_in_few_round_trips_through_the_health_gate(tmp_path, app_copy):
    before = serving()
    touch(app_copy, "fast path")
    run = deploy(tmp_path, app_copy)
    assert run.rc == 0, run.out[-3000:]
    assert FAST in run.out, run.out[-3000:]
    assert not setup_ran(run.out), run.out[-3000:]
    calls = remote_calls(run.out, tmp_path)
    print(f"\nfast-path code-only deploy: {run.seconds:.1f} s, {calls} remote calls, {tasks(run.out)} tasks, "
          f"changed={run.changed}")
    assert calls <= MAX_REMOTE, run.out[-4000:]
    assert tasks(run.out) <= MAX_TASKS, run.out
    # still health-gated: the trial answered, then the switch; the new release serves
    trial = re.search(r"TASK \[app : Switch through the health check: hello (\S+) /healthz\][^\n]*\nchanged:", run.out)
    assert trial, run.out[-3000:]
    release = serving()
    assert release == trial.group(1) != before
    assert link_target(f"{APP}/current") == f"{APP}/releases/{release}"
    assert exec_in("cat", f"{APP}/releases/{release}/RELEASE").stdout.strip() == release
    # the old release stays as the rollback target
    assert before in listdir(f"{APP}/releases")
    # the environment was reused (the same lock): begin linked the new release to the old one's
    env = link_target(f"{APP}/releases/{release}/.python")
    assert env == link_target(f"{APP}/releases/{before}/.python") != "", env
    assert exec_in("test", "-f", f"{env}/.flask-stack-complete").returncode == 0, env
    # the passed trial stopped (queued while the app restarted; the switch returns after it), the lock is released
    assert exec_in("systemctl", "list-units", "--all", "--plain", "--no-legend",
                   "gunicorn-hello-candidate*").stdout.strip() == ""
    status = json.loads(exec_in("/usr/local/sbin/flask-stack-lock", "status", "hello").stdout)
    assert status["locked"] is False, status
    # the switch's call did the cleanup (no cleanup call of its own)
    assert not re.search(r"TASK \[app : Remove old releases of hello\][^\n]*\n(ok|changed):", run.out), run.out[-3000:]


def test_a_release_failing_its_health_check_on_the_fast_path_leaves_the_old_one_serving(tmp_path, app_copy):
    before = serving()
    init = app_copy / "hello/__init__.py"
    anchor = "        response = jsonify(\n            status=\"OK\""
    text = init.read_text()
    assert anchor in text
    init.write_text(text.replace(anchor, "        return jsonify(status=\"sick\"), 500\n" + anchor, 1))
    run = deploy(tmp_path, app_copy)
    assert run.rc != 0, run.out[-3000:]
    assert FAST in run.out, run.out[-3000:]
    assert re.search(r"failed its health check and was not switched to \(/healthz answered 500", run.out), run.out
    assert serving() == before
    assert link_target(f"{APP}/current") == f"{APP}/releases/{before}"


def test_an_env_or_unit_change_takes_the_full_path_and_restarts_with_it(tmp_path, app_copy):
    # the env file
    pid = main_pid()
    run = deploy(tmp_path, app_copy, {"env": {**scenario_vars()["apps"][0]["env"], "FAST_PATH_PROBE": "env"}})
    assert run.rc == 0, run.out[-3000:]
    assert "Deploy path: full (the setup changed since the last full run)" in run.out, run.out[-3000:]
    assert setup_ran(run.out)
    assert main_pid() not in (0, pid)
    assert process_env(main_pid()).get("FAST_PATH_PROBE") == "env"
    # a unit setting (an inventory variable of the gunicorn role)
    pid = main_pid()
    run = deploy(tmp_path, app_copy, {"env": {**scenario_vars()["apps"][0]["env"], "FAST_PATH_PROBE": "env"}},
                 gunicorn_timeout=41)
    assert run.rc == 0, run.out[-3000:]
    assert "Deploy path: full (the setup changed since the last full run)" in run.out, run.out[-3000:]
    assert main_pid() not in (0, pid)
    cmdline = exec_in("cat", f"/proc/{main_pid()}/cmdline").stdout.split("\0")
    assert cmdline[cmdline.index("--timeout") + 1] == "41", cmdline
    # back to the scenario's setup: full again (it changed), then fast
    run = deploy(tmp_path, app_copy)
    assert run.rc == 0 and "Deploy path: full (the setup changed" in run.out, run.out[-3000:]
    assert "FAST_PATH_PROBE" not in process_env(main_pid())
    touch(app_copy, "fast again")
    run = deploy(tmp_path, app_copy)
    assert run.rc == 0 and FAST in run.out, run.out[-3000:]
