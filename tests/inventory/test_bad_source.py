"""A local `src` that is missing, unreadable or not the app fails in the
preflight play, naming the app and the path, before the first change (it
used to deploy the controller's previous archive with rc=0). Runs the real
site.yml against the throwaway target (helpers from test_bad_inventory.py)."""

from __future__ import annotations

import re

from playbook import copy_app
from test_bad_inventory import GOOD, assert_stopped_in_preflight, run


def app_copy(tmp_path):
    return copy_app(tmp_path / "src")


def test_missing_src_fails_naming_app_and_path(tmp_path):
    result = run(tmp_path, [{**GOOD, "src": "/nonexistent/app"}], letsencrypt_email="ops@example.com")
    assert_stopped_in_preflight(result, r"apps\[0\] \(hello\)\.src: '/nonexistent/app' does not exist on the controller")


def test_src_that_is_not_the_app_fails(tmp_path):
    src = app_copy(tmp_path)
    (src / "hello" / "wsgi.py").unlink()
    result = run(tmp_path, [{**GOOD, "src": str(src)}], letsencrypt_email="ops@example.com")
    assert_stopped_in_preflight(
        result, rf"apps\[0\] \(hello\)\.src: '{re.escape(str(src))}' is not the app: wsgi 'hello\.wsgi:app' needs hello/wsgi\.py")


def test_src_without_its_lock_file_fails(tmp_path):
    src = app_copy(tmp_path)
    (src / "requirements.txt").unlink()
    result = run(tmp_path, [{**GOOD, "src": str(src)}], letsencrypt_email="ops@example.com")
    assert_stopped_in_preflight(
        result, rf"apps\[0\] \(hello\)\.src: '{re.escape(str(src))}' is not the app: requirements 'requirements\.txt'")


def test_bad_src_of_the_second_app_names_that_app(tmp_path):
    second = {**GOOD, "name": "two", "domains": ["two.example.com"], "src": str(tmp_path / "nope")}
    result = run(tmp_path, [GOOD, second], letsencrypt_email="ops@example.com")
    assert_stopped_in_preflight(result, rf"apps\[1\] \(two\)\.src: '{re.escape(str(tmp_path / 'nope'))}' does not exist")
