#!/usr/bin/python
# -*- coding: utf-8 -*-
# MIT License (see the project's README)
"""The firewall role's host side in one module run: ufw's defaults file, the
rules (missing ones added, stale ones of earlier runs deleted), ufw enabled
now and at boot. The controller side (roles/firewall/filter_plugins/firewall.py)
checks the settings and builds the wanted rules; this file holds the diff
against what the host has, which is pure Python (unit-tested in
tests/unit/test_firewall_module.py) and the commands that apply it."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: flask_stack_ufw
short_description: Set ufw's defaults and rules and enable ufw, in one run
description:
  - Sets the C(KEY=VALUE) lines of C(/etc/default/ufw) given in O(defaults);
    the file is rewritten (atomically) only when a key's last line differs.
  - Reads C(ufw show added) once, adds the wanted rules it does not list
    (matched by their comment, which is built from the whole rule) and, with
    O(remove_stale), deletes the rules an earlier run added (comment starting
    with O(comment_prefix)) that are no longer wanted. Rules without that
    prefix (added by hand, or by fail2ban) are never touched.
  - Rules are added before ufw is enabled, so an SSH session allowed by them
    survives the switch to the drop policy.
  - Enables ufw when C(ufw status) is not active (C(ufw enable) loads the
    rules and the defaults); when ufw is already active, reloads it only if
    the defaults file changed (rules added or deleted through the ufw command
    line apply to the running firewall at once).
  - Enables C(ufw.service) at boot when C(systemctl is-enabled) says it is not.
version_added: "1.0.0"
author: flask-stack
options:
  defaults:
    description:
      - Lines C(KEY=VALUE) for C(/etc/default/ufw), written verbatim. The last
        line that sets C(KEY) is replaced; a key the file lacks is appended.
    type: list
    elements: str
    required: true
  rules:
    description:
      - The wanted rules, as the role's C(firewall_rules) filter builds them.
        Extra keys (such as C(source)) are ignored.
    type: list
    elements: dict
    required: true
    suboptions:
      rule:
        description: The ufw action.
        type: str
        choices: [allow, limit]
        required: true
      port:
        description: Destination port, 1-65535.
        type: str
        required: true
      proto:
        description: Protocol.
        type: str
        choices: [tcp, udp]
        required: true
      from:
        description: Source network in CIDR notation, or C(any).
        type: str
        required: true
      comment:
        description: The rule's comment; identifies the rule in C(ufw show added).
        type: str
        required: true
  remove_stale:
    description: Delete the rules of earlier runs (comment prefix O(comment_prefix)) that are not in O(rules).
    type: bool
    default: true
  comment_prefix:
    description: The prefix of the comments of the rules this role manages.
    type: str
    default: "flask-stack "
  defaults_path:
    description: ufw's defaults file.
    type: path
    default: /etc/default/ufw
attributes:
  check_mode:
    support: full
  diff_mode:
    support: partial
    details: Shows the change of the defaults file.
notes:
  - Needs root. In check mode on a host without ufw, every rule counts as missing.
"""

EXAMPLES = r"""
- name: Apply ufw's defaults and rules, enable ufw now and at boot
  flask_stack_ufw:
    defaults:
      - IPV6=yes
      - DEFAULT_INPUT_POLICY="DROP"
    rules:
      - {rule: limit, port: "22", proto: tcp, from: any, comment: "flask-stack ssh: limit 22/tcp from any"}
      - {rule: allow, port: "443", proto: tcp, from: any, comment: "flask-stack web: allow 443/tcp from any"}
    remove_stale: true
"""

RETURN = r"""
actions:
  description: What the run did (or, in check mode, would do), in order.
  returned: always
  type: list
  elements: str
  sample:
    - "set IPT_SYSCTL= in /etc/default/ufw"
    - "added: ufw limit from any to any port 22 proto tcp comment 'flask-stack ssh: limit 22/tcp from any'"
    - "deleted: ufw allow 8080/tcp comment 'flask-stack extra: allow 8080/tcp from any'"
    - "enabled ufw"
defaults_changed:
  description: The lines of O(defaults) that were not in effect.
  returned: always
  type: list
  elements: str
added:
  description: Comments of the rules added.
  returned: always
  type: list
  elements: str
deleted:
  description: The stale rules deleted, each as the arguments of C(ufw delete).
  returned: always
  type: list
  elements: list
enabled:
  description: Whether ufw was enabled by this run (it was not active).
  returned: always
  type: bool
reloaded:
  description: Whether ufw was reloaded (it was active and the defaults changed).
  returned: always
  type: bool
boot_enabled:
  description: Whether this run enabled ufw.service at boot.
  returned: always
  type: bool
"""

import os
import re
import shlex
import tempfile

from ansible.module_utils.basic import AnsibleModule

COMMENT_PREFIX = "flask-stack "
_SHOWN_COMMENT = re.compile(r" comment '([^']*)'$")


def defaults_update(text: str, lines: list[str]) -> tuple[str, list[str]]:
    """The defaults file with every wanted KEY=VALUE line in effect, and the
    wanted lines that were not. A key's last assignment wins when the file is
    sourced, so the last line setting KEY is the one compared and replaced;
    a key the file lacks is appended."""
    out = text.splitlines()
    changed = []
    for line in lines:
        key = line.split("=", 1)[0]
        at = [i for i, have in enumerate(out) if have.startswith(key + "=")]
        if at and out[at[-1]] == line:
            continue
        changed.append(line)
        if at:
            out[at[-1]] = line
        else:
            out.append(line)
    if not changed:
        return text, []
    return "\n".join(out) + "\n", changed


def shown_rules(show_added: str) -> list[tuple[list[str], str]]:
    """The commented rules of `ufw show added`: (arguments after `ufw`, comment)."""
    shown = []
    for line in show_added.splitlines():
        match = _SHOWN_COMMENT.search(line)
        if line.startswith("ufw ") and match:
            shown.append((shlex.split(line)[1:], match.group(1)))
    return shown


def rule_diff(show_added: str, rules: list[dict], prefix: str = COMMENT_PREFIX) -> tuple[list[dict], list[list[str]]]:
    """The wanted rules `ufw show added` lacks (matched by comment), and the
    listed rules with this role's comment prefix that are no longer wanted,
    each as the arguments for `ufw delete`."""
    shown = shown_rules(show_added)
    have = {comment for _, comment in shown}
    wanted = {rule["comment"] for rule in rules}
    missing = [rule for rule in rules if rule["comment"] not in have]
    stale = [args for args, comment in shown if comment.startswith(prefix) and comment not in wanted]
    return missing, stale


def rule_args(rule: dict) -> list[str]:
    """The `ufw` arguments that add one wanted rule."""
    return [rule["rule"], "from", rule["from"], "to", "any", "port", str(rule["port"]),
            "proto", rule["proto"], "comment", rule["comment"]]


def _write_atomically(module: AnsibleModule, path: str, content: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".flask-stack-ufw.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        # keeps the file's owner, mode and SELinux context
        module.atomic_move(tmp, path, unsafe_writes=False)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "defaults": {"type": "list", "elements": "str", "required": True},
            "rules": {"type": "list", "elements": "dict", "required": True, "options": {
                "rule": {"type": "str", "choices": ["allow", "limit"], "required": True},
                "port": {"type": "str", "required": True},
                "proto": {"type": "str", "choices": ["tcp", "udp"], "required": True},
                "from": {"type": "str", "required": True},
                "comment": {"type": "str", "required": True},
                # what firewall_rules adds for the settings check's messages
                "source": {"type": "str"},
            }},
            "remove_stale": {"type": "bool", "default": True},
            "comment_prefix": {"type": "str", "default": COMMENT_PREFIX},
            "defaults_path": {"type": "path", "default": "/etc/default/ufw"},
        },
        supports_check_mode=True,
    )
    params = module.params
    check = module.check_mode
    actions: list[str] = []
    result = {"changed": False, "actions": actions, "defaults_changed": [], "added": [], "deleted": [],
              "enabled": False, "reloaded": False, "boot_enabled": False}

    def run(argv: list[str]) -> str:
        rc, out, err = module.run_command(argv)
        if rc != 0:
            module.fail_json(msg=f"{shlex.join(argv)} failed (rc {rc}): {err.strip() or out.strip()}",
                             actions=actions, **{k: v for k, v in result.items() if k != "actions"})
        return out

    ufw = module.get_bin_path("ufw", required=not check)

    # 1. ufw's defaults, before any rule: IPV6=yes decides whether a rule
    # gets its IPv6 half.
    path = params["defaults_path"]
    try:
        with open(path) as handle:
            before = handle.read()
    except FileNotFoundError:
        if not check:
            module.fail_json(msg=f"{path} not found: is ufw installed?")
        before = ""
    after, result["defaults_changed"] = defaults_update(before, params["defaults"])
    if result["defaults_changed"]:
        actions.extend(f"set {line} in {path}" for line in result["defaults_changed"])
        if module._diff:
            result["diff"] = {"before": before, "after": after, "before_header": path, "after_header": path}
        if not check:
            _write_atomically(module, path, after)

    # 2. Rules: one read of ufw's configuration, then only the differences.
    show_added = run([ufw, "show", "added"]) if ufw else ""
    missing, stale = rule_diff(show_added, params["rules"], params["comment_prefix"])
    for rule in missing:
        argv = rule_args(rule)
        actions.append("added: ufw " + shlex.join(argv))
        result["added"].append(rule["comment"])
        if not check:
            run([ufw, *argv])
    if params["remove_stale"]:
        for args in stale:
            actions.append("deleted: ufw " + shlex.join(args))
            result["deleted"].append(args)
            if not check:
                run([ufw, "--force", "delete", *args])

    # 3. Running firewall: `ufw enable` loads rules and defaults; an active
    # ufw already runs the rules added above, and needs a reload only for
    # a new policy or IPv6 setting.
    active = bool(ufw) and "Status: active" in run([ufw, "status"])
    if not active:
        actions.append("enabled ufw")
        result["enabled"] = True
        if not check:
            run([ufw, "--force", "enable"])
    elif result["defaults_changed"]:
        actions.append("reloaded ufw")
        result["reloaded"] = True
        if not check:
            run([ufw, "reload"])

    # 4. At boot: ufw.service loads the rules.
    systemctl = module.get_bin_path("systemctl", required=True)
    rc, out, _ = module.run_command([systemctl, "is-enabled", "ufw.service"])
    if out.strip() != "enabled":
        actions.append("enabled ufw.service at boot")
        result["boot_enabled"] = True
        if not check:
            run([systemctl, "enable", "ufw.service"])

    result["changed"] = bool(actions)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
