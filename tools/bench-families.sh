#!/usr/bin/env bash
# berth against PyTorch + transformers on the base size of every encoder
# family berth runs, randomly initialised, in one session: for each family and
# case, berth's run and then PyTorch's (each in its own process), so every
# ratio comes from one machine at one time. Prints a markdown table for
# docs/perf.md.
#
#   tools/bench-families.sh [FAMILIES]   (default: bert-base,roberta-base,xlm-roberta-base,distilbert-base,electra-base)
#   PYTHON=path/to/python (torch and transformers; default .py-venv/bin/python)
#   SEQ_LEN=512 (the sequence length T; default 128)
#   CASES="fwd 1 10 fwd-b1" (the cases to run, each "kind batch iters peer-case"; default all three)
#
# Cases, T = SEQ_LEN, all cores: forward B=1 (10 timed runs), forward B=32 (3),
# forward + backward B=32 with dropout on and no optimizer step (2): what
# `berth bench --case train` measures on the CPU, against the peer's
# fwdbwd-b32.
set -euo pipefail
cd "$(dirname "$0")/.."
families="${1:-bert-base,roberta-base,xlm-roberta-base,distilbert-base,electra-base}"
python_bin="${PYTHON:-.py-venv/bin/python}"
seq_len="${SEQ_LEN:-128}"
cases="${CASES:-fwd 1 10 fwd-b1,fwd 32 3 fwd-b32,train 32 2 fwdbwd-b32}"
cargo build --release --bin berth >/dev/null
results="$(mktemp)"
trap 'rm -f "$results" "$results.torch"' EXIT
echo "# berth $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for family in ${families//,/ }; do
  IFS=, read -r -a specs <<<"$cases"
  for spec in "${specs[@]}"; do
    read -r kind batch iters peer_case <<<"$spec"
    echo "  $family $kind B=$batch" >&2
    berth_ms=$(target/release/berth bench --config "$family" --case "$kind" --batch-size "$batch" --seq-len "$seq_len" \
      --iters "$iters" --warmup 1 --json | "$python_bin" -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])')
    "$python_bin" tools/bench-vs-torch.py --configs "$family" --cases "$peer_case" --seq-len "$seq_len" --iters "$iters" --warmup 1 \
      --json "$results.torch" >/dev/null
    torch_ms=$("$python_bin" -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median_ms"])' "$results.torch")
    echo "$family $kind $batch $berth_ms $torch_ms" >>"$results"
  done
done
echo
echo "| model (random weights), T = $seq_len | case | berth fp32 ms | PyTorch fp32 ms | PyTorch / berth |"
echo "| --- | --- | ---: | ---: | ---: |"
while read -r family kind batch berth_ms torch_ms; do
  case_name="forward B=$batch"; [[ $kind == train ]] && case_name="fwd+bwd B=$batch"
  awk -v f="$family" -v c="$case_name" -v b="$berth_ms" -v t="$torch_ms" \
    'BEGIN { printf "| %s | %s | %.1f | %.1f | %.2f× |\n", f, c, b, t, t / b }'
done <"$results"
