"""Helpers for the hardening checks: the probe container ("the outside"),
the web host's addresses on the test network, TCP and SSH probes.

Every probe goes to the scenario's own web container, each with a timeout."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

import pytest
import testinfra

WEB = "flask-stack-hardening-web"
PROBE = "flask-stack-hardening-probe"
NETWORK = "flask-stack-hardening"
ADMIN = "deploy"

# Runs inside the probe: tries each port once (3 s timeout), prints
# {"port": "open" | "timeout" | "refused" | "error ..."}.
_KNOCK = """
import json, socket, sys
addr, result = sys.argv[1], {}
for port in sys.argv[2:]:
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    s.settimeout(3)
    try:
        s.connect((addr, int(port)))
        result[port] = "open"
    except socket.timeout:
        result[port] = "timeout"
    except ConnectionRefusedError:
        result[port] = "refused"
    except OSError as exc:
        result[port] = f"error {exc}"
    finally:
        s.close()
print(json.dumps(result))
"""

_SSH_OPTS = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ConnectTimeout=10", "-o", "LogLevel=VERBOSE"]


@dataclass
class Addresses:
    ipv4: str
    ipv6: str


def web_addresses() -> Addresses:
    """The web container's addresses on the scenario's network (they may change on restart)."""
    out = subprocess.run(["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", WEB],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    net = json.loads(out)[NETWORK]
    return Addresses(ipv4=net["IPAddress"], ipv6=net["GlobalIPv6Address"])


@pytest.fixture
def addrs() -> Addresses:
    return web_addresses()


@pytest.fixture(scope="session")
def probe(request):
    """The probe container, through the same Ansible inventory as `host`."""
    return testinfra.get_host(f"ansible://{PROBE}", ansible_inventory=request.config.option.ansible_inventory)


@pytest.fixture
def knock(probe):
    """knock(address, ports) -> {port: state}, tried from the probe container."""

    def run(address: str, ports: list[int]) -> dict[int, str]:
        cmd = probe.run("timeout 60 python3 -c %s %s " + " ".join(["%s"] * len(ports)), _KNOCK, address,
                        *[str(p) for p in ports])
        assert cmd.rc == 0, cmd.stderr
        return {int(k): v for k, v in json.loads(cmd.stdout).items()}

    return run


@pytest.fixture
def ssh(probe):
    """ssh(user, address, *options, command="true") -> CommandResult, run from the probe."""

    def run(user: str, address: str, *options: str, command: str = "true"):
        args = [*_SSH_OPTS, *options, f"{user}@{address}", command]
        return probe.run("timeout 30 ssh " + " ".join(["%s"] * len(args)), *args)

    return run
