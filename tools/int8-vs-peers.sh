#!/usr/bin/env bash
# berth's CPU inference in fp32, BF16 and INT8 against PyTorch (fp32, bf16
# autocast, quantize_dynamic INT8) and ONNX Runtime (fp32, dynamic INT8), in
# one run on this machine: MiniLM-L6 and bert-base forward at B=1 and B=32,
# T=128, random ids, no padding, 2 threads. Each case runs berth and then
# its peers before the next case starts, so that a case's figures are
# minutes apart at most (this kind of VM drifts over minutes). Prints
# one markdown table with every median and berth's ratios to the fastest
# peer, then berth's kernel table (GOP/s against the measured ceilings).
#
#   tools/int8-vs-peers.sh [OUT_DIR]      default runs/int8-vs-peers
#
# Environment: PYTHON (default .py-venv/bin/python) with torch, transformers,
# onnxruntime, onnx and onnxscript; ITERS_B1 (default 20), ITERS_B32 (default 5);
# BERTH (default: target/release/berth, built first).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/int8-vs-peers}
PYTHON=${PYTHON:-.py-venv/bin/python}
ITERS_B1=${ITERS_B1:-20}
ITERS_B32=${ITERS_B32:-5}
# BERTH: a copy of the binary to measure (default: build target/release/berth).
if [ -z "${BERTH:-}" ]; then cargo build --release --bin berth; fi
BERTH=${BERTH:-target/release/berth}
mkdir -p "$OUT"

: > "$OUT/berth.jsonl"
rm -f "$OUT"/peers-*.json
for config in minilm bert-base; do
  model_args=(--config "$config")
  [ "$config" = minilm ] && model_args=(--model models/all-MiniLM-L6-v2)
  for batch in 1 32; do
    iters=$([ "$batch" = 1 ] && echo "$ITERS_B1" || echo "$ITERS_B32")
    for precision in fp32 bf16 int8; do
      echo "berth $config B=$batch $precision ..." >&2
      line=$("$BERTH" bench --device cpu "${model_args[@]}" --case fwd --batch-size "$batch" --seq-len 128 \
        --precision "$precision" --iters "$iters" --warmup 2 --json)
      echo "{\"config\": \"$config\", \"batch\": $batch, \"mode\": \"$precision\", \"berth\": $line}" >> "$OUT/berth.jsonl"
    done
    "$PYTHON" tools/bench-vs-torch.py --configs "$config" --cases "fwd-b$batch" \
      --modes fp32,bf16,int8,ort-fp32,ort-int8 --threads 2 --iters "$ITERS_B32" --warmup 2 \
      --json "$OUT/peers-$config-b$batch.json" > /dev/null
  done
done

"$PYTHON" - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
berth = [json.loads(l) for l in open(f"{out}/berth.jsonl")]
import glob
peers = [r for path in sorted(glob.glob(f"{out}/peers-*.json")) for r in json.load(open(path))["results"]]
print("| model, case | berth fp32 | berth bf16 | berth int8 | PyTorch fp32 | PyTorch bf16 | PyTorch int8 | ORT fp32 | ORT int8 | berth int8 against the fastest peer | berth fp32 against ORT fp32 | berth bf16 against PyTorch bf16 |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for config in ("minilm", "bert-base"):
    for batch in (1, 32):
        b = {r["mode"]: r["berth"]["median_ms"] for r in berth if r["config"] == config and r["batch"] == batch}
        p = {r["mode"]: r["median_ms"] for r in peers if r["config"] == config and r["batch"] == batch}
        fastest = min(p.values())
        cells = [b["fp32"], b["bf16"], b["int8"]] + [p.get(m, float("nan")) for m in ("fp32", "bf16", "int8", "ort-fp32", "ort-int8")]
        print(f"| {config} forward B={batch} | " + " | ".join(f"{c:,.1f}" for c in cells)
              + f" | {fastest / b['int8']:.2f}x | {p['ort-fp32'] / b['fp32']:.2f}x | {p['bf16'] / b['bf16']:.2f}x |")
EOF

for config in minilm bert-base; do
  model_args=(--config "$config")
  [ "$config" = minilm ] && model_args=(--model models/all-MiniLM-L6-v2)
  for rows in 128 4096; do
    echo
    echo "berth bench --device cpu ${model_args[*]} --case kernels, B·T = $rows"
    "$BERTH" bench --device cpu "${model_args[@]}" --case kernels --batch-size "$((rows / 128))" --seq-len 128 --iters 10 --warmup 2
  done
done
