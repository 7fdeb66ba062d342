"""The TLS gate: testssl.sh (Debian's package, installed on this machine by
scripts/ensure-apt.sh) against the published HTTPS port, with the
certificate Pebble issued. Any finding of severity MEDIUM or higher fails,
except the ids in testssl-allowlist.yml (next to this file) (each with its
reason).

Checks run (to keep the run short): protocols (-p), cipher categories (-s),
forward secrecy (-f), server preferences (-P), server defaults and the
certificate (-S), HTTP headers (-h) and the vulnerabilities (-U). Skipped:
the per-cipher listing (-e/-E) and client simulation (-c), which only
describe what -s and -P already judge."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import HTTPS_PORT

testinfra_hosts = ["ansible://web"]

ALLOWLIST = Path(__file__).resolve().parent / "testssl-allowlist.yml"
FAILING = ("MEDIUM", "HIGH", "CRITICAL")
CHECKS = ["-p", "-s", "-f", "-P", "-S", "-h", "-U"]
DOMAIN = "hello.test"


def _testssl_bin() -> str:
    found = shutil.which("testssl") or shutil.which("testssl.sh")
    assert found, "testssl.sh is not installed: scripts/ensure-apt.sh testssl.sh (make test does this)"
    return found


def allowed() -> dict[str, str]:
    entries = yaml.safe_load(ALLOWLIST.read_text())
    assert isinstance(entries, dict) and all(isinstance(r, str) and r.strip() for r in entries.values()), \
        "the allow-list maps each testssl id to its reason"
    return entries


def base_id(finding_id: str) -> str:
    """`cert_validityPeriod <hostCert#1>` -> `cert_validityPeriod`."""
    return finding_id.split(" ", 1)[0]


@pytest.fixture(scope="module")
def findings(pebble_root, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("testssl") / "testssl.json"
    start = time.monotonic()
    run = subprocess.run(
        [_testssl_bin(), "--jsonfile", str(out), "--ip", "127.0.0.1", "--add-ca", str(pebble_root),
         "--quiet", "--color", "0", "--warnings", "off", "--sneaky", *CHECKS, f"{DOMAIN}:{HTTPS_PORT}"],
        capture_output=True, text=True, timeout=900,
    )
    assert out.exists() and out.stat().st_size > 0, (run.returncode, run.stdout[-3000:], run.stderr[-3000:])
    result = json.loads(out.read_text())
    totals: dict[str, int] = {}
    for f in result:
        totals[f["severity"]] = totals.get(f["severity"], 0) + 1
    print(f"testssl.sh: {len(result)} findings in {time.monotonic() - start:.0f} s, by severity {totals}")
    for f in result:
        if f["severity"] in FAILING:
            print(f"  {f['severity']:8} {f['id']}: {f['finding']}")
    return result


def test_testssl_ran_against_the_issued_certificate(findings):
    ids = {base_id(f["id"]): f for f in findings}
    assert "scanProblem" not in ids, ids.get("scanProblem")
    # the chain verified against Pebble's root (not a self-signed stand-in)
    assert ids["cert_trust"]["severity"] in ("OK", "INFO"), ids["cert_trust"]
    assert "Pebble" in ids["cert_caIssuers"]["finding"], ids["cert_caIssuers"]


def test_no_finding_of_medium_or_higher_outside_the_allow_list(findings):
    allow = allowed()
    bad = [f"{f['severity']} {f['id']}: {f['finding']}" for f in findings
           if f["severity"] in FAILING and base_id(f["id"]) not in allow]
    assert bad == []


def test_the_allow_list_is_still_needed(findings):
    """An entry that matches nothing any more is dropped, so the list stays short."""
    hits = {base_id(f["id"]) for f in findings if f["severity"] in FAILING}
    assert sorted(set(allowed()) - hits) == []
