"""One way for every test to run ansible-playbook: the venv's
ansible-playbook, run from the project root, uncoloured output, extra
variables written to a JSON file, the outcome as a `Run` (return code,
output, the PLAY RECAP counters). The tests under tests/ and
molecule/*/tests/ import it (pytest.ini puts tests/helpers on sys.path).

    from playbook import ROOT, run, start
    result = run(inventory, ROOT / "playbooks/deploy.yml", extra_vars={"apps": apps}, vars_dir=tmp_path)
    assert result.rc == 0, result.out[-3000:]
    assert result.changed == 0
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_RECAP_LINE = re.compile(r"^(\S+)\s+:\s+(ok=.*)$", re.M)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def ansible_playbook() -> str:
    """The ansible-playbook next to the running Python (the project's venv)."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else (shutil.which("ansible-playbook") or "ansible-playbook")


def ansible_env(*, project_config: bool = True, base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment of a run: `base` (default: this process's environment)
    without colours; with project_config the project's ansible.cfg, roles and
    filters (else whatever ANSIBLE_CONFIG the caller has, e.g. molecule's)."""
    env = {**(os.environ if base is None else base), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    if project_config:
        env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
                   ANSIBLE_FILTER_PLUGINS=str(ROOT / "plugins/filter"),
                   ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"))
    env.update(extra)
    return env


def write_vars(directory: Path, data: Mapping, stem: str = "vars") -> Path:
    """data as a new JSON file in directory (vars-0.json, vars-1.json, ...), for `-e @file`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}-{len(list(directory.glob(f'{stem}-*.json')))}.json"
    path.write_text(json.dumps(data))
    return path


def copy_app(dst: Path) -> Path:
    """A copy of the sample app (ROOT/app, without caches) at dst, to change
    before deploying it."""
    shutil.copytree(ROOT / "app", dst, ignore=shutil.ignore_patterns("__pycache__", ".*cache"))
    return dst


@dataclass
class Run:
    """A finished run: rc, out (stdout + stderr), and each stream on its own."""

    rc: int
    out: str
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    @property
    def returncode(self) -> int:
        return self.rc

    @property
    def changed(self) -> int:
        """changed= of the last PLAY RECAP's first host (-1 without a recap)."""
        m = re.search(r"changed=(\d+)", _ANSI.sub("", self.out).split("PLAY RECAP")[-1])
        return int(m.group(1)) if m else -1

    def recap(self) -> dict[str, dict[str, int]]:
        """The last PLAY RECAP: {host: {ok, changed, unreachable, failed, ...}}."""
        tail = _ANSI.sub("", self.out).split("PLAY RECAP")[-1] if "PLAY RECAP" in self.out else ""
        return {host: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counters)}
                for host, counters in _RECAP_LINE.findall(tail)}


def command(inventory: str | Path, playbook: str | Path, *args: str, extra_vars: Mapping | None = None,
            vars_dir: Path | None = None) -> list[str]:
    """The argv of one run; extra_vars go to a JSON file in vars_dir."""
    cmd = [ansible_playbook(), "-i", str(inventory), str(playbook)]
    if extra_vars is not None:
        if vars_dir is None:
            raise ValueError("extra_vars needs a vars_dir to write them to")
        cmd += ["-e", f"@{write_vars(vars_dir, extra_vars)}"]
    return [*cmd, *args]


_PATH = re.compile(r"(Deploy|Converge) path: (fast|full)(?: \(([^)]*)\))?")


def note(playbook: str | Path, args: tuple[str, ...], out: str, rc: int | None, seconds: float | None) -> None:
    """With FLASK_STACK_PLAYBOOK_LOG set, one JSON line per run in that file: the
    test, the playbook, its arguments, the path it took (fast/full and why,
    from the run's own message), rc and seconds; what a test's time is made of."""
    log = os.environ.get("FLASK_STACK_PLAYBOOK_LOG")
    if not log:
        return
    m = _PATH.search(_ANSI.sub("", out))
    line = {"test": os.environ.get("PYTEST_CURRENT_TEST", ""), "playbook": Path(playbook).name,
            "args": [a for a in args if not a.startswith("@")], "path": m.group(2) if m else None,
            "why": " ".join(m.group(3).split()) if m and m.group(3) else None, "rc": rc, "seconds": None if seconds is None else round(seconds, 1)}
    with open(log, "a") as fh:
        fh.write(json.dumps(line) + "\n")


def run(inventory: str | Path, playbook: str | Path, *args: str, extra_vars: Mapping | None = None,
        vars_dir: Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 600) -> Run:
    """Run a playbook to the end (args go after the playbook: -e, --limit, -c ...)."""
    cmd = command(inventory, playbook, *args, extra_vars=extra_vars, vars_dir=vars_dir)
    start_time = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(env) if env is not None else ansible_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)
    result = Run(proc.returncode, proc.stdout + proc.stderr, proc.stdout, proc.stderr, time.monotonic() - start_time)
    note(playbook, args, result.out, result.rc, result.seconds)
    return result


def start(inventory: str | Path, playbook: str | Path, *args: str, extra_vars: Mapping | None = None,
          vars_dir: Path | None = None, env: Mapping[str, str] | None = None,
          log: Path | None = None) -> subprocess.Popen:
    """Start a playbook in the background. With log, its output goes to that
    file (a pipe nobody reads while it runs could fill up and stall it; the
    file object is `proc.log`); without, to proc.stdout (stderr merged)."""
    cmd = command(inventory, playbook, *args, extra_vars=extra_vars, vars_dir=vars_dir)
    env = dict(env) if env is not None else ansible_env()
    note(playbook, ("(started in the background)", *args), "", None, None)
    if log is None:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = open(log, "w+")  # noqa: SIM115 - closed by the caller (proc.log)
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
    proc.log = out  # type: ignore[attr-defined]
    return proc
