#!/usr/bin/env bash
# The test command (README "Set up"): a formatting check, the whole test suite, then a build of
# the benchmarks so they cannot rot. Tests that need ../shared or the
# fetched model skip with a message when those are absent.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo test --all-features --tests --lib --bins
cargo bench --no-run
