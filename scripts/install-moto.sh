#!/usr/bin/env bash
# Installs the pinned moto server (an S3 implementation from PyPI, the test
# server of archives on object storage: tests/util/moto.rs) into the
# project-local virtual environment .venv/. Idempotent; prints the path of
# .venv/bin/moto_server.
set -euo pipefail
MOTO_VERSION="5.2.5"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
bin="$venv/bin/moto_server"
if [ -x "$bin" ] && "$venv/bin/python" -m pip show moto 2>/dev/null | grep -q "^Version: $MOTO_VERSION$"; then
  echo "$bin"
  exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
echo "$bin"
