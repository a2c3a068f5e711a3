#!/usr/bin/env bash
# Two berth binaries side by side on the CPU: for each round, every case on
# OLD, then every case on NEW, so that both see the same drift of a noisy
# machine. Compare the per-round ratios, not single runs.
#
#   tools/ab-bench.sh OLD_BINARY NEW_BINARY [ROUNDS]   # default 3 rounds
#
# Cases (T = 128): all-MiniLM-L6-v2 forward B=1 fp32 and int8 (60
# iterations), bert-base (random weights) forward B=1 fp32 and int8 (10),
# MiniLM forward B=32 int8 and fp32 (5), MiniLM training step B=32 (3).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: tools/ab-bench.sh OLD_BINARY NEW_BINARY [ROUNDS]" >&2; exit 2; }
old=$1 new=$2 rounds=${3:-3}
for b in "$old" "$new"; do [ -x "$b" ] || { echo "ab-bench: $b is not an executable" >&2; exit 2; }; done
tools/fetch-model.sh >/dev/null
minilm=models/all-MiniLM-L6-v2
for round in $(seq 1 "$rounds"); do
    for b in "$old" "$new"; do
        echo "== $b, round $round"
        "$b" bench --model $minilm --case fwd --precision fp32 --batch-size 1 --iters 60 --warmup 5 2>&1 | tail -n 1
        "$b" bench --model $minilm --case fwd --precision int8 --batch-size 1 --iters 60 --warmup 5 2>&1 | tail -n 1
        "$b" bench --config bert-base --case fwd --precision fp32 --batch-size 1 --iters 10 --warmup 2 2>&1 | tail -n 1
        "$b" bench --config bert-base --case fwd --precision int8 --batch-size 1 --iters 10 --warmup 2 2>&1 | tail -n 1
        "$b" bench --model $minilm --case fwd --precision int8 --batch-size 32 --iters 5 --warmup 1 2>&1 | tail -n 1
        "$b" bench --model $minilm --case fwd --precision fp32 --batch-size 32 --iters 5 --warmup 1 2>&1 | tail -n 1
        "$b" bench --model $minilm --case train --batch-size 32 --iters 3 --warmup 1 2>&1 | tail -n 1
    done
done
