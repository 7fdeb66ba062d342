"""The release helper (flask-stack-release, issue 12): its refusals leave the
host as it was (a held lock, a release that fails its trial). Its round
trips on the fast path are counted in test_fast_path.py. Runs after
test_fast_path.py on the same host (its setup record matches, so code-only
deploys take the fast path)."""

from __future__ import annotations

import json
import re

from conftest import exec_in, listdir, playbook, scenario_vars, serving

APP = "/srv/apps/hello"


def touch(app_copy, marker: str) -> None:
    page = app_copy / "hello/templates/index.html"
    page.write_text(page.read_text().replace("</", f"<!-- {marker} --></", 1))


def deploy(tmp_path, src, **extra):
    apps = scenario_vars()["apps"]
    apps[0]["src"] = str(src)
    return playbook("deploy.yml", {"apps": apps, **extra}, tmp_path)


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
