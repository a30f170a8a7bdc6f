#!/usr/bin/env bash
# Installs the pinned osmem-server (an in-memory OpenSearch-compatible test
# server from PyPI) into the project-local virtual environment .venv/ and
# links its binary to .venv/bin/osmem-server. Idempotent; prints the path.
set -euo pipefail
OSMEM_VERSION="0.1.6"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
bin="$venv/bin/osmem-server"
if [ -x "$bin" ] && "$venv/bin/python" -m pip show osmem-server 2>/dev/null | grep -q "^Version: $OSMEM_VERSION$"; then
  echo "$bin"
  exit 0
fi
python3 -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "osmem-server==$OSMEM_VERSION" >&2
bundled="$("$venv/bin/python" -c 'import osmem_server; print(osmem_server.resolve_binary())')"
ln -sf "$bundled" "$bin"
echo "$bin"
