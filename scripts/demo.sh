#!/usr/bin/env bash
# The embedded "bare VM": one systemd container with sshd, reached by Ansible
# over SSH on 127.0.0.1 exactly like a cloud VM, then converged by site.yml.
# Next to it, a second container runs Pebble (Let's Encrypt's ACME test
# server) on a private network where the VM answers to the app's domain, so
# the demo's certificate comes from a real ACME exchange.
#   scripts/demo.sh up     (make demo)    build/start the VM, run site.yml, print the URL
#   scripts/demo.sh down   (make down)    remove the VM
# Environment: MOLECULE_DISTRO (image, default debian12), DEMO_SSH_PORT
# (default 2222), DEMO_HTTP_PORT (default 8080), DEMO_HTTPS_PORT (default
# 8443). The inventory (inventories/local) must agree with the ports.
set -euo pipefail
cd "$(dirname "$0")/.."

name=flask-stack-demo
acme=flask-stack-demo-acme
network=flask-stack-demo
distro="${MOLECULE_DISTRO:-debian12}"
ssh_port="${DEMO_SSH_PORT:-2222}"
http_port="${DEMO_HTTP_PORT:-8080}"
https_port="${DEMO_HTTPS_PORT:-8443}"
# systemd as PID 1 without --privileged: the molecule scenarios' options,
# read from their one definition (.config/molecule/config.yml)
mapfile -t systemd_opts < <(.venv/bin/python molecule/resources/systemd_opts.py)
[ "${#systemd_opts[@]}" -gt 0 ] || { echo "ERROR: no systemd options from molecule/resources/systemd_opts.py" >&2; exit 1; }
state=.state/demo
log() { printf '==> %s\n' "$*" >&2; }

down() {
  docker rm -f "$name" >/dev/null 2>&1 && log "removed the demo VM ($name)" || log "no demo VM to remove"
  docker rm -f "$acme" >/dev/null 2>&1 && log "removed the demo ACME server ($acme)" || true
  docker network rm "$network" >/dev/null 2>&1 || true
  rm -rf .cache/facts/demo "$state/pebble" "$state/pebble-root.pem"
}

# Pebble in its own container, configured by the same playbook as the
# molecule scenario (its listener CA lands in $state/pebble/ca.pem).
start_acme() {
  docker network inspect "$network" >/dev/null 2>&1 || docker network create "$network" >/dev/null
  if [ -z "$(docker ps -q --filter "name=^${acme}$")" ]; then
    docker rm -f "$acme" >/dev/null 2>&1 || true
    rm -rf "$state/pebble"
    log "starting the demo ACME server (Pebble) in $acme"
    docker run -d --name "$acme" --hostname acme "${systemd_opts[@]}" \
      --network "$network" --network-alias acme "$image" >/dev/null
    wait_for_systemd "$acme"
  fi
  printf 'all:\n  hosts:\n    %s:\n      ansible_connection: community.docker.docker\n' "$acme" >"$state/acme-inventory.yml"
  MOLECULE_EPHEMERAL_DIRECTORY="$PWD/$state" .venv/bin/ansible-playbook -i "$state/acme-inventory.yml" \
    -e pebble_hosts=all -e pebble_fresh_pki=false molecule/resources/pebble.yml >"$state/pebble.log" 2>&1 || {
      tail -30 "$state/pebble.log" >&2; echo "ERROR: Pebble setup failed (log: $state/pebble.log)" >&2; exit 1; }
}

wait_for_systemd() {
  for _ in $(seq 1 30); do
    docker exec "$1" systemctl is-system-running 2>/dev/null | grep -Eq 'running|degraded' && return 0
    sleep 1
  done
}

# A random URL-safe secret in file $1 (0600), unless it already holds one.
secret_file() {
  [ -s "$1" ] || (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$1")
  chmod 600 "$1"
}

up() {
  image="$(molecule/resources/build-image.sh "$distro")"
  export PATH="$PWD/.venv/bin:$PATH"
  mkdir -p "$state" && chmod 700 "$state"
  [ -f "$state/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "flask-stack-demo" -f "$state/id_ed25519"
  # the demo's secrets (its "vault"), made once and kept across re-runs:
  # the Redis broker's password and the password of /admin/ (basic auth)
  secret_file "$state/redis_password"
  secret_file "$state/admin-password"

  start_acme
  if [ -z "$(docker ps -q --filter "name=^${name}$")" ]; then
    docker rm -f "$name" >/dev/null 2>&1 || true
    rm -f .cache/facts/demo
    log "starting the demo VM ($image): ssh on 127.0.0.1:$ssh_port, http(s) on 127.0.0.1:$http_port/$https_port"
    # on the ACME network the VM answers to the app's domain, for Pebble's HTTP-01 checks
    docker run -d --name "$name" --hostname demo "${systemd_opts[@]}" \
      --network "$network" --network-alias hello.localhost \
      -p "127.0.0.1:${ssh_port}:22" -p "127.0.0.1:${http_port}:80" -p "127.0.0.1:${https_port}:443" \
      "$image" >/dev/null
    wait_for_systemd "$name"
    # What cloud-init does on a real VM: an admin user with the operator's key.
    docker exec -i "$name" bash -euc '
      useradd -m -s /bin/bash -G sudo admin
      install -d -m 700 -o admin -g admin /home/admin/.ssh
      cat > /home/admin/.ssh/authorized_keys
      chown admin:admin /home/admin/.ssh/authorized_keys; chmod 600 /home/admin/.ssh/authorized_keys
      echo "admin ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/90-cloud-init-users
      chmod 440 /etc/sudoers.d/90-cloud-init-users' <"$state/id_ed25519.pub"
  fi

  log "waiting for sshd on 127.0.0.1:$ssh_port"
  for _ in $(seq 1 30); do
    ssh -q -i "$state/id_ed25519" -p "$ssh_port" -o BatchMode=yes -o ConnectTimeout=2 \
      -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null admin@127.0.0.1 true && break
    sleep 1
  done

  log "ansible-playbook -i inventories/local site.yml"
  start=$(date +%s)
  .venv/bin/ansible-playbook -i inventories/local site.yml "$@"
  log "converged in $(( $(date +%s) - start )) s"

  # Pebble makes a new root at every start: fetch the one that signed this run's certificate
  docker exec "$acme" python3 -c "import ssl, urllib.request; print(urllib.request.urlopen('https://localhost:15000/roots/0', context=ssl._create_unverified_context()).read().decode(), end='')" >"$state/pebble-root.pem"
  url="https://hello.localhost:${https_port}/"
  echo "URL: $url"
  echo "CA: $PWD/$state/pebble-root.pem"
  echo "AUTH: admin:$(cat "$state/admin-password")"
  curl -sS --fail --max-time 10 --cacert "$state/pebble-root.pem" \
    --resolve "hello.localhost:${https_port}:127.0.0.1" "${url}healthz"
  echo
  # a job through nginx, the queue and the worker: POST, then poll until it is done
  jcurl() { curl -sS --fail --max-time 10 --cacert "$state/pebble-root.pem" \
    --resolve "hello.localhost:${https_port}:127.0.0.1" "$@"; }
  job=$(jcurl -H 'Content-Type: application/json' --data '{"a": 2, "b": 3}' "${url}api/jobs/add" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
  for _ in $(seq 1 40); do
    answer=$(jcurl "${url}api/jobs/${job}")
    case "$answer" in *SUCCESS*|*FAILURE*) break ;; esac
    sleep 0.5
  done
  echo "job add(2, 3) $job: $answer"
  curl -sS --fail -o /dev/null --max-time 10 --cacert "$state/pebble-root.pem" -u "admin:$(cat "$state/admin-password")" \
    --resolve "hello.localhost:${https_port}:127.0.0.1" "${url}admin/"
}

case "${1:-up}" in
  up) shift || true; up "$@" ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
