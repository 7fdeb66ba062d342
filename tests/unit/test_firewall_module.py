"""The firewall role's module (roles/firewall/library/flask_stack_ufw.py):
its pure diff logic (the /etc/default/ufw lines, the rules against `ufw show
added`), and whole module runs against stand-in `ufw` and `systemctl`
commands that keep their state in files and log every call, to see what a
first run, a re-run, a changed setting and check mode execute, and in which
order. The real ufw is the molecule scenarios' business (hardening, default)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_modules import ROOT, load

mod = load("roles/firewall/library/flask_stack_ufw.py")
fw = load("roles/firewall/filter_plugins/firewall.py")

DEBIAN_DEFAULTS = """# /etc/default/ufw
#

# Set to yes to apply rules to support IPv6 (no means only IPv6 on loopback
# accepted). You will need to 'disable' and then 'enable' the firewall for
# the changes to take affect.
IPV6=yes

DEFAULT_INPUT_POLICY="DROP"
DEFAULT_OUTPUT_POLICY="ACCEPT"
DEFAULT_FORWARD_POLICY="DROP"
IPT_SYSCTL=/etc/ufw/sysctl.conf
IPT_MODULES=""
"""
WANTED = ["IPV6=yes", 'DEFAULT_INPUT_POLICY="DROP"', 'DEFAULT_OUTPUT_POLICY="ACCEPT"', "IPT_SYSCTL="]


# --- /etc/default/ufw ----------------------------------------------------------

def test_defaults_only_the_differing_line_changes():
    text, changed = mod.defaults_update(DEBIAN_DEFAULTS, WANTED)
    assert changed == ["IPT_SYSCTL="]
    assert text == DEBIAN_DEFAULTS.replace("IPT_SYSCTL=/etc/ufw/sysctl.conf\n", "IPT_SYSCTL=\n")


def test_defaults_in_effect_leave_the_file_as_it_is():
    text = DEBIAN_DEFAULTS.replace("IPT_SYSCTL=/etc/ufw/sysctl.conf", "IPT_SYSCTL=")
    assert mod.defaults_update(text, WANTED) == (text, [])


def test_defaults_the_last_assignment_is_the_one_that_counts():
    """The file is sourced: with two IPV6= lines the last wins, so a wanted
    line earlier in the file is not in effect, and the last one is replaced."""
    text = "IPV6=yes\nIPV6=no\n"
    assert mod.defaults_update(text, ["IPV6=yes"]) == ("IPV6=yes\nIPV6=yes\n", ["IPV6=yes"])
    assert mod.defaults_update("IPV6=no\nIPV6=yes\n", ["IPV6=yes"]) == ("IPV6=no\nIPV6=yes\n", [])


def test_defaults_a_missing_key_is_appended_and_a_prefix_is_not_the_key():
    text, changed = mod.defaults_update("IPV6S=no\n# IPV6=no\nIPT_MODULES=\"\"", ["IPV6=yes"])
    assert changed == ["IPV6=yes"]
    assert text == "IPV6S=no\n# IPV6=no\nIPT_MODULES=\"\"\nIPV6=yes\n"


# --- rules against `ufw show added` --------------------------------------------

SHOW_ADDED = """Added user rules (see 'ufw status' for running firewall):
ufw limit 22/tcp comment 'flask-stack ssh: limit 22/tcp from any'
ufw allow 80/tcp comment 'flask-stack web: allow 80/tcp from any'
ufw allow 8080/tcp comment 'flask-stack extra: allow 8080/tcp from any'
ufw allow 9200/tcp comment 'added by hand'
ufw allow 5432/tcp
ufw allow from 2001:db8::/32 to any port 9100 proto tcp comment 'flask-stack metrics: allow 9100/tcp from 2001:db8::/32'
"""


def test_stale_rules_are_this_roles_rules_no_longer_configured():
    _, stale = mod.rule_diff(SHOW_ADDED, fw.firewall_rules(22, [], [80], []))
    assert stale == [
        ["allow", "8080/tcp", "comment", "flask-stack extra: allow 8080/tcp from any"],
        ["allow", "from", "2001:db8::/32", "to", "any", "port", "9100", "proto", "tcp", "comment",
         "flask-stack metrics: allow 9100/tcp from 2001:db8::/32"],
    ]


def test_nothing_is_stale_or_missing_when_everything_is_configured():
    rules = fw.firewall_rules(22, [], [80], [{"port": 8080}, {"port": 9100, "from": "2001:db8::/32",
                                                              "comment": "metrics"}])
    assert mod.rule_diff(SHOW_ADDED, rules) == ([], [])


def test_only_rules_ufw_does_not_have_yet_are_missing():
    """A new or changed rule is missing (a changed rule has a new comment);
    a rule added by hand with the same port but without this role's comment
    does not count."""
    rules = fw.firewall_rules(22, [], [80, 443], [{"port": 9200}, {"port": 8080, "from": "10.0.0.0/8"}])
    missing, _ = mod.rule_diff(SHOW_ADDED, rules)
    assert [r["comment"] for r in missing] == [
        "flask-stack web: allow 443/tcp from any",
        "flask-stack extra: allow 9200/tcp from any",
        "flask-stack extra: allow 8080/tcp from 10.0.0.0/8",
    ]


def test_every_rule_is_missing_before_ufw_has_any():
    rules = fw.firewall_rules(22, [], [80, 443], [])
    assert mod.rule_diff("Added user rules (see 'ufw status' for running firewall):\n(None)\n", rules) == (rules, [])


def test_a_rule_is_added_with_its_source_port_protocol_and_comment():
    ssh = fw.firewall_rules(2222, ["203.0.113.0/24"], [], [])[0]
    assert mod.rule_args(ssh) == ["limit", "from", "203.0.113.0/24", "to", "any", "port", "2222",
                                  "proto", "tcp", "comment", "flask-stack ssh: limit 2222/tcp from 203.0.113.0/24"]


def test_the_filter_marks_rules_with_the_prefix_the_module_recognises():
    assert fw.COMMENT_PREFIX == mod.COMMENT_PREFIX
    assert all(r["comment"].startswith(mod.COMMENT_PREFIX) for r in fw.firewall_rules(22, [], [80], []))


# --- whole module runs against stand-in commands -------------------------------

# ufw and systemctl as far as the module uses them; state in $STUB_STATE,
# every call appended to $STUB_STATE/calls.
STUB = r"""#!/usr/bin/env python3
import os, pathlib, shlex, sys
state = pathlib.Path(os.environ["STUB_STATE"])
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(state / "calls", "a") as log:
    log.write(shlex.join([name, *args]) + "\n")
added = state / "added"
rules = added.read_text().splitlines() if added.exists() else []
if name == "systemctl":
    boot = state / "boot"
    if args[0] == "is-enabled":
        print(boot.read_text() if boot.exists() else "disabled")
        sys.exit(0 if boot.exists() else 1)
    boot.write_text("enabled")
elif args == ["show", "added"]:
    print("Added user rules (see 'ufw status' for running firewall):")
    print("\n".join(rules) or "(None)")
elif args == ["status"]:
    print("Status: active" if (state / "active").exists() else "Status: inactive")
elif args == ["--force", "enable"]:
    (state / "active").touch()
elif args == ["reload"]:
    pass
elif args[:2] == ["--force", "delete"]:
    line = "ufw " + shlex.join(args[2:])
    if line not in rules:
        sys.exit("Could not delete non-existent rule")
    added.write_text("".join(r + "\n" for r in rules if r != line))
elif args[0] in ("allow", "limit"):
    added.write_text("".join(r + "\n" for r in rules + ["ufw " + shlex.join(args)]))
else:
    sys.exit("unexpected: " + shlex.join(args))
"""


@pytest.fixture
def host(tmp_path, monkeypatch):
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name in ("ufw", "systemctl"):
        (bin_dir / name).write_text(STUB)
        (bin_dir / name).chmod(0o755)
    defaults = tmp_path / "default_ufw"
    defaults.write_text(DEBIAN_DEFAULTS)
    defaults.chmod(0o644)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("STUB_STATE", str(state))

    class Host:
        def __init__(self):
            self.state, self.defaults = state, defaults

        def calls(self) -> list[str]:
            log = state / "calls"
            lines = log.read_text().splitlines() if log.exists() else []
            log.unlink(missing_ok=True)
            return lines

        def run(self, rules, check=False, remove_stale=True, sysctl=False) -> dict:
            args = {"defaults": WANTED[:3] + ["IPT_SYSCTL=" + ("/etc/ufw/sysctl.conf" if sysctl else "")],
                    "rules": rules, "remove_stale": remove_stale, "defaults_path": str(defaults),
                    "_ansible_check_mode": check}
            argfile = tmp_path / "args.json"
            argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
            out = subprocess.run([sys.executable, str(ROOT / "roles/firewall/library/flask_stack_ufw.py"),
                                  str(argfile)], capture_output=True, text=True, timeout=60)
            result = json.loads(out.stdout)
            assert not result.get("failed"), result
            return result

    return Host()


RULES = fw.firewall_rules(22, [], [80, 443], [])
READS = ["ufw show added", "ufw status", "systemctl is-enabled ufw.service"]


def test_first_run_adds_every_rule_before_enabling_then_a_rerun_only_reads(host):
    first = host.run(RULES)
    calls = host.calls()
    assert first["changed"] and first["enabled"] and first["boot_enabled"] and not first["reloaded"]
    assert calls == [
        "ufw show added",
        "ufw limit from any to any port 22 proto tcp comment 'flask-stack ssh: limit 22/tcp from any'",
        "ufw allow from any to any port 80 proto tcp comment 'flask-stack web: allow 80/tcp from any'",
        "ufw allow from any to any port 443 proto tcp comment 'flask-stack web: allow 443/tcp from any'",
        "ufw status",
        "ufw --force enable",
        "systemctl is-enabled ufw.service",
        "systemctl enable ufw.service",
    ]
    assert first["actions"][0] == "set IPT_SYSCTL= in " + str(host.defaults)
    assert "IPT_SYSCTL=\n" in host.defaults.read_text()
    assert host.defaults.stat().st_mode & 0o777 == 0o644

    again = host.run(RULES)
    assert not again["changed"] and again["actions"] == []
    assert host.calls() == READS


def test_an_active_ufw_is_reloaded_only_for_a_changed_default(host):
    host.run(RULES)
    host.calls()
    added = host.run(fw.firewall_rules(22, [], [80, 443, 8443], []))
    assert added["changed"] and not added["reloaded"] and not added["enabled"]
    assert host.calls() == ["ufw show added",
                            "ufw allow from any to any port 8443 proto tcp comment "
                            "'flask-stack web: allow 8443/tcp from any'",
                            "ufw status", "systemctl is-enabled ufw.service"]
    sysctl = host.run(RULES, sysctl=True, remove_stale=False)
    assert sysctl["reloaded"] and sysctl["defaults_changed"] == ["IPT_SYSCTL=/etc/ufw/sysctl.conf"]
    assert host.calls() == ["ufw show added", "ufw status", "ufw reload", "systemctl is-enabled ufw.service"]


def test_stale_rules_of_the_role_go_and_hand_made_ones_stay(host):
    (host.state / "added").write_text(
        "ufw allow 8080/tcp comment 'flask-stack extra: allow 8080/tcp from any'\n"
        "ufw allow 9200/tcp comment 'added by hand'\n")
    kept = host.run(RULES, remove_stale=False)
    assert kept["deleted"] == [] and "8080/tcp" in (host.state / "added").read_text()
    host.calls()
    result = host.run(RULES)
    assert result["deleted"] == [["allow", "8080/tcp", "comment", "flask-stack extra: allow 8080/tcp from any"]]
    assert "ufw --force delete allow 8080/tcp comment 'flask-stack extra: allow 8080/tcp from any'" in host.calls()
    left = (host.state / "added").read_text()
    assert "8080" not in left and "ufw allow 9200/tcp comment 'added by hand'" in left


def test_check_mode_reports_everything_and_changes_nothing(host):
    result = host.run(RULES, check=True)
    assert result["changed"] and result["enabled"] and result["boot_enabled"]
    assert len(result["added"]) == 3
    assert host.calls() == READS
    assert host.defaults.read_text() == DEBIAN_DEFAULTS
    assert not (host.state / "added").exists()
