"""After a converge the host has no pending security update, and nothing
still runs the libraries those updates replaced (os_hardening:
security_updates.yml)."""

from __future__ import annotations

import re

testinfra_hosts = ["ansible://flask-stack-hardening-web"]

# os_hardening_needrestart_skip's default: services a converge never restarts
SKIPPED = re.compile(r"^(dbus|user@|getty@|serial-getty@|systemd-manager)")


def test_no_security_update_is_pending(host):
    # the lists the converge used (apt cache_valid_time); a fresh `apt update`
    # could only add updates published since
    out = host.check_output("LC_ALL=C apt list --upgradable 2>/dev/null")
    pending = [line for line in out.splitlines() if re.match(r"^[^/\s]+/\S*-security[,\s]", line)]
    assert pending == []


def test_the_security_archive_is_configured(host):
    # without it the check above would pass for the wrong reason
    policy = host.check_output("LC_ALL=C apt-cache policy")
    assert re.search(r"\S+-security/main", policy), policy


def test_no_service_runs_replaced_libraries(host):
    out = host.check_output("needrestart -r l -b")
    stale = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("NEEDRESTART-SVC: ")]
    assert [s for s in stale if not SKIPPED.match(s)] == []


def test_needrestart_restarts_services_after_apt_runs(host):
    conf = host.file("/etc/needrestart/conf.d/50-flask-stack.conf").content_string
    assert re.search(r"^\$nrconf\{restart\} = 'a';$", conf, re.M), conf


def test_the_first_converge_left_its_marker(host):
    assert host.file("/var/lib/flask-stack/security-updates-applied").is_file
