#!/usr/bin/python
"""One module run for a role's files (the host side of flask_stack.core.files)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: files
short_description: Write a list of files and directories in one module run
description:
  - The host side of the C(flask_stack.core.files) action, which renders
    templates and reads the role's files on the controller and sends every
    item here at once.
  - Items are processed in order. A regular file is written only when its
    content, owner, group or mode differs (owner/group/mode alone are fixed
    in place); the new content goes to a temporary file in the same
    directory, gets its mode and owner, passes the item's O(items[].validate)
    command and is renamed over the old file.
  - When a validate command fails, every file this run already changed is put
    back as it was and the module fails naming the file; the batch is all or
    nothing for files, so the next run writes them again and notifies again.
  - File contents never appear in the result (only in the diff of
    C(--diff) runs, and not for items with O(items[].no_log)).
options:
  items:
    description: What to leave on the host, in order.
    type: list
    elements: dict
    required: true
    suboptions:
      dest:
        description: Absolute path.
        type: path
        required: true
      state:
        description:
          - C(file) (needs O(items[].content_b64)), C(directory) or C(absent).
          - C(prune) removes the entries of the directory O(items[].dest) that match
            O(items[].pattern) and are not named in O(items[].keep).
        type: str
        choices: [file, directory, absent, prune]
        default: file
      content_b64:
        description: The file's content, base64.
        type: str
        no_log: true
      owner:
        description: Owner name.
        type: str
        default: root
      group:
        description: Group name.
        type: str
        default: root
      mode:
        description: Octal mode, e.g. "0644"; a new file gets 0644 and a new directory 0755 when unset, an existing one keeps its mode.
        type: raw
      validate:
        description: Command run on the temporary file before it replaces dest; %s is its path.
        type: str
      pattern:
        description: For C(prune), a shell pattern of entry names.
        type: str
      keep:
        description: For C(prune), the names to keep.
        type: list
        elements: str
      only_if_exists:
        description: Skip the item unless this path exists (e.g. the checker its validate needs).
        type: path
      no_log:
        description: Keep this item's content out of the diff.
        type: bool
        default: false
      template:
        description: Action side only - a template of the role, rendered on the controller into O(items[].content_b64).
        type: str
      src:
        description: Action side only - a file of the role's files/, read on the controller.
        type: str
      content:
        description: Action side only - literal content.
        type: str
      vars:
        description: Action side only - variables for O(items[].template) (e.g. a loop's item).
        type: dict
      when:
        description: Action side only - false leaves the item out.
        type: bool
        default: true
author: flask-stack
"""

RETURN = r"""
changed_paths:
  description: The items' paths this run changed (written, attributes fixed, created or removed), in order.
  type: list
  elements: str
  returned: always
"""

import base64
import fnmatch
import grp
import os
import pwd
import shlex
import shutil
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule


class ItemError(Exception):
    """An item that cannot be done; the message names its path."""


def _mode(value):
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    text = str(value)
    try:
        return int(text, 8)
    except ValueError:
        raise ItemError("mode %r is not octal" % (value,)) from None


def _ids(item):
    try:
        uid = pwd.getpwnam(item["owner"]).pw_uid
    except KeyError:
        raise ItemError("%s: no user %s" % (item["dest"], item["owner"])) from None
    try:
        gid = grp.getgrnam(item["group"]).gr_gid
    except KeyError:
        raise ItemError("%s: no group %s" % (item["dest"], item["group"])) from None
    return uid, gid


def _lstat(path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _attrs_differ(st, uid, gid, mode):
    return st.st_uid != uid or st.st_gid != gid or (mode is not None and stat.S_IMODE(st.st_mode) != mode)


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _text(data):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "(binary, %d bytes)\n" % len(data)


class Batch:
    """Does the items; remembers how to put back the files it changed."""

    def __init__(self, run_command, check_mode=False, want_diff=False):
        self.run_command = run_command  # (argv) -> (rc, stdout, stderr)
        self.check_mode = check_mode
        self.want_diff = want_diff
        self.changed_paths = []
        self.diffs = []
        self._undo = []  # callables, newest last
        self._backups = []

    # -- one item each ---------------------------------------------------

    def do(self, item):
        item = {"state": "file", "owner": "root", "group": "root", "mode": None, "validate": None,
                "no_log": False, **item}
        dest = item["dest"]
        if not os.path.isabs(dest):
            raise ItemError("%s: dest must be an absolute path" % dest)
        dest = dest.rstrip("/") or "/"
        item["dest"] = dest
        state = item["state"]
        if item.get("only_if_exists") and not os.path.lexists(item["only_if_exists"]):
            return False
        if state == "absent":
            return self._absent(dest)
        if state == "prune":
            return self._prune(dest, item.get("pattern") or "*", item.get("keep") or [])
        uid, gid = _ids(item)
        mode = _mode(item["mode"])
        if state == "directory":
            return self._directory(dest, uid, gid, mode)
        if state != "file":
            raise ItemError("%s: unknown state %s" % (dest, state))
        if item.get("content_b64") is None:
            raise ItemError("%s: a file item needs content" % dest)
        content = base64.b64decode(item["content_b64"])
        return self._file(item, dest, content, uid, gid, mode)

    def _changed(self, dest, before=None, after=None, no_log=False):
        self.changed_paths.append(dest)
        if self.want_diff and (before is not None or after is not None):
            if no_log:
                before = after = "(content hidden: no_log)\n"
            self.diffs.append({"before_header": dest, "after_header": dest,
                               "before": before or "", "after": after or ""})
        return True

    def _absent(self, dest):
        st = _lstat(dest)
        if st is None:
            return False
        if not self.check_mode:
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(dest)
            else:
                backup = self._backup_name(dest)
                os.rename(dest, backup)
                self._backups.append(backup)
                self._undo.append(lambda: os.rename(backup, dest))
        return self._changed(dest, before="%s\n" % dest, after="")

    def _prune(self, directory, pattern, keep):
        if not os.path.isdir(directory):
            return False
        changed = False
        for name in sorted(os.listdir(directory)):
            if fnmatch.fnmatchcase(name, pattern) and name not in keep:
                changed = self._absent(os.path.join(directory, name)) or changed
        return changed

    def _directory(self, dest, uid, gid, mode):
        st = _lstat(dest)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise ItemError("%s exists and is not a directory" % dest)
        if st is None:
            if not self.check_mode:
                os.makedirs(dest, exist_ok=True)
                os.chown(dest, uid, gid)
                os.chmod(dest, 0o755 if mode is None else mode)
            return self._changed(dest, before="(absent)\n", after="(directory)\n")
        if not _attrs_differ(st, uid, gid, mode):
            return False
        if not self.check_mode:
            os.chown(dest, uid, gid)
            if mode is not None:
                os.chmod(dest, mode)
        return self._changed(dest, before=self._attr_text(st), after=self._attr_text(None, uid, gid, mode))

    def _file(self, item, dest, content, uid, gid, mode):
        st = _lstat(dest)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise ItemError("%s exists and is a directory" % dest)
        directory = os.path.dirname(dest)
        if not os.path.isdir(directory):
            if self.check_mode:
                return self._changed(dest, before="", after=_text(content), no_log=item["no_log"])
            raise ItemError("%s: directory %s does not exist" % (dest, directory))
        old = _read(dest) if st is not None and stat.S_ISREG(st.st_mode) else None
        if old == content:
            if not _attrs_differ(st, uid, gid, mode):
                return False
            if not self.check_mode:  # attributes only: in place, no validate
                old_uid, old_gid, old_mode = st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)
                os.chown(dest, uid, gid)
                if mode is not None:
                    os.chmod(dest, mode)
                self._undo.append(lambda: (os.chown(dest, old_uid, old_gid), os.chmod(dest, old_mode)))
            return self._changed(dest, before=self._attr_text(st), after=self._attr_text(None, uid, gid, mode))
        if self.check_mode:
            return self._changed(dest, before=None if old is None else _text(old), after=_text(content),
                                 no_log=item["no_log"])
        if mode is None:
            mode = stat.S_IMODE(st.st_mode) if st is not None and stat.S_ISREG(st.st_mode) else 0o644
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(dest), suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.chown(tmp, uid, gid)
            os.chmod(tmp, mode)
            if item["validate"]:
                self._validate(item["validate"], tmp, dest)
            if st is not None:
                backup = self._backup_name(dest)
                os.link(dest, backup)
                self._backups.append(backup)
                self._undo.append(lambda: os.rename(backup, dest))
            else:
                self._undo.append(lambda: os.unlink(dest))
            os.rename(tmp, dest)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        return self._changed(dest, before=None if old is None else _text(old), after=_text(content),
                             no_log=item["no_log"])

    # -- helpers ---------------------------------------------------------

    def _validate(self, command, tmp, dest):
        if "%s" not in command:
            raise ItemError("%s: validate must contain %%s: %s" % (dest, command))
        argv = [tmp if word == "%s" else word.replace("%s", tmp) for word in shlex.split(command)]
        rc, out, err = self.run_command(argv)
        if rc != 0:
            detail = (err or out or "").strip()
            raise ItemError("%s: validate failed (%s, rc %s), the old file is kept%s" % (
                dest, command, rc, (": " + detail) if detail else ""))

    @staticmethod
    def _backup_name(dest):
        fd, name = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".%s." % os.path.basename(dest), suffix=".old")
        os.close(fd)
        os.unlink(name)
        return name

    @staticmethod
    def _attr_text(st, uid=None, gid=None, mode=None):
        if st is not None:
            uid, gid, mode = st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)
        try:
            owner = pwd.getpwuid(uid).pw_name
        except KeyError:
            owner = str(uid)
        try:
            group = grp.getgrgid(gid).gr_name
        except KeyError:
            group = str(gid)
        return "owner=%s group=%s mode=%s\n" % (owner, group, "unchanged" if mode is None else "%04o" % mode)

    def rollback(self):
        """Put back the files this run changed (newest first)."""
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except OSError:
                pass
        self._backups = []
        self.changed_paths = []

    def finish(self):
        for backup in self._backups:
            if os.path.lexists(backup):
                os.unlink(backup)
        self._backups = []
        self._undo = []


def run_items(items, run_command, check_mode=False, want_diff=False):
    """Do `items` in order. Returns (changed_paths, diffs); raises ItemError
    after putting back what this run had already changed."""
    batch = Batch(run_command, check_mode=check_mode, want_diff=want_diff)
    try:
        for item in items:
            batch.do(item)
    except BaseException:
        batch.rollback()
        raise
    batch.finish()
    return batch.changed_paths, batch.diffs


def main():
    module = AnsibleModule(
        argument_spec=dict(
            items=dict(type="list", elements="dict", required=True, options=dict(
                dest=dict(type="path", required=True),
                state=dict(type="str", default="file", choices=["file", "directory", "absent", "prune"]),
                pattern=dict(type="str"),
                keep=dict(type="list", elements="str", no_log=False),
                only_if_exists=dict(type="path"),
                content_b64=dict(type="str", no_log=True),
                owner=dict(type="str", default="root"),
                group=dict(type="str", default="root"),
                mode=dict(type="raw"),
                validate=dict(type="str"),
                no_log=dict(type="bool", default=False),
                # read by the action plugin, never sent here
                template=dict(type="str"),
                src=dict(type="str"),
                content=dict(type="str", no_log=True),
                vars=dict(type="dict"),
                when=dict(type="bool", default=True),
            )),
        ),
        supports_check_mode=True,
    )

    def run_command(argv):
        return module.run_command(argv)

    try:
        changed_paths, diffs = run_items(module.params["items"], run_command,
                                         check_mode=module.check_mode, want_diff=module._diff)
    except (ItemError, OSError) as exc:
        module.fail_json(msg=str(exc), changed_paths=[])
    result = dict(changed=bool(changed_paths), changed_paths=changed_paths)
    if module._diff and diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
