#!/usr/bin/env bash
# The test command (README "Set up"): a formatting check, the whole test suite, the
# doctests (the library API's examples), then a build of the examples and the
# benchmarks so they cannot rot. Tests that need ../shared or the
# fetched model skip with a message when those are absent.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo test --all-features --tests --lib --bins
cargo test --all-features --doc
cargo build --examples
cargo bench --no-run
