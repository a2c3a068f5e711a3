#!/usr/bin/env bash
# The CPU comparison behind docs/perf.md: berth and PyTorch + transformers on
# the same shapes, one after the other in one session, each case in its own
# process so its peak memory is its own.
#
#   tools/bench-cpu.sh [ITERS]        (PYTHON=path/to/python with torch and transformers)
set -euo pipefail
cd "$(dirname "$0")/.."
iters="${1:-10}"
python_bin="${PYTHON:-python3}"
cargo build --release --bin berth >/dev/null
minilm=models/all-MiniLM-L6-v2
echo "# berth $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for model in minilm bert-base; do
  if [[ $model == minilm ]]; then source_args=(--model "$minilm"); else source_args=(--config bert-base); fi
  for spec in "fwd 1" "fwd 32" "train 32"; do
    read -r kind b <<<"$spec"
    n=$iters; [[ $b == 32 ]] && n=$(( iters < 5 ? iters : 5 ))
    [[ $model == bert-base && $kind == train ]] && n=3
    target/release/berth bench "${source_args[@]}" --case "$kind" --batch-size "$b" --iters "$n" --warmup 1
  done
done
echo
echo "# PyTorch"
"$python_bin" tools/bench-vs-torch.py --model "$minilm" --cases fwd-b1,fwd-b32,fwdbwd-b32,train-b32 --iters "$iters" --warmup 1 --attn sdpa
