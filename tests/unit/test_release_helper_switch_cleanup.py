"""The release helper's `switch --cleanup` (issue 12): a switch that went
through does the cleanup in the same call (one round trip fewer on every
deploy), with the same keep rule as `cleanup`; a failed switch removes
nothing. Runs the helper itself on temporary releases; no units and no
sockets, so no systemd is needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HELPER = ROOT / "roles/app/files/flask-stack-release"


def releases(tmp_path: Path, count: int) -> tuple[Path, Path, list[str]]:
    root, envs = tmp_path / "releases", tmp_path / "envs"
    root.mkdir()
    envs.mkdir()
    names = [f"2026010{i}000000-abc" for i in range(1, count + 1)]
    for i, name in enumerate(names):
        (envs / f"venv-{i}").mkdir()
        (root / name).mkdir()
        os.symlink(envs / f"venv-{i}", root / name / ".python")
    return root, envs, names


def helper(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HELPER), *argv], capture_output=True, text=True, check=False)


def test_a_switch_that_went_through_cleans_up_in_the_same_call(tmp_path):
    root, envs, names = releases(tmp_path, 6)
    current = tmp_path / "current"
    os.symlink(root / names[-2], current)
    run = helper("switch", f"--code-dir={current}", f"--target={root / names[-1]}", f"--previous={root / names[-2]}",
                 "--cleanup", f"--releases-dir={root}", f"--envs-dir={envs}", "--env-link=.python", "--keep=2",
                 f"--current={names[-1]}")
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["switched"] is True
    assert os.readlink(current) == str(root / names[-1])
    # the newest two releases stay, with their environments; the rest go
    assert record["cleanup"]["removed_releases"] == names[:4]
    assert sorted(os.listdir(root)) == names[4:]
    assert sorted(os.listdir(envs)) == ["venv-4", "venv-5"]
    assert "cleaned up" in record["steps"]


def test_without_cleanup_the_switch_removes_nothing(tmp_path):
    root, envs, names = releases(tmp_path, 4)
    current = tmp_path / "current"
    os.symlink(root / names[-2], current)
    run = helper("switch", f"--code-dir={current}", f"--target={root / names[-1]}")
    assert run.returncode == 0, run.stderr
    assert "cleanup" not in json.loads(run.stdout)
    assert sorted(os.listdir(root)) == names


def test_switch_cleanup_without_its_options_is_refused_before_anything_changes(tmp_path):
    root, envs, names = releases(tmp_path, 3)
    current = tmp_path / "current"
    os.symlink(root / names[0], current)
    run = helper("switch", f"--code-dir={current}", f"--target={root / names[-1]}", "--cleanup",
                 f"--releases-dir={root}", f"--envs-dir={envs}", "--env-link=.python")
    assert run.returncode == 2
    assert "switch --cleanup needs --releases-dir, --envs-dir, --env-link and --keep" in run.stderr
    assert os.readlink(current) == str(root / names[0])
    assert sorted(os.listdir(root)) == names
