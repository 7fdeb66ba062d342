"""The archive of a local source that a deploy sends to the release helper
(flask_stack_source_archive in plugins/filter/flask_stack_deploy.py): what
it holds, that an unchanged source always gives the same tar (so it maps to
the release already made from it), and that GNU tar on the host unpacks it
as the helper does (--strip-components=1)."""

from __future__ import annotations

import base64
import gzip
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from plugin_modules import load

deploy = load("plugins/filter/flask_stack_deploy.py")
EXCLUDE = ["*.pyc", "__pycache__", ".git", "tests"]


def source(root: Path) -> Path:
    src = root / "app"
    (src / "hello" / "__pycache__").mkdir(parents=True)
    (src / "hello" / "__init__.py").write_text("app = 1\n")
    (src / "hello" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (src / "hello" / "old.pyc").write_bytes(b"\0")
    (src / "tests").mkdir()
    (src / "tests" / "test_x.py").write_text("")
    (src / "requirements.txt").write_text("flask==3.0.0 \\\n    --hash=sha256:00\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / "hello" / "testsuite.py").write_text("# not excluded: only a whole name matches\n")
    return src


def members(archive: dict) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(base64.b64decode(archive["b64"])))) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_the_archive_leaves_out_app_exclude_and_keeps_the_rest(tmp_path):
    got = members(deploy.flask_stack_source_archive(source(tmp_path), EXCLUDE))
    assert sorted(got) == ["app", "app/hello", "app/hello/__init__.py", "app/hello/testsuite.py",
                           "app/requirements.txt", "app/run.sh"]
    assert got["app/run.sh"].mode & 0o777 == 0o755
    assert {(m.uid, m.gid, m.uname) for m in got.values()} == {(0, 0, "root")}


def test_an_unchanged_source_gives_the_same_tar_and_a_change_another(tmp_path):
    src = source(tmp_path)
    first = deploy.flask_stack_source_archive(src, EXCLUDE)
    assert deploy.flask_stack_source_archive(str(src), EXCLUDE) == first
    # an excluded file does not make a new release...
    (src / "hello" / "__pycache__" / "y.pyc").write_bytes(b"1")
    assert deploy.flask_stack_source_archive(src, EXCLUDE)["sha256"] == first["sha256"]
    # ...a changed one does
    (src / "hello" / "__init__.py").write_text("app = 2\n")
    assert deploy.flask_stack_source_archive(src, EXCLUDE)["sha256"] != first["sha256"]


def test_gnu_tar_unpacks_it_like_the_release_helper(tmp_path):
    archive = deploy.flask_stack_source_archive(source(tmp_path), EXCLUDE)
    release = tmp_path / "release"
    release.mkdir()
    subprocess.run(["tar", "-x", "-z", "-f", "-", "-C", str(release), "--strip-components=1", "--no-same-owner"],
                   input=base64.b64decode(archive["b64"]), check=True)
    assert (release / "hello" / "__init__.py").read_text() == "app = 1\n"
    assert os.access(release / "run.sh", os.X_OK)
    assert not (release / "tests").exists()


def test_a_source_that_is_not_a_directory_is_named(tmp_path):
    with pytest.raises(Exception, match="is not a directory"):
        deploy.flask_stack_source_archive(tmp_path / "missing", EXCLUDE)
