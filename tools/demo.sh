#!/usr/bin/env bash
# The README's main job: fetch all-MiniLM-L6-v2 if it is missing, build
# berth, fine-tune it on the embedded intent dataset (demo/, 1,200 training
# and 200 dev sentences), print the dev report, then predict a few new
# sentences with the fine-tuned model. About a minute of training on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/demo-intents}"
tools/fetch-model.sh
cargo build --release --bin berth
target/release/berth train \
  --model models/all-MiniLM-L6-v2 \
  --train demo/intents-train.tsv --eval demo/intents-dev.tsv \
  --output "$out" --overwrite \
  --epochs 2 --batch-size 16 --lr 1e-4 --warmup-ratio 0.1 --weight-decay 0.01 --seed 42
echo
echo "predictions of the fine-tuned model for demo/sentences.txt:"
target/release/berth predict --model "$out" --input demo/sentences.txt
echo
echo "the fine-tuned model is in $out (Hugging Face layout: config.json, model.safetensors, tokenizer files)"
