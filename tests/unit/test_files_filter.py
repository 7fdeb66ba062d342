"""flask_stack_needs_write (plugins/filter/flask_stack_files.py): a role's
template/copy/file task is skipped only when one `find` of the host showed
its file exactly as the task would leave it. Checked against the output of
the real find module on real files."""

from __future__ import annotations

import grp
import importlib.util
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("flask_stack_files", ROOT / "plugins/filter/flask_stack_files.py")
files = importlib.util.module_from_spec(spec)
spec.loader.exec_module(files)

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name
CONTENT = "listen 80;\n# é\n"


def find(paths: list[str]) -> dict:
    """The find module's answer, as a role's task registers it."""
    ansible = Path(sys.executable).parent / "ansible"
    args = {"paths": files.flask_stack_find_paths(paths), "patterns": files.flask_stack_find_names(paths),
            "file_type": "any", "get_checksum": True, "hidden": True}
    out = subprocess.run([str(ansible), "localhost", "-c", "local", "-m", "ansible.builtin.find", "-a", json.dumps(args),
                          "-o"], capture_output=True, text=True, check=True,
                         env={**os.environ, "ANSIBLE_LOCALHOST_WARNING": "false"}).stdout
    return json.loads(out.split("=>", 1)[1])


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    base = tmp_path_factory.mktemp("etc")
    (base / "site.conf").write_text(CONTENT)
    (base / "site.conf").chmod(0o644)
    (base / "snippets").mkdir()
    (base / "snippets").chmod(0o755)
    (base / "linked.conf").symlink_to(base / "site.conf")
    paths = [str(base / n) for n in ("site.conf", "snippets", "linked.conf", "missing.conf")]
    return base, find(paths)


def test_a_file_as_wanted_is_not_written(host):
    base, found = host
    assert not files.flask_stack_needs_write(found, str(base / "site.conf"), CONTENT, USER, GROUP, "0644")
    assert not files.flask_stack_needs_write(found, str(base / "snippets"), None, USER, GROUP, "0755", state="directory")


@pytest.mark.parametrize("change", [
    {"content": CONTENT + "x"},           # content differs
    {"content": CONTENT.rstrip("\n")},    # a lost trailing newline is a difference too
    {"content": None},                    # no content to compare
    {"mode": "0640"},
    {"owner": "nobody-else"},
    {"group": "nobody-else"},
])
def test_any_difference_writes_the_file(host, change):
    base, found = host
    args = {"content": CONTENT, "owner": USER, "group": GROUP, "mode": "0644", **change}
    assert files.flask_stack_needs_write(found, str(base / "site.conf"), **args)


def test_missing_linked_or_wrong_type_writes(host):
    base, found = host
    assert files.flask_stack_needs_write(found, str(base / "missing.conf"), CONTENT, USER, GROUP, "0644")
    assert files.flask_stack_needs_write(found, str(base / "linked.conf"), CONTENT, USER, GROUP, "0777")
    assert files.flask_stack_needs_write(found, str(base / "site.conf"), None, USER, GROUP, "0644", state="directory")
    assert files.flask_stack_needs_write(found, str(base / "snippets"), "", USER, GROUP, "0755")


def test_without_an_answer_from_the_host_the_task_decides():
    assert files.flask_stack_needs_write(None, "/etc/x", CONTENT)
    assert files.flask_stack_needs_write({"skipped": True, "changed": False}, "/etc/x", CONTENT)
