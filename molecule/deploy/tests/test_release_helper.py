"""The release helper (flask-stack-release, issue 12): a code-only deploy on
the fast path costs a handful of round trips and is still health-gated, and
the helper's refusals leave the host as it was (a held lock, a release that
fails its trial). Runs after test_fast_path.py on the same host (its setup
record matches, so code-only deploys take the fast path)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import ROOT, exec_in, link_target, listdir, playbook, scenario_vars, serving

APP = "/srv/apps/hello"
FAST = "Deploy path: fast"
# the fast path's calls on the host: read the setup record, begin (lock +
# unpack + stamp), the environment's reuse (4), switch (trial + switch +
# live check), cleanup (+ unlock), the scheduled jobs' check (5 for the
# scenario's one timer); fact gathering when the cache is cold
MAX_REMOTE = 14


def touch(app_copy, marker: str) -> None:
    page = app_copy / "hello/templates/index.html"
    page.write_text(page.read_text().replace("</", f"<!-- {marker} --></", 1))


def deploy(tmp_path, src, **extra):
    apps = scenario_vars()["apps"]
    apps[0]["src"] = str(src)
    return playbook("deploy.yml", {"apps": apps, **extra}, tmp_path)


def remote_calls(out: str, tmp_path) -> int:
    """Module runs on the host in one run's output (scripts/remote_tasks.py)."""
    log = tmp_path / "deploy.log"
    log.write_text(out)
    counted = subprocess.run([sys.executable, str(ROOT / "scripts/remote_tasks.py"), str(ROOT), str(log)],
                             capture_output=True, text=True, check=True)
    return int(re.search(r"remote module runs: (\d+)", counted.stdout).group(1))


def test_a_code_only_deploy_takes_few_round_trips_and_keeps_its_gate(tmp_path, app_copy):
    before = serving()
    touch(app_copy, "few round trips")
    run = deploy(tmp_path, app_copy)
    assert run.rc == 0, run.out[-3000:]
    assert FAST in run.out, run.out[-3000:]
    calls = remote_calls(run.out, tmp_path)
    print(f"\nfast-path deploy through the release helper: {run.seconds:.1f} s, {calls} remote calls, "
          f"changed={run.changed}")
    assert calls <= MAX_REMOTE, run.out[-4000:]
    # the trial answered, then the switch: the new release serves, the old one stays as the rollback target
    trial = re.search(r"TASK \[app : Switch through the health check: hello (\S+) /healthz\][^\n]*\nchanged:", run.out)
    assert trial, run.out[-3000:]
    release = serving()
    assert release == trial.group(1) != before
    assert link_target(f"{APP}/current") == f"{APP}/releases/{release}"
    assert before in listdir(f"{APP}/releases")
    assert exec_in("cat", f"{APP}/releases/{release}/RELEASE").stdout.strip() == release
    # the lock is released
    status = json.loads(exec_in("/usr/local/sbin/flask-stack-lock", "status", "hello").stdout)
    assert status["locked"] is False, status


def test_a_held_lock_refuses_before_anything_is_unpacked(tmp_path, app_copy):
    holder = {"user": "other", "controller": "elsewhere", "controller_pid": "4242", "operation": "deploy",
              "started": "2026-01-01T00:00:00Z"}
    got = exec_in("/usr/local/sbin/flask-stack-lock", "acquire", "hello", "--token=other-run",
                  f"--holder={json.dumps(holder)}")
    assert got.returncode == 0, got
    try:
        before, releases = serving(), listdir(f"{APP}/releases")
        touch(app_copy, "refused by the lock")
        run = deploy(tmp_path, app_copy, app_lock_wait_seconds=1)
        assert run.rc != 0
        one_line = " ".join(run.out.split())
        assert re.search(r"App hello on \S+ is locked by another deploy: other@elsewhere \(ansible-playbook pid "
                         r"4242\), started 2026-01-01T00:00:00Z .* target release not named yet; waited 1 s", one_line), \
            run.out[-3000:]
        # nothing unpacked, the old release serves
        assert listdir(f"{APP}/releases") == releases
        assert serving() == before
        # the other run's lock is untouched
        status = json.loads(exec_in("/usr/local/sbin/flask-stack-lock", "status", "hello").stdout)
        assert status["holder"]["token"] == "other-run", status
    finally:
        exec_in("/usr/local/sbin/flask-stack-lock", "break", "hello")


def test_a_release_failing_its_trial_leaves_no_trial_units_and_is_dropped(tmp_path, app_copy):
    before, releases = serving(), listdir(f"{APP}/releases")
    wsgi = app_copy / "hello/wsgi.py"
    wsgi.write_text(wsgi.read_text() + "\nraise RuntimeError('refused by the trial')\n")
    run = deploy(tmp_path, app_copy)
    assert run.rc != 0
    m = re.search(r"Release (\S+) of app hello failed its health check and was not switched to", run.out)
    assert m, run.out[-3000:]
    assert "refused by the trial" in run.out  # the trial's log is in the error
    assert f"{before} keeps serving" in run.out
    assert serving() == before
    assert listdir(f"{APP}/releases") == releases
    assert exec_in("systemctl", "list-units", "--all", "--plain", "--no-legend",
                   "gunicorn-hello-candidate*").stdout.strip() == ""
