"""The deploy's setup fingerprint (plugins/filter/flask_stack_deploy.py) and
the load balancer pairs of a rolling deploy (flask_stack_cluster.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from plugin_modules import load

deploy = load("plugins/filter/flask_stack_deploy.py")
cluster = load("plugins/filter/flask_stack_cluster.py")
model = load("plugins/filter/flask_stack.py")

APP = {"name": "hello", "domains": ["hello.test"], "src": "/tmp/a", "wsgi": "hello.wsgi:app",
       "python": {"kind": "venv"}, "env": {"SECRET_KEY": "x"}}
SETTINGS = {"gunicorn_timeout": 30, "app_keep_releases": 5}


def fingerprint(app: dict, settings: dict = SETTINGS, extra: dict | None = None, paths=deploy.SETUP_FILES) -> str:
    return deploy.flask_stack_setup_fingerprint(model.flask_stack_apps([app]), settings, extra or {"vcpus": 2}, paths)


def test_the_code_location_is_not_part_of_the_setup():
    assert fingerprint(APP) == fingerprint({**APP, "src": "/somewhere/else"})


def test_env_units_and_settings_are():
    base = fingerprint(APP)
    assert fingerprint({**APP, "env": {"SECRET_KEY": "y"}}) != base
    assert fingerprint({**APP, "workers": 3}) != base
    assert fingerprint(APP, {**SETTINGS, "gunicorn_timeout": 41}) != base
    assert fingerprint(APP, extra={"vcpus": 4}) != base


def test_the_setup_roles_files_are(tmp_path, monkeypatch):
    shutil.copytree(deploy.ROOT / "roles/gunicorn", tmp_path / "roles/gunicorn")
    monkeypatch.setattr(deploy, "ROOT", tmp_path)
    before = fingerprint(APP, paths=["roles/gunicorn"])
    unit = tmp_path / "roles/gunicorn/templates/gunicorn.service.j2"
    unit.write_text(unit.read_text() + "\n# changed\n")
    assert fingerprint(APP, paths=["roles/gunicorn"]) != before


def test_the_setup_variables_are_the_roles_declared_ones():
    names = deploy.flask_stack_setup_var_names()
    assert {"gunicorn_timeout", "celery_loglevel", "python_env_uv_version", "app_broker_host"} <= set(names)
    # controller-side and per-batch values are not the host's setup
    assert "app_build_dir" not in names and "app_before_switch_hooks" not in names
    # per-run arguments of the lock and the release helper (a test's -e app_lock_wait_seconds=1 or
    # app_keep_releases=2 must not send that deploy, and the next one, down the full path)
    assert not {"app_lock_wait_seconds", "app_health_retries", "app_health_delay", "app_health_timeout",
                "app_keep_releases"} & set(names)
    assert all(Path(deploy.ROOT / "roles" / r / "defaults/main.yml").is_file() for r in deploy.SETUP_ROLES)


def test_lb_pairs_are_for_web_hosts_only():
    groups = {"lb": ["lb1", "lb2"], "web": ["web1"], "worker": ["w1"]}
    assert cluster.flask_stack_lb_pairs(groups, "web1", ["a", "b"]) == [
        ["lb1", "a"], ["lb1", "b"], ["lb2", "a"], ["lb2", "b"]]
    assert cluster.flask_stack_lb_pairs(groups, "w1", ["a"]) == []
    assert cluster.flask_stack_lb_pairs({"web": ["web1"]}, "web1", ["a"]) == []


def test_a_setup_variable_the_inventory_does_not_set_stands_for_its_role_default():
    # the setup roles but app are not loaded when deploy.yml fingerprints
    # the setup: their variables come as ROLE_DEFAULT unless the inventory
    # sets them, and the role's files (defaults/main.yml) carry the value
    unset = {name: deploy.ROLE_DEFAULT for name in deploy.flask_stack_setup_var_names(["gunicorn", "celery", "python_env"])}
    base = fingerprint(APP, unset)
    assert fingerprint(APP, {**unset, "gunicorn_timeout": 41}) != base
    assert fingerprint(APP, unset) == base


def test_a_role_default_that_reads_an_outside_variable_is_refused(tmp_path, monkeypatch):
    # sound only while such a default reads the setup roles' own variables
    # (python_env_miniforge_url reads python_env_miniforge_version: fine);
    # one reading anything else would leave a change of that out of the
    # fingerprint, so the filter names it instead
    for role in deploy.SETUP_ROLES:
        shutil.copytree(deploy.ROOT / "roles" / role / "defaults", tmp_path / "roles" / role / "defaults")
    monkeypatch.setattr(deploy, "ROOT", tmp_path)
    defaults = tmp_path / "roles/gunicorn/defaults/main.yml"
    defaults.write_text(defaults.read_text() + '\ngunicorn_probe: "{{ web_http_port | default(80) }}"\n')
    unset = {"gunicorn_probe": deploy.ROLE_DEFAULT, "python_env_miniforge_url": deploy.ROLE_DEFAULT}
    with pytest.raises(AnsibleFilterError, match=r"the default of gunicorn_probe reads web_http_port"):
        fingerprint(APP, unset, paths=[])
    # set by the inventory: its value is in the fingerprint, nothing to refuse
    assert fingerprint(APP, {**unset, "gunicorn_probe": 8080}, paths=[])
