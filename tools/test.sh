#!/usr/bin/env bash
# The test command (README "Set up"): a formatting check, the whole test suite, the
# doctests (the library API's examples), then a build of the examples and the
# benchmarks so they cannot rot. A test whose prerequisite (../shared, the
# fetched model, the Python environment of tools/py-env.sh) is absent skips,
# and the run ends with one line counting the skipped tests and naming what
# was missing; with CI=true or BERTH_REQUIRE_ALL=1 (.ci/run) such a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
BERTH_SKIP_LOG="$(mktemp "${TMPDIR:-/tmp}/berth-skips.XXXXXX")"
export BERTH_SKIP_LOG
trap 'tools/skip-summary.sh "$BERTH_SKIP_LOG"; rm -f "$BERTH_SKIP_LOG"' EXIT
cargo fmt --check
cargo test --all-features --tests --lib --bins
cargo test --all-features --doc
# The examples and benchmarks only need to compile here (benchmarks are run
# with `cargo bench`): built with the tests' features and profile settings,
# they reuse the library the tests built instead of compiling it twice more.
cargo build --all-features --examples --benches
