"""Filters of the redis role: check its settings before any change.

``redis_config_errors`` returns every problem, each naming the variable and
the value (never the password's value).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

# No dashes: systemd would unescape them to "/" in %I.
_INSTANCE = re.compile(r"^[a-z0-9]{1,32}$")
# RFC 3986 unreserved characters: the password goes into redis:// URLs and
# the config file as it is, without quoting or escaping.
_PASSWORD = re.compile(r"^[A-Za-z0-9._~-]+$")
_MIN_PASSWORD = 16
_SOCKET_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_MODE = re.compile(r"^[0-7]{3,4}$")
_MEMORY = re.compile(r"^[0-9]+([kmg]b?)?$", re.IGNORECASE)
_SAVE = re.compile(r"^[0-9]+ [0-9]+$")
# ACL rules: key/channel patterns and +/- command or @category rules. No
# passwords (>, <, #, !), no nopass/resetpass/off/reset: the role owns them.
_ACL_RULE = re.compile(r"^(~[A-Za-z0-9*:_.-]+|%R?W?~[A-Za-z0-9*:_.-]+|&[A-Za-z0-9*:_.-]+|allkeys|allchannels|allcommands|resetkeys|resetchannels|[+-]@?[a-z_|-]+)$")
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def _int_error(name: str, value: Any, low: int, high: int) -> str | None:
    text = str(value)
    if isinstance(value, bool) or not text.isdigit() or not low <= int(text) <= high:
        return f"{name}: {value!r} is not an integer from {low} to {high}"
    return None


def _bind_errors(bind: Any, allow_remote: Any, port: Any) -> list[str]:
    if not isinstance(bind, list):
        return [f"redis_bind: must be a list of IPv4/IPv6 addresses, got {bind!r}"]
    errors: list[str] = []
    for i, addr in enumerate(bind):
        try:
            ip = ipaddress.ip_address(addr) if isinstance(addr, str) else None
        except ValueError:
            ip = None
        if ip is None:
            errors.append(f"redis_bind[{i}]: {addr!r} is not an IPv4/IPv6 address")
        elif not any(ip in net for net in _LOOPBACK) and allow_remote is not True:
            errors.append(
                f"redis_bind[{i}]: {addr!r} is not a loopback address; Redis must not listen on a "
                "public interface (for a private network set redis_allow_remote: true and keep the "
                "port closed in the firewall)")
    if not bind and str(port) != "0":
        errors.append(f"redis_bind: empty, but redis_port is {port!r} (use redis_port: 0 for no TCP)")
    return errors


def redis_config_errors(settings: dict[str, Any]) -> list[str]:
    """Every problem in the redis role's settings (a dict of its variables)."""
    errors: list[str] = []
    s = settings

    password = s.get("redis_password")
    if not isinstance(password, str) or not password:
        errors.append("redis_password: empty; set it in the vault (e.g. openssl rand -hex 32)")
    elif not _PASSWORD.fullmatch(password):
        errors.append("redis_password: has characters other than A-Z a-z 0-9 . _ ~ - "
                      "(they would need quoting in redis.conf and escaping in redis:// URLs)")
    elif len(password) < _MIN_PASSWORD:
        errors.append(f"redis_password: {len(password)} characters; at least {_MIN_PASSWORD} are required")

    instance = s.get("redis_instance")
    if not isinstance(instance, str) or not _INSTANCE.fullmatch(instance):
        errors.append(f"redis_instance: {instance!r} is not 1-32 lower-case letters and digits")

    port = s.get("redis_port")
    for err in (_int_error("redis_port", port, 0, 65535),
                _int_error("redis_timeout", s.get("redis_timeout"), 0, 2**31 - 1),
                _int_error("redis_databases", s.get("redis_databases"), 1, 100000)):
        if err:
            errors.append(err)

    errors += _bind_errors(s.get("redis_bind"), s.get("redis_allow_remote"), port)

    sock = s.get("redis_unixsocket")
    run_dir = f"/run/redis-{instance}/"
    if not isinstance(sock, str):
        errors.append(f"redis_unixsocket: {sock!r} is not a path")
    elif sock and not (sock.startswith(run_dir) and _SOCKET_NAME.fullmatch(sock[len(run_dir):])):
        errors.append(f"redis_unixsocket: {sock!r} must be a file name in {run_dir} "
                      "(the unit's runtime directory, the one place the sandbox lets redis write)")
    elif not sock and str(port) == "0":
        errors.append("redis_port: 0 and redis_unixsocket empty; Redis would not listen anywhere")
    perm = s.get("redis_unixsocket_perm")
    if not (isinstance(perm, str | int) and not isinstance(perm, bool) and _MODE.fullmatch(str(perm))):
        errors.append(f"redis_unixsocket_perm: {perm!r} is not an octal mode such as \"770\"")

    memory = s.get("redis_maxmemory")
    if isinstance(memory, bool) or not _MEMORY.fullmatch(str(memory)):
        errors.append(f"redis_maxmemory: {memory!r} is not bytes or a number with kb/mb/gb (e.g. 256mb, 0)")

    persistence = s.get("redis_persistence")
    if persistence not in ("aof", "rdb", "none"):
        errors.append(f"redis_persistence: {persistence!r} is not one of aof, rdb, none")
    save = s.get("redis_rdb_save")
    if not isinstance(save, list) or not all(isinstance(x, str) and _SAVE.fullmatch(x) for x in save):
        errors.append(f"redis_rdb_save: {save!r} must be a list of \"<seconds> <changes>\" strings")

    rules = s.get("redis_acl_rules")
    bad = [r for r in str(rules).split() if not _ACL_RULE.fullmatch(r)] if isinstance(rules, str) else [rules]
    if bad or not str(rules).strip():
        errors.append(f"redis_acl_rules: {rules!r} has {bad!r}, not key/channel patterns or +/- command rules "
                      "(passwords, nopass, off and reset are the role's own)")

    if not isinstance(s.get("redis_private_users"), bool):
        errors.append(f"redis_private_users: {s.get('redis_private_users')!r} is not true or false")

    level = s.get("redis_loglevel")
    if level not in ("debug", "verbose", "notice", "warning"):
        errors.append(f"redis_loglevel: {level!r} is not one of debug, verbose, notice, warning")
    return errors


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"redis_config_errors": redis_config_errors}
