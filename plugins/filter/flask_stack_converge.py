"""The converge's fast path (site.yml, role ``converge``): a run whose inputs
are those of the host's last successful full converge, on a host that has
not drifted since, has nothing to do and ends after one remote check.

The inputs, all read on the controller:

- this repository's playbooks, roles, filters and Ansible settings
  (``CODE``, under the repository this file lives in);
- the inventory sources the run was given (``-i``: every file under an
  inventory directory: hosts, group_vars, host_vars, vaults as ciphertext);
- the extra variables (``-e``, the text of ``@file`` arguments included);
- the hosts of the play and the ansible-core version;
- the content of every app's local source (``src``, without the files the
  app role never ships: ``app_exclude``).

The host's side (what it looks like now against what the last full run left)
is /usr/local/sbin/flask-stack-state (roles/converge/files), run in the same
check.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
# what decides a converge besides the inventory: the entry point, the
# playbooks, roles and filters, and the settings Ansible runs with
CODE = ("site.yml", "ansible.cfg", "requirements.yml", "playbooks", "roles", "plugins", "group_vars", "host_vars")
# the group site.yml puts its hosts in when the fast path is taken; every
# later play of the converge leaves them out (flask_stack_converging)
UNCHANGED_GROUP = "flask_stack_unchanged"
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


def flask_stack_converging(pattern: str, groups: Any) -> str:
    """The host pattern of a play of the converge: ``pattern`` without the
    hosts whose converge took the fast path. Outside such a run (no group
    yet, a playbook run on its own) the pattern stays as it is, so Ansible
    never warns about a group it does not know."""
    if UNCHANGED_GROUP in (groups or {}):
        return f"{pattern}:!{UNCHANGED_GROUP}"
    return pattern


def _digest_tree(digest: Any, top: Path, skip: Any = ()) -> None:
    """Paths, symlink targets and file contents under ``top`` (sorted), minus
    names matching a glob of ``skip``; a missing path counts as missing."""
    if not top.exists() and not top.is_symlink():
        digest.update(f"missing {top}\0".encode())
        return
    if top.is_file() or top.is_symlink():
        entries = [top]
    else:
        entries = []
        for base, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not any(fnmatch.fnmatch(d, g) for g in skip))
            entries += [Path(base) / name for name in dirs + files
                        if not any(fnmatch.fnmatch(name, g) for g in skip)]
        entries.sort()
    for path in entries:
        name = str(path.relative_to(top)) if path != top else path.name
        if path.is_symlink():
            digest.update(f"L {name} {os.readlink(path)}\0".encode())
        elif path.is_file():
            digest.update(f"F {name} {path.stat().st_mode & 0o7777:o}\0".encode())
            digest.update(path.read_bytes() + b"\0")
        else:
            digest.update(f"D {name}\0".encode())


def _app_exclude(app_exclude: Any) -> list[str]:
    if app_exclude is not None:
        return [str(g) for g in app_exclude]
    defaults = yaml.safe_load((ROOT / "roles/app/defaults/main.yml").read_text()) or {}
    return [str(g) for g in defaults.get("app_exclude", [])]


def _inventory_paths(cliargs: Any) -> list[str]:
    inventory = (cliargs or {}).get("inventory") or ()
    if isinstance(inventory, str):
        inventory = [inventory]
    return [str(i) for i in inventory]


# extra variables that choose the path rather than what the hosts become
CONTROLS = frozenset({"converge_full"})


def _extra_vars(cliargs: Any) -> list[str]:
    """Each -e argument (an ``@file``'s content, not its name) as canonical
    JSON, without the path's own switches (CONTROLS)."""
    out = []
    for extra in (cliargs or {}).get("extra_vars") or ():
        extra = str(extra)
        try:
            if extra.startswith("@"):  # a vars file: its content, wherever it lies
                extra = Path(extra[1:]).read_text()
                parsed = yaml.safe_load(extra)
            else:
                parsed = yaml.safe_load(extra) if extra.lstrip()[:1] in "{[" else _key_values(extra)
        except (OSError, yaml.YAMLError, ValueError) as exc:
            parsed = f"{extra} ({exc.__class__.__name__})"
        if isinstance(parsed, dict):
            parsed = {k: v for k, v in parsed.items() if k not in CONTROLS}
            if not parsed:
                continue
        out.append(json.dumps(parsed, sort_keys=True, default=str))
    return out


def _key_values(text: str) -> dict[str, Any]:
    from ansible.parsing.splitter import parse_kv  # Ansible's own reading of "k=v k2=v2"
    return parse_kv(text)


def flask_stack_converge_inputs(apps_per_host: Any, hosts: Any, version: Any = "",
                                app_exclude: Any = None, cliargs: Any = None) -> dict[str, Any]:
    """The fingerprint of a converge's inputs (``inputs``, a sha256) and the
    reasons this run cannot take the fast path whatever the host looks like
    (``blockers``: an app that follows a moving git ref, whose next commit
    only the host's fetch can see).

    ``apps_per_host``: the ``apps`` variable of every host of the play, as
    given (never validated here: a malformed model changes the inventory's
    digest and the full path's preflight names what is wrong). ``cliargs``:
    the command line (by default Ansible's own, ``ansible.context``)."""
    if cliargs is None:
        from ansible import context  # the controller's command line: -i and -e
        cliargs = context.CLIARGS
    digest = hashlib.sha256()
    digest.update(f"ansible-core {version}\0hosts {json.dumps(sorted(map(str, hosts or [])))}\0".encode())
    for base in CODE:
        digest.update(f"code {base}\0".encode())
        _digest_tree(digest, ROOT / base, skip=("__pycache__", "*.pyc"))
    for source in _inventory_paths(cliargs):
        digest.update(f"inventory {source}\0".encode())
        if os.path.exists(source):
            _digest_tree(digest, Path(source), skip=("__pycache__", "*.pyc", ".*"))
    for extra in _extra_vars(cliargs):
        digest.update(f"extra {extra}\0".encode())
    skip = _app_exclude(app_exclude)
    blockers = []
    for apps in apps_per_host or []:
        for app in apps if isinstance(apps, list) else []:
            if not isinstance(app, dict):
                continue
            src = app.get("src")
            name = app.get("name", "?")
            if isinstance(src, str) and src:
                digest.update(f"src {name} {src}\0".encode())
                _digest_tree(digest, Path(src), skip=skip)
            elif isinstance(src, dict):
                git = src.get("git", src) if isinstance(src.get("git", src), dict) else {}
                version_ref = str(git.get("version", "HEAD"))
                if not FULL_SHA.match(version_ref):
                    blockers.append(f"app {name} follows git ref {version_ref!r} (pin a full commit id for the fast path)")
    return {"inputs": digest.hexdigest(), "blockers": sorted(set(blockers))}


def _tags_in(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "tags":
                found.update([value] if isinstance(value, str) else [str(v) for v in value or []])
            else:
                _tags_in(value, found)
    elif isinstance(node, list):
        for item in node:
            _tags_in(item, found)


def flask_stack_converge_tags(tags: Any) -> list[str]:
    """The ``tags`` (a run's --tags or --skip-tags) that a task or play of
    the converge carries (site.yml, playbooks/, roles/): naming any other
    tag (molecule's notest) leaves the converge whole. ``always`` counts."""
    found = {"always", "all", "tagged", "untagged"}
    for path in [ROOT / "site.yml", *sorted((ROOT / "playbooks").rglob("*.yml")), *sorted((ROOT / "roles").rglob("*.yml"))]:
        try:
            _tags_in(yaml.safe_load(path.read_text()), found)
        except yaml.YAMLError:
            continue
    return sorted(set(map(str, tags or [])) & found)


def flask_stack_role_default(name: str, role: str) -> Any:
    """The default of another role's variable (its defaults/main.yml), for
    the converge's plays, which run without that role: one definition."""
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    return defaults[name]


def flask_stack_converge_trees(apps: Any, tools_dir: str) -> list[str]:
    """The directories outside /etc and /usr/local whose listing is part of
    a host's state, as "path:depth" (flask-stack-state --tree): the
    environment tools (python_env_tools_dir), each app's directory (current,
    releases, envs, shared) and interpreter."""
    trees = [f"{tools_dir}:2"]
    for app in apps or []:
        trees += [f"{app['dir']}:1", f"{app['interpreter']}:0"]
    return trees


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"flask_stack_converging": flask_stack_converging,
                "flask_stack_converge_inputs": flask_stack_converge_inputs,
                "flask_stack_converge_trees": flask_stack_converge_trees,
                "flask_stack_role_default": flask_stack_role_default,
                "flask_stack_converge_tags": flask_stack_converge_tags}
