"""flask_stack.core.files: a role's files in one module run.

On the controller, each item becomes content: `template` (the role's
templates/, rendered with the task's variables plus the item's `vars`),
`src` (the role's files/, as is) or `content` (literal); `state: directory`
and `state: absent` need none. Items whose `when` is false are left out.
Then ONE run of the flask_stack.core.files module does them all, in order
(see its documentation: compare, write atomically, validate, all or nothing).

    - name: Write the role's files (one module run)
      flask_stack.core.files:
        items:
          - {dest: /usr/local/sbin/check, src: check, mode: "0755"}
          - dest: /etc/x/x.conf
            template: x.conf.j2
            validate: /usr/local/sbin/check %s
          - {dest: /var/cache/x, state: directory, owner: www-data, mode: "0700"}
          - {dest: /etc/x/old.conf, state: absent}
          - {dest: /etc/x/sites, state: prune, pattern: "app-*.conf", keep: [app-a.conf]}
      register: _x_files
      notify: Reload x

The result's `changed_paths` lists what changed, so a handler can run only
for its own files: `when: _x_files.changed_paths | select(...)`.
"""

from __future__ import annotations

import base64
import os

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template
from ansible._internal._templating import _template_vars

_SENT = ("dest", "state", "owner", "group", "mode", "validate", "no_log", "pattern", "keep", "only_if_exists")
_KNOWN = set(_SENT) | {"template", "src", "content", "vars", "when"}


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp

        items = self._task.args.get("items")
        if not isinstance(items, list):
            raise AnsibleActionFail("items must be a list")
        unknown_args = set(self._task.args) - {"items"}
        if unknown_args:
            raise AnsibleActionFail("unknown option(s): %s" % ", ".join(sorted(unknown_args)))

        sent = []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not item.get("dest"):
                raise AnsibleActionFail("item %d: a mapping with dest is needed" % index)
            unknown = set(item) - _KNOWN
            if unknown:
                raise AnsibleActionFail("%s: unknown key(s) %s" % (item["dest"], ", ".join(sorted(unknown))))
            if not boolean(item.get("when", True), strict=False):
                continue
            out = {key: item[key] for key in _SENT if item.get(key) is not None}
            out.setdefault("state", "file")
            sources = [key for key in ("template", "src", "content") if item.get(key) is not None]
            if out["state"] == "file":
                if len(sources) != 1:
                    raise AnsibleActionFail("%s: a file item needs exactly one of template, src, content" % item["dest"])
                out["content_b64"] = base64.b64encode(self._content(item, sources[0], task_vars)).decode("ascii")
            elif sources:
                raise AnsibleActionFail("%s: state %s takes no template, src or content" % (item["dest"], out["state"]))
            sent.append(out)

        result.update(self._execute_module(module_name="flask_stack.core.files",
                                           module_args={"items": sent}, task_vars=task_vars))
        return result

    def _content(self, item, kind, task_vars):
        if kind == "content":
            return to_bytes(item["content"], errors="surrogate_or_strict")
        try:
            source = self._find_needle("templates" if kind == "template" else "files", item[kind])
        except AnsibleError as exc:
            raise AnsibleActionFail("%s: %s" % (item["dest"], to_text(exc))) from exc
        if kind == "src":
            with open(to_bytes(source, errors="surrogate_or_strict"), "rb") as handle:
                return handle.read()
        return to_bytes(self._render(source, item, task_vars), errors="surrogate_or_strict")

    def _render(self, source, item, task_vars):
        """As ansible.builtin.template renders (its default options)."""
        searchpath = list(task_vars.get("ansible_search_path", []))
        searchpath.extend([self._loader._basedir, os.path.dirname(source)])
        searchpath = [q for p in searchpath for q in (os.path.join(p, "templates"), p)]
        temp_vars = {**task_vars, **(item.get("vars") or {})}
        temp_vars.update(_template_vars.generate_ansible_template_vars(
            path=item["template"], fullpath=source, dest_path=item["dest"],
            include_ansible_managed="ansible_managed" not in temp_vars))
        templar = self._templar.copy_with_new_env(searchpath=searchpath, available_variables=temp_vars)
        data = trust_as_template(self._loader.get_text_file_contents(source))
        rendered = templar.template(data, escape_backslashes=False,
                                    overrides=dict(trim_blocks=True, lstrip_blocks=False, newline_sequence="\n"))
        return "" if rendered is None else rendered
