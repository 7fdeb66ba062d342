#!/usr/bin/env python3
"""The Debian packages the roles install, read from the roles themselves, for
the "prepared" test image (build-image.sh --prepared): every
`ansible.builtin.apt` task under roles/*/tasks that installs (not the
security-update task, which only upgrades), with its package names taken

- literally (`name: ufw`, `name: [nginx, python3-cryptography]`),
- from the quoted names inside the list literals of a templated name
  (`{{ ['fail2ban', 'needrestart'] + (['python3-systemd'] if ... else []) }}`:
  the optional ones too, so the image has whatever a setting may ask for),
- from the role variables a templated name uses (`{{ base_packages +
  base_extra_packages }}`: their values in the roles' defaults/ and vars/).

So the list cannot drift from the roles: a package added to a role is in the
next prepared image (its tag is a hash that includes this list).

    molecule/resources/role_packages.py     prints one package per line, sorted
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
APT = {"ansible.builtin.apt", "apt"}
WORD = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")


def role_variables() -> dict:
    """Every role's defaults and vars, merged (role prefixes keep them apart)."""
    found: dict = {}
    for path in sorted(ROLES.glob("*/defaults/main.yml")) + sorted(ROLES.glob("*/vars/main.yml")):
        found.update(yaml.safe_load(path.read_text()) or {})
    return found


def tasks(node):
    """Every task mapping in a tasks file, blocks included."""
    if isinstance(node, list):
        for item in node:
            yield from tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in ("block", "rescue", "always"):
            yield from tasks(node.get(key))


def names_in(value, variables: dict) -> set[str]:
    if isinstance(value, list):
        return set().union(*(names_in(v, variables) for v in value)) if value else set()
    if not isinstance(value, str):
        return set()
    if "{{" not in value:
        return {value} if WORD.match(value) else set()
    found: set[str] = set()
    for literal in re.findall(r"\[([^\[\]]*)\]", value):
        found |= set(re.findall(r"""['"]([a-z0-9][a-z0-9.+-]*)['"]""", literal))
    for identifier in re.findall(r"\b[a-z_][a-z0-9_]*\b", value):
        resolved = variables.get(identifier)
        if isinstance(resolved, list) or (isinstance(resolved, str) and "{{" in resolved):
            # a package list, or a templated one (a plain string is a setting)
            found |= names_in(resolved, variables)
    return found


def packages() -> list[str]:
    variables = role_variables()
    found: set[str] = set()
    for path in sorted(ROLES.glob("*/tasks/*.yml")):
        for task in tasks(yaml.safe_load(path.read_text())):
            module = next((k for k in task if k in APT), None)
            if module is None or not isinstance(task[module], dict):
                continue
            args = task[module]
            if args.get("only_upgrade") or args.get("state", "present") not in ("present", "latest"):
                continue
            found |= names_in(args.get("name", args.get("pkg")), variables)
    return sorted(found)


if __name__ == "__main__":
    result = packages()
    if not result:
        sys.exit("ERROR: no apt package found under roles/*/tasks (role_packages.py)")
    print("\n".join(result))
