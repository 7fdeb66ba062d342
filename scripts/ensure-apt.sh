#!/usr/bin/env bash
# scripts/ensure-apt.sh PACKAGE... - make sure Debian/Ubuntu packages the
# test run needs on this machine (e.g. testssl.sh) are installed. Missing
# ones are installed with apt-get when we are root on Debian/Ubuntu;
# otherwise the script says what to install and fails.
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }

[ "$#" -gt 0 ] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }

missing=()
for pkg in "$@"; do
  if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$pkg")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

. /etc/os-release 2>/dev/null || true
family="${ID:-unknown} ${ID_LIKE:-}"
if [ "$(id -u)" -ne 0 ] || ! printf '%s' "$family" | grep -Eqw 'debian|ubuntu' || ! command -v apt-get >/dev/null 2>&1; then
  cat >&2 <<MSG
ERROR: missing package(s): ${missing[*]}
The test run needs them on this machine.
  - On Debian/Ubuntu, run the make target as root and it installs them, or:
    sudo apt-get install ${missing[*]}
  - Elsewhere: install the equivalent tools and put them on PATH.
MSG
  exit 1
fi

log "installing ${missing[*]} from apt"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
