"""`make demo-cluster` (scripts/cluster.sh up) prints a URL and a CA, and the
URL answers over HTTPS verified against that CA, through the load balancer,
from both web hosts.

Not part of scripts/test.sh: it converges the whole cluster scenario (10-20
min), which `molecule test -s cluster` already does and tests far more
thoroughly. Run it by hand:

    .venv/bin/pytest -q -s tests/cluster_demo

It takes /tmp/flask-stack-cluster.lock (through scripts/cluster.sh) and
removes the cluster afterwards unless FLASK_STACK_CLUSTER_KEEP=1."""

from __future__ import annotations

import json
import os
import re
import subprocess
from urllib.parse import urlsplit

import pytest
from playbook import ROOT


@pytest.fixture(scope="module")
def demo_output():
    try:
        proc = subprocess.run([str(ROOT / "scripts/cluster.sh"), "up"], cwd=ROOT, capture_output=True, text=True,
                              timeout=3600, check=False)
        print(proc.stdout[-2000:])
        assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
        yield proc.stdout
    finally:
        if os.environ.get("FLASK_STACK_CLUSTER_KEEP") != "1":
            subprocess.run([str(ROOT / "scripts/cluster.sh"), "down"], cwd=ROOT, capture_output=True, timeout=900,
                           check=False)


def test_the_printed_url_answers_over_https_with_the_printed_ca(demo_output):
    url = re.search(r"^URL: (https://\S+)$", demo_output, re.M).group(1)
    ca = re.search(r"^CA: (/\S+)$", demo_output, re.M).group(1)
    resolve = re.search(r"^RESOLVE: (\S+)", demo_output, re.M).group(1)
    parts = urlsplit(url)
    assert resolve == f"{parts.hostname}:{parts.port}:127.0.0.1", (resolve, url)
    hosts = set()
    for _ in range(6):
        # curl verifies the certificate against the printed CA only (--cacert); no -k
        r = subprocess.run(["curl", "-sS", "--fail", "--max-time", "10", "--cacert", ca, "--resolve", resolve,
                            f"{url}healthz"], capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 0, r.stderr
        body = json.loads(r.stdout)
        assert body["status"] == "OK", body
        hosts.add(body["host"])
    print(f"\n{url} answered from {sorted(hosts)}")
    assert len(hosts) == 2, hosts
    # and nothing without the CA: the certificate is Pebble's, not a public one
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--resolve", resolve, f"{url}healthz"],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 60, (r.returncode, r.stderr)
