#!/usr/bin/env bash
# The GPU check: everything berth verifies and measures on a real GPU, as
# one prepared script for the lent GPU machine (which has no Rust toolchain
# and no network).
#
#   tools/gpu-check.sh bundle    # here: build release binaries and put them,
#                                # with the PTX and the fixtures, in gpu-bundle/,
#                                # then pack that into gpu-bundle.tar.xz
#   tools/gpu-check.sh run       # there, from the repo root, gpu-bundle.tar.xz
#                                # carried (unpacked first; gpu-bundle/ also works)
#
# The device call carries 64 MiB in all, and the stripped berth, the test
# executable and the fixtures come close to it, so the bundle travels packed
# (tools/gpu-bundle.py: xz, each distinct file once) and the bundle step
# prints the archive's size and refuses one over 56 MiB.
#
# The run step prints nvidia-smi, `berth check --device cuda` (every kernel
# against the CPU reference), the device integration tests (whole training
# steps against the CPU, in f32 and bf16, for every fixture), the kernel
# timing table against measured copy and GEMM ceilings, berth's bert-base
# train step (B=64, T=128, fp32 and bf16: tokens/s and MFU) and B=1 latency,
# then PyTorch's figures for the same shapes on the same card, so the ratio is
# valid. A short summary table comes last.
# Every step runs under `timeout`, failures do not stop the script, and the whole run stays under 8 minutes. Outputs also go to $OUT
# when that is set (the device tool fetches them).
set -u
cd "$(dirname "$0")/.." || exit 1
BUNDLE=gpu-bundle
ARCHIVE=gpu-bundle.tar.xz
LIMIT_MIB=56

bundle() {
    set -e
    export KERNELS_REQUIRE_NVCC=1
    cargo build --release --bin berth
    rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/ptx" "$BUNDLE/fixtures"
    local target=${CARGO_TARGET_DIR:-target}
    cp "$target/release/berth" "$BUNDLE/"
    strip "$BUNDLE/berth"
    # The integration-test executable, by the path cargo reports.
    cargo test --release --no-run --test main --message-format=json 2>/dev/null |
        python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "main":
        print(m["executable"])' | tail -n 1 | xargs -I{} cp {} "$BUNDLE/berth-tests"
    strip "$BUNDLE/berth-tests"
    # The PTX of the newest release build of the kernels.
    out=$(ls -td "$target"/release/build/berth-*/out | head -n 1)
    cp "$out"/*.ptx "$BUNDLE/ptx/"
    # Fixtures for the device training-step tests (shared/ does not travel).
    for f in a-seqcls a-tokcls a-pair a-multilabel a-regression; do
        [ -d ../shared/fixtures/$f ] && cp -r ../shared/fixtures/$f "$BUNDLE/fixtures/"
    done
    chmod -R u+w "$BUNDLE" # ../shared is read-only; the next bundle must be able to remove this
    git rev-parse --short HEAD > "$BUNDLE/COMMIT"
    du -sh "$BUNDLE"
    python3 tools/gpu-bundle.py pack "$BUNDLE" "$ARCHIVE" "$LIMIT_MIB"
    echo "carry $ARCHIVE in the device call"
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
    if [[ -f $ARCHIVE ]]; then
        python3 tools/gpu-bundle.py unpack "$ARCHIVE" "$BUNDLE" || {
            echo "gpu-check: cannot unpack $ARCHIVE" >&2
            exit 1
        }
    fi
    local out=${OUT:-/tmp/gpu-check}
    mkdir -p "$out"
    LOG="$out/gpu-check.log"
    : > "$LOG"
    local berth="$BUNDLE/berth"
    echo "gpu-check: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), bundle of commit $(cat $BUNDLE/COMMIT 2>/dev/null || echo unknown)"
    step "nvidia-smi" 15 nvidia-smi
    step "berth check --device cuda" 90 "$berth" check --device cuda --json "$out/check.json"
    step "device tests" 60 env BERTH_SHARED="$BUNDLE" BERTH_TEST_DEVICE=cuda "$BUNDLE/berth-tests" device:: --skip berth_train
    step "kernel timings" 45 "$berth" bench --device cuda --case kernels
    local bert="--config bert-base --seq-len 128"
    step "train step fp32 B=64" 45 "$berth" bench --device cuda --precision fp32 --case train $bert --batch-size 64 --warmup 3 --iters 10
    step "train step bf16 B=64" 45 "$berth" bench --device cuda --precision bf16 --case train $bert --batch-size 64 --warmup 3 --iters 10
    step "kernel profile bf16 B=64" 30 "$berth" bench --device cuda --precision bf16 --case train $bert --batch-size 64 --warmup 1 --iters 3 --profile --profile-out "$out/profile-bf16.json"
    step "latency fp32 B=1" 20 "$berth" bench --device cuda --precision fp32 --case fwd $bert --batch-size 1 --warmup 5 --iters 50
    step "latency bf16 B=1" 20 "$berth" bench --device cuda --precision bf16 --case fwd $bert --batch-size 1 --warmup 5 --iters 50
    step "pytorch, same shapes" 100 python3 tools/torch-gpu-baseline.py --iters 20
    echo
    echo "=== summary ($((SECONDS - START)) s)"
    printf '%s\n' "${SUMMARY[@]}" | tee "$out/summary.txt"
    grep -E "tokens/s|^\| " "$LOG" | tee -a "$out/summary.txt" || true
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
