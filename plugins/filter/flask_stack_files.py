"""One look at a role's files instead of one module run per file.

A `template`, `copy` or `file` task that finds its file as wanted still
costs one or two module runs on the host (`stat`, then `file` for the
attributes), every converge. A role that writes several files asks the host
once (`ansible.builtin.find` over their directories, with checksums) and
gives each task `when: found | flask_stack_needs_write(path, ...)`: the
task runs, with its `validate:` and its handler, exactly when the file's
content, type, owner, group or mode differs from what the task would leave,
or when the host was not asked (no find result: the task decides itself,
as before). Nothing is written by these filters.

    flask_stack_find_paths(paths)  -> the directories to search (find's paths)
    flask_stack_find_names(paths)  -> the names to match (find's patterns)
    flask_stack_needs_write(found, path, content=None, owner='root',
                            group='root', mode=None, state='file') -> bool
"""

from __future__ import annotations

import hashlib
import os
from typing import Any


def flask_stack_find_paths(paths: list[str]) -> list[str]:
    return sorted({os.path.dirname(str(p).rstrip("/")) or "/" for p in paths})


def flask_stack_find_names(paths: list[str]) -> list[str]:
    return sorted({os.path.basename(str(p).rstrip("/")) for p in paths})


def _mode(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return int(str(value), 8)


def flask_stack_needs_write(found: Any, path: str, content: str | None = None, owner: str = "root",
                            group: str = "root", mode: Any = None, state: str = "file") -> bool:
    """True unless the find result `found` shows `path` exactly as the task
    would leave it: a regular file with this content (sha1, as find reports
    it) or a directory (state='directory'), with this owner, group and mode."""
    if not isinstance(found, dict) or found.get("skipped") or "files" not in found:
        return True  # the host was not asked: let the task look for itself
    entry = next((f for f in found["files"] if f.get("path") == str(path).rstrip("/")), None)
    if entry is None:
        return True
    if state == "directory":
        if not entry.get("isdir") or entry.get("islnk"):
            return True
    else:
        if not entry.get("isreg") or entry.get("islnk"):
            return True
        if content is None or entry.get("checksum") != hashlib.sha1(str(content).encode("utf-8")).hexdigest():
            return True
    if entry.get("pw_name") != owner or entry.get("gr_name") != group:
        return True
    return mode is not None and _mode(entry.get("mode")) != _mode(mode)


class FilterModule:
    def filters(self):
        return {
            "flask_stack_find_paths": flask_stack_find_paths,
            "flask_stack_find_names": flask_stack_find_names,
            "flask_stack_needs_write": flask_stack_needs_write,
        }
