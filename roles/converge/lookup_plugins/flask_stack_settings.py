"""flask_stack_settings: the sha256 of this host's settings as the run
resolves them (lookup('flask_stack_settings')), for the converge's fast
path: every variable the inventory, the extra variables or a role's
defaults give the host, templated the way a task would see it, so a value
that comes from outside the inventory files (a lookup of a file or of the
environment, a vault file elsewhere) counts by its value.

Left out: Ansible's own variables (magic variables, facts, including those
a module such as getent sets and the fact cache brings back, connection
options, and what this run set on the host: names that start with "_")
except the host's name, port, user and connection, and the converge's
switch (converge_full). A value that cannot be resolved
without facts counts by its text.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ansible.plugins.lookup import LookupBase

DOCUMENTATION = """
name: flask_stack_settings
short_description: sha256 of the host's resolved settings (the converge's fast path)
description:
  - Templates every variable the inventory, the extra variables or a role's defaults give the host, and
    returns the sha256 of the result; Ansible's magic variables and facts are left out.
  - With the term C(names), the names that count instead (never their values).
"""

# the ansible_* variables that name the host (templates may read them); the
# rest are facts or how Ansible reaches the host (keys, pipelining, timeouts:
# some come from the Ansible configuration in use, not from the inventory)
CONNECTION = frozenset({"ansible_host", "ansible_port", "ansible_user", "ansible_connection"})
MAGIC = frozenset({
    "hostvars", "groups", "group_names", "inventory_hostname", "inventory_hostname_short", "inventory_dir",
    "inventory_file", "playbook_dir", "play_hosts", "role_name", "role_names", "role_path", "role_uuid",
    "omit", "environment", "vars", "module_setup", "discovered_interpreter_python", "gather_subset",
    "converge_full",
})


def _setting(name: str, facts: Any = ()) -> bool:
    if name in MAGIC or name.startswith("_"):
        return False
    # a fact (gathered, or set by a module such as getent) that the fact
    # cache brings back on the next run: not a setting
    if name in facts or name.removeprefix("ansible_") in facts:
        return False
    if name.startswith("ansible_"):
        return name in CONNECTION
    return True


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


class LookupModule(LookupBase):
    def run(self, terms: list, variables: dict | None = None, **kwargs: Any) -> list[str]:
        variables = variables or {}
        settings = {}
        facts = variables.get("ansible_facts") or {}
        for name in sorted(n for n in variables if _setting(n, facts)):
            try:
                settings[name] = _plain(self._templar.template(variables[name]))
            except Exception as exc:  # noqa: BLE001 - a value that needs facts counts by its text
                settings[name] = f"unresolved {type(exc).__name__}: {_plain(variables.get(name))}"
        if terms == ["names"]:  # what counts (for a reader; never the values: they hold secrets)
            return [sorted(settings)]
        data = json.dumps(settings, sort_keys=True, ensure_ascii=False)
        return [hashlib.sha256(data.encode()).hexdigest()]
