#!/usr/bin/env bash
# Build a systemd-ready "bare VM" image with debootstrap and import it into
# the local Docker engine. No registry is involved, so this works offline
# from a Debian/Ubuntu package mirror alone.
#
#   molecule/resources/build-image.sh [DISTRO]      DISTRO: debian12 (default),
#                                                   ubuntu2204, ubuntu2404
#   molecule/resources/build-image.sh --prepared [DISTRO]
#                                   the same image with the roles' packages
#                                   installed (prepared-image.sh)
# Environment:
#   MOLECULE_DISTRO   default for DISTRO
#   DEBIAN_MIRROR     default http://deb.debian.org/debian
#   UBUNTU_MIRROR     default http://archive.ubuntu.com/ubuntu
#   IMAGE_REBUILD=1   rebuild even when the image exists
#
# The image is what a fresh cloud VM looks like: systemd as PID 1, sshd,
# python3, sudo, nothing else. It is tagged with a hash of this script, so a
# second build is instant and an edited script builds a new image.
# Prints the image name on stdout.
#
# With --prepared it builds (or finds) this image and then the prepared one on
# top of it: see prepared-image.sh.
set -euo pipefail

if [ "${1:-}" = --prepared ]; then
  shift
  exec "$(dirname "$0")/prepared-image.sh" "$@"
fi
distro="${1:-${MOLECULE_DISTRO:-debian12}}"
here="$(cd "$(dirname "$0")" && pwd)"
log() { printf '==> %s\n' "$*" >&2; }

case "$distro" in
  debian12)   suite=bookworm; mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"; components=main ;;
  ubuntu2204) suite=jammy;    mirror="${UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}"; components=main,universe ;;
  ubuntu2404) suite=noble;    mirror="${UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}"; components=main,universe ;;
  *) echo "ERROR: unknown distro '$distro' (expected debian12, ubuntu2204 or ubuntu2404)" >&2; exit 2 ;;
esac

packages=systemd,systemd-sysv,dbus,python3,sudo,ca-certificates,openssh-server,iproute2,procps,apt-utils,gnupg
tag="$(cat "$0" "$here/ssh-host-keys.service" | sha256sum | cut -c1-12)"
image="flask-stack/${distro}:${tag}"

if [ "${IMAGE_REBUILD:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
  log "image $image is up to date"
  docker tag "$image" "flask-stack/${distro}:latest"
  echo "flask-stack/${distro}:latest"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ERROR: building the image needs root (debootstrap). Run: sudo $0 $distro" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap from apt"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
keyring_args=()
if [ "${distro#ubuntu}" != "$distro" ]; then
  if [ ! -f /usr/share/keyrings/ubuntu-archive-keyring.gpg ]; then
    log "installing ubuntu-keyring from apt"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ubuntu-keyring >/dev/null
  fi
  keyring_args=(--keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg)
fi

root="$(mktemp -d /var/tmp/flask-stack-rootfs.XXXXXX)"
trap 'rm -rf "$root"' EXIT
log "debootstrap $suite from $mirror (a minute or two)"
debootstrap --variant=minbase --components="$components" "${keyring_args[@]}" \
  --include="$packages" "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
  tail -20 "$root.log" >&2; echo "ERROR: debootstrap failed (log: $root.log)" >&2; exit 1; }
rm -f "$root.log"

# --- make the tree behave like a VM under Docker --------------------------
# Units that manage hardware or consoles have nothing to do in a container.
for unit in getty@tty1.service console-getty.service systemd-udevd.service \
            systemd-udev-trigger.service systemd-remount-fs.service \
            systemd-firstboot.service sys-kernel-config.mount dev-hugepages.mount; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
# Each container gets its own machine-id and its own SSH host keys at boot.
: >"$root/etc/machine-id"
rm -f "$root"/etc/ssh/ssh_host_*
install -m 0644 "$here/ssh-host-keys.service" "$root/etc/systemd/system/ssh-host-keys.service"
ln -sf /etc/systemd/system/ssh-host-keys.service \
  "$root/etc/systemd/system/multi-user.target.wants/ssh-host-keys.service"
# A cloud image has a populated sources list; debootstrap writes only the suite.
if [ "$distro" = debian12 ]; then
  cat >"$root/etc/apt/sources.list" <<SRC
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
fi
# Trust the same extra CAs as the host (a TLS-inspecting egress proxy, a
# corporate CA), so the container reaches PyPI wherever the host does.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1
fi
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb

log "importing into Docker as $image"
tar -C "$root" -c . | docker import \
  -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' \
  - "$image" >/dev/null
docker tag "$image" "flask-stack/${distro}:latest"
echo "flask-stack/${distro}:latest"
