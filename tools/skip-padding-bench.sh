#!/usr/bin/env bash
# What skipping the padding in CPU training buys (docs/perf.md, issue 17):
# interleaved `berth train` runs of all-MiniLM-L6-v2 with --skip-padding
# true and false on three kinds of real data, each run a fixed number of
# optimizer steps, batch 32, max length 128, dropout on (the model's 0.1):
#   sst2  the first 3,200 SST-2 training sentences (short single texts),
#   rte   the RTE training pairs (long pairs),
#   conll the CoNLL-2003 training sentences (a token task).
# Each run's figure is the throughput of its last log line: real tokens per
# second of the step loop (padding not counted; loading and tokenisation
# excluded). A warm-up run comes first and is discarded. The summary prints
# medians and the ratio true / false.
#
#   tools/skip-padding-bench.sh [ROUNDS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
steps=${2:-40}
data=../shared/data
[ -d "$data/sst2" ] || { echo "skip-padding-bench: ../shared/data is missing" >&2; exit 1; }
tools/fetch-model.sh >/dev/null
berth=${BERTH:-target/release/berth}
if [ -z "${BERTH:-}" ]; then cargo build --release --bin berth >&2; fi
work=runs/skip-padding-bench
rm -rf "$work" && mkdir -p "$work"
head -n 3201 $data/sst2/train.tsv > "$work/sst2.tsv"

one() { # dataset skip-padding
    local name=$1 skip=$2
    local out="$work/out-$name-$skip"
    rm -rf "$out"
    local args
    case $name in
        sst2) args=(--train "$work/sst2.tsv" --text-column sentence --label-column label) ;;
        rte) args=(--train $data/rte/train.tsv --text-column sentence1 --text-pair-column sentence2 --label-column label) ;;
        conll) args=(--task token-classification --format conll --train $data/conll2003/train.txt) ;;
    esac
    "$berth" train --model models/all-MiniLM-L6-v2 "${args[@]}" --output "$out" --max-steps "$steps" --batch-size 32 \
        --lr 5e-5 --max-length 128 --seed 42 --device cpu --logging-steps "$steps" --skip-padding "$skip" > "$out.log" 2>&1
    python3 -c "import json,sys; print(sys.argv[1], json.loads(open(sys.argv[2]).read().splitlines()[-1])['tokens_per_s'])" \
        "$name-$skip" "$out/metrics.jsonl" >> "$work/figures.txt"
}

# A first run on this VM is often slow in every op; this one is not counted.
one sst2 true && rm -f "$work/figures.txt"

for round in $(seq "$rounds"); do
    echo "round $round of $rounds" >&2
    for name in sst2 rte conll; do
        one "$name" true
        one "$name" false
    done
done

python3 - "$work/figures.txt" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, value = line.split()
    runs.setdefault(label, []).append(float(value))
print("| data | skip padding: real tokens/s (runs) | pad: real tokens/s (runs) | ratio of medians |")
print("| --- | --- | --- | ---: |")
for name in ("sst2", "rte", "conll"):
    on, off = runs[f"{name}-true"], runs[f"{name}-false"]
    show = lambda v: f"{statistics.median(v):.0f} ({', '.join(f'{x:.0f}' for x in v)})"
    print(f"| {name} | {show(on)} | {show(off)} | {statistics.median(on) / statistics.median(off):.3f} |")
EOF
