"""systemd re-reads the web units exactly when it has to.

The gunicorn role runs `systemctl daemon-reload` only when it is needed (a
reload re-reads every unit on the host): when it wrote a unit file, or when
systemd still holds an older version of one. The second case is what a run
killed between writing a unit and the reload leaves behind: the file on
disk is already the wanted one, so the next run writes nothing, and only
asking systemd (NeedDaemonReload) shows that the reload is still owed."""

from __future__ import annotations

import os
from pathlib import Path

from playbook import ansible_env
from playbook import run as run_playbook

testinfra_hosts = ["ansible://web"]

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
UNIT = "gunicorn-hello.service"
PATH = f"/etc/systemd/system/{UNIT}"


def need_reload(host) -> str:
    return host.check_output("systemctl show --property=NeedDaemonReload --value %s", UNIT).strip()


def test_a_reload_owed_by_an_interrupted_run_is_made_up_by_the_next_run(host, pytestconfig):
    assert need_reload(host) == "no"
    # systemd loads an older version of the unit; then the file is written
    # back to what the role writes, without a reload: the interrupted run
    # (systemd owes a reload when the file is newer than what it loaded)
    host.check_output(
        "cp -p {p} /root/unit.orig && echo '# an older version' >> {p} && systemctl daemon-reload"
        " && cat /root/unit.orig > {p} && rm /root/unit.orig".format(p=PATH)
    )
    assert need_reload(host) == "yes"

    result = run_playbook(pytestconfig.option.ansible_inventory, PROJECT / "playbooks/deploy.yml", "--tags", "gunicorn",
                          env=ansible_env(project_config=False), timeout=900)
    assert result.rc == 0, result.out[-3000:]
    assert result.changed == 0, result.out[-3000:]  # the unit file was already right
    assert need_reload(host) == "no", "the run left systemd with the older unit"
    assert host.service(UNIT).is_running
