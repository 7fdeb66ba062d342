"""tests/helpers/playbook.py, the one ansible-playbook wrapper of the tests:
a real playbook on this machine (local connection, a file under tmp_path
only) must come back with its return code, its output and the PLAY RECAP
counters a test asserts on (changed=1, then changed=0 on the re-run)."""

from __future__ import annotations

import sys
from pathlib import Path

from playbook import ansible_env, run, start

PLAY = """
- name: Write a file
  hosts: all
  gather_facts: false
  tasks:
    - name: The file holds the given text
      ansible.builtin.copy:
        dest: "{{ target }}"
        content: "{{ text }}"
        mode: "0600"
    - name: Fail when asked to
      ansible.builtin.fail:
        msg: "asked to fail: {{ text }}"
      when: fail | default(false)
"""


def _setup(tmp_path: Path) -> tuple[str, Path]:
    (tmp_path / "play.yml").write_text(PLAY)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"all:\n  hosts:\n    here:\n      ansible_connection: local\n"
                         f"      ansible_python_interpreter: {sys.executable}\n")
    return str(inventory), tmp_path / "play.yml"


def _env(tmp_path: Path) -> dict[str, str]:
    return ansible_env(ANSIBLE_FACT_CACHING_CONNECTION=str(tmp_path / "facts"))


def test_run_reports_changes_then_none(tmp_path):
    inventory, play = _setup(tmp_path)
    target = tmp_path / "out.txt"
    first = run(inventory, play, extra_vars={"target": str(target), "text": "one"}, vars_dir=tmp_path / "vars",
                env=_env(tmp_path))
    assert first.rc == 0 and first.returncode == 0, first.out[-2000:]
    assert first.changed == 1, first.out[-2000:]
    assert first.recap()["here"]["changed"] == 1 and first.recap()["here"]["failed"] == 0
    assert target.read_text() == "one"
    again = run(inventory, play, extra_vars={"target": str(target), "text": "one"}, vars_dir=tmp_path / "vars",
                env=_env(tmp_path))
    assert again.changed == 0, again.out[-2000:]
    # each run's variables in a file of their own
    assert sorted(p.name for p in (tmp_path / "vars").iterdir()) == ["vars-0.json", "vars-1.json"]


def test_run_reports_a_failure_with_its_message(tmp_path):
    inventory, play = _setup(tmp_path)
    result = run(inventory, play, extra_vars={"target": str(tmp_path / "f"), "text": "boom", "fail": True},
                 vars_dir=tmp_path, env=_env(tmp_path))
    assert result.rc != 0
    assert "asked to fail: boom" in result.stdout
    assert result.recap()["here"]["failed"] == 1


def test_start_writes_the_output_to_the_log(tmp_path):
    inventory, play = _setup(tmp_path)
    proc = start(inventory, play, extra_vars={"target": str(tmp_path / "bg"), "text": "bg"}, vars_dir=tmp_path,
                 env=_env(tmp_path), log=tmp_path / "run.log")
    assert proc.wait(timeout=300) == 0
    proc.log.close()
    assert "PLAY RECAP" in (tmp_path / "run.log").read_text()
    assert (tmp_path / "bg").read_text() == "bg"
