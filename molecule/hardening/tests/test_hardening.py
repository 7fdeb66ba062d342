"""What an operator would check by hand on a hardened host, most of it from
another machine on the network (the probe container).

The tests run in file order: the SSH connection count from the probe stays
under ufw's limit (6 per 30 s), the container restart comes late, and the
rate-limit test, which locks this machine out of SSH for 30 s, comes last."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import ADMIN, WEB, web_addresses

testinfra_hosts = [f"ansible://{WEB}"]

ROOT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
PUBLIC = [22, 80, 443]
DROPIN = "/etc/ssh/sshd_config.d/00-flask-stack.conf"


# --- firewall ----------------------------------------------------------------

def test_firewall_is_active_and_starts_at_boot(host):
    status = host.run("ufw status verbose")
    assert status.rc == 0, status.stderr
    assert "Status: active" in status.stdout
    assert "Default: deny (incoming), allow (outgoing)" in status.stdout
    assert host.service("ufw").is_enabled
    assert re.search(r"^IPV6=yes$", host.file("/etc/default/ufw").content_string, re.M)


def test_only_the_public_ports_answer_over_ipv4(host, knock, addrs):
    result = knock(addrs.ipv4, [*PUBLIC, 8080, 9100, 9200])
    assert {p: result[p] for p in PUBLIC} == {p: "open" for p in PUBLIC}, result
    # something listens on 8080 inside the host, and the firewall drops it
    assert result[8080] == "timeout", result
    # 9100 is open to the test network's IPv6 range only
    assert result[9100] == "timeout", result
    # the rule an operator added by hand is kept
    assert result[9200] == "open", result


def test_only_the_public_ports_answer_over_ipv6(host, knock, addrs):
    result = knock(addrs.ipv6, [*PUBLIC, 8080, 9100])
    assert {p: result[p] for p in PUBLIC} == {p: "open" for p in PUBLIC}, result
    assert result[8080] == "timeout", result
    assert result[9100] == "open", result


def test_listeners_behind_the_closed_ports_are_really_up(host):
    # otherwise "timeout" above would prove nothing
    for port in (8080, 9100):
        assert host.socket(f"tcp://0.0.0.0:{port}").is_listening or host.socket(f"tcp://:::{port}").is_listening


def test_rule_of_an_earlier_run_is_removed_and_hand_made_rule_kept(host):
    added = host.run("ufw show added").stdout
    assert "8080" not in added, added
    assert "ufw allow 9200/tcp comment 'added by hand'" in added, added
    assert "flask-stack ssh: limit 22/tcp from any" in added, added


# --- sshd ----------------------------------------------------------------------

def sshd_settings(host) -> dict[str, str]:
    out = host.run("sshd -T")
    assert out.rc == 0, out.stderr
    return dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)


def test_sshd_runs_with_the_hardened_settings(host):
    assert host.service("ssh").is_running
    conf = sshd_settings(host)
    expected = {
        "permitrootlogin": "no",
        "pubkeyauthentication": "yes",
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
        "authenticationmethods": "publickey",
        "permitemptypasswords": "no",
        "maxauthtries": "3",
        "logingracetime": "30",
        "x11forwarding": "no",
        "allowagentforwarding": "no",
        "allowtcpforwarding": "no",
        "port": "22",
    }
    assert {k: conf.get(k) for k in expected} == expected


def test_sshd_offers_modern_algorithms_only(host):
    conf = sshd_settings(host)
    kex, ciphers, macs = (conf[k].split(",") for k in ("kexalgorithms", "ciphers", "macs"))
    # the post-quantum hybrid first (Debian's 9.2 knows both of its names);
    # the 9.9+ ML-KEM name was dropped because this OpenSSH does not know it
    assert kex[0] in ("sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com"), kex
    assert "mlkem768x25519-sha256" not in kex
    assert not [k for k in kex if "sha1" in k or k.startswith("ecdh-sha2")], kex
    assert not [c for c in ciphers if c.endswith("-cbc") or c == "3des-cbc"], ciphers
    assert macs and all(m.endswith("-etm@openssh.com") for m in macs), macs


def test_hardening_is_a_drop_in_read_first(host):
    main = host.file("/etc/ssh/sshd_config").content_string
    first = next(line for line in main.splitlines() if line.strip() and not line.startswith("#"))
    assert first == "Include /etc/ssh/sshd_config.d/*.conf"
    assert host.file(DROPIN).mode == 0o644


def test_password_login_is_refused(host, ssh, addrs):
    r = ssh(ADMIN, addrs.ipv4, "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no", "-v")
    assert r.rc == 255
    assert "Permission denied (publickey)" in r.stderr, r.stderr
    # the server offers nothing but keys
    assert re.search(r"Authentications that can continue: publickey\r?$", r.stderr, re.M), r.stderr


def test_admin_logs_in_with_the_key(host, ssh, addrs):
    r = ssh(ADMIN, addrs.ipv4, "-v", command="id -un")
    assert r.rc == 0, r.stderr
    assert r.stdout.strip() == ADMIN
    # the probe's OpenSSH (same version) negotiated the post-quantum hybrid
    assert re.search(r"kex: algorithm: sntrup761x25519-sha512(@openssh\.com)?\r?$", r.stderr, re.M), r.stderr


# --- fail2ban -------------------------------------------------------------------

def jail_status(host) -> str:
    r = host.run("fail2ban-client status sshd")
    assert r.rc == 0, r.stderr
    return r.stdout


def test_fail2ban_sshd_jail_reads_the_journal(host):
    assert host.service("fail2ban").is_running
    assert host.service("fail2ban").is_enabled
    assert "Journal matches:" in jail_status(host)


def test_fail2ban_counts_a_failed_login(host, ssh, addrs):
    def failed() -> int:
        return int(re.search(r"Total failed:\s+(\d+)", jail_status(host)).group(1))

    before = failed()
    r = ssh("no-such-user", addrs.ipv4)
    assert r.rc == 255
    deadline = time.monotonic() + 20
    while failed() == before and time.monotonic() < deadline:
        time.sleep(1)
    assert failed() > before


def test_fail2ban_ban_blocks_the_address(host):
    # a documentation address (TEST-NET-1): ban, look at nftables, unban
    ip = "192.0.2.10"
    try:
        assert host.run(f"fail2ban-client set sshd banip {ip}").rc == 0
        assert ip in jail_status(host)
        nft = host.run("nft list set inet f2b-table addr-set-sshd")
        assert nft.rc == 0 and ip in nft.stdout, nft.stdout + nft.stderr
    finally:
        host.run(f"fail2ban-client set sshd unbanip {ip}")


# --- automatic security updates ---------------------------------------------------

def test_unattended_upgrades_run_daily(host):
    dump = host.run("apt-config dump APT::Periodic::Unattended-Upgrade").stdout
    assert dump.strip() == 'APT::Periodic::Unattended-Upgrade "1";'
    assert host.service("apt-daily-upgrade.timer").is_enabled
    assert host.service("apt-daily-upgrade.timer").is_running


def test_unattended_upgrades_take_security_updates_only(host):
    patterns = host.run("apt-config dump Unattended-Upgrade::Origins-Pattern").stdout
    assert "label=Debian-Security" in patterns
    # unattended-upgrade itself, on the host, says what it would install from
    r = host.run("timeout 120 unattended-upgrade --dry-run --debug 2>&1 | grep -m1 'Allowed origins are:'")
    assert r.rc == 0, r.stdout + r.stderr
    origins = r.stdout.split(":", 1)[1].split(", ")
    assert origins and all("-security" in o or "Security" in o for o in origins), origins


# --- sysctls ----------------------------------------------------------------------

def test_sysctl_names_exist_on_this_kernel(host):
    """The container cannot apply sysctls (/proc/sys is read-only, the
    scenario sets os_hardening_manage_sysctl: false); at least every name the
    role would write must be one the kernel knows, so `sysctl -p` cannot
    fail on a VM for a typo."""
    names = yaml.safe_load((ROOT / "roles/os_hardening/vars/main.yml").read_text())["_os_hardening_sysctl"]
    r = host.run("sysctl -n " + " ".join(["%s"] * len(names)), *names)
    assert r.rc == 0, r.stderr
    assert len(r.stdout.splitlines()) == len(names)
    assert "net.ipv4.ip_forward" not in names  # Docker on the host needs forwarding


# --- refusing to lock the operator out -------------------------------------------

def test_hardening_is_refused_for_a_user_without_a_key(host, request, tmp_path):
    """harden.yml against this host again, now naming a user whose
    authorized_keys holds no key and asking for a different MaxAuthTries:
    it must stop in the check play and leave sshd's configuration alone."""
    before = host.file(DROPIN).sha256sum
    extra = tmp_path / "extra.yml"
    extra.write_text(yaml.safe_dump({"ssh_hardening_admin_user": "nokey", "ssh_hardening_max_auth_tries": 5}))
    ansible = Path(sys.executable).parent / "ansible-playbook"
    inventory = request.config.option.ansible_inventory
    result = subprocess.run(
        [str(ansible), "-i", inventory, "--limit", WEB, "-e", f"@{extra}", str(ROOT / "playbooks" / "harden.yml")],
        cwd=ROOT, env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
        capture_output=True, text=True, timeout=600)
    out = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr).split())
    assert result.returncode != 0, out
    assert re.search(r'ssh_hardening_admin_user: "nokey" has no usable SSH key on flask-stack-hardening-web '
                     r"\(/home/nokey/\.ssh/authorized_keys holds no public key line\)", out), out
    assert "PLAY [Harden the host]" not in out, out
    recap = re.search(rf"{WEB}\s+: ok=\d+\s+changed=(\d+)", out)
    assert recap and recap.group(1) == "0", out
    assert host.file(DROPIN).sha256sum == before
    assert sshd_settings(host)["maxauthtries"] == "3"


# --- after a reboot ---------------------------------------------------------------

def test_everything_comes_back_after_a_restart(host, knock, ssh):
    subprocess.run(["docker", "restart", "-t", "20", WEB], check=True, capture_output=True, timeout=120)
    state = ""
    deadline = time.monotonic() + 120
    while state not in ("running", "degraded") and time.monotonic() < deadline:
        time.sleep(2)  # until systemd answers on its bus and has finished booting
        state = subprocess.run(["docker", "exec", WEB, "systemctl", "is-system-running", "--wait"],
                               capture_output=True, text=True, timeout=130).stdout.strip()
    assert state in ("running", "degraded"), state
    assert host.service("ufw").is_running  # ufw.service loaded the rules at boot
    assert "Status: active" in host.run("ufw status").stdout
    addrs = web_addresses()
    for address in (addrs.ipv4, addrs.ipv6):
        result = knock(address, [*PUBLIC, 8080])
        assert result == {22: "open", 80: "open", 443: "open", 8080: "timeout"}, (address, result)
    assert host.service("fail2ban").is_running
    r = ssh(ADMIN, addrs.ipv4, command="id -un")
    assert r.rc == 0 and r.stdout.strip() == ADMIN, r.stderr
    assert sshd_settings(host)["passwordauthentication"] == "no"


# --- last: SSH rate limit (locks this machine out of SSH on the host for 30 s) ----

def test_ssh_is_rate_limited(host):
    """From this machine (another source address than the probe): ufw's
    `limit` refuses the 6th new SSH connection within 30 seconds."""
    address = web_addresses().ipv4
    outcomes = []
    for _ in range(10):  # bounded: 10 attempts, 3 s timeout each
        try:
            with socket.create_connection((address, 22), timeout=3):
                outcomes.append("open")
        except ConnectionRefusedError:
            outcomes.append("refused")
        except OSError:
            outcomes.append("timeout")
    assert outcomes[0] == "open", outcomes
    assert "refused" in outcomes, outcomes
    assert outcomes.index("refused") <= 6, outcomes
