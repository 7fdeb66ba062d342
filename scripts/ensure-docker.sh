#!/usr/bin/env bash
# Make sure a Docker engine answers. If none does and we are root on
# Debian/Ubuntu, install docker.io from apt and start dockerd in the
# background (such hosts often have no systemd). Otherwise explain what to do.
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
  exit 0
fi

. /etc/os-release 2>/dev/null || true
family="${ID:-unknown} ${ID_LIKE:-}"

if [ "$(id -u)" -ne 0 ] || ! printf '%s' "$family" | grep -Eqw 'debian|ubuntu'; then
  cat >&2 <<MSG
ERROR: no Docker engine answers ('docker info' failed).
This project needs one for 'make demo' and 'make test'.
  - On Debian/Ubuntu, run the make target as root and it installs docker.io itself,
    or install it yourself: sudo apt-get install docker.io && sudo systemctl start docker
  - Elsewhere: install Docker Engine (https://docs.docker.com/engine/install/)
    and make sure your user can run 'docker info'.
MSG
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io from apt"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi

# A systemd host starts the packaged unit; a host without systemd gets a
# background dockerd whose log stays next to the project state.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  log "starting docker.service"
  systemctl start docker
else
  log "starting dockerd in the background (log: /var/log/dockerd.log)"
  nohup dockerd >/var/log/dockerd.log 2>&1 &
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "Docker engine is up"
    exit 0
  fi
  sleep 1
done
echo "ERROR: dockerd did not answer within 60 s; see /var/log/dockerd.log" >&2
exit 1
