"""The per-app gunicorn worker model in the apps model filter: worker_class and threads."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from plugin_modules import load

model = load("plugins/filter/flask_stack.py")


def app(**over):
    return {"name": "hello", "domains": ["hello.example.com"], "src": "/srv/src/hello", "wsgi": "hello.wsgi:app", **over}


def test_defaults_sync_one_thread_and_gthread_four():
    sync, gthread, gevent = model.flask_stack_apps([
        app(), app(name="two", domains=["two.example.com"], worker_class="gthread"),
        app(name="three", domains=["three.example.com"], worker_class="gevent")])
    assert (sync["worker_class"], sync["threads"]) == ("sync", 1)
    assert (gthread["worker_class"], gthread["threads"]) == ("gthread", 4)
    assert (gevent["worker_class"], gevent["threads"]) == ("gevent", 1)
    assert model.flask_stack_apps([app(worker_class="gthread", threads=16)])[0]["threads"] == 16


@pytest.mark.parametrize("over, message", [
    ({"worker_class": "eventlet"}, r"apps\[0\] \(hello\)\.worker_class: 'eventlet' is not a worker class \(known: sync, gthread, gevent\)"),
    ({"threads": 4}, r"apps\[0\] \(hello\)\.threads: 4 needs worker_class gthread \(worker_class is 'sync'\)"),
    ({"worker_class": "gthread", "threads": 0}, r"apps\[0\] \(hello\)\.threads"),
    ({"worker_class": "gthread", "threads": "many"}, r"apps\[0\] \(hello\)\.threads"),
])
def test_bad_worker_model_names_the_app_and_value(over, message):
    with pytest.raises(AnsibleFilterError, match=message):
        model.flask_stack_apps([app(**over)])


def test_preload_is_off_by_default_and_passes_through():
    assert model.flask_stack_apps([app()])[0]["preload"] is False
    assert model.flask_stack_apps([app(preload=True)])[0]["preload"] is True
    assert model.flask_stack_apps([app(worker_class="gthread", preload=True)])[0]["preload"] is True


@pytest.mark.parametrize("over, message", [
    ({"preload": "yes"}, r"apps\[0\] \(hello\)\.preload: 'yes' must be true or false"),
    ({"worker_class": "gevent", "preload": True},
     r"apps\[0\] \(hello\)\.preload: true does not go with worker_class gevent"),
])
def test_bad_preload_names_the_app_and_value(over, message):
    with pytest.raises(AnsibleFilterError, match=message):
        model.flask_stack_apps([app(**over)])
