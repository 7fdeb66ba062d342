"""Robust against operators (issue 14): a bad timer never wedges the host,
a timer file systemd cannot load is removed, unit files are checked before
they land, two deploys at once do not collide, a stale lock is named and
released with one command, and an app dropped from `apps` is removed without
restarting the other. Runs after test_deploy.py on the same host."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import ROOT, exec_in, scenario_vars, serving
from playbook import Run, run, start

APP = "/srv/apps/hello"
TWO = {"name": "two", "domains": ["two.test"], "wsgi": "hello.wsgi:app", "python": {"kind": "venv"}, "workers": 1,
       "env": {"SECRET_KEY": "molecule-not-a-secret"},
       "timers": [{"name": "tick", "schedule": "hourly", "command": "true"}]}


def run_playbook(tmp_path: Path, name: str, extra: dict, *args: str):
    """playbooks/<name> against the scenario host with extra CLI arguments: (rc, output)."""
    result = run(os.environ["MOLECULE_INVENTORY_FILE"], ROOT / "playbooks" / name, *args, extra_vars=extra,
                 vars_dir=tmp_path, timeout=900)
    return result.rc, result.out


def changed(out: str) -> int:
    return Run(0, out).changed


def apps(*extra_apps: dict, timers: list | None = None, src: Path | None = None) -> list[dict]:
    listed = scenario_vars()["apps"]
    if timers is not None:
        listed[0]["timers"] = listed[0]["timers"] + timers
    if src is not None:
        listed[0]["src"] = str(src)
    return listed + [{**a, "src": listed[0]["src"]} for a in extra_apps]


def unit_prop(unit: str, prop: str) -> str:
    return exec_in("systemctl", "show", "-p", prop, "--value", unit).stdout.strip()


def one_line(out: str) -> str:
    return " ".join(out.split())


@pytest.fixture(scope="module", autouse=True)
def _scenario_source_serves(tmp_path_factory):
    """test_deploy.py leaves other sources (and a rollback) live: start from the
    scenario's own apps, so 'the next good run changes nothing' means it."""
    rc, out = run_playbook(tmp_path_factory.mktemp("settle"), "deploy.yml", {"apps": apps()})
    assert rc == 0, out


# -- timers -------------------------------------------------------------------

def test_a_bad_timer_schedule_fails_before_any_change_and_the_next_good_run_passes(tmp_path):
    rc, out = run_playbook(tmp_path, "deploy.yml", {"apps": apps(timers=[
        {"name": "x", "schedule": "every tuesday-ish", "command": "true"}])})
    assert rc != 0, out
    assert re.search(r"apps\[0\] \(hello\)\.timers\[1\]\.schedule: \"every tuesday-ish\" is not a calendar expression "
                     r"systemd accepts \(Failed to parse calendar specification", one_line(out)), out
    assert changed(out) == 0, out
    assert exec_in("test", "-e", "/etc/systemd/system/hello-job-x.timer").returncode != 0
    # the rejected run left the setup record as it was: the next good run,
    # whose setup matches the record, takes the fast path
    assert exec_in("test", "-s", "/etc/flask-stack/deploy-setup.sha256").returncode == 0
    rc, out = run_playbook(tmp_path, "deploy.yml", {"apps": apps()})
    assert rc == 0, out
    assert "Deploy path: fast" in out, out[-3000:]
    assert changed(out) == 0, out


def test_a_timer_file_systemd_cannot_load_is_removed_by_the_next_run(tmp_path):
    # what an earlier version left behind: a timer with a bad schedule, enabled
    exec_in("sh", "-c", "printf '[Timer]\\nOnCalendar=every tuesday-ish\\n[Install]\\nWantedBy=timers.target\\n'"
            " > /etc/systemd/system/hello-job-x.timer && printf '[Service]\\nType=oneshot\\nExecStart=/bin/true\\n'"
            " > /etc/systemd/system/hello-job-x.service && mkdir -p /etc/systemd/system/timers.target.wants"
            " && ln -sf /etc/systemd/system/hello-job-x.timer /etc/systemd/system/timers.target.wants/"
            " && systemctl daemon-reload")
    assert unit_prop("hello-job-x.timer", "LoadState") == "bad-setting"
    rc, out = run_playbook(tmp_path, "deploy.yml", {"apps": apps()})
    assert rc == 0, out
    assert unit_prop("hello-job-x.timer", "LoadState") == "not-found"
    assert exec_in("ls", "/etc/systemd/system/hello-job-x.timer", "/etc/systemd/system/hello-job-x.service",
                   "/etc/systemd/system/timers.target.wants/hello-job-x.timer").stdout == ""
    assert unit_prop("hello-job-stamp.timer", "ActiveState") == "active"


def test_unit_files_are_checked_before_they_land():
    checker = "/usr/local/sbin/flask-stack-check-unit"
    exec_in("sh", "-c", "printf '[Timer]\\nOnCalendar=every tuesday-ish\\n' > /tmp/bad-unit;"
            " printf '[Service]\\nExecStart=/bin/true\\nRestart=sometimes\\n' > /tmp/bad-service")
    bad = exec_in(checker, "/tmp/bad-unit", "hello-job-x.timer")
    assert bad.returncode == 1 and "Failed to parse calendar specification" in bad.stderr, bad
    bad = exec_in(checker, "/tmp/bad-service", "hello-job-y.service")
    assert bad.returncode == 1 and "Failed to parse service restart specifier" in bad.stderr, bad
    # every unit file the project wrote passes the same check
    units = exec_in("sh", "-c", "cd /etc/systemd/system && ls gunicorn-hello* hello-job-*").stdout.split()
    assert {"gunicorn-hello.socket", "gunicorn-hello.service", "gunicorn-hello-candidate@.service",
            "gunicorn-hello-candidate@.socket", "hello-job-stamp.timer", "hello-job-stamp.service"} <= set(units)
    for unit in units:
        good = exec_in(checker, f"/etc/systemd/system/{unit}", unit)
        assert good.returncode == 0, (unit, good.stderr)


# -- the deploy lock ------------------------------------------------------------

def test_two_deploys_at_once_one_goes_live_the_other_names_the_holder(tmp_path, app_copy):
    index = app_copy / "hello/templates/index.html"
    index.write_text(index.read_text().replace("</", "<!-- two at once --></", 1))
    before = serving()
    # output to files: two runs writing into pipes nobody reads would stall
    runs = [start(os.environ["MOLECULE_INVENTORY_FILE"], ROOT / "playbooks/deploy.yml",
                  extra_vars={"apps": apps(src=app_copy), "app_lock_wait_seconds": 2}, vars_dir=tmp_path,
                  log=tmp_path / f"two-at-once-{i}.log")
            for i in range(2)]
    results = [(p.wait(timeout=900), (tmp_path / f"two-at-once-{i}.log").read_text()) for i, p in enumerate(runs)]
    for p in runs:
        p.log.close()
    ok = [out for rc, out in results if rc == 0]
    refused = [out for rc, out in results if rc != 0]
    assert len(ok) == 1 and len(refused) == 1, results
    assert re.search(r"App hello on \S+ is locked by another deploy: \S+@\S+ \(ansible-playbook pid \d+\), started "
                     r"\S+ \(\d+ s ago\), target release", one_line(refused[0])), refused[0]
    live = serving()
    assert live != before
    assert exec_in("readlink", f"{APP}/current").stdout.strip() == f"{APP}/releases/{live}"
    # no trial left behind, and the lock is released
    assert exec_in("systemctl", "list-units", "--all", "--plain", "--no-legend",
                   "gunicorn-hello-candidate*").stdout.strip() == ""
    status = json.loads(exec_in("/usr/local/sbin/flask-stack-lock", "status", "hello").stdout)
    assert status["locked"] is False, status


def test_a_stale_lock_is_named_and_released_with_one_command(tmp_path):
    holder = {"user": "ghost", "controller": "gone-host", "controller_pid": "99999", "operation": "deploy",
              "started": "2026-01-01T00:00:00Z", "release": "20260101000000-deadbeef0000"}
    got = exec_in("/usr/local/sbin/flask-stack-lock", "acquire", "hello", "--token=crashed-run",
                  f"--holder={json.dumps(holder)}")
    assert got.returncode == 0, got
    before = serving()
    rc, out = run_playbook(tmp_path, "deploy.yml", {"apps": apps(), "app_lock_wait_seconds": 1})
    assert rc != 0
    assert re.search(r"locked by another deploy: ghost@gone-host \(ansible-playbook pid 99999\), started "
                     r"2026-01-01T00:00:00Z .* target release 20260101000000-deadbeef0000", one_line(out)), out
    assert "playbooks/unlock.yml -e unlock_app=hello" in one_line(out)
    rc, out = run_playbook(tmp_path, "rollback.yml", {"rollback_app": "hello", "app_lock_wait_seconds": 1})
    assert rc != 0 and "locked by another deploy: ghost@gone-host" in one_line(out), out
    assert serving() == before
    rc, out = run_playbook(tmp_path, "unlock.yml", {"apps": apps(), "unlock_app": "hello"})
    assert rc == 0 and "ghost" in out, out
    rc, out = run_playbook(tmp_path, "deploy.yml", {"apps": apps()})
    assert rc == 0, out


# -- removing an app ------------------------------------------------------------

def test_an_app_dropped_from_apps_is_removed_and_the_other_keeps_running(tmp_path):
    rc, out = run_playbook(tmp_path, "deploy.yml", {"apps": apps(TWO)})
    assert rc == 0, out
    two = exec_in("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", "/run/gunicorn/two.sock",
                  "http://two.test/healthz").stdout
    assert two == "200"
    assert unit_prop("two-job-tick.timer", "ActiveState") == "active"
    hello_pid = unit_prop("gunicorn-hello.service", "MainPID")
    hello_since = unit_prop("gunicorn-hello.service", "ActiveEnterTimestamp")
    assert hello_pid != "0"

    # --check --diff shows what would go, and removes nothing
    rc, out = run_playbook(tmp_path, "deploy.yml", {"apps": apps()}, "--check", "--diff", "--tags", "app-prune")
    assert rc == 0, out
    assert "App two is no longer in `apps`: removing its units" in one_line(out), out
    assert "/etc/flask-stack/two.env" in out
    assert unit_prop("gunicorn-two.service", "ActiveState") == "active"

    rc, out = run_playbook(tmp_path, "deploy.yml", {"apps": apps()})
    assert rc == 0, out
    for unit in ("gunicorn-two.socket", "gunicorn-two.service", "two-job-tick.timer", "two-job-tick.service"):
        assert unit_prop(unit, "LoadState") == "not-found", unit
    assert exec_in("sh", "-c", "ls /etc/systemd/system | grep -E '(^|-)two([.-]|$)'").stdout == ""
    assert exec_in("test", "-e", "/run/gunicorn/two.sock").returncode != 0
    assert exec_in("id", "app-two").returncode != 0
    assert exec_in("test", "-e", "/etc/flask-stack/two.env").returncode != 0
    assert exec_in("pgrep", "-f", "/srv/apps/two/").stdout == ""
    # nothing listens for it any more
    assert "two" not in exec_in("ss", "-xlnp").stdout
    # its data is kept by default
    assert exec_in("test", "-d", "/srv/apps/two/shared").returncode == 0
    # the other app was not restarted
    assert unit_prop("gunicorn-hello.service", "MainPID") == hello_pid
    assert unit_prop("gunicorn-hello.service", "ActiveEnterTimestamp") == hello_since
    serving()
    rc, out = run_playbook(tmp_path, "deploy.yml", {"apps": apps()})
    assert rc == 0 and changed(out) == 0, out
    exec_in("rm", "-rf", "/srv/apps/two")
