"""sshd as an outside auditor sees it: ssh-audit (pinned in
requirements-dev.txt) against the hardened host, from this machine.

Named to run before test_hardening.py, whose last test trips ufw's SSH rate
limit for this machine. ssh-audit's DHEat rate test is skipped: it opens
dozens of connections, which that same rate limit refuses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import web_addresses

testinfra_hosts = ["ansible://flask-stack-hardening-web"]

PQ_HYBRIDS = ("mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com")


def ssh_audit_bin() -> str:
    found = shutil.which("ssh-audit") or str(Path(sys.executable).with_name("ssh-audit"))
    assert Path(found).exists(), "ssh-audit is not installed: pip install the pin from requirements-dev.txt"
    return found


@pytest.fixture(scope="module")
def audit() -> dict:
    address = web_addresses().ipv4
    out = subprocess.run([ssh_audit_bin(), "--skip-rate-test", "-j", "-n", "-t", "20", address],
                         capture_output=True, text=True, timeout=120)
    # exit status: 0 all good, 2 warnings, 3 failures; anything else = no audit
    assert out.returncode in (0, 2, 3), (out.returncode, out.stdout, out.stderr)
    report = json.loads(out.stdout)
    print("ssh-audit:", {k: [a["algorithm"] for a in report[k]] for k in ("kex", "key")})
    return report


def _notes(report: dict, level: str) -> list[str]:
    return [f"({kind}) {alg['algorithm']}: {note}"
            for kind in ("kex", "key", "enc", "mac")
            for alg in report.get(kind, [])
            for note in alg.get("notes", {}).get(level, [])]


def test_ssh_audit_reports_no_failure(audit):
    assert _notes(audit, "fail") == []
    assert audit.get("cves", []) == []


def test_a_post_quantum_hybrid_key_exchange_comes_first(audit):
    kex = [a["algorithm"] for a in audit["kex"]]
    assert kex[0] in PQ_HYBRIDS, kex
    # curve25519 stays for clients without the hybrids
    assert "curve25519-sha256" in kex, kex


def test_no_nist_curve_host_key_is_offered(host, audit):
    keys = {a["algorithm"]: a.get("keysize") for a in audit["key"]}
    assert not [k for k in keys if "ecdsa" in k or "nistp" in k], keys
    assert "ssh-ed25519" in keys, keys
    assert all(size >= 3072 for alg, size in keys.items() if alg.startswith("rsa-")), keys
    assert "ssh-rsa" not in keys, keys  # SHA-1 signatures
    # the image generated an ecdsa key as cloud images do; it is there, unused
    assert host.file("/etc/ssh/ssh_host_ecdsa_key").exists
