#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the integration tests, which
# start their own in-memory servers (osmem-server, installed pinned into
# .venv/ by scripts/install-osmem.sh). Set ESARK_TEST_URL to run the
# integration tests against a real cluster instead (see docker/README.md).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
ESARK_OSMEM_BIN="$(./scripts/install-osmem.sh)"
export ESARK_OSMEM_BIN
cargo test --locked "$@"
