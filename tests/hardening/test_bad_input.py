"""Bad hardening settings fail in the check play of playbooks/harden.yml,
before the first change, with a message that names the variable.

Runs the real playbook against this machine over the local connection. Only
the read-only checks can run here: each case is built to fail in them, and
the recap proves nothing changed and no hardening task started.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from playbook import ROOT, Run, ansible_env
from playbook import run as run_playbook



def run(tmp_path: Path, host_vars: dict) -> Run:
    inv = tmp_path / "inv"
    inv.mkdir()
    # become: no sudo on a CI runner, and nothing here needs root
    host = {"ansible_connection": "local", "ansible_become": False,
            "ansible_python_interpreter": sys.executable, **host_vars}
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"web": {"hosts": {"web1": host}}}}}))
    env = ansible_env(ANSIBLE_FACT_CACHING_CONNECTION=str(tmp_path / "facts"))
    return run_playbook(inv, ROOT / "playbooks" / "harden.yml", env=env, timeout=300)


CASES = {
    "ssh-cidr-not-a-cidr": (
        {"firewall_ssh_allow_from": ["10.0.0.0/8", "office"]},
        r"firewall_ssh_allow_from\[1\]: 'office' is not an IPv4/IPv6 address or network in CIDR notation"),
    "ssh-cidr-bad-prefix": (
        {"firewall_ssh_allow_from": ["203.0.113.0/33"]},
        r"firewall_ssh_allow_from\[0\]: '203\.0\.113\.0/33' is not an IPv4/IPv6 address"),
    "ssh-cidr-host-bits": (
        {"firewall_ssh_allow_from": ["203.0.113.7/24"]},
        r"firewall_ssh_allow_from\[0\]: '203\.0\.113\.7/24' has host bits set"),
    "extra-port-too-big": (
        {"firewall_extra_rules": [{"port": 8443}, {"port": 70000, "proto": "udp"}]},
        r"firewall_extra_rules\[1\]\.port: 70000 is not a port \(an integer from 1 to 65535\)"),
    "extra-port-zero": (
        {"firewall_extra_rules": [{"port": 0}]},
        r"firewall_extra_rules\[0\]\.port: 0 is not a port"),
    "extra-rule-bad-source": (
        {"firewall_extra_rules": [{"port": 9100, "from": "10.0.0.0/99"}]},
        r"firewall_extra_rules\[0\]\.from: '10\.0\.0\.0/99' is not an IPv4/IPv6 address"),
    "extra-rule-unknown-key": (
        {"firewall_extra_rules": [{"port": 9100, "src": "10.0.0.0/8"}]},
        r"firewall_extra_rules\.src\. Supported parameters include: comment, from, port, proto"),
    "extra-rule-duplicates-web-port": (
        {"firewall_extra_rules": [{"port": 443}]},
        r"firewall_extra_rules\[0\]: port 443/tcp from any is already opened by firewall_public_ports\[1\]"),
    "ssh-port-too-big": (
        {"firewall_ssh_port": 65536},
        r"firewall_ssh_port: 65536 is not a port"),
    "ssh-port-not-a-number": (
        {"firewall_ssh_port": "ssh"},
        r"argument 'firewall_ssh_port' is of type str and we were unable to convert to int"),
    "sshd-port-zero": (
        {"ssh_hardening_port": 0},
        r"ssh_hardening_port: 0 is not a port"),
    "allow-users-without-admin": (
        {"ssh_hardening_admin_user": "nobody", "ssh_hardening_allow_users": ["alice"]},
        r"ssh_hardening_allow_users: \[\"alice\"\] does not let the admin user \"nobody\""),
    "admin-user-missing": (
        {"ssh_hardening_admin_user": "flask-stack-no-such-user"},
        r"ssh_hardening_admin_user: user \"flask-stack-no-such-user\" does not exist on web1"),
    # `nobody` exists everywhere and never has an authorized_keys file
    "admin-user-without-key": (
        {"ssh_hardening_admin_user": "nobody"},
        r"ssh_hardening_admin_user: \"nobody\" has no usable SSH key on web1 \(/nonexistent/\.ssh/authorized_keys is missing\)"),
    "rp-filter": (
        {"os_hardening_rp_filter": 3},
        r"value of os_hardening_rp_filter must be one of: 0, 1, 2, got: 3"),
    "bantime": (
        {"os_hardening_fail2ban_bantime": "one hour"},
        r"os_hardening_fail2ban_bantime: \"one hour\" is not a duration"),
}


@pytest.mark.parametrize(("host_vars", "expected"), list(CASES.values()), ids=list(CASES))
def test_bad_setting_fails_before_any_change(tmp_path, host_vars, expected):
    result = run(tmp_path, host_vars)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert re.search(expected, out), out
    # it stopped in the check play: the hardening play never started
    assert "PLAY [Harden the host]" not in out, out
    assert not re.search(r"TASK \[(firewall|ssh_hardening|os_hardening) : (Install|Write|Set|Allow|Configure|Enable)", out), out
    recap = re.search(r"web1\s+: ok=\d+\s+changed=(\d+)", out)
    assert recap and recap.group(1) == "0", out
