"""The fast path of site.yml: a run with the inputs of the last full converge,
on a host that has not drifted, ends after one remote check with changed=0;
drift (a managed file edited, a service stopped) sends it down the full path,
which repairs the host and records the repaired state.

molecule's own runs pass converge_full=true (idempotence proves the full
path: .config/molecule/config.yml); these runs pass converge_full=false, the
default a user gets, which is not an input of the fingerprint."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from playbook import ansible_env
from playbook import run as run_playbook

testinfra_hosts = ["ansible://web"]

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
RECORD = "/etc/flask-stack/converge.json"
TOOL = "/usr/local/sbin/flask-stack-state"
FAST = "Converge path: fast"


def site(pytestconfig):
    result = run_playbook(pytestconfig.option.ansible_inventory, PROJECT / "site.yml", "-e", "converge_full=false",
                          env=ansible_env(project_config=False), timeout=1800)
    assert result.rc == 0, result.out[-4000:]
    return result


def record(host) -> dict:
    return json.loads(host.check_output("cat %s", RECORD))


def tool_check(host, *args: str) -> dict:
    """The tool's own answer, without forgetting the record (--keep)."""
    return json.loads(host.check_output(" ".join([TOOL, "check", "--keep", *map(shlex.quote, args)])))


def test_the_record_of_the_last_full_converge_is_private(host):
    f = host.file(RECORD)
    assert f.exists and f.user == "root" and f.mode == 0o600
    assert set(record(host)["state"]) == {"etc", "local", "packages", "units", "firewall", "sysctl", "keys",
                                          "certificates", "trees", "size"}


def test_an_unchanged_run_takes_the_fast_path_and_changes_nothing(host, pytestconfig):
    result = site(pytestconfig)
    print(f"\nno-op site.yml on the fast path: {result.seconds:.1f} s, {result.recap()}")
    assert FAST in result.out, result.out[-4000:]
    assert result.changed == 0, result.out[-4000:]
    # no role ran: the plays after the check had no hosts
    assert "TASK [nginx" not in result.out and "TASK [base" not in result.out, result.out[-4000:]
    assert "skipping: no hosts matched" in result.out


def test_the_tool_names_why_a_run_takes_the_full_path(host):
    inputs = record(host)["inputs"]
    assert tool_check(host, "--inputs", inputs) == {"path": "fast"}
    assert tool_check(host, "--inputs", "0" * 64)["reasons"] == [
        "the inputs changed since the last full converge (playbooks, roles, inventory, extra vars or an app's source)"]
    assert tool_check(host, "--record", "/root/no-such-record.json", "--inputs", inputs)["reasons"] == [
        "no record of a full converge on this host"]
    assert tool_check(host, "--inputs", inputs, "--full=converge_full=true")["reasons"] == ["converge_full=true"]
    assert host.file(RECORD).exists  # --keep (a check-mode run) forgets nothing


def test_drift_takes_the_full_path_which_repairs_the_host_and_records_it(host, pytestconfig, http):
    inputs = record(host)["inputs"]
    host.check_output("echo '# edited by hand' >> /etc/nginx/nginx.conf && systemctl stop fail2ban")
    assert tool_check(host, "--inputs", inputs)["reasons"] == [
        "drift on the host since the last full converge: etc, units"]

    repaired = site(pytestconfig)
    assert "Converge path: full (drift on the host since the last full converge: etc, units)" in repaired.out, \
        repaired.out[-4000:]
    assert repaired.changed > 0
    assert "edited by hand" not in host.file("/etc/nginx/nginx.conf").content_string
    assert host.service("fail2ban").is_running
    assert http("/healthz", "hello.test").status == 200

    again = site(pytestconfig)
    assert FAST in again.out, again.out[-4000:]
    assert again.changed == 0
