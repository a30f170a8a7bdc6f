#!/usr/bin/env bash
# Runs esark's end-to-end benchmark on 127.0.0.1 and writes
# benches/RESULTS.md: dump and restore against elasticdump and raw
# baselines, a null bulk sink, memory flatness, archives on S3 (moto) and
# encrypted with age (see benches/README.md).
#
#   ./benches/run.sh                  # 100,000 documents, 7 runs per dump row, 3 per restore row
#   ./benches/run.sh --quick          # 3,000 documents: a smoke run of every row
#   ./benches/run.sh --rows storage   # only the S3 and encryption rows and the folder
#                                     # rows they are compared with, written to
#                                     # benches/RESULTS-storage.md (RESULTS.md is left alone)
#   ./benches/run.sh --rows indices   # only the many-small-indices rows (1,000 indices x 100
#                                     # documents), to benches/RESULTS-indices.md
#   ./benches/run.sh --rows flatness  # only esark restore -> null sink from generated archives
#                                     # (a tenth of the docs, the docs, 1,000,000), to
#                                     # benches/RESULTS-flatness.md
#
# Environment: ESARK_BENCH_DOCS (default 100000, --quick 3000),
# ESARK_BENCH_REPEAT (default 3: restore rows), ESARK_BENCH_DUMP_REPEAT
# (default 7: the dump rows take a second each, and some runs meet a
# garbage collection of the source osmem, over a second of its CPU,
# whichever tool runs: those are left out of the medians, see
# benches/README.md), ESARK_BENCH_SEED (default 42),
# ESARK_BENCH_ROWS (all, storage, indices or flatness; as --rows, default all),
# ESARK_BENCH_RESULTS (default benches/RESULTS.md, with --rows X only
# benches/RESULTS-X.md), ESARK_BENCH_INDICES and ESARK_BENCH_INDEX_DOCS
# (the many-indices rows: default 1000 and 100, --quick 20 and 20),
# ESARK_BENCH_BIG_DOCS (the generated archive: default 1000000, --quick 30000).
#
# Installs everything it needs, pinned: osmem-server through
# scripts/install-osmem.sh, moto through scripts/install-moto.sh (if that
# fails, the S3 rows are reported as SKIPPED with the reason; only for
# all and storage rows), elasticdump with npm into benches/work/node
# (git-ignored; only for all and indices rows). Scratch data and per-step logs go to benches/work/run.
set -euo pipefail

ELASTICDUMP_VERSION="6.125.1"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

quick=()
docs="${ESARK_BENCH_DOCS:-100000}"
index_count="${ESARK_BENCH_INDICES:-1000}"
index_docs="${ESARK_BENCH_INDEX_DOCS:-100}"
big_docs="${ESARK_BENCH_BIG_DOCS:-1000000}"
rows="${ESARK_BENCH_ROWS:-all}"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=(--quick); docs="${ESARK_BENCH_DOCS:-3000}"
             index_count="${ESARK_BENCH_INDICES:-20}"; index_docs="${ESARK_BENCH_INDEX_DOCS:-20}"
             big_docs="${ESARK_BENCH_BIG_DOCS:-30000}" ;;
    --rows) [ $# -ge 2 ] || { echo "--rows needs a value: all, storage, indices or flatness" >&2; exit 2; }
            rows="$2"; shift ;;
    --rows=*) rows="${1#--rows=}" ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$rows" in
  all) default_results="$root/benches/RESULTS.md" ;;
  storage|indices|flatness) default_results="$root/benches/RESULTS-$rows.md" ;;
  *) echo "--rows $rows: all, storage, indices or flatness" >&2; exit 2 ;;
esac
repeat="${ESARK_BENCH_REPEAT:-3}"
dump_repeat="${ESARK_BENCH_DUMP_REPEAT:-7}"
seed="${ESARK_BENCH_SEED:-42}"
results="${ESARK_BENCH_RESULTS:-$default_results}"
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

# Without moto the harness still runs every other row and reports the S3
# rows as SKIPPED, with the installer's last words as the reason.
moto_log="$work/install-moto.log"
if [ "$rows" != all ] && [ "$rows" != storage ]; then
  moto_args=(--moto-skip "not needed by --rows $rows")
elif step "moto_server (pinned)" &&
     moto="$(timeout 900 ./scripts/install-moto.sh 2>"$moto_log")" && [ -x "$moto" ]; then
  moto_args=(--moto "$moto")
else
  why="scripts/install-moto.sh failed: $(tail -n 1 "$moto_log" 2>/dev/null || true)"
  echo "$why (the S3 rows will be reported as SKIPPED)" >&2
  moto_args=(--moto-skip "$why")
fi

node_prefix="$work/node"
installed="$(node -p "require('$node_prefix/node_modules/elasticdump/package.json').version" 2>/dev/null || true)"
if { [ "$rows" = all ] || [ "$rows" = indices ]; } && [ "$installed" != "$ELASTICDUMP_VERSION" ]; then
  step "elasticdump@$ELASTICDUMP_VERSION (npm)"
  mkdir -p "$node_prefix"
  timeout 900 npm install --prefix "$node_prefix" --no-audit --no-fund --loglevel=error \
    "elasticdump@$ELASTICDUMP_VERSION" >&2
fi

step "building esark (release) and the harness"
timeout 1800 cargo build --release --locked --bins >&2
timeout 1800 cargo bench --locked --bench compare --no-run >&2
rm -rf "$work/run"

case "$rows" in
  indices) step "running: rows indices, $index_count indices x $index_docs documents" ;;
  flatness) step "running: rows flatness, generated archives of $docs/10, $docs and $big_docs documents, $repeat run(s) each" ;;
  *) step "running: rows $rows, $docs documents, $dump_repeat run(s) per dump row, $repeat per restore row" ;;
esac
ESARK_BENCH_REPO="$root" cargo bench --locked --bench compare -- run \
  --docs "$docs" --repeat "$repeat" --dump-repeat "$dump_repeat" --seed "$seed" \
  --work "$work" --results "$results" --rows "$rows" \
  --indices "$index_count" --index-docs "$index_docs" --big-docs "$big_docs" \
  --esark "$root/target/release/esark" --esark-seed "$root/target/release/esark-seed" \
  --osmem "$osmem" --elasticdump "$node_prefix" "${moto_args[@]}" "${quick[@]}" &
child=$!
wait "$child"
