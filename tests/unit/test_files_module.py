"""flask_stack.core.files (collections/ansible_collections/flask_stack/core/
plugins/modules/files.py): the module run for real on a tmp dir, as the
host runs it (its argument spec, check mode, diff), with this user as owner:
it writes what differs, atomically, validates before the rename, keeps the
old file (and puts back the batch) when a check fails, and reports
changed_paths without file contents."""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "collections/ansible_collections/flask_stack/core/plugins/modules/files.py"
USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name
SECRET = "password=s3cr3t-value\n"


def item(dest: Path, content: str | None = None, **extra) -> dict:
    out = {"dest": str(dest), "owner": USER, "group": GROUP, **extra}
    if content is not None:
        out["content_b64"] = base64.b64encode(content.encode()).decode()
    return out


def run(tmp_path: Path, items: list[dict], check: bool = False, diff: bool = False) -> dict:
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {
        "items": items, "_ansible_check_mode": check, "_ansible_diff": diff}}))
    proc = subprocess.run([sys.executable, str(MODULE), str(args)], capture_output=True, text=True, timeout=60)
    args.unlink()
    result = json.loads(proc.stdout)
    assert SECRET.strip() not in proc.stdout or diff, "file contents leaked into the result"
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_writes_then_changes_nothing(tmp_path: Path) -> None:
    conf, sub = tmp_path / "a.conf", tmp_path / "sub"
    items = [item(sub, state="directory", mode="0750"), item(conf, SECRET, mode="0640"),
             item(sub / "b.conf", "b\n", mode="0644")]
    first = run(tmp_path, items)
    assert first["changed"] is True
    assert first["changed_paths"] == [str(sub), str(conf), str(sub / "b.conf")]
    assert conf.read_text() == SECRET and mode(conf) == 0o640
    assert sub.is_dir() and mode(sub) == 0o750
    second = run(tmp_path, items)
    assert second["changed"] is False and second["changed_paths"] == []
    assert leftovers(tmp_path) == [] and leftovers(sub) == []


def test_mode_only_change_keeps_the_inode(tmp_path: Path) -> None:
    conf = tmp_path / "a.conf"
    run(tmp_path, [item(conf, "x\n", mode="0644")])
    inode = conf.stat().st_ino
    result = run(tmp_path, [item(conf, "x\n", mode="0600", validate="false %s")])  # no validate for attributes
    assert result["changed_paths"] == [str(conf)]
    assert mode(conf) == 0o600 and conf.stat().st_ino == inode


def test_content_change_is_atomic_and_validated(tmp_path: Path) -> None:
    conf = tmp_path / "a.conf"
    run(tmp_path, [item(conf, "old\n", mode="0644")])
    seen = tmp_path / "seen"
    result = run(tmp_path, [item(conf, "new\n", mode="0644", validate=f"cp %s {seen}")])
    assert result["changed_paths"] == [str(conf)]
    assert conf.read_text() == "new\n" and seen.read_text() == "new\n"
    assert leftovers(tmp_path) == []


def test_validate_failure_keeps_the_old_files_and_names_the_file(tmp_path: Path) -> None:
    first, second = tmp_path / "first.conf", tmp_path / "second.conf"
    new = tmp_path / "new.conf"
    run(tmp_path, [item(first, "1 old\n", mode="0644"), item(second, "2 old\n", mode="0644")])
    result = run(tmp_path, [
        item(first, "1 new\n", mode="0600"),
        item(new, "created\n"),
        item(second, "2 new\n", mode="0644", validate="grep -q never-there %s"),
    ])
    assert result.get("failed") is True
    assert str(second) in result["msg"] and "validate failed" in result["msg"]
    # all or nothing: the file written before the failing one is put back
    assert first.read_text() == "1 old\n" and mode(first) == 0o644
    assert second.read_text() == "2 old\n"
    assert not new.exists()
    assert leftovers(tmp_path) == []


def test_validate_sees_earlier_items(tmp_path: Path) -> None:
    checker, conf = tmp_path / "check", tmp_path / "a.conf"
    result = run(tmp_path, [item(checker, "#!/bin/sh\ngrep -q ok \"$1\"\n", mode="0755"),
                            item(conf, "ok\n", validate=f"{checker} %s")])
    assert result["changed_paths"] == [str(checker), str(conf)]


def test_absent(tmp_path: Path) -> None:
    gone, tree = tmp_path / "gone.conf", tmp_path / "tree"
    gone.write_text("x")
    (tree / "deep").mkdir(parents=True)
    result = run(tmp_path, [item(gone, state="absent"), item(tree, state="absent"),
                            item(tmp_path / "never", state="absent")])
    assert result["changed_paths"] == [str(gone), str(tree)]
    assert not gone.exists() and not tree.exists()
    assert run(tmp_path, [item(gone, state="absent")])["changed"] is False


def test_directory_existing_and_wrong_type(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    assert run(tmp_path, [item(directory, state="directory", mode="0755")])["changed"] is False
    assert run(tmp_path, [item(directory, state="directory", mode="0700")])["changed_paths"] == [str(directory)]
    assert mode(directory) == 0o700
    afile = tmp_path / "f"
    afile.write_text("x")
    result = run(tmp_path, [item(afile, state="directory")])
    assert result.get("failed") is True and str(afile) in result["msg"]


def test_check_mode_changes_nothing(tmp_path: Path) -> None:
    conf, directory = tmp_path / "a.conf", tmp_path / "d"
    conf.write_text("old\n")
    os.chmod(conf, 0o644)
    result = run(tmp_path, [item(directory, state="directory"), item(conf, SECRET, mode="0644"),
                            item(directory / "in-new-dir.conf", "x\n")], check=True, diff=True)
    assert result["changed_paths"] == [str(directory), str(conf), str(directory / "in-new-dir.conf")]
    assert conf.read_text() == "old\n" and not directory.exists()
    assert {"before": "old\n", "after": SECRET}.items() <= result["diff"][1].items()


def test_no_log_item_keeps_content_out_of_the_diff(tmp_path: Path) -> None:
    conf = tmp_path / "secret.conf"
    result = run(tmp_path, [item(conf, SECRET, no_log=True)], diff=True)
    assert result["changed"] is True
    assert SECRET.strip() not in json.dumps(result)


def test_missing_directory_and_unknown_owner_fail_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "a.conf"
    result = run(tmp_path, [item(missing, "x\n")])
    assert result.get("failed") is True and str(missing) in result["msg"]
    conf = tmp_path / "a.conf"
    result = run(tmp_path, [{**item(conf, "x\n"), "owner": "no-such-user-here"}])
    assert result.get("failed") is True and "no-such-user-here" in result["msg"] and not conf.exists()


def test_prune_and_only_if_exists(tmp_path: Path) -> None:
    sites = tmp_path / "sites"
    sites.mkdir()
    for name in ("app-a.conf", "app-b.conf", "000-default.conf"):
        (sites / name).write_text(name)
    jail = tmp_path / "jail.local"
    result = run(tmp_path, [item(sites, state="prune", pattern="app-*.conf", keep=["app-a.conf"]),
                            item(jail, "x\n", only_if_exists=str(tmp_path / "no-checker"))])
    assert result["changed_paths"] == [str(sites / "app-b.conf")]
    assert sorted(p.name for p in sites.iterdir()) == ["000-default.conf", "app-a.conf"]
    assert not jail.exists()
