#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the integration tests, which
# start their own in-memory servers (osmem-server, installed pinned into
# .venv/ by scripts/install-osmem.sh; moto_server for archives on S3, by
# scripts/install-moto.sh). Set ESARK_TEST_URL to run the
# integration tests against a real cluster instead, and ESARK_TEST_TARGET_URL
# to a second one for the restore, copy and verify tests (see
# docker/README.md).
#
# A test whose precondition is missing says so (SKIPPED <test>: <reason>)
# and records it in $ESARK_TEST_SKIP_LOG; after cargo test this script
# prints how many were skipped and why. The exit code is cargo test's.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
ESARK_OSMEM_BIN="$(./scripts/install-osmem.sh)"
export ESARK_OSMEM_BIN
ESARK_MOTO_BIN="$(./scripts/install-moto.sh)"
export ESARK_MOTO_BIN
target_dir="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$target_dir"
ESARK_TEST_SKIP_LOG="$target_dir/esark-test-skips.log"
export ESARK_TEST_SKIP_LOG
: >"$ESARK_TEST_SKIP_LOG"
status=0
# The layers of src/lib.rs, and no import cycle among the files of src/.
python3 scripts/import-graph.py src || status=$?
cargo test --locked "$@" || status=$?
skipped="$(grep -c . "$ESARK_TEST_SKIP_LOG" || true)"
echo "$skipped skipped"
if [ "$skipped" -gt 0 ]; then
    sort "$ESARK_TEST_SKIP_LOG" | while IFS=$'\t' read -r test reason; do
        echo "  $test: $reason"
    done
fi
exit "$status"
