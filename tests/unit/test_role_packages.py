"""The prepared test image's package list (molecule/resources/role_packages.py)
is read from the roles' apt tasks: it must hold what the roles install and
nothing that is only a setting's value."""

from __future__ import annotations

import role_packages


def test_every_role_install_is_listed():
    found = set(role_packages.packages())
    # a literal name, a literal list, a templated list with optional parts,
    # and a role variable in a templated name (base_packages)
    assert {"ufw", "nginx", "python3-cryptography", "redis-server", "haproxy", "certbot",
            "fail2ban", "needrestart", "unattended-upgrades", "python3-systemd", "nftables",
            "python3-venv", "curl", "python3-apt"} <= found


def test_settings_are_not_packages():
    found = set(role_packages.packages())
    # os_hardening_fail2ban_backend: systemd, ..._banaction: nftables-multiport
    assert not {"systemd", "nftables-multiport"} & found
    # the security-update task only upgrades what is installed
    assert all("{" not in name and " " not in name for name in found)


def test_a_new_apt_task_is_picked_up(tmp_path, monkeypatch):
    (tmp_path / "demo/tasks").mkdir(parents=True)
    (tmp_path / "demo/defaults").mkdir()
    (tmp_path / "demo/defaults/main.yml").write_text("demo_packages: [jq]\ndemo_mode: socat\n")
    (tmp_path / "demo/tasks/main.yml").write_text(
        "- name: Install\n"
        "  ansible.builtin.apt:\n"
        "    name: \"{{ demo_packages + (['zstd'] if demo_mode == 'x' else []) }}\"\n"
        "- block:\n"
        "    - name: Remove\n"
        "      ansible.builtin.apt: {name: telnet, state: absent}\n"
        "    - name: Upgrade\n"
        "      ansible.builtin.apt: {name: openssl, state: latest, only_upgrade: true}\n")
    monkeypatch.setattr(role_packages, "ROLES", tmp_path)
    assert role_packages.packages() == ["jq", "zstd"]
