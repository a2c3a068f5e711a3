#!/usr/bin/env bash
# Issue 20's throughput check (docs/perf.md): `berth predict --long-text
# chunk` on the Reuters dev documents against the same windows fed as
# separate lines, in one run, alternating A B A B.
#
#   tools/long-text-throughput.sh MODEL_DIR [PYTHON]
#
# MODEL_DIR: a trained Reuters model (predict needs a head), for example
# runs/reuters-truncate/best from tools/reuters-runs.sh. PYTHON: one with
# `tokenizers` (default .py-venv/bin/python, from tools/py-env.sh), which cuts
# the windows as transformers does (stride 32, 128 tokens) and decodes them
# back to text; a window that starts inside a word re-tokenises from that
# word piece as a whole word, so the two inputs hold nearly, not exactly,
# the same tokens (both counts are printed).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: tools/long-text-throughput.sh MODEL_DIR [PYTHON]}
python=${2:-.py-venv/bin/python}
out=runs/throughput
mkdir -p "$out"
"$python" - "$out" <<'PY'
import json, sys
from tokenizers import Tokenizer
out = sys.argv[1]
tok = Tokenizer.from_file("models/all-MiniLM-L6-v2/tokenizer.json")
tok.no_padding()
tok.enable_truncation(max_length=128, stride=32)
docs = [" ".join(json.loads(l)["text"].split()) for l in open("../shared/data/reuters/dev.jsonl") if l.strip()]
windows, doc_tokens = [], 0
for d in docs:
    e = tok.encode(d)
    for w in [e] + e.overflowing:
        windows.append(tok.decode(w.ids, skip_special_tokens=True))
        doc_tokens += len(w.ids)
open(f"{out}/documents.txt", "w").write("\n".join(docs) + "\n")
open(f"{out}/windows.txt", "w").write("\n".join(windows) + "\n")
win_tokens = sum(len(tok.encode(w).ids) for w in windows)
print(f"{len(docs)} documents in {len(windows)} windows: {doc_tokens} tokens as windows of the documents, {win_tokens} as lines")
PY
cargo build --release --bin berth >/dev/null 2>&1
berth=target/release/berth
time_run() {
    local t0 t1
    t0=$(date +%s.%N)
    "$berth" predict --model "$model" --max-length 128 --device cpu "$@" > "$out/last.jsonl" 2>/dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}
for round in 1 2; do
    chunked=$(time_run --input "$out/documents.txt" --long-text chunk --chunk-stride 32)
    n=$(python3 -c "import json;print(sum(json.loads(l).get('windows',1) for l in open('$out/last.jsonl')))")
    lines=$(time_run --input "$out/windows.txt" --long-text truncate)
    m=$(wc -l < "$out/last.jsonl")
    echo "round $round: chunked documents $chunked s for $n windows ($(echo "scale=3; 1000 * $chunked / $n" | bc) ms per window); windows as lines $lines s for $m lines ($(echo "scale=3; 1000 * $lines / $m" | bc) ms per window)"
done
