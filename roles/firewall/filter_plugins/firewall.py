"""Filters of the firewall role: check the settings and expand them into
ufw rules. The host side (which rules are missing or stale, and the ufw
commands) is the role's module, roles/firewall/library/flask_stack_ufw.py.

Every rule this role adds carries a comment "flask-stack <label>: <rule>
<port>/<proto> from <source>". The comment is built from the rule itself, so
a rule whose settings changed gets a new comment and the module finds the
old one in `ufw show added` as stale. Rules without that prefix (added by
hand, or by fail2ban's ufw action) are never touched.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

EXTRA_KEYS = ("port", "proto", "from", "comment")
_COMMENT_OK = re.compile(r"^[A-Za-z0-9 ._:/@+-]{0,60}$")


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# What a port and a network are is defined once, in the repository's shared
# filter plugins (also used by the AWS security group and the web ports).
_shared = _load("flask_stack_net_shared", Path(__file__).resolve().parents[3] / "plugins" / "filter" / "flask_stack_net.py")
# The comment prefix that marks this role's rules, defined once in the module
# that recognises them on the host.
COMMENT_PREFIX = _load("flask_stack_ufw_module",
                       Path(__file__).resolve().parents[1] / "library" / "flask_stack_ufw.py").COMMENT_PREFIX
_port_error = _shared.port_error
_network_error = _shared.network_error
_normal_network = _shared.normal_network


def firewall_config_errors(ssh_port: Any, ssh_allow_from: Any, public_ports: Any, extra_rules: Any) -> list[str]:
    """Every problem in the firewall settings, each naming the variable."""
    errors: list[str] = []
    for err in [_port_error("firewall_ssh_port", ssh_port)]:
        if err:
            errors.append(err)

    if not isinstance(ssh_allow_from, list):
        errors.append(f"firewall_ssh_allow_from: must be a list of networks in CIDR notation, got {ssh_allow_from!r}")
    else:
        for i, net in enumerate(ssh_allow_from):
            err = _network_error(f"firewall_ssh_allow_from[{i}]", net)
            if err:
                errors.append(err)

    if not isinstance(public_ports, list):
        errors.append(f"firewall_public_ports: must be a list of ports, got {public_ports!r}")
    else:
        for i, port in enumerate(public_ports):
            err = _port_error(f"firewall_public_ports[{i}]", port)
            if err:
                errors.append(err)

    if not isinstance(extra_rules, list):
        errors.append(f"firewall_extra_rules: must be a list of {{port, proto, from, comment}}, got {extra_rules!r}")
        extra_rules = []
    for i, rule in enumerate(extra_rules):
        name = f"firewall_extra_rules[{i}]"
        if not isinstance(rule, dict):
            errors.append(f"{name}: must be a mapping like {{port: 8443, proto: tcp}}, got {rule!r}")
            continue
        unknown = sorted(set(rule) - set(EXTRA_KEYS))
        if unknown:
            errors.append(f"{name}: unknown key(s) {', '.join(unknown)} (known: {', '.join(EXTRA_KEYS)})")
        if "port" not in rule:
            errors.append(f"{name}.port: missing")
        else:
            err = _port_error(f"{name}.port", rule["port"])
            if err:
                errors.append(err)
        if rule.get("proto", "tcp") not in ("tcp", "udp"):
            errors.append(f"{name}.proto: {rule['proto']!r} is not tcp or udp")
        if "from" in rule:
            err = _network_error(f"{name}.from", rule["from"])
            if err:
                errors.append(err)
        if "comment" in rule and not (isinstance(rule["comment"], str) and _COMMENT_OK.match(rule["comment"])):
            errors.append(f"{name}.comment: {rule['comment']!r} must be at most 60 characters "
                          "of letters, digits, space and ._:/@+-")

    if errors:
        return errors

    # Two entries for the same port, protocol and source would fight over the
    # rule's comment on every run: refuse them.
    seen: dict[tuple[str, str, str], str] = {}
    for rule in firewall_rules(ssh_port, ssh_allow_from, public_ports, extra_rules):
        key = (rule["port"], rule["proto"], rule["from"])
        if key in seen:
            errors.append(f"{rule['source']}: port {rule['port']}/{rule['proto']} from {rule['from']} "
                          f"is already opened by {seen[key]}")
        else:
            seen[key] = rule["source"]
    return errors


def firewall_rules(ssh_port: Any, ssh_allow_from: list[str], public_ports: list[Any],
                   extra_rules: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The ufw rules the settings describe: {rule, port, proto, from, comment, source}."""
    rules: list[dict[str, str]] = []

    def add(rule: str, port: Any, proto: str, src: str, label: str, source: str) -> None:
        src = "any" if src == "any" else _normal_network(src)
        rules.append({
            "rule": rule,
            "port": str(int(str(port))),
            "proto": proto,
            "from": src,
            "comment": f"{COMMENT_PREFIX}{label}: {rule} {int(str(port))}/{proto} from {src}",
            "source": source,
        })

    for i, src in enumerate(ssh_allow_from or ["any"]):
        add("limit", ssh_port, "tcp", src, "ssh",
            f"firewall_ssh_allow_from[{i}]" if ssh_allow_from else "firewall_ssh_port")
    for i, port in enumerate(public_ports):
        add("allow", port, "tcp", "any", "web", f"firewall_public_ports[{i}]")
    for i, extra in enumerate(extra_rules):
        add("allow", extra["port"], extra.get("proto", "tcp"), extra.get("from", "any"),
            extra.get("comment") or "extra", f"firewall_extra_rules[{i}]")
    return rules


class FilterModule:
    def filters(self):
        return {
            "firewall_config_errors": firewall_config_errors,
            "firewall_rules": firewall_rules,
        }
