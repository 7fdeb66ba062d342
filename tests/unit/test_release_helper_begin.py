"""The release helper's `begin` names a local source's release itself, from
the archive on its stdin (issue 12): the deploy sends the archive once and
no longer makes a task on the controller to learn its hash first. The name
must be the one the controller's archive filter gives (the tar's sha256, 12
hex digits), or an unchanged source would get a new release every deploy.
Runs the helper's own function on temporary releases, with a stand-in for
flask-stack-lock that records its calls (no /run/lock, no systemd)."""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import io
import json
import os
import sys
from pathlib import Path

from plugin_modules import load

ROOT = Path(__file__).resolve().parents[2]
HELPER = ROOT / "roles/app/files/flask-stack-release"
deploy = load("plugins/filter/flask_stack_deploy.py")


def helper():
    loader = importlib.machinery.SourceFileLoader("flask_stack_release_begin", str(HELPER))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def fake_lock(tmp_path: Path) -> tuple[Path, Path]:
    """An executable standing in for flask-stack-lock: logs its argv, grants every lock."""
    calls = tmp_path / "lock-calls"
    script = tmp_path / "flask-stack-lock"
    script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                      f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
                      "print(json.dumps({'acquired': True}))\n")
    script.chmod(0o755)
    return script, calls


def begin(module, monkeypatch, tmp_path: Path, stdin: str, **extra) -> tuple[int, dict]:
    args = argparse.Namespace(app="hello", releases_dir=str(tmp_path / "releases"), code_dir=str(tmp_path / "current"),
                              hash="", token="t", wait=0, holder="{}", env_lock="", env_key="", env_prefix="",
                              env_link=".python", env_read=False, **extra)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    rc = module.begin(args)
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    return rc, json.loads(out.getvalue())


def source(tmp_path: Path) -> Path:
    src = tmp_path / "src" / "app"
    (src / "hello").mkdir(parents=True)
    (src / "hello" / "__init__.py").write_text("app = 1\n")
    (src / "requirements.txt").write_text("flask==3.1.0 \\\n    --hash=sha256:00\n")
    return src


def test_begin_names_the_release_by_the_archive_it_receives_as_the_filter_does(tmp_path, monkeypatch):
    module = helper()
    lock, calls = fake_lock(tmp_path)
    monkeypatch.setattr(module, "LOCK", str(lock))
    archive = deploy.flask_stack_source_archive(str(source(tmp_path)))
    rc, first = begin(module, monkeypatch, tmp_path, archive["b64"])
    assert rc == 0, first
    assert first["release"].endswith("-" + archive["sha256"][:12]), (first, archive["sha256"])
    release = tmp_path / "releases" / first["release"]
    assert (release / "hello" / "__init__.py").read_text() == "app = 1\n"
    assert (release / "RELEASE").read_text() == first["release"] + "\n"
    assert first["changed"] and not first["complete"]
    # the same source again: the release made from it, nothing unpacked
    rc, again = begin(module, monkeypatch, tmp_path, archive["b64"])
    assert rc == 0 and again["release"] == first["release"] and again["complete"] and not again["changed"]
    # a changed source: a release of its own
    (tmp_path / "src" / "app" / "hello" / "__init__.py").write_text("app = 2\n")
    changed = deploy.flask_stack_source_archive(str(tmp_path / "src" / "app"))
    rc, other = begin(module, monkeypatch, tmp_path, changed["b64"])
    assert rc == 0 and other["release"].endswith("-" + changed["sha256"][:12]) and other["release"] != first["release"]
    assert len(calls.read_text().splitlines()) == 6  # acquire + update per begin


def test_an_archive_that_is_not_one_changes_nothing_and_takes_no_lock(tmp_path, monkeypatch):
    module = helper()
    lock, calls = fake_lock(tmp_path)
    monkeypatch.setattr(module, "LOCK", str(lock))
    rc, out = begin(module, monkeypatch, tmp_path, "bm90IGEgdGFyLmd6")  # base64 of "not a tar.gz"
    assert rc == 1 and "not a base64 gzipped tar" in out["msg"], out
    assert not calls.exists()
    assert not os.path.exists(tmp_path / "releases")
