#!/bin/sh
# Regenerate requirements.txt, the hash-locked closure of requirements.in,
# from PyPI only, for the deployment target: Debian 12, CPython 3.11, x86_64.
#
#   ./lock-requirements.sh        (from anywhere; needs python3 and network)
#
# uv runs from a throwaway venv under /tmp. Local pip/uv configuration
# (pip.conf find-links or extra indexes, uv.toml, UV_*/PIP_* variables) is
# ignored, so nothing but https://pypi.org/simple can end up in the lock.
set -eu

UV_VERSION=0.13.8
here=$(cd "$(dirname "$0")" && pwd)
venv=$(mktemp -d /tmp/hello-lock.XXXXXX)
trap 'rm -rf "$venv"' EXIT INT TERM

"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/pip" install --isolated --quiet --disable-pip-version-check \
    --index-url https://pypi.org/simple "uv==$UV_VERSION"

for var in $(env | sed -n 's/^\(UV_[A-Z_]*\)=.*/\1/p'); do unset "$var"; done

cd "$here"
"$venv/bin/uv" --quiet pip compile requirements.in \
    --no-config --no-cache \
    --index-url https://pypi.org/simple \
    --generate-hashes \
    --python-version 3.11 \
    --python-platform x86_64-unknown-linux-gnu \
    --custom-compile-command ./lock-requirements.sh \
    --output-file "$venv/requirements.txt"
{
    cat <<'HEADER'
# Hash-locked runtime requirements of the hello sample app. DO NOT EDIT.
# Install: pip install --require-hashes -r requirements.txt
# Regenerate: edit requirements.in, then run ./lock-requirements.sh
# (uv pip compile --generate-hashes against https://pypi.org/simple only,
# for Python 3.11 on x86_64 Linux).
HEADER
    cat "$venv/requirements.txt"
} > requirements.txt.new
mv requirements.txt.new requirements.txt
echo "wrote $here/requirements.txt"
