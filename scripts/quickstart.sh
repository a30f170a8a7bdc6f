#!/usr/bin/env bash
# Runs esark's main job end to end on a fresh machine.
#
#   ./scripts/quickstart.sh                 # embedded local server, sample data
#   ./scripts/quickstart.sh URL             # your cluster instead (nothing is seeded)
#
# Without a URL it installs the pinned in-memory test server (osmem-server,
# into .venv/), starts it on 127.0.0.1, seeds the sample data set, dumps
# every index into ./demo-backup and shows the archive with `esark inspect`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${ESARK_DEMO_OUTPUT:-$root/demo-backup}"

echo "==> building esark (release)" >&2
cargo build --release --locked --bins --quiet

url="${1:-}"
if [ -z "$url" ]; then
  osmem="$(./scripts/install-osmem.sh)"
  log="$(mktemp)"
  "$osmem" -addr 127.0.0.1:0 -no-stdin-watch >"$log" 2>&1 &
  server=$!
  trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT
  for _ in $(seq 1 100); do
    url="$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$log" | head -n1)"
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "error: osmem-server did not start: $(cat "$log")" >&2; exit 1; }
  echo "==> local server at $url; seeding sample data" >&2
  ./target/release/esark-seed --target "$url" --docs "${ESARK_DEMO_DOCS:-5000}"
fi

echo "==> esark dump --source <cluster> --output $out --match '.*' --overwrite" >&2
./target/release/esark dump --source "$url" --output "$out" --match '.*' --overwrite
echo "==> esark inspect $out" >&2
./target/release/esark inspect "$out"
