"""Microcaching per path in the apps model filter: cache: [{path, ttl}]."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from plugin_modules import load

model = load("plugins/filter/flask_stack.py")


def app(**over):
    return {"name": "hello", "domains": ["hello.example.com"], "src": "/srv/src/hello", "wsgi": "hello.wsgi:app", **over}


def test_no_cache_by_default_and_ttls_in_seconds():
    assert model.flask_stack_apps([app()])[0]["cache"] == []
    (one,) = model.flask_stack_apps([app(cache=[{"path": "/api/time", "ttl": 5}, {"path": "/news/", "ttl": "2m"}])])
    assert one["cache"] == [{"path": "/api/time", "ttl": "5s"}, {"path": "/news/", "ttl": "120s"}]


@pytest.mark.parametrize("cache, message", [
    ([{"path": "api", "ttl": 5}], r"cache\[0\]\.path: 'api' must be a URL path prefix"),
    ([{"path": "/a;b", "ttl": 5}], r"cache\[0\]\.path: '/a;b'"),
    ([{"path": "/x", "ttl": 0}], r"cache\[0\]\.ttl: 0 must be seconds"),
    ([{"path": "/x", "ttl": "2h"}], r"cache\[0\]\.ttl: '2h'"),
    ([{"path": "/x", "ttl": 5, "vary": "x"}], r"cache\[0\]: .* exactly the keys path and ttl"),
    ([{"path": "/x", "ttl": 5}, {"path": "/x", "ttl": 9}], r"cache\[1\]\.path: '/x' is already used by cache\[0\]"),
    ([{"path": "/static/", "ttl": 5}], r"cache\[0\]\.path: '/static/' is already used by static_url"),
    ([{"path": "/", "ttl": 5}], r"cache\[0\]\.path: '/' would cache health_path '/healthz'"),
])
def test_bad_cache_entries_name_the_app_and_value(cache, message):
    with pytest.raises(AnsibleFilterError, match=r"apps\[0\] \(hello\)\." + message):
        model.flask_stack_apps([app(cache=cache)])
