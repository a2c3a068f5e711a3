#!/usr/bin/env bash
# What training diagnostics cost (docs/perf.md, issue 21): interleaved
# `berth train` runs of all-MiniLM-L6-v2 on the first 3,200 SST-2 training
# rows, batch 32, 60 steps, logging every step (the worst case: every step
# computes the diagnostics) and every 50 (the default), with
# --diagnostics off and on, and, when given, a baseline binary from before
# the diagnostics existed. Each run's figure is the throughput of its last
# log line (real tokens per second of the step loop, model loading and
# tokenisation excluded); the summary prints medians and ratios.
#
#   tools/diagnostics-overhead.sh [BASELINE_BERTH] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=${1:-}
rounds=${2:-5}
data=../shared/data/sst2
[ -d "$data" ] || { echo "diagnostics-overhead: ../shared/data/sst2 is missing" >&2; exit 1; }
tools/fetch-model.sh >/dev/null
cargo build --release --bin berth >&2
work=runs/diagnostics-overhead
rm -rf "$work" && mkdir -p "$work"
head -n 3201 $data/train.tsv > "$work/train.tsv"

one() { # label binary logging-steps [flags...]
    local label=$1 binary=$2 logging=$3
    shift 3
    local out="$work/out-$label"
    rm -rf "$out"
    "$binary" train --model models/all-MiniLM-L6-v2 --train "$work/train.tsv" --text-column sentence --label-column label \
        --output "$out" --max-steps 60 --batch-size 32 --lr 5e-5 --max-length 128 --seed 42 --device cpu \
        --logging-steps "$logging" "$@" > "$out.log" 2>&1
    python3 -c "import json,sys; print(sys.argv[1], json.loads(open(sys.argv[2]).read().splitlines()[-1])['tokens_per_s'])" \
        "$label" "$out/metrics.jsonl" >> "$work/figures.txt"
}

for round in $(seq "$rounds"); do
    echo "round $round of $rounds" >&2
    if [ -n "$baseline" ]; then one baseline-log1 "$baseline" 1; fi
    one off-log1 target/release/berth 1 --diagnostics off
    one on-log1 target/release/berth 1 --diagnostics on
    if [ -n "$baseline" ]; then one baseline-log50 "$baseline" 50; fi
    one off-log50 target/release/berth 50 --diagnostics off
    one on-log50 target/release/berth 50 --diagnostics on
done

python3 - "$work/figures.txt" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, value = line.split()
    runs.setdefault(label, []).append(float(value))
median = {k: statistics.median(v) for k, v in runs.items()}
print("| runs | median tokens/s | each run |")
print("| --- | ---: | --- |")
for k, v in runs.items():
    print(f"| {k} | {median[k]:.0f} | {', '.join(f'{x:.0f}' for x in v)} |")
for logging in ("log1", "log50"):
    off, on = median[f"off-{logging}"], median[f"on-{logging}"]
    print(f"{logging}: step time on/off = {off / on:.3f}", end="")
    if f"baseline-{logging}" in median:
        print(f", off/baseline = {median[f'baseline-{logging}'] / off:.3f}", end="")
    print()
EOF
