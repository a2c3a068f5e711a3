#!/usr/bin/env bash
# The GPU check: everything berth verifies and measures on a real GPU, as
# one prepared script for the lent GPU machine (which has no Rust toolchain
# and no network).
#
#   tools/gpu-check.sh bundle    # here: build release binaries and put them,
#                                # with the PTX and the fixtures, in gpu-bundle/
#   tools/gpu-check.sh run       # there, from the repo root, gpu-bundle/ carried
#
# The run step prints nvidia-smi, `berth check --device cuda` (every kernel
# against the CPU reference), a kernel timing table against measured
# ceilings, train-step throughput and MFU for a randomly initialised
# bert-base (T=128, B=64) in fp32 and bf16, inference latency at B=1, T=128,
# and the same shapes through PyTorch in the same run. A short summary table
# comes last. Every step runs under `timeout`, failures do not stop the
# script, and the whole run stays under 8 minutes. Outputs also go to $OUT
# when that is set (the device tool fetches them).
set -u
cd "$(dirname "$0")/.." || exit 1
BUNDLE=gpu-bundle

bundle() {
    set -e
    export KERNELS_REQUIRE_NVCC=1
    cargo build --release --bin berth
    rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/ptx" "$BUNDLE/fixtures"
    cp target/release/berth "$BUNDLE/"
    # The integration-test and bench executables, by the paths cargo reports.
    cargo test --release --no-run --test main --message-format=json 2>/dev/null |
        python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "main":
        print(m["executable"])' | tail -n 1 | xargs -I{} cp {} "$BUNDLE/berth-tests"
    cargo bench --no-run --message-format=json 2>/dev/null |
        python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        print(m["executable"])' | while read -r exe; do cp "$exe" "$BUNDLE/bench-$(basename "$exe" | sed 's/-[0-9a-f]*$//')"; done
    # The PTX of the newest release build of the kernels.
    out=$(ls -td target/release/build/berth-*/out | head -n 1)
    cp "$out"/*.ptx "$BUNDLE/ptx/"
    # Fixtures for the device training-step tests (shared/ does not travel).
    for f in a-seqcls a-tokcls a-pair a-multilabel a-regression; do
        [ -d ../shared/fixtures/$f ] && cp -r ../shared/fixtures/$f "$BUNDLE/fixtures/"
    done
    du -sh "$BUNDLE"
    git rev-parse --short HEAD > "$BUNDLE/COMMIT"
}

START=$SECONDS
BUDGET=460   # seconds for all steps; the summary and copies need the rest of the 8 minutes
SUMMARY=()

# step NAME LIMIT CMD...: run CMD for at most LIMIT seconds (less when the
# budget is nearly spent), print its output and how it ended.
step() {
    local name=$1 limit=$2 rc status
    shift 2
    local left=$((BUDGET - (SECONDS - START) - 2))
    if ((left < 5)); then
        echo "=== $name: skipped, time budget spent"
        SUMMARY+=("$(printf '%-34s %s' "$name" "skipped (time budget)")")
        return 0
    fi
    ((limit > left)) && limit=$left
    echo
    echo "=== $name (limit ${limit}s)"
    local t0=$SECONDS
    timeout -k 2 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    case $rc in
        0) status="ok" ;;
        124 | 137) status="timed out after ${limit}s" ;;
        127) status="command not found" ;;
        *) status="failed (rc $rc)" ;;
    esac
    echo "--- $name: $status in $((SECONDS - t0)) s"
    SUMMARY+=("$(printf '%-34s %s' "$name" "$status, $((SECONDS - t0)) s")")
}

run() {
    local out=${OUT:-/tmp/gpu-check}
    mkdir -p "$out"
    LOG="$out/gpu-check.log"
    : > "$LOG"
    local berth="$BUNDLE/berth"
    echo "gpu-check: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), bundle of commit $(cat $BUNDLE/COMMIT 2>/dev/null || echo unknown)"
    step "nvidia-smi" 15 nvidia-smi
    step "berth check --device cuda" 150 "$berth" check --device cuda --json "$out/check.json"
    step "kernel timings" 60 "$berth" bench --case kernels --device cuda --json-out "$out/kernels.json"
    for precision in fp32 bf16; do
        step "train step bert-base $precision" 60 "$berth" bench --case step --device cuda --precision "$precision" \
            --config bert-base --batch-size 64 --seq-len 128 --iters 10 --warmup 3
    done
    step "infer bert-base B=1 fp32" 40 "$berth" bench --case fwd --device cuda --precision fp32 --config bert-base --batch-size 1 --seq-len 128 --iters 50 --warmup 5
    step "infer bert-base B=1 bf16" 40 "$berth" bench --case fwd --device cuda --precision bf16 --config bert-base --batch-size 1 --seq-len 128 --iters 50 --warmup 5
    step "device tests" 90 env BERTH_SHARED="$BUNDLE" BERTH_TEST_DEVICE=cuda "$BUNDLE/berth-tests" device::
    step "pytorch, same shapes" 120 python3 tools/torch-gpu-baseline.py --iters 20
    echo
    echo "=== summary ($((SECONDS - START)) s)"
    printf '%s\n' "${SUMMARY[@]}" | tee "$out/summary.txt"
    grep -E "^(gpu/|cuda/)" "$LOG" | tee -a "$out/summary.txt" || true
    grep -E "FAIL|rows, [0-9]+ failed" "$LOG" | head -n 40 | tee -a "$out/summary.txt" || true
}

case "${1:-run}" in
    bundle) bundle ;;
    run) run ;;
    *)
        echo "usage: tools/gpu-check.sh bundle|run" >&2
        exit 2
        ;;
esac
