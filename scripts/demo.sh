#!/usr/bin/env bash
# The embedded "bare VM": one systemd container with sshd, reached by Ansible
# over SSH on 127.0.0.1 exactly like a cloud VM, then converged by site.yml.
#   scripts/demo.sh up     (make demo)    build/start the VM, run site.yml, print the URL
#   scripts/demo.sh down   (make down)    remove the VM
# Environment: MOLECULE_DISTRO (image, default debian12), DEMO_SSH_PORT
# (default 2222), DEMO_HTTP_PORT (default 8080). The inventory
# (inventories/local) must agree with the two ports.
set -euo pipefail
cd "$(dirname "$0")/.."

name=flask-stack-demo
distro="${MOLECULE_DISTRO:-debian12}"
ssh_port="${DEMO_SSH_PORT:-2222}"
http_port="${DEMO_HTTP_PORT:-8080}"
state=.state/demo
log() { printf '==> %s\n' "$*" >&2; }

down() {
  docker rm -f "$name" >/dev/null 2>&1 && log "removed the demo VM ($name)" || log "no demo VM to remove"
  rm -f .cache/facts/demo
}

up() {
  image="$(molecule/resources/build-image.sh "$distro")"
  mkdir -p "$state" && chmod 700 "$state"
  [ -f "$state/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "flask-stack-demo" -f "$state/id_ed25519"

  if [ -z "$(docker ps -q --filter "name=^${name}$")" ]; then
    docker rm -f "$name" >/dev/null 2>&1 || true
    rm -f .cache/facts/demo
    log "starting the demo VM ($image): ssh on 127.0.0.1:$ssh_port, http on 127.0.0.1:$http_port"
    docker run -d --name "$name" --hostname demo \
      --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add NET_RAW \
      --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
      --tmpfs /run --tmpfs /run/lock \
      --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
      -p "127.0.0.1:${ssh_port}:22" -p "127.0.0.1:${http_port}:80" \
      "$image" >/dev/null
    # What cloud-init does on a real VM: an admin user with the operator's key.
    for _ in $(seq 1 30); do
      docker exec "$name" systemctl is-system-running 2>/dev/null | grep -Eq 'running|degraded' && break
      sleep 1
    done
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

  url="http://hello.localhost:${http_port}/"
  echo "URL: $url"
  curl -sS --fail --max-time 10 --resolve "hello.localhost:${http_port}:127.0.0.1" "${url}healthz"
  echo
}

case "${1:-up}" in
  up) shift || true; up "$@" ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
