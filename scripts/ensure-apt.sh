#!/usr/bin/env bash
# Make sure Debian/Ubuntu packages are installed: scripts/ensure-apt.sh PKG...
# Installed packages are left alone. Missing ones are installed with apt-get
# when we are root on Debian/Ubuntu; otherwise the script names them and
# says how to install them, and fails.
#   scripts/ensure-apt.sh redis-server    (the app's end-to-end job tests)
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }

if [ "$#" -eq 0 ]; then
  echo "usage: $0 PACKAGE..." >&2
  exit 2
fi

installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for pkg in "$@"; do
  case "$pkg" in
    -* | *[!a-z0-9.+-]*) echo "ERROR: '$pkg' is not a Debian package name" >&2; exit 2 ;;
  esac
  if ! command -v dpkg-query >/dev/null 2>&1 || ! installed "$pkg"; then
    missing+=("$pkg")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

. /etc/os-release 2>/dev/null || true
family="${ID:-unknown} ${ID_LIKE:-}"

if [ "$(id -u)" -ne 0 ] || ! printf '%s' "$family" | grep -Eqw 'debian|ubuntu' \
    || ! command -v apt-get >/dev/null 2>&1; then
  cat >&2 <<MSG
ERROR: missing package(s): ${missing[*]}
  - On Debian/Ubuntu, run this as root and it installs them itself,
    or install them yourself: sudo apt-get install ${missing[*]}
  - Elsewhere: install the equivalent packages with your system's package manager.
MSG
  exit 1
fi

log "installing from apt: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
