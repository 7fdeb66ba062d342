"""The firewall role's filters: which ufw rules the settings describe, and
which settings are refused. Which rules of earlier runs get deleted (and
which never are) is the role's module's business:
tests/unit/test_firewall_module.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("firewall_filters", ROOT / "roles/firewall/filter_plugins/firewall.py")
fw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fw)


def test_default_settings_open_ssh_limited_and_the_web_ports():
    rules = fw.firewall_rules(22, [], [80, 443], [])
    assert [(r["rule"], r["port"], r["proto"], r["from"]) for r in rules] == [
        ("limit", "22", "tcp", "any"), ("allow", "80", "tcp", "any"), ("allow", "443", "tcp", "any")]
    assert rules[0]["comment"] == "flask-stack ssh: limit 22/tcp from any"


def test_ssh_from_admin_networks_only():
    rules = fw.firewall_rules(22, ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"], [80], [])
    ssh = [r for r in rules if r["port"] == "22"]
    assert [r["from"] for r in ssh] == ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]
    assert all(r["rule"] == "limit" for r in ssh)


def test_extra_rule_defaults_and_comment():
    rules = fw.firewall_rules(22, [], [], [{"port": 51820, "proto": "udp", "comment": "wireguard"},
                                           {"port": "9100", "from": "10.0.0.0/8"}])
    assert rules[1] == {"rule": "allow", "port": "51820", "proto": "udp", "from": "any",
                        "comment": "flask-stack wireguard: allow 51820/udp from any",
                        "source": "firewall_extra_rules[0]"}
    assert rules[2]["comment"] == "flask-stack extra: allow 9100/tcp from 10.0.0.0/8"


def test_good_settings_have_no_errors():
    assert fw.firewall_config_errors(22, ["10.0.0.0/8"], [80, 443], [{"port": 8443, "from": "fd00::/8"}]) == []


def test_errors_name_the_variable():
    errors = fw.firewall_config_errors(0, ["10.0.0.0/8", "office", "10.0.0.1/8"], [80, "http"],
                                       [{"port": 70000}, {"port": 53, "proto": "icmp"}, "8080",
                                        {"port": 1, "comment": "it's"}])
    assert errors == [
        "firewall_ssh_port: 0 is not a port (an integer from 1 to 65535)",
        "firewall_ssh_allow_from[1]: 'office' is not an IPv4/IPv6 address or network in CIDR notation "
        "(e.g. 203.0.113.0/24 or 2001:db8::/32)",
        "firewall_ssh_allow_from[2]: '10.0.0.1/8' has host bits set; write the network address "
        "(10.0.0.1/8 has host bits set)",
        "firewall_public_ports[1]: 'http' is not a port (an integer from 1 to 65535)",
        "firewall_extra_rules[0].port: 70000 is not a port (an integer from 1 to 65535)",
        "firewall_extra_rules[1].proto: 'icmp' is not tcp or udp",
        "firewall_extra_rules[2]: must be a mapping like {port: 8443, proto: tcp}, got '8080'",
        "firewall_extra_rules[3].comment: \"it's\" must be at most 60 characters of letters, digits, space and ._:/@+-",
    ]


def test_the_same_port_twice_is_refused():
    assert fw.firewall_config_errors(80, [], [80, 443], []) == [
        "firewall_public_ports[0]: port 80/tcp from any is already opened by firewall_ssh_port"]
