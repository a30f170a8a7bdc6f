#!/usr/bin/env bash
# Runs esark's end-to-end benchmark on 127.0.0.1 and writes
# benches/RESULTS.md: dump and restore against elasticdump and raw
# baselines, a null bulk sink, memory flatness (see benches/README.md).
#
#   ./benches/run.sh            # 100,000 documents, 7 runs per dump row, 3 per restore row
#   ./benches/run.sh --quick    # 3,000 documents: a smoke run of every row
#
# Environment: ESARK_BENCH_DOCS (default 100000, --quick 3000),
# ESARK_BENCH_REPEAT (default 3: restore rows), ESARK_BENCH_DUMP_REPEAT
# (default 7: the dump rows take a second each, and some runs meet a burst
# of over a second of server CPU, whichever tool runs), ESARK_BENCH_SEED (default 42),
# ESARK_BENCH_RESULTS (default benches/RESULTS.md).
#
# Installs everything it needs, pinned: osmem-server through
# scripts/install-osmem.sh, elasticdump with npm into benches/work/node
# (git-ignored). Scratch data and per-step logs go to benches/work/run.
set -euo pipefail

ELASTICDUMP_VERSION="6.125.1"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

quick=()
docs="${ESARK_BENCH_DOCS:-100000}"
for arg in "$@"; do
  case "$arg" in
    --quick) quick=(--quick); docs="${ESARK_BENCH_DOCS:-3000}" ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done
repeat="${ESARK_BENCH_REPEAT:-3}"
dump_repeat="${ESARK_BENCH_DUMP_REPEAT:-7}"
seed="${ESARK_BENCH_SEED:-42}"
results="${ESARK_BENCH_RESULTS:-$root/benches/RESULTS.md}"
work="$root/benches/work"
mkdir -p "$work"

# The harness kills what it starts, and stops (killing the step under way)
# on SIGINT/SIGTERM or when cargo, its parent, goes away; its servers exit
# with it. This trap makes sure it is stopped when this script is.
child=""
cleanup() {
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { echo "[$(date +%H:%M:%S)] $*" >&2; }

step "osmem-server (pinned)"
osmem="$(timeout 600 ./scripts/install-osmem.sh)"

node_prefix="$work/node"
installed="$(node -p "require('$node_prefix/node_modules/elasticdump/package.json').version" 2>/dev/null || true)"
if [ "$installed" != "$ELASTICDUMP_VERSION" ]; then
  step "elasticdump@$ELASTICDUMP_VERSION (npm)"
  mkdir -p "$node_prefix"
  timeout 900 npm install --prefix "$node_prefix" --no-audit --no-fund --loglevel=error \
    "elasticdump@$ELASTICDUMP_VERSION" >&2
fi

step "building esark (release) and the harness"
timeout 1800 cargo build --release --locked --bins >&2
timeout 1800 cargo bench --locked --bench compare --no-run >&2
rm -rf "$work/run"

step "running: $docs documents, $dump_repeat run(s) per dump row, $repeat per restore row"
ESARK_BENCH_REPO="$root" cargo bench --locked --bench compare -- run \
  --docs "$docs" --repeat "$repeat" --dump-repeat "$dump_repeat" --seed "$seed" \
  --work "$work" --results "$results" \
  --esark "$root/target/release/esark" --esark-seed "$root/target/release/esark-seed" \
  --osmem "$osmem" --elasticdump "$node_prefix" "${quick[@]}" &
child=$!
wait "$child"
