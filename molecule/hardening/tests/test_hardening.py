"""What an operator would check by hand on a hardened host, most of it from
another machine on the network (the probe container).

The tests run in file order: the SSH connection count from the probe stays
under ufw's limit (6 per 30 s), the container restart comes late, and the
rate-limit test, which locks this machine out of SSH for 30 s, comes last."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from conftest import _SSH_OPTS as SSH_OPTS
from conftest import ADMIN, NETWORK, PROBE, WEB, web_addresses
from playbook import ansible_env
from playbook import run as run_playbook

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


def test_a_rule_added_or_removed_on_an_active_firewall_applies_at_once(host, knock, addrs, request, tmp_path):
    """The role's module (one run for defaults, rules, enable) reloads an
    active ufw only when /etc/default/ufw changed: a rule it adds or deletes
    through the ufw command line must reach the running firewall by itself.
    The role runs twice on the converged host: with 8080 open (the probe
    gets in over IPv4) and without it again (the stale rule is deleted, 8080
    is dropped); the defaults file is not touched in either run."""
    playbook = tmp_path / "firewall.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "The firewall role", "hosts": WEB, "gather_facts": False, "become": True,
        "tasks": [{"ansible.builtin.include_role": {"name": "firewall"}}]}]))
    defaults_before = host.file("/etc/default/ufw").content_string
    extra = yaml.safe_load((ROOT / "molecule/hardening/molecule.yml").read_text()
                           )["provisioner"]["inventory"]["group_vars"]["web"]["firewall_extra_rules"]

    def converge(extra_rules: list) -> str:
        # firewall_packages: [] skips the apt task (ufw is installed)
        r = run_playbook(request.config.option.ansible_inventory, playbook, env=ansible_env(project_config=False),
                         extra_vars={"firewall_extra_rules": extra_rules, "firewall_packages": []},
                         vars_dir=tmp_path, timeout=300)
        out = re.sub(r"\x1b\[[0-9;]*m", "", r.out)
        assert r.returncode == 0, out[-3000:]
        recap = re.search(rf"{WEB}\s+: ok=\d+\s+changed=(\d+)", out)
        assert recap, out[-3000:]
        return recap.group(1)

    try:
        assert converge([*extra, {"port": 8080, "comment": "live check"}]) == "1"
        assert knock(addrs.ipv4, [8080])[8080] == "open"
        # in the running firewall, IPv4 and IPv6
        shown = re.findall(r"^8080/tcp(?: \(v6\))? +ALLOW", host.run("ufw status").stdout, re.M)
        assert [" ".join(line.split()) for line in shown] == ["8080/tcp ALLOW", "8080/tcp (v6) ALLOW"], shown
    finally:
        assert converge(extra) == "1"
    assert knock(addrs.ipv4, [8080])[8080] == "timeout"
    assert "8080" not in host.run("ufw show added").stdout
    assert host.file("/etc/default/ufw").content_string == defaults_before


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


def test_hardening_is_a_drop_in_that_wins_over_later_files(host):
    """The role's drop-in sorts first, so a later file (cloud-init writes
    50-cloud-init.conf with PasswordAuthentication yes) cannot undo it:
    sshd keeps the first value it reads."""
    dropin = host.file(DROPIN)
    assert dropin.exists and dropin.user == "root" and dropin.mode == 0o644
    assert re.search(r"^PasswordAuthentication no$", dropin.content_string, re.M | re.I)
    later = "/etc/ssh/sshd_config.d/50-cloud-init.conf"
    assert not host.file(later).exists
    try:
        host.run("printf 'PasswordAuthentication yes\\nPermitRootLogin yes\\nMaxAuthTries 10\\n' > %s", later)
        conf = sshd_settings(host)  # what sshd would run with, this file included
        assert (conf["passwordauthentication"], conf["permitrootlogin"], conf["maxauthtries"]) == ("no", "no", "3")
    finally:
        host.run("rm -f %s", later)


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


def banned(host) -> list[str]:
    m = re.search(r"Banned IP list:\s*(.*)$", jail_status(host), re.M)
    return m.group(1).split() if m else []


def failures_before_ban(log: str, ip: str) -> int:
    """How many failures fail2ban counted for ip in the findtime (10 min)
    before it banned ip, from its own log lines ("[sshd] Found", "[sshd] Ban")."""
    stamp = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)"
    ban = [m.group(1) for m in re.finditer(stamp + rf".*\[sshd\] Ban {re.escape(ip)}$", log, re.M)]
    assert ban, log[-3000:]
    ban_at = datetime.strptime(ban[-1], "%Y-%m-%d %H:%M:%S")
    found = [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
             for m in re.finditer(stamp + rf".*\[sshd\] Found {re.escape(ip)}\b", log, re.M)]
    return sum(1 for t in found if ban_at - timedelta(minutes=10) <= t <= ban_at)


def test_fail2ban_bans_an_address_after_repeated_failed_logins(host, ssh, knock, addrs):
    """Failed logins from the probe get the probe banned: it can no longer
    connect, not even with the admin's key, while another address (this
    machine) still logs in. Attempts are 7 s apart so that ufw's rate limit
    (6 new connections per 30 s) never answers in fail2ban's place."""
    probe_ip = subprocess.run(["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", PROBE],
                              capture_output=True, text=True, check=True, timeout=30).stdout
    probe_ip = json.loads(probe_ip)[NETWORK]["IPAddress"]
    assert probe_ip not in banned(host)
    attempts = 0
    try:
        for _ in range(12):  # bounded: 12 attempts, about 90 s
            time.sleep(7)
            r = ssh("no-such-user", addrs.ipv4)
            assert r.rc == 255, r.stderr
            if "Permission denied" not in r.stderr:
                break  # sshd did not answer: the ban (or something else) came first
            attempts += 1
            deadline = time.monotonic() + 10
            while probe_ip not in banned(host) and time.monotonic() < deadline:
                time.sleep(1)
            if probe_ip in banned(host):
                break
        assert probe_ip in banned(host), (attempts, jail_status(host))
        counted = failures_before_ban(host.file("/var/log/fail2ban.log").content_string, probe_ip)
        print(f"\nfail2ban: {probe_ip} banned after {counted} failed logins ({attempts} refused logins in this test)")
        # maxretry 5 (the README): banned once 5 failures fell within findtime, and not before
        # (the loop saw no ban after the earlier attempts; one login may log two failures)
        assert counted >= 5, counted
        assert 1 <= attempts <= 5, attempts
        nft = host.run("nft list set inet f2b-table addr-set-sshd")
        assert probe_ip in nft.stdout, nft.stdout + nft.stderr
        # the banned address cannot connect at all, not even with the admin's key ...
        assert knock(addrs.ipv4, [22])[22] in ("refused", "timeout")
        r = ssh(ADMIN, addrs.ipv4, command="id -un")
        assert r.rc == 255 and "Permission denied" not in r.stderr, r.stdout + r.stderr
        # ... while another address (this machine) still logs in with it
        key = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "admin_ed25519"
        other = subprocess.run(["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", *SSH_OPTS, f"{ADMIN}@{addrs.ipv4}",
                                "id -un"], capture_output=True, text=True, timeout=30)
        assert other.returncode == 0 and other.stdout.strip() == ADMIN, other.stderr
    finally:
        host.run("fail2ban-client set sshd unbanip %s", probe_ip)
    assert probe_ip not in banned(host)


# --- automatic security updates ---------------------------------------------------

def test_unattended_upgrades_run_daily(host):
    dump = host.run("apt-config dump APT::Periodic::Unattended-Upgrade").stdout
    assert dump.strip() == 'APT::Periodic::Unattended-Upgrade "1";'
    assert host.service("apt-daily-upgrade.timer").is_enabled
    assert host.service("apt-daily-upgrade.timer").is_running


def test_unattended_upgrades_never_reboot_by_default_and_would_at_4(host):
    """os_hardening_unattended_reboot false, _reboot_time 04:00 (README):
    what unattended-upgrade itself reads through apt's configuration."""
    reboot = host.run("apt-config dump Unattended-Upgrade::Automatic-Reboot").stdout.strip()
    assert reboot == 'Unattended-Upgrade::Automatic-Reboot "false";', reboot
    at = host.run("apt-config dump Unattended-Upgrade::Automatic-Reboot-Time").stdout.strip()
    assert at == 'Unattended-Upgrade::Automatic-Reboot-Time "04:00";', at


def test_unattended_upgrades_take_security_updates_only(host):
    patterns = host.run("apt-config dump Unattended-Upgrade::Origins-Pattern").stdout
    assert "label=Debian-Security" in patterns
    # unattended-upgrade itself, on the host, says what it would install from
    r = host.run("timeout 120 unattended-upgrade --dry-run --debug 2>&1 | grep -m1 'Allowed origins are:'")
    assert r.rc == 0, r.stdout + r.stderr
    origins = r.stdout.split(":", 1)[1].split(", ")
    assert origins and all("-security" in o or "Security" in o for o in origins), origins


# --- sysctls ----------------------------------------------------------------------

SYSCTL_FILE = "/etc/sysctl.d/60-flask-stack.conf"


def test_sysctls_are_written_and_applied(host, request, tmp_path):
    """The scenario converges with os_hardening_manage_sysctl: false
    (/proc/sys is read-only in a container). Every key the role sets is a
    net.* key, and those belong to the container's own network namespace,
    so with /proc/sys remounted writable for this test the role's sysctl
    tasks run for real here: each key starts at the opposite value, the role
    writes the file and applies it, and the kernel then reports the role's
    values; a second run changes nothing and `sysctl -p` of the file works."""
    wanted = yaml.safe_load((ROOT / "roles/os_hardening/vars/main.yml").read_text())["_os_hardening_sysctl"]
    assert all(k.startswith("net.") for k in wanted), "a key outside the network namespace would hit the host"
    assert "net.ipv4.ip_forward" not in wanted  # Docker on the host needs forwarding
    expected = {k: str(v) for k, v in wanted.items()}
    expected.update({k: "2" for k in expected if k.endswith(".rp_filter")})  # os_hardening_rp_filter default
    assert not host.file(SYSCTL_FILE).exists
    playbook = tmp_path / "sysctl.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "The sysctl part of os_hardening", "hosts": WEB, "gather_facts": False,
        "tasks": [{"ansible.builtin.include_role": {"name": "os_hardening", "tasks_from": "sysctl"}}]}]))

    def converge() -> str:
        r = run_playbook(request.config.option.ansible_inventory, playbook, env=ansible_env(project_config=False),
                         timeout=300)
        out = re.sub(r"\x1b\[[0-9;]*m", "", r.out)
        assert r.returncode == 0, out[-3000:]
        recap = re.search(rf"{WEB}\s+: ok=\d+\s+changed=(\d+)", out)
        assert recap, out[-3000:]
        return recap.group(1)

    assert host.run("mount -o remount,rw /proc/sys").rc == 0
    try:
        opposite = {k: ("0" if v != "0" else "1") for k, v in expected.items()}
        assert host.run("sysctl -q -w " + " ".join(["%s"] * len(opposite)),
                        *[f"{k}={v}" for k, v in opposite.items()]).rc == 0
        assert converge() != "0"
        live = host.run("sysctl " + " ".join(["%s"] * len(expected)), *expected)
        assert live.rc == 0, live.stderr
        assert dict(line.split(" = ", 1) for line in live.stdout.splitlines()) == expected
        text = host.file(SYSCTL_FILE).content_string
        assert {k: v for k, v in re.findall(r"^([a-z0-9_.]+)\s*=\s*(\S+)$", text, re.M)} == expected
        assert converge() == "0"
        reload = host.run("sysctl -p %s", SYSCTL_FILE)
        assert reload.rc == 0, reload.stderr
    finally:
        host.run("rm -f %s", SYSCTL_FILE)
        host.run("mount -o remount,ro /proc/sys")


# --- refusing to lock the operator out -------------------------------------------

def test_hardening_is_refused_for_a_user_without_a_key(host, request, tmp_path):
    """harden.yml against this host again, now naming a user whose
    authorized_keys holds no key and asking for a different MaxAuthTries:
    it must stop in the check play and leave sshd's configuration alone."""
    before = host.file(DROPIN).sha256sum
    inventory = request.config.option.ansible_inventory
    result = run_playbook(inventory, ROOT / "playbooks" / "harden.yml", "--limit", WEB,
                          extra_vars={"ssh_hardening_admin_user": "nokey", "ssh_hardening_max_auth_tries": 5},
                          vars_dir=tmp_path, env=ansible_env(project_config=False), timeout=600)
    out = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", result.out).split())
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
    # five new connections get through, the 6th is refused (the README's words)
    assert outcomes[:5] == ["open"] * 5, outcomes
    assert outcomes[5] == "refused", outcomes
