"""Networks and ports: the one definition of what a valid CIDR and a valid
port are, shared by every role that opens something (the firewall's ufw
rules, the AWS security group, the web and SSH ports).

    {{ firewall_ssh_allow_from | flask_stack_network_errors('firewall_ssh_allow_from') }}
    {{ aws_instance_admin_cidrs | flask_stack_networks('aws_instance_admin_cidrs') }}
    {{ [web_http_port, web_https_port] | flask_stack_port_errors(['web_http_port', 'web_https_port']) }}

A single address is a network of one host: ``203.0.113.7`` becomes
``203.0.113.7/32`` (``2001:db8::7`` becomes ``2001:db8::7/128``). A network
with host bits set (``10.0.0.1/8``) is refused rather than guessed at.

The firewall role's Python filters import this file by path, so the checks
are written once (``roles/firewall/filter_plugins/firewall.py``).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ansible.errors import AnsibleFilterError

NETWORK_EXAMPLE = "(e.g. 203.0.113.0/24 or 2001:db8::/32)"


def port_error(name: str, value: Any) -> str | None:
    """None for a port number 1-65535 (int or digit string), else a message naming ``name``."""
    text = str(value)
    if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= 65535:
        return f"{name}: {value!r} is not a port (an integer from 1 to 65535)"
    return None


def network_error(name: str, value: Any) -> str | None:
    """None for an IPv4/IPv6 address or network in CIDR notation, else a message naming ``name``."""
    if isinstance(value, str) and value.strip() == value and value:
        try:
            ipaddress.ip_network(value, strict=True)
            return None
        except ValueError as exc:
            if "host bits set" in str(exc):
                return f"{name}: {value!r} has host bits set; write the network address ({exc})"
    return f"{name}: {value!r} is not an IPv4/IPv6 address or network in CIDR notation {NETWORK_EXAMPLE}"


def normal_network(value: str) -> str:
    """The network in address/prefix form: a single address gets /32 or /128."""
    return ipaddress.ip_network(value, strict=True).with_prefixlen


def flask_stack_network_errors(values: Any, name: str) -> list[str]:
    """Every problem in a list of networks, each naming ``name[i]`` and the value."""
    if not isinstance(values, list):
        return [f"{name}: must be a list of addresses or networks in CIDR notation {NETWORK_EXAMPLE}, got {values!r}"]
    return [err for i, value in enumerate(values) if (err := network_error(f"{name}[{i}]", value))]


def flask_stack_networks(values: Any, name: str) -> list[str]:
    """The list in address/prefix form (single addresses as /32 or /128); fails naming ``name`` on a bad entry."""
    errors = flask_stack_network_errors(values, name)
    if errors:
        raise AnsibleFilterError("; ".join(errors))
    return [normal_network(value) for value in values]


def flask_stack_port_errors(values: Any, names: Any) -> list[str]:
    """Every value of ``values`` that is not a port, named by the matching entry of ``names``
    (or ``names[i]`` when ``names`` is one string for a list)."""
    if isinstance(names, str):
        if not isinstance(values, list) or isinstance(values, str):
            return [f"{names}: must be a list of ports (integers from 1 to 65535), got {values!r}"]
        names = [f"{names}[{i}]" for i in range(len(values))]
    return [err for name, value in zip(names, values) if (err := port_error(name, value))]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "flask_stack_network_errors": flask_stack_network_errors,
            "flask_stack_networks": flask_stack_networks,
            "flask_stack_port_errors": flask_stack_port_errors,
        }
