#!/usr/bin/env bash
# The prepared test image: the bare image of build-image.sh plus every Debian
# package the roles install, installed but with none of their services
# enabled (the roles enable and start what they use, so a host runs only what
# its roles started, as on the bare image).
#
#   molecule/resources/build-image.sh --prepared [DISTRO]   (or this script)
#
# The package list is read from the roles by role_packages.py, never written
# a second time. The molecule scenarios that need not prove the path from a
# bare VM start from this image and skip the apt downloads and installs of
# their first converge; `default` and the demo stay on the bare image, which
# proves the roles install everything. The image is tagged with a hash of
# this script, role_packages.py, the bare image's id and the package list: a
# role that installs a new package gets a new image on the next build. It
# needs Docker only (no root, no debootstrap). Prints the image name on
# stdout. IMAGE_REBUILD=1 rebuilds both images.
set -euo pipefail

distro="${1:-${MOLECULE_DISTRO:-debian12}}"
here="$(cd "$(dirname "$0")" && pwd)"
log() { printf '==> %s\n' "$*" >&2; }

base="$("$here/build-image.sh" "$distro")"
python="$here/../../.venv/bin/python"
[ -x "$python" ] || python=python3
packages="$("$python" "$here/role_packages.py")"
tag="$({ cat "$0" "$here/role_packages.py"; docker image inspect -f '{{.Id}}' "$base"; echo "$packages"; } \
  | sha256sum | cut -c1-12)"
image="flask-stack/${distro}-prepared:${tag}"

if [ "${IMAGE_REBUILD:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
  log "image $image is up to date"
else
  log "installing the roles' packages into $image: $(echo $packages)"
  builder="flask-stack-image-build-$$"
  trap 'docker rm -f "$builder" >/dev/null 2>&1 || true' EXIT
  # Without recommends, as playbooks/base.yml installs them
  # (install_recommends: false): a host from this image has the packages a
  # host converged from the bare image has, no more.
  # policy-rc.d: no service starts during the build. The links the packages'
  # postinst scripts add under /etc/systemd/system (enabled services, timers,
  # sockets) are removed again, so nothing starts at boot that a role did not
  # ask for. The apt lists stay (a recent cache for the roles' first apt
  # task); the downloaded .debs go.
  # shellcheck disable=SC2086  # one argument per package
  docker run --name "$builder" "$base" /bin/sh -ec '
    export DEBIAN_FRONTEND=noninteractive
    printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    find /etc/systemd/system -type l | sort >/tmp/links.before
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    find /etc/systemd/system -type l | sort | comm -13 /tmp/links.before - | xargs -r rm -f
    rm -f /usr/sbin/policy-rc.d /tmp/links.before /etc/ssh/ssh_host_*
    : >/etc/machine-id
    apt-get clean
  ' sh $packages >&2 || { echo "ERROR: installing the roles' packages into $image failed" >&2; exit 1; }
  docker commit -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' "$builder" "$image" >/dev/null
fi
docker tag "$image" "flask-stack/${distro}-prepared:latest"
echo "flask-stack/${distro}-prepared:latest"
