"""The one definition of networks and ports (plugins/filter/flask_stack_net.py),
read by the firewall's ufw rules and the AWS security group alike."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


net = _load("flask_stack_net", ROOT / "plugins/filter/flask_stack_net.py")
fw = _load("firewall_filters", ROOT / "roles/firewall/filter_plugins/firewall.py")


def test_single_addresses_become_host_networks():
    assert net.flask_stack_networks(["203.0.113.7", "198.51.100.0/24", "2001:db8::7"], "x") == [
        "203.0.113.7/32", "198.51.100.0/24", "2001:db8::7/128"]


@pytest.mark.parametrize("value", ["203.0.113.7", "203.0.113.7/32", "2001:db8:1::/48", "10.0.0.1/8", "office", "", 7])
def test_firewall_and_security_group_agree(value):
    """Whatever the firewall accepts for SSH, the security group accepts, and the same way."""
    fw_ok = fw.firewall_config_errors(22, [value], [80], []) == []
    try:
        sg = net.flask_stack_networks([value], "aws_instance_admin_cidrs")
    except AnsibleFilterError:
        sg = None
    assert fw_ok == (sg is not None)
    if fw_ok:
        assert [r["from"] for r in fw.firewall_rules(22, [value], [], [])] == sg


def test_bad_networks_name_the_variable_and_value():
    with pytest.raises(AnsibleFilterError, match=r"aws_instance_admin_cidrs\[1\]: '10.0.0.1/8' has host bits set"):
        net.flask_stack_networks(["203.0.113.7", "10.0.0.1/8"], "aws_instance_admin_cidrs")
    assert net.flask_stack_network_errors("203.0.113.7", "v") == [
        "v: must be a list of addresses or networks in CIDR notation (e.g. 203.0.113.0/24 or 2001:db8::/32), "
        "got '203.0.113.7'"]


def test_port_errors():
    assert net.flask_stack_port_errors([80, "443", 0, True, "http"], "ports") == [
        "ports[2]: 0 is not a port (an integer from 1 to 65535)",
        "ports[3]: True is not a port (an integer from 1 to 65535)",
        "ports[4]: 'http' is not a port (an integer from 1 to 65535)"]
    assert net.flask_stack_port_errors([80, 70000], ["web_http_port", "web_https_port"]) == [
        "web_https_port: 70000 is not a port (an integer from 1 to 65535)"]


shared = _load("flask_stack_shared", ROOT / "plugins/filter/flask_stack_shared.py")


def test_shared_values_fall_back_once_and_follow_the_inventory():
    assert shared.flask_stack_shared(None, "ssh_port") == 22
    assert shared.flask_stack_shared(2222, "ssh_port") == 2222
    assert shared.flask_stack_shared(None, "base_admin_user") == "deploy"
    with pytest.raises(AnsibleFilterError, match="unknown shared variable 'sshport'"):
        shared.flask_stack_shared(None, "sshport")


def test_no_role_repeats_a_shared_fallback():
    """Each cross-role value has one definition: no role default spells a
    shared name's fallback itself (`ssh_port | default(22)`)."""
    import re
    offenders = []
    for path in sorted(ROOT.glob("roles/*/defaults/main.yml")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            for name in shared.SHARED_DEFAULTS:
                if re.search(rf"\b{name}\s*\|\s*default\((?!none\))", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert offenders == []


def test_base_creates_the_user_ssh_hardening_requires():
    import yaml
    base = yaml.safe_load((ROOT / "roles/base/defaults/main.yml").read_text())
    ssh = yaml.safe_load((ROOT / "roles/ssh_hardening/defaults/main.yml").read_text())
    assert base["base_admin_user"] == shared.SHARED_DEFAULTS["base_admin_user"]
    assert "base_admin_user" in ssh["ssh_hardening_admin_user"]
