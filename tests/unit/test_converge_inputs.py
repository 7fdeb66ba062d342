"""The converge's fast path, controller side (plugins/filter/flask_stack_converge.py):
what changes the fingerprint of a run's inputs, what blocks the fast path,
and the host pattern of the plays after the check."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from plugin_modules import load

converge = load("plugins/filter/flask_stack_converge.py")
ROOT = Path(__file__).resolve().parents[2]


def inputs(apps=(), hosts=("web1",), cliargs=None, version="2.19.0"):
    return converge.flask_stack_converge_inputs([list(apps)], list(hosts), version, None,
                                                cliargs if cliargs is not None else {})


def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "hello").mkdir(parents=True)
    (src / "hello" / "wsgi.py").write_text("app = None\n")
    return src


def test_the_fingerprint_is_stable_for_the_same_inputs(tmp_path):
    src = source(tmp_path)
    app = {"name": "hello", "src": str(src)}
    assert inputs([app])["inputs"] == inputs([app])["inputs"]
    assert len(inputs([app])["inputs"]) == 64


def test_an_apps_code_changes_it_but_not_what_is_never_shipped(tmp_path):
    src = source(tmp_path)
    app = {"name": "hello", "src": str(src)}
    before = inputs([app])["inputs"]
    # app_exclude (the app role's default): caches, .git, tests are never shipped
    (src / "hello" / "__pycache__").mkdir()
    (src / "hello" / "__pycache__" / "wsgi.cpython-311.pyc").write_bytes(b"\0")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (src / "tests").mkdir()
    (src / "tests" / "test_x.py").write_text("")
    assert inputs([app])["inputs"] == before
    (src / "hello" / "wsgi.py").write_text("app = 1\n")
    assert inputs([app])["inputs"] != before


def test_the_inventory_and_extra_vars_change_it(tmp_path):
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text("web: {hosts: {web1: {}}}\n")
    (inv / "group_vars" / "web.yml").write_text("gunicorn_timeout: 30\n")
    base = inputs(cliargs={"inventory": (str(inv),), "extra_vars": ()})["inputs"]
    (inv / "group_vars" / "web.yml").write_text("gunicorn_timeout: 31\n")
    changed = inputs(cliargs={"inventory": (str(inv),), "extra_vars": ()})["inputs"]
    assert changed != base
    extra = inputs(cliargs={"inventory": (str(inv),), "extra_vars": ("gunicorn_timeout=40",)})["inputs"]
    assert extra != changed
    vars_file = tmp_path / "more.yml"
    vars_file.write_text("a: 1\n")
    at_file = inputs(cliargs={"inventory": (str(inv),), "extra_vars": (f"@{vars_file}",)})["inputs"]
    vars_file.write_text("a: 2\n")
    assert inputs(cliargs={"inventory": (str(inv),), "extra_vars": (f"@{vars_file}",)})["inputs"] != at_file


def test_the_hosts_of_the_run_and_ansible_change_it():
    assert inputs(hosts=["web1"])["inputs"] != inputs(hosts=["web1", "web2"])["inputs"]
    assert inputs(version="2.19.0")["inputs"] != inputs(version="2.19.1")["inputs"]


def test_the_repositorys_roles_change_it(tmp_path, monkeypatch):
    for part in converge.CODE:
        if (ROOT / part).is_dir():
            shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif (ROOT / part).exists():
            shutil.copy(ROOT / part, tmp_path / part)
    monkeypatch.setattr(converge, "ROOT", tmp_path)
    before = inputs()["inputs"]
    conf = tmp_path / "roles/nginx/templates/nginx.conf.j2"
    conf.write_text(conf.read_text() + "\n# one more line\n")
    assert inputs()["inputs"] != before


def test_a_moving_git_ref_blocks_the_fast_path_and_a_pinned_commit_does_not():
    moving = {"name": "gitapp", "src": {"git": {"repo": "https://example.invalid/x.git", "version": "main"}}}
    pinned = {"name": "gitapp", "src": {"repo": "https://example.invalid/x.git", "version": "a" * 40}}
    assert inputs([moving])["blockers"] == [
        "app gitapp follows git ref 'main' (pin a full commit id for the fast path)"]
    assert inputs([pinned])["blockers"] == []


def test_a_malformed_apps_list_is_fingerprinted_not_rejected():
    # preflight names what is wrong, on the full path
    assert len(converge.flask_stack_converge_inputs(["not a list", [42, {"src": 7}]], ["w"], "", None, {})["inputs"]) == 64


def test_the_later_plays_leave_out_the_unchanged_hosts_only_when_that_group_exists():
    assert converge.flask_stack_converging("web:worker", {"all": [], "web": []}) == "web:worker"
    assert converge.flask_stack_converging("web:worker", {"web": [], converge.UNCHANGED_GROUP: ["w"]}) \
        == f"web:worker:!{converge.UNCHANGED_GROUP}"


def test_the_check_puts_hosts_into_the_group_the_filter_leaves_out():
    tasks = yaml.safe_load((ROOT / "roles/converge/tasks/check.yml").read_text())
    keys = [t["ansible.builtin.group_by"]["key"] for t in tasks if "ansible.builtin.group_by" in t]
    assert keys == [converge.UNCHANGED_GROUP]


def test_the_state_trees_are_the_apps_directories_and_the_tools(tmp_path):
    apps = [{"dir": "/srv/apps/hello", "interpreter": "/srv/apps/hello/current/.python/bin/python"}]
    assert converge.flask_stack_converge_trees(apps, "/opt/flask-stack") == [
        "/opt/flask-stack:2", "/srv/apps/hello:1", "/srv/apps/hello/current/.python/bin/python:0"]


def test_another_roles_default_is_read_from_that_role():
    assert converge.flask_stack_role_default("python_env_tools_dir", "python_env") == "/opt/flask-stack"
    assert converge.flask_stack_role_default("base_apt_cache_valid_time", "base") == 3600
    assert converge.flask_stack_role_default("os_hardening_security_updates", "os_hardening") is True


def test_the_path_switch_itself_is_not_an_input():
    base = inputs(cliargs={"extra_vars": ()})["inputs"]
    assert inputs(cliargs={"extra_vars": ("converge_full=false",)})["inputs"] == base
    assert inputs(cliargs={"extra_vars": ('{"converge_full": true}',)})["inputs"] == base
    assert inputs(cliargs={"extra_vars": ("converge_full=false gunicorn_timeout=40",)})["inputs"] != base


def test_a_vars_file_counts_by_its_content_not_its_name(tmp_path):
    one, two = tmp_path / "vars-0.json", tmp_path / "vars-1.json"
    one.write_text('{"converge_full": false}')
    two.write_text('{"converge_full": true}')
    base = inputs(cliargs={"extra_vars": ()})["inputs"]
    assert inputs(cliargs={"extra_vars": (f"@{one}",)})["inputs"] == base
    assert inputs(cliargs={"extra_vars": (f"@{two}",)})["inputs"] == base
    two.write_text('{"apps": []}')
    assert inputs(cliargs={"extra_vars": (f"@{two}",)})["inputs"] != base


def test_only_tags_of_the_converge_limit_it():
    # molecule's converge passes --skip-tags molecule-notest,notest: the whole converge still runs
    assert converge.flask_stack_converge_tags(["molecule-notest", "notest"]) == []
    assert converge.flask_stack_converge_tags(["nginx", "notest"]) == ["nginx"]
    assert converge.flask_stack_converge_tags(["app-prune"]) == ["app-prune"]
