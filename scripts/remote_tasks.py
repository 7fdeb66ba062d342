#!/usr/bin/env python3
"""Count the remote module runs in the output of one ansible-playbook run
(default callback, no colours), to compare no-op runs by their round trips
rather than by seconds on a loaded machine.

    scripts/remote_tasks.py <project dir> <run log> [--per-task]

Every `ok:` / `changed:` result line (one per loop item) of a task whose
module runs on the host counts; set_fact, assert, debug, include/import,
meta, argument-spec checks and tasks delegated to the controller are
counted as local. A task's module is looked up by its name in the roles of
<project dir> (names with Jinja match any text there)."""

from __future__ import annotations

import pathlib
import re
import sys

import yaml

LOCAL = {"set_fact", "assert", "debug", "include_tasks", "include_role", "import_tasks", "import_role",
         "meta", "fail", "add_host", "group_by", "validate_argument_spec", "include_vars", "pause"}


def task_kinds(root: pathlib.Path) -> dict[str, str]:
    """'role : task name' (Jinja as *) -> 'local' or the module's short name."""
    kinds: dict[str, str] = {}

    def walk(tasks, role: str) -> None:
        for task in tasks or []:
            if not isinstance(task, dict):
                continue
            for key in ("block", "rescue", "always"):
                walk(task.get(key), role)
            name = task.get("name")
            module = next((k for k in task if "." in k or k in LOCAL), None)
            if not name or module is None:
                continue
            module = module.split(".")[-1]
            local = module in LOCAL or task.get("delegate_to") in ("localhost", "127.0.0.1")
            full = f"{role} : {name}" if role else name
            kinds[re.sub(r"\{\{.*?\}\}", "*", full)] = "local" if local else module

    # task files of the playbooks (playbooks/tasks) hold tasks like a role's, without the role prefix
    for path in sorted(root.glob("playbooks/tasks/*.yml")):
        walk(yaml.safe_load(path.read_text()), "")
    for path in sorted(root.glob("roles/*/tasks/*.yml")) + sorted(root.glob("roles/*/handlers/*.yml")):
        walk(yaml.safe_load(path.read_text()), path.parts[-3])
    for path in sorted(root.glob("playbooks/*.yml")):
        for play in yaml.safe_load(path.read_text()) or []:
            if isinstance(play, dict):
                for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                    walk(play.get(key), "")
    return kinds


def kind_of(kinds: dict[str, str], task: str) -> str:
    if "Validating arguments" in task:
        return "local"
    for pattern, kind in kinds.items():
        if re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), task):
            return kind
    return "unknown"


def main() -> None:
    kinds = task_kinds(pathlib.Path(sys.argv[1]))
    task, kind, remote, local, per_task = None, "unknown", 0, 0, {}
    for line in pathlib.Path(sys.argv[2]).read_text().splitlines():
        header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*)\] \*+", line)
        if header:
            task = header.group(1)
            kind = kind_of(kinds, task)
        elif task and re.match(r"^(ok|changed): \[", line):
            if kind == "local":
                local += 1
            else:
                remote += 1
                per_task[task] = per_task.get(task, 0) + 1
    print(f"remote module runs: {remote}  local results: {local}")
    if "--per-task" in sys.argv:
        for name, count in sorted(per_task.items()):
            print(count, name)


if __name__ == "__main__":
    main()
