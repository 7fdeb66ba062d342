"""The ``apps`` data model: validation and derived fields.

Every role reads the same ``apps`` list. This filter is the one place that
knows its rules (what a valid name, domain or wsgi target is) and its
conventions (where an app's code, environment, socket and unit live), so the
roles cannot disagree about them.

    {{ apps | flask_stack_apps }}

returns a new list in which every entry carries its defaults and derived
fields, or fails with a message naming the variable and the bad value, e.g.
``apps[1].domains[0]: 'bad..name' is not a valid domain name``.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ansible.errors import AnsibleFilterError

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,27}$")
LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
WSGI_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_.()]*$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PYTHON_KINDS = ("venv", "conda")
TIMER_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
KNOWN_KEYS = {
    "name", "domains", "src", "wsgi", "python", "workers", "health_path", "env",
    "requirements", "static_url", "static_dir", "dir", "timers",
}
BASE_DIR = "/srv/apps"
# HTTPS per app (nginx and letsencrypt roles). An unset tls_mode takes the
# filter's tls_default argument (the inventory's tls_mode_default).
KNOWN_KEYS.add("tls_mode")
# Process types beyond the web process (Celery worker and beat), their Celery
# app, the Redis database they use, and release hooks.
KNOWN_KEYS.update({"worker", "beat", "celery_app", "redis_db", "hooks"})
CELERY_APP_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_][A-Za-z0-9_]*)?$")
QUEUE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
HOOK_STAGES = ("before_switch",)
# The sandbox every process of an app runs in (web, worker, beat, timers and
# release hooks): one definition, rendered into each unit as `Key=Value` lines
# and passed to systemd-run as properties. IPAddressDeny= is each process
# role's own setting (a worker must reach its broker, a web process need not).
SANDBOX = [
    ("UMask", "0027"),
    ("NoNewPrivileges", "yes"),
    ("CapabilityBoundingSet", ""),
    ("AmbientCapabilities", ""),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("ProtectProc", "invisible"),
    ("ProcSubset", "pid"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
    ("RemoveIPC", "yes"),
    ("KeyringMode", "private"),
    ("DevicePolicy", "closed"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallFilter", "~@privileged @resources @mount @debug @cpu-emulation @obsolete @raw-io @reboot @swap @clock @module"),
    ("SystemCallErrorNumber", "EPERM"),
]
TLS_MODES = ("letsencrypt", "selfsigned", "none")
TLS_DIR = "/etc/flask-stack/tls"
ACME_WEBROOT = "/var/www/acme-challenge"
# Basic auth in front of chosen URL paths (nginx role): one htpasswd file per
# protected path, read by nginx (group www-data).
KNOWN_KEYS.add("basic_auth")
AUTH_PATH_RE = re.compile(r"^/([A-Za-z0-9._~-]+/)*$")
# htpasswd user names: no ':' (the field separator), no spaces or control characters.
AUTH_USER_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
HTPASSWD_DIR = "/etc/nginx/htpasswd"


def _fail(path: str, msg: str) -> None:
    raise AnsibleFilterError(f"{path}: {msg}")


def valid_domain(value: Any) -> bool:
    if not isinstance(value, str) or not 0 < len(value) <= 253:
        return False
    return all(LABEL_RE.match(label) for label in value.split("."))


def _check_src(path: str, src: Any) -> dict[str, Any]:
    if isinstance(src, str) and src:
        return {"kind": "path", "path": src.rstrip("/")}
    if isinstance(src, dict) and "git" in src:
        src = src["git"]
    if isinstance(src, dict) and isinstance(src.get("repo"), str) and src["repo"]:
        version = src.get("version", "HEAD")
        if not isinstance(version, str) or not version:
            _fail(f"{path}.version", f"{version!r} is not a git ref")
        return {"kind": "git", "repo": src["repo"], "version": version}
    _fail(path, f"{src!r} is neither a local path nor {{git: {{repo: ..., version: ...}}}}")
    raise AssertionError  # unreachable


def _relative_path(path: str, value: Any) -> str:
    if not isinstance(value, str) or not value or value.startswith("/") or ".." in value.split("/"):
        _fail(path, f"{value!r} must be a path inside the app's source tree")
    return value


def _check_python(path: str, python: dict[str, Any], kind: str, requirements: Any) -> dict[str, Any]:
    """The environment's lock input: what the environment is built from and keyed by."""
    if kind == "venv":
        unknown = sorted(set(python) - {"kind"})
        if unknown:
            _fail(path, f"unknown key(s) {', '.join(unknown)} for kind venv (the lock is the app's `requirements`)")
        return {"kind": "venv", "lock": _relative_path(path.rsplit(".", 1)[0] + ".requirements", requirements),
                "lock_format": "requirements"}
    unknown = sorted(set(python) - {"kind", "environment_file", "lock_file", "channels"})
    if unknown:
        _fail(path, f"unknown key(s) {', '.join(unknown)} for kind conda (known: environment_file, lock_file, channels)")
    given = [k for k in ("environment_file", "lock_file") if python.get(k)]
    if len(given) != 1:
        _fail(path, "kind conda needs exactly one of environment_file (environment.yml) or lock_file (conda-lock.yml)")
    key = given[0]
    channels = python.get("channels")
    if channels is not None and (not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels)):
        _fail(f"{path}.channels", f"{channels!r} must be a list of channel names or URLs")
    result = {"kind": "conda", "lock": _relative_path(f"{path}.{key}", python[key]),
              "lock_format": "environment" if key == "environment_file" else "conda-lock"}
    if channels is not None:
        result["channels"] = channels
    return result


def _check_timers(path: str, timers: Any) -> list[dict[str, Any]]:
    if not isinstance(timers, list):
        _fail(path, f"{timers!r} must be a list of {{name, schedule, command}}")
    seen = set()
    result = []
    for i, timer in enumerate(timers):
        where = f"{path}[{i}]"
        if not isinstance(timer, dict):
            _fail(where, f"{timer!r} must be a mapping with name, schedule and command")
        unknown = sorted(set(timer) - {"name", "schedule", "command", "timeout"})
        if unknown:
            _fail(where, f"unknown key(s) {', '.join(unknown)} (known: name, schedule, command, timeout)")
        name = timer.get("name")
        if not isinstance(name, str) or not TIMER_NAME_RE.match(name):
            _fail(f"{where}.name", f"{name!r} must match [a-z][a-z0-9_-]*")
        if name in seen:
            _fail(f"{where}.name", f"{name!r} is used twice")
        seen.add(name)
        for key in ("schedule", "command"):
            value = timer.get(key)
            if not isinstance(value, str) or not value.strip() or "\n" in value:
                _fail(f"{where}.{key}", f"{value!r} must be a non-empty one-line string")
        timeout = timer.get("timeout", 3600)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            _fail(f"{where}.timeout", f"{timeout!r} must be a number of seconds >= 1")
        result.append({"name": name, "schedule": timer["schedule"], "command": timer["command"], "timeout": timeout})
    return result


def _int_in(path: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        _fail(path, f"{value!r} must be an integer {bound}")
    return value


def _check_worker(path: str, worker: Any) -> dict[str, Any]:
    if worker is None:
        worker = {}
    if not isinstance(worker, dict):
        _fail(path, f"{worker!r} must be a mapping such as {{enabled: true, concurrency: auto}}")
    unknown = sorted(set(worker) - {"enabled", "concurrency", "queues", "max_task_seconds"})
    if unknown:
        _fail(path, f"unknown key(s) {', '.join(unknown)} (known: concurrency, enabled, max_task_seconds, queues)")
    enabled = worker.get("enabled", False)
    if not isinstance(enabled, bool):
        _fail(f"{path}.enabled", f"{enabled!r} must be true or false")
    concurrency = worker.get("concurrency", "auto")
    if concurrency != "auto":
        _int_in(f"{path}.concurrency", concurrency, 1, 64)
    queues = worker.get("queues", ["celery"])
    if not isinstance(queues, list) or not queues:
        _fail(f"{path}.queues", f"{queues!r} must be a non-empty list of queue names")
    for j, queue in enumerate(queues):
        if not isinstance(queue, str) or not QUEUE_RE.match(queue):
            _fail(f"{path}.queues[{j}]", f"{queue!r} must be a queue name of letters, digits, '_', '.' or '-'")
    if len(set(queues)) != len(queues):
        _fail(f"{path}.queues", f"{queues!r} lists a queue twice")
    max_task = _int_in(f"{path}.max_task_seconds", worker.get("max_task_seconds", 300), 1, 86400)
    return {"enabled": enabled, "concurrency": concurrency, "queues": list(queues), "max_task_seconds": max_task}


def _check_hooks(path: str, hooks: Any) -> dict[str, list[str]]:
    if hooks is None:
        hooks = {}
    if not isinstance(hooks, dict):
        _fail(path, f"{hooks!r} must be a mapping such as {{before_switch: [commands]}}")
    unknown = sorted(set(hooks) - set(HOOK_STAGES))
    if unknown:
        _fail(path, f"unknown hook(s) {', '.join(unknown)} (known: {', '.join(HOOK_STAGES)})")
    result = {}
    for stage in HOOK_STAGES:
        commands = hooks.get(stage) or []
        if not isinstance(commands, list):
            _fail(f"{path}.{stage}", f"{commands!r} must be a list of commands")
        for j, command in enumerate(commands):
            if not isinstance(command, str) or not command.strip() or "\n" in command:
                _fail(f"{path}.{stage}[{j}]", f"{command!r} must be a non-empty one-line string")
        result[stage] = list(commands)
    return result


def _check_app(index: int, app: Any, tls_default: str = "letsencrypt") -> dict[str, Any]:
    where = f"apps[{index}]"
    if not isinstance(app, dict):
        _fail(where, f"must be a mapping, got {app!r}")
    unknown = sorted(set(app) - KNOWN_KEYS)
    if unknown:
        _fail(where, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(KNOWN_KEYS))})")

    name = app.get("name")
    if name is None:
        _fail(f"{where}.name", "is required")
    if not isinstance(name, str) or not NAME_RE.match(name):
        _fail(f"{where}.name", f"{name!r} must match [a-z][a-z0-9_-]* (at most 28 characters; no '/', '.' or spaces)")
    where = f"apps[{index}] ({name})"

    domains = app.get("domains")
    if domains is None:
        _fail(f"{where}.domains", "is required (a non-empty list of domain names)")
    if isinstance(domains, str):
        domains = [domains]
    if not isinstance(domains, list) or not domains:
        _fail(f"{where}.domains", f"{domains!r} must be a non-empty list of domain names")
    for j, domain in enumerate(domains):
        if not valid_domain(domain):
            _fail(f"{where}.domains[{j}]", f"{domain!r} is not a valid domain name (lower-case labels of a-z, 0-9 and '-')")
    if len(set(domains)) != len(domains):
        _fail(f"{where}.domains", f"{domains!r} lists a domain twice")

    if "src" not in app:
        _fail(f"{where}.src", "is required (a local path, or {git: {repo: ..., version: ...}})")
    src = _check_src(f"{where}.src", app["src"])

    wsgi = app.get("wsgi")
    if not isinstance(wsgi, str) or not WSGI_RE.match(wsgi):
        _fail(f"{where}.wsgi", f"{wsgi!r} must look like 'package.module:callable'")

    python = app.get("python", {"kind": "venv"})
    if not isinstance(python, dict):
        _fail(f"{where}.python", f"{python!r} must be a mapping such as {{kind: venv}}")
    kind = python.get("kind", "venv")
    if kind not in PYTHON_KINDS:
        _fail(f"{where}.python.kind", f"{kind!r} is not a known kind (known: {', '.join(PYTHON_KINDS)})")
    python = _check_python(f"{where}.python", python, kind, app.get("requirements", "requirements.txt"))

    workers = app.get("workers", "auto")
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        _fail(f"{where}.workers", f"{workers!r} must be 'auto' or an integer >= 1")

    health_path = app.get("health_path", "/healthz")
    if not isinstance(health_path, str) or not health_path.startswith("/") or " " in health_path:
        _fail(f"{where}.health_path", f"{health_path!r} must be a URL path starting with '/'")

    env = app.get("env", {}) or {}
    if not isinstance(env, dict):
        _fail(f"{where}.env", f"{env!r} must be a mapping of variable names to values")
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_KEY_RE.match(key):
            _fail(f"{where}.env", f"{key!r} is not a valid environment variable name")
        if isinstance(value, (dict, list)) or value is None:
            _fail(f"{where}.env.{key}", f"{value!r} must be a string or number")
        if "\n" in str(value):
            _fail(f"{where}.env.{key}", "must not contain a newline")

    requirements = app.get("requirements", "requirements.txt")
    static_url = app.get("static_url", "/static/")
    static_dir = app.get("static_dir", wsgi.split(":")[0].split(".")[0] + "/static")
    for key, value in (("requirements", requirements), ("static_dir", static_dir)):
        if not isinstance(value, str) or not value or value.startswith("/") or ".." in value.split("/"):
            _fail(f"{where}.{key}", f"{value!r} must be a path inside the app's source tree")
    if not isinstance(static_url, str) or not re.match(r"^/[A-Za-z0-9._~/-]*/$", static_url):
        _fail(f"{where}.static_url", f"{static_url!r} must be a URL path that starts and ends with '/'")

    timers = _check_timers(f"{where}.timers", app.get("timers", []) or [])

    tls_mode = app.get("tls_mode")
    if tls_mode is not None and (not isinstance(tls_mode, str) or tls_mode not in TLS_MODES):
        _fail(f"{where}.tls_mode", f"{tls_mode!r} is not a TLS mode (known: {', '.join(TLS_MODES)}; unset = tls_mode_default)")

    worker = _check_worker(f"{where}.worker", app.get("worker"))
    beat = app.get("beat") or {}
    if not isinstance(beat, dict):
        _fail(f"{where}.beat", f"{beat!r} must be a mapping such as {{enabled: true}}")
    if sorted(set(beat) - {"enabled"}):
        _fail(f"{where}.beat", f"unknown key(s) {', '.join(sorted(set(beat) - {'enabled'}))} (known: enabled)")
    beat_enabled = beat.get("enabled", False)
    if not isinstance(beat_enabled, bool):
        _fail(f"{where}.beat.enabled", f"{beat_enabled!r} must be true or false")
    celery = worker["enabled"] or beat_enabled
    celery_app = app.get("celery_app")
    if celery and celery_app is None:
        _fail(f"{where}.celery_app", "is required when worker or beat is enabled (e.g. 'hello.tasks:celery')")
    if celery_app is not None and (not isinstance(celery_app, str) or not CELERY_APP_RE.match(celery_app)):
        _fail(f"{where}.celery_app", f"{celery_app!r} must look like 'package.module:attribute'")
    redis_db = app.get("redis_db", 0)
    _int_in(f"{where}.redis_db", redis_db, 0, 15)
    hooks = _check_hooks(f"{where}.hooks", app.get("hooks"))

    app_dir = app.get("dir", f"{BASE_DIR}/{name}")
    if not isinstance(app_dir, str) or not app_dir.startswith("/") or ".." in app_dir.split("/"):
        _fail(f"{where}.dir", f"{app_dir!r} must be an absolute path")

    return {
        **app,
        "name": name,
        "domains": list(domains),
        "server_name": domains[0],
        "src": app["src"],
        "source": src,
        "wsgi": wsgi,
        "python": python,
        "timers": timers,
        "workers": workers,
        "health_path": health_path,
        "env": {k: str(v) for k, v in env.items()},
        "worker": worker,
        "beat": {"enabled": beat_enabled},
        "celery": celery,
        "celery_app": celery_app,
        "redis_db": redis_db,
        "hooks": hooks,
        "requirements": requirements,
        "static_url": static_url,
        "static_dir": static_dir,
        # conventions every role shares
        "dir": app_dir,
        "releases_dir": f"{app_dir}/releases",
        "code_dir": f"{app_dir}/current",
        "envs_dir": f"{app_dir}/envs",
        "shared_dir": f"{app_dir}/shared",
        # every release links its environment here; the unit runs this interpreter
        "env_link": ".python",
        "interpreter": f"{app_dir}/current/.python/bin/python",
        "bin_dir": f"{app_dir}/current/.python/bin",
        "candidate_unit": f"gunicorn-{name}-candidate",
        # a release on trial listens on <candidate_socket_prefix><release id>.sock
        "candidate_socket_prefix": f"/run/gunicorn/{name}-candidate-",
        "user": f"app-{name}",
        "unit": f"gunicorn-{name}",
        "worker_unit": f"celery-{name}-worker",
        "beat_unit": f"celery-{name}-beat",
        # beat's schedule lives in its StateDirectory= (/var/lib/<beat_state_dir>)
        "beat_state_dir": f"flask-stack/{name}-beat",
        # units of scheduled jobs are <job_unit_prefix><timer name>.{service,timer}
        "job_unit_prefix": f"{name}-job-",
        # the processes one release runs (beat runs on one host only: see
        # flask_stack_processes)
        "process_units": [f"gunicorn-{name}.service"]
        + ([f"celery-{name}-worker.service"] if worker["enabled"] else [])
        + ([f"celery-{name}-beat.service"] if beat_enabled else []),
        "sandbox": [f"User=app-{name}", f"Group=app-{name}"] + [f"{k}={v}" for k, v in SANDBOX]
        + [f"ReadWritePaths={app_dir}/shared"],
        "socket": f"/run/gunicorn/{name}.sock",
        "env_file": f"/etc/flask-stack/{name}.env",
        # HTTPS: nginx reads <tls_dir>/cert/{fullchain,privkey}.pem; `cert` links to
        # the live Let's Encrypt lineage <cert_name>, or to <tls_dir>/selfsigned
        "tls_mode": tls_default if tls_mode is None else tls_mode,
        "cert_name": name,
        "tls_dir": f"{TLS_DIR}/{name}",
        "acme_webroot": ACME_WEBROOT,
    }


def _check_basic_auth(index: int, raw: Any, app: dict[str, Any]) -> dict[str, Any]:
    """``basic_auth: [{path: /admin/, users: [{name, password}]}]``: checked,
    and each entry given the htpasswd file nginx reads. Error messages never
    show a password."""
    where = f"apps[{index}] ({app['name']}).basic_auth"
    entries = raw.get("basic_auth", []) if isinstance(raw, dict) else []
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        _fail(where, f"{entries!r} must be a list of {{path, users: [{{name, password}}]}}")
    result = []
    seen_paths: set[str] = set()
    for j, entry in enumerate(entries):
        at = f"{where}[{j}]"
        if not isinstance(entry, dict):
            _fail(at, "must be a mapping with path and users")
        unknown = sorted(set(entry) - {"path", "users", "realm"})
        if unknown:
            _fail(at, f"unknown key(s) {', '.join(unknown)} (known: path, users, realm)")
        path = entry.get("path")
        if not isinstance(path, str) or not AUTH_PATH_RE.match(path):
            _fail(f"{at}.path", f"{path!r} must be a URL path that starts and ends with '/' "
                                "(segments of A-Z a-z 0-9 . _ ~ -), e.g. /admin/")
        if "." in path.strip("/").split("/") or ".." in path.strip("/").split("/"):
            _fail(f"{at}.path", f"{path!r} must not contain '.' or '..' segments")
        if path in seen_paths:
            _fail(f"{at}.path", f"{path!r} is protected twice")
        seen_paths.add(path)
        if app["health_path"].startswith(path):
            _fail(f"{at}.path", f"{path!r} would put health_path {app['health_path']!r} behind the password "
                                "(health checks and load balancers send none); protect a narrower path")
        realm = entry.get("realm", "Restricted")
        if not isinstance(realm, str) or not realm or '"' in realm or "\\" in realm or "\n" in realm:
            _fail(f"{at}.realm", f"{realm!r} must be a non-empty one-line string without quotes or backslashes")
        users = entry.get("users")
        if not isinstance(users, list) or not users:
            _fail(f"{at}.users", "must be a non-empty list of {name, password}")
        names: set[str] = set()
        checked = []
        for k, user in enumerate(users):
            uat = f"{at}.users[{k}]"
            if not isinstance(user, dict) or sorted(user) != ["name", "password"]:
                keys = sorted(user) if isinstance(user, dict) else type(user).__name__
                _fail(uat, f"must be a mapping with exactly name and password (got {keys})")
            name = user["name"]
            if not isinstance(name, str) or not AUTH_USER_RE.match(name):
                _fail(f"{uat}.name", f"{name!r} is not a valid htpasswd user name (1-64 of A-Z a-z 0-9 . _ @ -)")
            if name in names:
                _fail(f"{uat}.name", f"{name!r} is listed twice for {path}")
            names.add(name)
            password = user["password"]
            if isinstance(password, bool) or not isinstance(password, (str, int)) or not str(password).strip():
                _fail(f"{uat}.password", f"(user {name!r}) must be a non-empty string (from the vault)")
            if "\n" in str(password):
                _fail(f"{uat}.password", f"(user {name!r}) must not contain a newline")
            checked.append({"name": name, "password": str(password)})
        slug = path.strip("/").replace("/", "+") or "root"  # "+" never occurs in a path: unique
        result.append({"path": path, "realm": realm, "users": checked,
                       "htpasswd_file": f"{HTPASSWD_DIR}/{app['name']}.{slug}"})
    return {**app, "basic_auth": result}


# The web process's worker model, per app (gunicorn role): sync (one request
# per worker), gthread (``threads`` requests per worker) or gevent (greenlets;
# the app's lock must include gevent, checked by python_env before the build).
# ``preload`` imports the app once in gunicorn's master before it forks the
# workers (gunicorn's --preload): a restart imports the app once instead of
# once per worker. Off by default, as in gunicorn: an app that opens
# connections or starts threads at import time would share them across the
# fork. Not with gevent, whose worker patches the standard library only after
# the fork, too late for what the master imported.
KNOWN_KEYS.update({"worker_class", "threads", "preload"})
WORKER_CLASSES = ("sync", "gthread", "gevent")
GTHREAD_DEFAULT_THREADS = 4


def _check_worker_model(index: int, raw: dict[str, Any], app: dict[str, Any]) -> dict[str, Any]:
    where = f"apps[{index}] ({app['name']})"
    worker_class = raw.get("worker_class", "sync")
    if not isinstance(worker_class, str) or worker_class not in WORKER_CLASSES:
        _fail(f"{where}.worker_class", f"{worker_class!r} is not a worker class (known: {', '.join(WORKER_CLASSES)})")
    threads = raw.get("threads", GTHREAD_DEFAULT_THREADS if worker_class == "gthread" else 1)
    _int_in(f"{where}.threads", threads, 1, 64)
    if threads != 1 and worker_class != "gthread":
        _fail(f"{where}.threads", f"{threads!r} needs worker_class gthread (worker_class is {worker_class!r})")
    preload = raw.get("preload", False)
    if not isinstance(preload, bool):
        _fail(f"{where}.preload", f"{preload!r} must be true or false")
    if preload and worker_class == "gevent":
        _fail(f"{where}.preload", "true does not go with worker_class gevent (the worker patches the "
              "standard library after the fork, too late for what the master imported)")
    return {**app, "worker_class": worker_class, "threads": threads, "preload": preload}


# Optional nginx microcaching per path prefix (nginx role): cache: [{path, ttl}].
# nginx never stores responses that set cookies or forbid caching
# (Cache-Control: no-store/private/no-cache), and never answers requests that
# carry Authorization, a cookie or the operator's bypass header from the cache.
KNOWN_KEYS.add("cache")
CACHE_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/-]*$")
CACHE_TTL_RE = re.compile(r"^([1-9][0-9]{0,3})(s|m)?$")


def _check_cache(index: int, raw: dict[str, Any], app: dict[str, Any]) -> dict[str, Any]:
    where = f"apps[{index}] ({app['name']}).cache"
    entries = raw.get("cache") or []
    if not isinstance(entries, list):
        _fail(where, f"{entries!r} must be a list of {{path, ttl}}")
    taken = {auth["path"]: "basic_auth" for auth in app.get("basic_auth", [])}
    taken[app["static_url"]] = "static_url"
    result = []
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict) or sorted(set(entry) - {"path", "ttl"}) or "path" not in entry or "ttl" not in entry:
            _fail(at, f"{entry!r} must be a mapping with exactly the keys path and ttl")
        path, ttl = entry["path"], entry["ttl"]
        if not isinstance(path, str) or not CACHE_PATH_RE.match(path) or "/../" in path + "/" or "/./" in path + "/":
            _fail(f"{at}.path", f"{path!r} must be a URL path prefix starting with '/' (letters, digits, ._~/-)")
        if path in taken:
            _fail(f"{at}.path", f"{path!r} is already used by {taken[path]}")
        if app["health_path"].startswith(path):
            _fail(f"{at}.path", f"{path!r} would cache health_path {app['health_path']!r} (a health check must reach the app)")
        match = CACHE_TTL_RE.match(str(ttl)) if isinstance(ttl, (int, str)) and not isinstance(ttl, bool) else None
        seconds = int(match.group(1)) * (60 if match.group(2) == "m" else 1) if match else 0
        if not match or seconds > 3600:
            _fail(f"{at}.ttl", f"{ttl!r} must be seconds (1-3600, e.g. 5 or '5s') or minutes (e.g. '1m')")
        taken[path] = f"cache[{i}]"
        result.append({"path": path, "ttl": f"{seconds}s"})
    return {**app, "cache": result}


def flask_stack_apps(apps: Any, tls_default: Any = None) -> list[dict[str, Any]]:
    """Validate the ``apps`` list and return it with defaults and derived fields.

    ``tls_default`` is the tls_mode of apps that set none (``None`` or '' =
    letsencrypt): ``apps | flask_stack_apps(tls_default=tls_mode_default)``.
    """
    if apps is None:
        apps = []
    if not isinstance(apps, list):
        _fail("apps", f"must be a list of app mappings, got {type(apps).__name__}")
    if tls_default is None or tls_default == "":
        tls_default = "letsencrypt"
    if not isinstance(tls_default, str) or tls_default not in TLS_MODES:
        _fail("tls_mode_default", f"{tls_default!r} is not a TLS mode (known: {', '.join(TLS_MODES)})")
    result = [_check_cache(i, app, _check_worker_model(i, app, _check_basic_auth(i, app, _check_app(i, app, tls_default))))
              for i, app in enumerate(apps)]
    seen_names: dict[str, int] = {}
    seen_dbs: dict[int, str] = {}
    for i, app in enumerate(result):
        if app["celery"]:
            if app["redis_db"] in seen_dbs:
                _fail(f"apps[{i}] ({app['name']}).redis_db",
                      f"{app['redis_db']!r} is already used by app {seen_dbs[app['redis_db']]!r} (one Redis database per app)")
            seen_dbs[app["redis_db"]] = app["name"]
    seen_domains: dict[str, str] = {}
    for i, app in enumerate(result):
        if app["name"] in seen_names:
            _fail(f"apps[{i}].name", f"{app['name']!r} is already used by apps[{seen_names[app['name']]}]")
        seen_names[app["name"]] = i
        for domain in app["domains"]:
            if domain in seen_domains:
                _fail(f"apps[{i}] ({app['name']}).domains",
                      f"{domain!r} is already claimed by app {seen_domains[domain]!r}")
            seen_domains[domain] = app["name"]
    return result


def _wsgi_files(wsgi: str) -> list[str]:
    """The files that can hold the module of ``package.module:callable``."""
    module = wsgi.split(":", 1)[0].replace(".", "/")
    return [f"{module}.py", f"{module}/__init__.py"]


def flask_stack_source_problems(apps: Any) -> list[str]:
    """What is wrong with the local sources (``src`` paths) of the checked
    ``apps`` list, as messages naming the app and the path; [] when nothing.

    Runs where filters run, on the controller, as the user who archives the
    sources: each path must be a readable directory that holds the module of
    ``wsgi`` and the environment's lock file (``requirements`` for venv,
    ``environment_file`` / ``lock_file`` for conda). Git sources are checked
    when the host fetches them.
    """
    problems = []
    for i, app in enumerate(apps or []):
        if app["source"]["kind"] != "path":
            continue
        where = f"apps[{i}] ({app['name']})"
        src = app["source"]["path"]
        if not os.path.exists(src):
            problems.append(f"{where}.src: {src!r} does not exist on the controller")
            continue
        if not os.path.isdir(src):
            problems.append(f"{where}.src: {src!r} is not a directory")
            continue
        if not os.access(src, os.R_OK | os.X_OK):
            problems.append(f"{where}.src: {src!r} is not readable by the user running Ansible")
            continue
        candidates = _wsgi_files(app["wsgi"])
        if not any(os.path.isfile(os.path.join(src, f)) for f in candidates):
            problems.append(f"{where}.src: {src!r} is not the app: wsgi {app['wsgi']!r} needs "
                            f"{candidates[0]} (or {candidates[1]}) there")
        elif not any(os.access(os.path.join(src, f), os.R_OK) for f in candidates
                     if os.path.isfile(os.path.join(src, f))):
            problems.append(f"{where}.src: {os.path.join(src, candidates[0])!r} is not readable by the user running Ansible")
        lock_key = {"requirements": "requirements", "environment": "python.environment_file",
                    "conda-lock": "python.lock_file"}[app["python"]["lock_format"]]
        lock = os.path.join(src, app["python"]["lock"])
        if not os.path.isfile(lock):
            problems.append(f"{where}.src: {src!r} is not the app: {lock_key} {app['python']['lock']!r} "
                            f"(the {app['python']['kind']} environment's lock) is missing there")
        elif not os.access(lock, os.R_OK):
            problems.append(f"{where}.src: {lock!r} is not readable by the user running Ansible")
    return problems


def flask_stack_beat_host(app: Any, hosts: Any, hostvars: Any) -> str:
    """The one host of ``hosts`` (the play's, in inventory order) that runs the
    beat of ``app``: the first one whose ``apps`` list has an app of that name."""
    name = app["name"] if isinstance(app, dict) else app
    for host in hosts:
        names = [a.get("name") for a in (hostvars[host].get("apps") or []) if isinstance(a, dict)]
        if name in names:
            return host
    return ""


def flask_stack_processes(app: dict[str, Any], host: str, hosts: Any, hostvars: Any,
                          web_hosts: Any = None) -> list[str]:
    """The units one release of ``app`` runs on ``host``. ``hosts`` are the
    hosts that run Celery (the worker hosts: groups | flask_stack_worker_hosts),
    ``web_hosts`` those that serve web (the `web` group; None: every host).
    Web when ``host`` serves web; the worker when enabled and ``host`` runs
    Celery; beat when enabled and ``host`` is its beat host (the first of
    ``hosts`` that has the app)."""
    web = f"{app['unit']}.service"
    worker = f"{app['worker_unit']}.service"
    beat = f"{app['beat_unit']}.service"
    celery_here = host in list(hosts)
    keep = {
        web: web_hosts is None or host in list(web_hosts),
        worker: celery_here,
        beat: celery_here and flask_stack_beat_host(app, hosts, hostvars) == host,
    }
    return [u for u in app["process_units"] if keep.get(u, True)]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"flask_stack_apps": flask_stack_apps, "flask_stack_beat_host": flask_stack_beat_host,
                "flask_stack_processes": flask_stack_processes,
                "flask_stack_source_problems": flask_stack_source_problems}
