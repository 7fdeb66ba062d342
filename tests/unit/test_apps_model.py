"""The apps model (plugins/filter/flask_stack.py): defaults, derived fields,
and the error every bad entry gets."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from plugin_modules import load

model = load("plugins/filter/flask_stack.py")


def app(**over):
    base = {"name": "hello", "domains": ["hello.example.com"], "src": "/srv/src/hello", "wsgi": "hello.wsgi:app"}
    base.update(over)
    return base


def test_defaults_and_derived_fields():
    (a,) = model.flask_stack_apps([app()])
    assert a["server_name"] == "hello.example.com"
    assert a["python"] == {"kind": "venv", "lock": "requirements.txt", "lock_format": "requirements"}
    assert a["workers"] == "auto"
    assert a["health_path"] == "/healthz"
    assert a["user"] == "app-hello"
    assert a["unit"] == "gunicorn-hello"
    assert a["socket"] == "/run/gunicorn/hello.sock"
    assert a["code_dir"] == "/srv/apps/hello/current"
    assert a["interpreter"] == "/srv/apps/hello/current/.python/bin/python"
    assert a["envs_dir"] == "/srv/apps/hello/envs"
    assert a["timers"] == []
    assert a["static_dir"] == "hello/static"
    assert a["source"] == {"kind": "path", "path": "/srv/src/hello"}


def test_git_source_and_two_apps():
    apps = model.flask_stack_apps([
        app(),
        app(name="shop", domains=["shop.example.com", "www.shop.example.com"],
            src={"git": {"repo": "https://example.com/shop.git", "version": "v2"}}, workers=3),
    ])
    assert apps[1]["source"] == {"kind": "git", "repo": "https://example.com/shop.git", "version": "v2"}
    assert apps[1]["workers"] == 3
    assert apps[0]["socket"] != apps[1]["socket"]


def test_conda_kinds_name_their_lock_input():
    (a,) = model.flask_stack_apps([app(python={"kind": "conda", "lock_file": "conda-lock.yml"})])
    assert a["python"] == {"kind": "conda", "lock": "conda-lock.yml", "lock_format": "conda-lock"}
    (b,) = model.flask_stack_apps([app(python={"kind": "conda", "environment_file": "environment.yml",
                                               "channels": ["conda-forge"]})])
    assert b["python"] == {"kind": "conda", "lock": "environment.yml", "lock_format": "environment",
                           "channels": ["conda-forge"]}
    # the interpreter path is the same for both kinds: the release's link to its environment
    assert a["interpreter"] == b["interpreter"] == "/srv/apps/hello/current/.python/bin/python"


def test_timers_get_a_default_timeout():
    (a,) = model.flask_stack_apps([app(timers=[{"name": "refresh", "schedule": "*-*-1/2 03:00", "command": "flask refresh"}])])
    assert a["timers"] == [{"name": "refresh", "schedule": "*-*-1/2 03:00", "command": "flask refresh", "timeout": 3600}]


def test_env_values_become_strings():
    (a,) = model.flask_stack_apps([app(env={"WORKERS": 3, "DEBUG": "0"})])
    assert a["env"] == {"WORKERS": "3", "DEBUG": "0"}


@pytest.mark.parametrize(
    ("apps", "message"),
    [
        ("hello", "apps: must be a list"),
        ([app(name=None)], "apps[0].name: is required"),
        ([{k: v for k, v in app().items() if k != "name"}], "apps[0].name: is required"),
        ([app(name="../etc")], "apps[0].name: '../etc' must match"),
        ([app(name="a/b")], "apps[0].name: 'a/b' must match"),
        ([app(name="Hello")], "apps[0].name: 'Hello' must match"),
        ([{k: v for k, v in app().items() if k != "domains"}], "apps[0] (hello).domains: is required"),
        ([app(domains=[])], "apps[0] (hello).domains: [] must be a non-empty list"),
        ([app(domains=["bad..example.com"])], "apps[0] (hello).domains[0]: 'bad..example.com' is not a valid domain"),
        ([app(domains=["-x.example.com"])], "apps[0] (hello).domains[0]: '-x.example.com' is not a valid domain"),
        ([app(domains=["Hello.example.com"])], "apps[0] (hello).domains[0]: 'Hello.example.com' is not a valid domain"),
        ([app(domains=["a.example.com", "a.example.com"])], "lists a domain twice"),
        ([app(), app(name="two")], "apps[1] (two).domains: 'hello.example.com' is already claimed by app 'hello'"),
        ([app(), app(domains=["other.example.com"])], "apps[1].name: 'hello' is already used by apps[0]"),
        ([app(python={"kind": "pipenv"})], "apps[0] (hello).python.kind: 'pipenv' is not a known kind"),
        ([app(wsgi="hello")], "apps[0] (hello).wsgi: 'hello' must look like"),
        ([app(workers=0)], "apps[0] (hello).workers: 0 must be 'auto'"),
        ([app(workers="many")], "apps[0] (hello).workers: 'many' must be 'auto'"),
        ([app(health_path="healthz")], "apps[0] (hello).health_path: 'healthz' must be a URL path"),
        ([app(src={"git": {"version": "v1"}})], "apps[0] (hello).src:"),
        ([app(env={"BAD-NAME": "x"})], "apps[0] (hello).env: 'BAD-NAME' is not a valid environment variable"),
        ([app(env={"X": "a\nb"})], "apps[0] (hello).env.X: must not contain a newline"),
        ([app(requirements="../../etc/passwd")], "apps[0] (hello).requirements:"),
        ([app(colour="blue")], "apps[0]: unknown key(s) colour"),
        ([app(python={"kind": "conda"})], "apps[0] (hello).python: kind conda needs exactly one of"),
        ([app(python={"kind": "conda", "environment_file": "e.yml", "lock_file": "l.yml"})], "needs exactly one of"),
        ([app(python={"kind": "conda", "lock_file": "/etc/lock.yml"})], "apps[0] (hello).python.lock_file: '/etc/lock.yml'"),
        ([app(python={"kind": "conda", "lock_file": "l.yml", "channels": "conda-forge"})], "python.channels"),
        ([app(python={"kind": "venv", "lock_file": "l.yml"})], "unknown key(s) lock_file for kind venv"),
        ([app(timers=[{"name": "x", "schedule": "daily"}])], "apps[0] (hello).timers[0].command: None must be"),
        ([app(timers=[{"name": "Bad", "schedule": "daily", "command": "c"}])], "timers[0].name: 'Bad' must match"),
        ([app(timers=[{"name": "x", "schedule": "daily", "command": "c"}] * 2)], "timers[1].name: 'x' is used twice"),
    ],
)
def test_bad_entries_name_the_variable_and_value(apps, message):
    with pytest.raises(AnsibleFilterError) as err:
        model.flask_stack_apps(apps)
    assert message in str(err.value)


# --- tls_mode (nginx + letsencrypt roles) -------------------------------------

def test_tls_mode_defaults_to_letsencrypt_and_derives_the_certificate_paths():
    (a,) = model.flask_stack_apps([app()])
    assert a["tls_mode"] == "letsencrypt"
    assert a["cert_name"] == "hello"
    assert a["tls_dir"] == "/etc/flask-stack/tls/hello"
    assert a["acme_webroot"] == "/var/www/acme-challenge"


@pytest.mark.parametrize("default", ["letsencrypt", "selfsigned", "none"])
def test_tls_default_applies_to_apps_without_their_own_mode(default):
    apps = model.flask_stack_apps(
        [app(), app(name="b", domains=["b.example.com"], tls_mode="none")], tls_default=default
    )
    assert [a["tls_mode"] for a in apps] == [default, "none"]


@pytest.mark.parametrize("default", [None, ""])
def test_an_unset_tls_default_means_letsencrypt(default):
    (a,) = model.flask_stack_apps([app(tls_mode=None)], tls_default=default)
    assert a["tls_mode"] == "letsencrypt"


@pytest.mark.parametrize(
    ("apps", "kwargs", "message"),
    [
        ([app(tls_mode="acme")], {}, "apps[0] (hello).tls_mode: 'acme' is not a TLS mode (known: letsencrypt, selfsigned, none"),
        ([app(tls_mode=False)], {}, "apps[0] (hello).tls_mode: False is not a TLS mode"),
        ([app()], {"tls_default": "https"}, "tls_mode_default: 'https' is not a TLS mode"),
    ],
)
def test_bad_tls_modes_name_the_variable_and_value(apps, kwargs, message):
    with pytest.raises(AnsibleFilterError) as err:
        model.flask_stack_apps(apps, **kwargs)
    assert message in str(err.value)


# --- worker, beat, hooks (celery role, app role's hooks) ---------------------

CELERY = {"celery_app": "hello.tasks:celery", "worker": {"enabled": True}}


def test_worker_beat_and_hooks_defaults_and_derived_units():
    (a,) = model.flask_stack_apps([app()])
    assert a["worker"] == {"enabled": False, "concurrency": "auto", "queues": ["celery"], "max_task_seconds": 300}
    assert a["beat"] == {"enabled": False} and a["celery"] is False
    assert a["hooks"] == {"before_switch": []}
    assert a["process_units"] == ["gunicorn-hello.service"]
    (b,) = model.flask_stack_apps([app(**CELERY, beat={"enabled": True}, hooks={"before_switch": ["flask db upgrade"]})])
    assert b["process_units"] == ["gunicorn-hello.service", "celery-hello-worker.service", "celery-hello-beat.service"]
    assert b["worker_unit"] == "celery-hello-worker" and b["beat_unit"] == "celery-hello-beat"
    assert b["beat_state_dir"] == "flask-stack/hello-beat"
    assert b["hooks"]["before_switch"] == ["flask db upgrade"]
    # one sandbox for every process of the app
    assert "User=app-hello" in b["sandbox"] and "ReadWritePaths=/srv/apps/hello/shared" in b["sandbox"]
    assert "ProtectSystem=strict" in b["sandbox"]


def test_beat_runs_on_the_first_host_of_the_play_that_has_the_app():
    hostvars = {"a": {"apps": [app(name="other")]}, "b": {"apps": [app()]}, "c": {"apps": [app()]}}
    (b,) = model.flask_stack_apps([app(**CELERY, beat={"enabled": True})])
    assert model.flask_stack_beat_host(b, ["a", "b", "c"], hostvars) == "b"
    assert "celery-hello-beat.service" in model.flask_stack_processes(b, "b", ["a", "b", "c"], hostvars)
    assert model.flask_stack_processes(b, "c", ["a", "b", "c"], hostvars) == [
        "gunicorn-hello.service", "celery-hello-worker.service"]


@pytest.mark.parametrize(
    ("apps", "message"),
    [
        ([app(worker={"enabled": True})], "apps[0] (hello).celery_app: is required when worker or beat is enabled"),
        ([app(beat={"enabled": True})], "apps[0] (hello).celery_app: is required"),
        ([app(**{**CELERY, "celery_app": "hello tasks"})], "apps[0] (hello).celery_app: 'hello tasks' must look like"),
        ([app(celery_app="x:y", worker={"enabled": "yes"})], "apps[0] (hello).worker.enabled: 'yes' must be true or false"),
        ([app(celery_app="x:y", worker={"enabled": True, "concurrency": 0})],
         "apps[0] (hello).worker.concurrency: 0 must be an integer between 1 and 64"),
        ([app(celery_app="x:y", worker={"enabled": True, "concurrency": "lots"})], "apps[0] (hello).worker.concurrency: 'lots'"),
        ([app(celery_app="x:y", worker={"enabled": True, "queues": []})], "apps[0] (hello).worker.queues: [] must be"),
        ([app(celery_app="x:y", worker={"enabled": True, "queues": ["a b"]})], "apps[0] (hello).worker.queues[0]: 'a b'"),
        ([app(celery_app="x:y", worker={"enabled": True, "max_task_seconds": 0})],
         "apps[0] (hello).worker.max_task_seconds: 0 must be an integer between 1 and 86400"),
        ([app(celery_app="x:y", worker={"enabled": True, "threads": 2})], "apps[0] (hello).worker: unknown key(s) threads"),
        ([app(beat={"enabled": 1})], "apps[0] (hello).beat.enabled: 1 must be true or false"),
        ([app(redis_db=16)], "apps[0] (hello).redis_db: 16 must be an integer between 0 and 15"),
        ([app(**CELERY), app(**CELERY, name="two", domains=["two.example.com"])],
         "apps[1] (two).redis_db: 0 is already used by app 'hello'"),
        ([app(hooks={"before_switch": "flask db upgrade"})], "apps[0] (hello).hooks.before_switch: 'flask db upgrade' must be a list"),
        ([app(hooks={"before_switch": [""]})], "apps[0] (hello).hooks.before_switch[0]: '' must be a non-empty one-line string"),
        ([app(hooks={"before_switch": ["a\nb"]})], "apps[0] (hello).hooks.before_switch[0]:"),
        ([app(hooks={"after_switch": ["x"]})], "apps[0] (hello).hooks: unknown hook(s) after_switch"),
    ],
)
def test_bad_worker_beat_and_hooks_name_the_variable_and_value(apps, message):
    with pytest.raises(AnsibleFilterError) as err:
        model.flask_stack_apps(apps)
    assert message in str(err.value)
