"""The deploy's fast path (playbooks/deploy.yml): a fingerprint of everything
that renders an app host's setup, so a deploy that changes only code can
skip the setup and run the release part alone.

The setup is what the first half of a deploy writes: the app role's users,
directories, env files and helpers, the gunicorn and celery units, the
python_env tools. It follows from

- the apps model without the code (``flask_stack_apps`` minus ``source``,
  whose content is the release, not the setup; the source's kind stays);
- the values of the setup roles' variables (the names in their
  ``defaults/main.yml``, resolved for the host) and the other inputs of their
  templates (``extra``: the Redis password, the host's groups, its CPUs and
  memory);
- the content of those roles' files and of the filters that derive the
  model (``SETUP_FILES``, under the repository this file lives in).

playbooks/deploy.yml records the fingerprint on the host after a successful
full run and takes the fast path while the host's record equals the
controller's fingerprint.
"""

from __future__ import annotations

import base64
import fnmatch
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import jinja2
import jinja2.nodes
import yaml
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[2]
# the roles whose files render host state in a deploy's setup, and the filters
SETUP_ROLES = ("app", "gunicorn", "celery", "python_env")
SETUP_FILES = tuple(f"roles/{r}" for r in SETUP_ROLES) + ("plugins/filter",)
# variables of those roles that do not reach the host: per-batch switches, and
# per-run arguments of the lock and the release helper (how long to wait for
# a held lock, the health check's tries, how many releases to keep), which no
# setup task renders: a run that changes only them takes the fast path
NOT_SETUP = frozenset({"app_before_switch_hooks", "app_lock_wait_seconds", "app_health_retries",
                       "app_health_delay", "app_health_timeout", "app_keep_releases"})


def flask_stack_setup_var_names(roles: Any = SETUP_ROLES) -> list[str]:
    """The variables the setup roles declare (their defaults/main.yml), minus
    those that do not reach the host."""
    names: set[str] = set()
    for role in roles or SETUP_ROLES:
        defaults = ROOT / "roles" / str(role) / "defaults" / "main.yml"
        names.update(yaml.safe_load(defaults.read_text()) or {})
    return sorted(names - NOT_SETUP)


# What playbooks/deploy.yml's query of the setup variables gives for one the
# play does not define (`default=`): a role default of a setup role whose
# tasks this run has not loaded (the setup is included only on the full
# path, so gunicorn's, celery's and python_env's defaults are not the
# play's). The fingerprint covers such a default through its role's files
# (SETUP_FILES): sound while the default is a constant or a template of the
# setup roles' own variables, each of which is in the fingerprint too;
# flask_stack_setup_fingerprint refuses any other.
ROLE_DEFAULT = "__flask_stack_role_default__"


def _role_defaults(roles: Any = SETUP_ROLES) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for role in roles:
        values.update(yaml.safe_load((ROOT / "roles" / str(role) / "defaults" / "main.yml").read_text()) or {})
    return values


def _template_names(value: Any) -> set[str]:
    """The variables a default's templates read (every string in it)."""
    if isinstance(value, dict):
        return set().union(*(_template_names(v) for v in value.values())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*(_template_names(v) for v in value)) if value else set()
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        # every name the template reads (a superset of the undeclared ones:
        # a loop variable counts too, which errs on the safe side)
        tree = jinja2.Environment().parse(value)
        return {node.name for node in tree.find_all(jinja2.nodes.Name) if node.ctx == "load"}
    return set()


def _check_role_defaults(settings: dict[str, Any]) -> None:
    unset = [name for name, value in settings.items() if value == ROLE_DEFAULT]
    defaults = _role_defaults() if unset else {}
    for name in unset:
        outside = sorted(_template_names(defaults.get(name)) - set(defaults))
        if outside:
            raise AnsibleFilterError(
                f"flask_stack_setup_fingerprint: the default of {name} reads {', '.join(outside)}, which the "
                "fingerprint does not cover while the role is not loaded; read it through a variable of the "
                "setup roles, or add it to the fingerprint's inputs (playbooks/tasks/deploy_path.yml)")


def _files_digest(paths: Any) -> str:
    digest = hashlib.sha256()
    for base in paths:
        top = ROOT / base
        files = sorted(p for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        for path in files:
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """JSON-safe copy: mappings with sorted keys, other objects as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


def flask_stack_setup_fingerprint(apps: Any, settings: Any, extra: Any = None,
                                  paths: Any = SETUP_FILES) -> str:
    """sha256 of the setup's inputs: ``apps`` (the normalized model; each app
    without ``src`` and ``source`` except the source's kind), ``settings`` (the setup
    roles' variables with their values), ``extra`` (other inputs) and the
    content of ``paths`` (relative to the repository). A setting whose value
    is ROLE_DEFAULT stands for its role's default (see there)."""
    _check_role_defaults(dict(settings or {}))
    model = [{**{k: v for k, v in dict(app).items() if k not in ("source", "src")},
              "source_kind": dict(app.get("source") or {}).get("kind")} for app in apps or []]
    data = json.dumps(_plain({"apps": model, "settings": dict(settings or {}), "extra": extra}),
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256((data + "\0" + _files_digest(paths)).encode()).hexdigest()


def flask_stack_source_archive(path: Any, exclude: Any = ()) -> dict[str, str]:
    """A local source (apps[].src) as the deploy ships it, made on the
    controller in memory: {"sha256": of the tar, "b64": the tar gzipped and
    base64-encoded}. Entries are named <source dir name>/<relative path>
    (the release helper strips the first component), sorted, owned by root,
    with their modes and modification times, so an unchanged source always
    gives the same tar (and maps to the release already made from it). An
    entry is left out when "<dir name>/<relative path>" matches */X or */X/*
    for a pattern X of ``exclude`` (app_exclude), as fnmatch does. Read-only:
    nothing is written on the controller."""
    root = Path(str(path))
    if not root.is_dir():
        raise AnsibleFilterError(f"flask_stack_source_archive: {str(path)!r} is not a directory")
    patterns = [p for x in exclude or () for p in (f"*/{x}", f"*/{x}/*")]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [root] + sorted(root.rglob("*"), key=lambda p: p.relative_to(root).parts)
        for entry in entries:
            name = "/".join((root.name,) + entry.relative_to(root).parts)
            if entry != root and any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            info = tar.gettarinfo(str(entry), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isreg():
                with entry.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    data = raw.getvalue()
    packed = gzip.compress(data, mtime=0)
    return {"sha256": hashlib.sha256(data).hexdigest(), "b64": base64.b64encode(packed).decode("ascii")}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"flask_stack_setup_var_names": flask_stack_setup_var_names,
                "flask_stack_setup_fingerprint": flask_stack_setup_fingerprint,
                "flask_stack_source_archive": flask_stack_source_archive}
