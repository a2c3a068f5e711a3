#!/usr/bin/env bash
# The README's main job, for now: fetch all-MiniLM-L6-v2 if it is missing,
# build berth, and predict on a few example sentences. The checkpoint is a
# bare encoder, so berth initialises a seeded classification head and says
# so: the labels are not meaningful until the model is fine-tuned.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/fetch-model.sh
cargo build --release --bin berth
target/release/berth predict --model models/all-MiniLM-L6-v2 --input demo/sentences.txt
