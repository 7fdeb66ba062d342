"""The deploy's fast path (issue 12): a deploy that changes only code skips
the setup (users, env files, units, tools) and still goes through the health
gate; a change to the setup, or -e deploy_full=true, takes the full path.
Runs after test_deploy.py on the same host (test_robust.py re-settles it)."""

from __future__ import annotations

import re

from conftest import exec_in, link_target, playbook, scenario_vars, serving

APP = "/srv/apps/hello"
FAST = "Deploy path: fast"
SETUP_TASK = r"TASK \[gunicorn : Write each app's service unit\][^\n]*\n(\S+):"


def touch(app_copy, marker: str) -> None:
    page = app_copy / "hello/templates/index.html"
    page.write_text(page.read_text().replace("</", f"<!-- {marker} --></", 1))


def deploy(tmp_path, src, apps_change: dict | None = None, **extra):
    apps = scenario_vars()["apps"]
    apps[0]["src"] = str(src)
    apps[0].update(apps_change or {})
    return playbook("deploy.yml", {"apps": apps, **extra}, tmp_path)


def setup_ran(out: str) -> bool:
    """Whether the gunicorn units were rendered in this run (ok/changed) or skipped."""
    m = re.search(SETUP_TASK, out)
    assert m, out[-3000:]
    return m.group(1) in ("ok", "changed")


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


def test_a_code_only_deploy_takes_the_fast_path_through_the_health_gate(tmp_path, app_copy):
    before = serving()
    touch(app_copy, "fast path")
    run = deploy(tmp_path, app_copy)
    assert run.rc == 0, run.out[-3000:]
    assert FAST in run.out, run.out[-3000:]
    assert not setup_ran(run.out), run.out[-3000:]
    # still health-gated: the trial answered before the switch, and the new release serves
    assert re.search(r"TASK \[app : Switch through the health check: hello \S+ /healthz\]", run.out), run.out[-3000:]
    release = serving()
    assert release != before
    assert link_target(f"{APP}/current") == f"{APP}/releases/{release}"
    print(f"\nfast-path code-only deploy: {run.seconds:.1f} s, changed={run.changed}")


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
