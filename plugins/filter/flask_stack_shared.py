"""The cross-role values: one name and one default each.

Several roles read the same fact (the SSH port: firewall, sshd, fail2ban, the
security group; the web ports: nginx, firewall, security group; ...). Each
role keeps its own role-prefixed variable, so it stays usable alone, and its
default reads the shared name through this filter, which holds the one
fallback value:

    ssh_hardening_port: "{{ ssh_port | default(none) | flask_stack_shared('ssh_port') }}"

Set the shared name once in the inventory (``group_vars/all``) to move every
role together; set a role's own variable only to make that role differ.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

SHARED_DEFAULTS: dict[str, Any] = {
    "ssh_port": 22,            # sshd, ufw's SSH rule, fail2ban's jail, the security group
    "web_http_port": 80,       # nginx, ufw, the security group
    "web_https_port": 443,     # nginx, ufw, the security group
    "redis_port": 6379,        # the redis role and the broker URL the app role writes
    "base_admin_user": "deploy",  # the operator's login: created by base, required by ssh_hardening
}


def flask_stack_shared(value: Any, name: str) -> Any:
    """``value`` when the inventory set the shared variable ``name``, else its one default."""
    if name not in SHARED_DEFAULTS:
        raise AnsibleFilterError(f"flask_stack_shared: unknown shared variable {name!r} "
                                 f"(known: {', '.join(sorted(SHARED_DEFAULTS))})")
    return SHARED_DEFAULTS[name] if value is None else value


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"flask_stack_shared": flask_stack_shared}
