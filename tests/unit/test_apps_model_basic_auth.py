"""The apps model's ``basic_auth`` key (plugins/filter/flask_stack.py): the
htpasswd file each protected path gets, and the error every bad entry gets.
Kept apart from test_apps_model.py so both can grow without stepping on each
other."""

from __future__ import annotations

import re

import pytest
from ansible.errors import AnsibleFilterError
from plugin_modules import load

model = load("plugins/filter/flask_stack.py")

SECRET = "s3cret-never-shown"


def app(basic_auth, **over):
    base = {"name": "hello", "domains": ["hello.example.com"], "src": "/srv/src/hello", "wsgi": "hello.wsgi:app",
            "basic_auth": basic_auth}
    base.update(over)
    return base


def admin(**over):
    entry = {"path": "/admin/", "users": [{"name": "ops", "password": SECRET}]}
    entry.update(over)
    return entry


def test_no_basic_auth_by_default():
    (a,) = model.flask_stack_apps([{k: v for k, v in app([]).items() if k != "basic_auth"}])
    assert a["basic_auth"] == []


def test_each_protected_path_gets_its_own_htpasswd_file():
    (a,) = model.flask_stack_apps([app([admin(), admin(path="/reports/2024/", realm="Reports")])])
    assert a["basic_auth"] == [
        {"path": "/admin/", "realm": "Restricted", "users": [{"name": "ops", "password": SECRET}],
         "htpasswd_file": "/etc/nginx/htpasswd/hello.admin"},
        {"path": "/reports/2024/", "realm": "Reports", "users": [{"name": "ops", "password": SECRET}],
         "htpasswd_file": "/etc/nginx/htpasswd/hello.reports+2024"},
    ]


def test_a_numeric_password_from_yaml_becomes_a_string():
    (a,) = model.flask_stack_apps([app([admin(users=[{"name": "ops", "password": 12345678}])])])
    assert a["basic_auth"][0]["users"][0]["password"] == "12345678"


W = r"apps\[0\] \(hello\)\.basic_auth"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("nope", W + r": 'nope' must be a list"),
        (["/admin/"], W + r"\[0\]: must be a mapping with path and users"),
        ([admin(roles=["x"])], W + r"\[0\]: unknown key\(s\) roles"),
        ([admin(path="admin/")], W + r"\[0\]\.path: 'admin/' must be a URL path that starts and ends with '/'"),
        ([admin(path="/admin")], W + r"\[0\]\.path: '/admin' must be a URL path that starts and ends with '/'"),
        ([admin(path="/a b/")], W + r"\[0\]\.path: '/a b/' must be a URL path"),
        ([admin(path="/admin/../")], W + r"\[0\]\.path: '/admin/\.\./' must not contain '\.' or '\.\.' segments"),
        ([admin(path="//")], W + r"\[0\]\.path: '//' must be a URL path"),
        ([admin(), admin()], W + r"\[1\]\.path: '/admin/' is protected twice"),
        ([admin(path="/")], W + r"\[0\]\.path: '/' would put health_path '/healthz' behind the password"),
        ([admin(realm='say "hi"')], W + r"\[0\]\.realm: 'say \"hi\"' must be a non-empty one-line string"),
        ([admin(users=[])], W + r"\[0\]\.users: must be a non-empty list"),
        ([admin(users=None)], W + r"\[0\]\.users: must be a non-empty list"),
        ([admin(users=[{"name": "ops"}])], W + r"\[0\]\.users\[0\]: must be a mapping with exactly name and password"),
        ([admin(users=[{"name": "a:b", "password": SECRET}])],
         W + r"\[0\]\.users\[0\]\.name: 'a:b' is not a valid htpasswd user name"),
        ([admin(users=[{"name": "", "password": SECRET}])],
         W + r"\[0\]\.users\[0\]\.name: '' is not a valid htpasswd user name"),
        ([admin(users=[{"name": "two words", "password": SECRET}])],
         W + r"\[0\]\.users\[0\]\.name: 'two words' is not a valid htpasswd user name"),
        ([admin(users=[{"name": "ops", "password": SECRET}, {"name": "ops", "password": "other-pass"}])],
         W + r"\[0\]\.users\[1\]\.name: 'ops' is listed twice for /admin/"),
        ([admin(users=[{"name": "ops", "password": ""}])],
         W + r"\[0\]\.users\[0\]\.password: \(user 'ops'\) must be a non-empty string"),
        ([admin(users=[{"name": "ops", "password": "   "}])],
         W + r"\[0\]\.users\[0\]\.password: \(user 'ops'\) must be a non-empty string"),
        ([admin(users=[{"name": "ops", "password": None}])],
         W + r"\[0\]\.users\[0\]\.password: \(user 'ops'\) must be a non-empty string"),
        ([admin(users=[{"name": "ops", "password": "a\nb"}])],
         W + r"\[0\]\.users\[0\]\.password: \(user 'ops'\) must not contain a newline"),
    ],
    ids=["not-a-list", "entry-not-a-mapping", "unknown-key", "path-no-leading-slash", "path-no-trailing-slash",
         "path-space", "path-dotdot", "path-empty-segment", "path-twice", "health-behind-auth", "realm-quote",
         "users-empty", "users-none", "user-without-password", "name-colon", "name-empty", "name-space",
         "name-twice", "password-empty", "password-blank", "password-none", "password-newline"],
)
def test_bad_basic_auth_names_the_variable_and_never_the_password(entry, message):
    with pytest.raises(AnsibleFilterError) as err:
        model.flask_stack_apps([app(entry)])
    assert re.search(message, str(err.value)), str(err.value)
    assert SECRET not in str(err.value)


def test_a_health_path_under_the_protected_path_is_refused():
    with pytest.raises(AnsibleFilterError, match=r"'/admin/' would put health_path '/admin/health'"):
        model.flask_stack_apps([app([admin()], health_path="/admin/health")])


def test_a_health_path_that_only_shares_a_prefix_is_fine():
    (a,) = model.flask_stack_apps([app([admin(path="/health/")], health_path="/healthz")])
    assert a["basic_auth"][0]["path"] == "/health/"
