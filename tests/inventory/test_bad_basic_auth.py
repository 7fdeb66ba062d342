"""A bad basic_auth entry fails in the preflight play, before the first
change, naming the entry and never printing the password. Runs the real
site.yml (helpers from test_bad_inventory.py)."""

from __future__ import annotations

import re

import pytest
from test_bad_inventory import GOOD, run

SECRET = "vault-secret-never-printed"


@pytest.mark.parametrize(
    ("basic_auth", "expected"),
    [
        ([{"path": "/", "users": [{"name": "ops", "password": SECRET}]}],
         r"apps\[0\] \(hello\)\.basic_auth\[0\]\.path: '/' would put health_path '/healthz' behind the password"),
        ([{"path": "/admin/", "users": [{"name": "o:ps", "password": SECRET}]}],
         r"apps\[0\] \(hello\)\.basic_auth\[0\]\.users\[0\]\.name: 'o:ps' is not a valid htpasswd user name"),
        ([{"path": "/admin/", "users": [{"name": "ops", "password": ""}]}],
         r"apps\[0\] \(hello\)\.basic_auth\[0\]\.users\[0\]\.password: \(user 'ops'\) must be a non-empty string"),
    ],
    ids=["health-behind-auth", "bad-user-name", "empty-password"],
)
def test_bad_basic_auth_fails_before_any_change(tmp_path, basic_auth, expected):
    result = run(tmp_path, [{**GOOD, "basic_auth": basic_auth}])
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert re.search(expected, out), out
    assert SECRET not in out
    assert "TASK [base" not in out and "TASK [nginx" not in out, out
    recap = re.search(r"web1\s+: ok=\d+\s+changed=(\d+)", out)
    assert recap and recap.group(1) == "0", out
