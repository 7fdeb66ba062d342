#!/usr/bin/env bash
# Create ./.venv with the pinned control-node tools (and the sample app's
# locked requirements, for its unit tests). Installs python3-venv from apt
# when the interpreter lacks venv and we are root on Debian/Ubuntu.
set -euo pipefail
python="${1:-python3}"
venv="${2:-.venv}"
cd "$(dirname "$0")/.."

if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c 'import ensurepip' 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "ERROR: $python cannot create virtual environments; install python3-venv (sudo apt-get install python3-venv)" >&2
    exit 1
  fi
fi
echo "==> installing the pinned tools into $venv (first run only)" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -r requirements-dev.txt
"$venv/bin/pip" install -q --require-hashes -r app/requirements.txt
