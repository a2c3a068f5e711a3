#!/usr/bin/env bash
# Load test of `berth serve` (README "Serving"). In one run on this machine,
# one step after the other:
#   1. offline `berth predict` over the sentences (batch 32), for throughput,
#      measured again after the concurrency-64 level (this VM's speed drifts
#      over minutes; the mean of the two is the peer of concurrency 64);
#   2. PyTorch's in-process transformers.pipeline at batch 1, for latency;
#   3. `berth serve` on loopback under wrk at concurrency 1, 8 and 64;
# then writes every figure to docs/serve.md (or $OUT).
#
#   tools/load-test.sh [MODEL_DIR]     default runs/sst2 (MiniLM fine-tuned on SST-2);
#                                      runs/demo-intents (tools/demo.sh) works too
#
# Environment:
#   PYTHON         a Python with torch and transformers (default $BERTH_PYTHON, else python3)
#   SENTENCES_TSV  the sentences, first column, header skipped (default ../shared/data/sst2/dev.tsv)
#   DURATION       seconds of wrk per concurrency level (default 30)
#   MAX_REQUESTS   safety cap on requests per level (default 20000)
#   PORT           loopback port for the server (default 8089)
#   OUT            the report (default docs/serve.md)
#   PRECISION      berth's --precision for serve and the offline predict: fp32 (default) or int8
# Needs wrk (Debian: apt-get install -y wrk) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${1:-runs/sst2}
PYTHON=${PYTHON:-${BERTH_PYTHON:-python3}}
SENTENCES_TSV=${SENTENCES_TSV:-../shared/data/sst2/dev.tsv}
DURATION=${DURATION:-30}
MAX_REQUESTS=${MAX_REQUESTS:-20000}
PORT=${PORT:-8089}
OUT=${OUT:-docs/serve.md}
PRECISION=${PRECISION:-fp32}
TORCH_THREADS=2
BERTH=target/release/berth

for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing (Debian: apt-get install -y $tool)" >&2; exit 1; }
done
[ -f "$MODEL/config.json" ] || { echo "error: $MODEL/config.json is missing; train a model first (README)" >&2; exit 1; }
[ -f "$SENTENCES_TSV" ] || { echo "error: $SENTENCES_TSV is missing" >&2; exit 1; }

cargo build --release --bin berth

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

tail -n +2 "$SENTENCES_TSV" | cut -f1 | sed 's/[[:space:]]*$//' | grep -v '^$' > "$work/sentences.txt"
head -n 1 "$work/sentences.txt" > "$work/one.txt"
n_sentences=$(wc -l < "$work/sentences.txt")
# Other training runs on the machine (any berth binary, renamed copies too) skew every figure.
busy_pattern='berth[^ ]* train'
busy_before=$(pgrep -fc "$busy_pattern" || true)
load_before=$(cut -d' ' -f1 /proc/loadavg)
echo "load test: $MODEL, $n_sentences sentences; berth train processes running: $busy_before; load average $load_before"

now() { date +%s.%N; }
# Median of three runs of a command, in seconds (wrk's figures are means
# over the whole run, so the offline figure is not a best case either).
median3() {
  local t0 t1
  for _ in 1 2 3; do
    t0=$(now); "$@" > /dev/null; t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
  done | sort -n | sed -n 2p
}

# 1. Offline throughput: the whole file at batch 32, less a one-line run
#    (process start and model load), median of three each.
# Prints "ALL ONE RATE": seconds for the whole file, for one line, and sentences/s.
offline() {
  local all one
  all=$(median3 "$BERTH" predict --model "$MODEL" --input "$work/sentences.txt" --batch-size 32 --device cpu --precision "$PRECISION" --output "$work/offline.jsonl")
  one=$(median3 "$BERTH" predict --model "$MODEL" --input "$work/one.txt" --batch-size 32 --device cpu --precision "$PRECISION" --output "$work/one.jsonl")
  awk -v n="$n_sentences" -v a="$all" -v o="$one" 'BEGIN { printf "%s %s %.1f\n", a, o, n / (a - o) }'
}
echo "offline berth predict ..."
read -r offline_all offline_one offline_before <<< "$(offline)"
echo "  $offline_all s for all, $offline_one s for one line: $offline_before sentences/s"

# 2. PyTorch pipeline at batch 1, in-process.
echo "PyTorch transformers.pipeline, batch 1 ..."
torch_json=$("$PYTHON" tools/pipeline-latency.py --model "$MODEL" --sentences "$work/sentences.txt" --threads "$TORCH_THREADS" 2>/dev/null | tail -n 1)
torch_field() { echo "$torch_json" | sed -n "s/.*\"$1\": \"\{0,1\}\([^,\"}]*\).*/\1/p"; }
torch_p50=$(torch_field p50_ms); torch_p90=$(torch_field p90_ms); torch_p99=$(torch_field p99_ms)
torch_rate=$(torch_field calls_per_s); torch_version=$(torch_field torch); transformers_version=$(torch_field transformers)
echo "  p50 $torch_p50 ms, $torch_rate calls/s"

# 3. The server under wrk.
echo "berth serve on 127.0.0.1:$PORT ..."
"$BERTH" serve --model "$MODEL" --device cpu --precision "$PRECISION" --host 127.0.0.1 --port "$PORT" 2> "$work/serve.log" &
server_pid=$!
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.5
done
metric() { curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
export SENTENCES="$work/sentences.txt" MAX_REQUESTS
THREADS=2 wrk -t2 -c8 -d5s --timeout 10s -s tools/load-test.lua "http://127.0.0.1:$PORT" > /dev/null # warm-up

declare -A result passes
for c in 1 8 64; do
  threads=$((c == 1 ? 1 : 2))
  sum0=$(metric berth_batch_size_sum); count0=$(metric berth_batch_size_count)
  line=$(THREADS=$threads wrk -t"$threads" -c"$c" -d"${DURATION}s" --timeout 10s -s tools/load-test.lua "http://127.0.0.1:$PORT" | grep '^RESULT')
  sum1=$(metric berth_batch_size_sum); count1=$(metric berth_batch_size_count)
  result[$c]=$line
  passes[$c]=$(awk -v a="$sum0" -v b="$sum1" -v x="$count0" -v y="$count1" 'BEGIN { printf "%.1f", (b - a) / (y - x) }')
  echo "  c=$c: $line; mean forward-pass size ${passes[$c]}"
  case "$line" in *capped=1*) echo "error: c=$c hit MAX_REQUESTS, so its rate is not valid; raise MAX_REQUESTS" >&2; exit 1 ;; esac
done
# The offline peer again, now that the server is idle: its mean with the
# first measurement is what concurrency 64 is compared with.
echo "offline berth predict, again ..."
read -r offline_all_after offline_one_after offline_after <<< "$(offline)"
offline_rps=$(awk -v a="$offline_before" -v b="$offline_after" 'BEGIN { printf "%.1f", (a + b) / 2 }')
echo "  $offline_all_after s for all, $offline_one_after s for one line: $offline_after sentences/s; mean $offline_rps"
server_errors=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '$1 ~ /^berth_request_errors_total/ { s += $2 } END { print s + 0 }')
kill -TERM "$server_pid"
wait "$server_pid"
server_pid=""
busy_after=$(pgrep -fc "$busy_pattern" || true)
load_after=$(cut -d' ' -f1 /proc/loadavg)

field() { echo "${result[$1]}" | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }
total_errors=$(( $(field 1 errors) + $(field 8 errors) + $(field 64 errors) + server_errors ))
latency_ok=$(awk -v s="$(field 1 p50_ms)" -v t="$torch_p50" 'BEGIN { print (s <= t) ? "met" : "missed" }')
throughput_ratio=$(awk -v s="$(field 64 rps)" -v o="$offline_rps" 'BEGIN { printf "%.2f", s / o }')
throughput_ok=$(awk -v r="$throughput_ratio" 'BEGIN { print (r >= 0.8) ? "met" : "missed" }')
errors_ok=$([ "$total_errors" -eq 0 ] && echo met || echo missed)
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- src tools Cargo.toml Cargo.lock || commit="$commit with uncommitted changes"
cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
loads="1-minute load average $load_before at the start, $load_after at the end"
if [ "$busy_before" = 0 ] && [ "$busy_after" = 0 ] && awk -v l="$load_before" 'BEGIN { exit !(l < 1.5) }'; then
  quiet="quiet: no \`berth train\` ran at the start or the end ($loads)"
else
  quiet="**not quiet**: other work was running (\`berth train\` processes: $busy_before at the start, $busy_after at the end; $loads), so the figures are slower and noisier than on an idle machine"
fi

cat > "$OUT" <<EOF
# Serving: latency and throughput

Written by \`tools/load-test.sh\`; every figure below comes from one run,
one step after the other on the same machine. Rerun it rather than edit it.

- **Date and commit:** $(date -u +%Y-%m-%d), $commit.
- **Machine:** $(nproc)-core VM ($cpu), CPU only; $quiet.
- **Command:** \`PYTHON=<python with torch> PRECISION=$PRECISION tools/load-test.sh $MODEL\`, DURATION=$DURATION s per level.
- **Model:** \`$MODEL\` ($(basename "$MODEL")), run by berth with \`--precision $PRECISION\` on the CPU with
  \`berth serve\`'s defaults (max length 128, batches of up to 32 examples and
  4,096 tokens, max wait 2 ms).
- **Inputs:** the $n_sentences sentences of \`$SENTENCES_TSV\`, one per request
  (\`{"inputs": SENTENCE}\`), cycling.
- **Load generator:** wrk $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f2) with \`tools/load-test.lua\`, on the same 2 cores as the
  server (1 wrk thread at concurrency 1, 2 above), keep-alive connections, a
  warm-up of 5 s first.
- **Peer:** PyTorch $torch_version and transformers $transformers_version in-process,
  \`pipeline("text-classification")\` on the CPU with $TORCH_THREADS threads, one sentence per
  call (batch 1), over the same sentences after 20 warm-up calls
  (\`tools/pipeline-latency.py\`).
- **Offline:** \`berth predict --batch-size 32 --device cpu --precision $PRECISION\` over the same
  sentences, the median of three runs of the whole file less the median of
  three runs of a one-line file (process start and model load): before the
  server started, $offline_all s less $offline_one s, $offline_before sentences/s; again
  after concurrency 64, $offline_all_after s less $offline_one_after s, $offline_after sentences/s.
  This VM's speed drifts over minutes, so concurrency 64 is compared with
  the mean of the two.

| | p50 ms | p90 ms | p99 ms | requests/s | errors | mean forward-pass size |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
| berth serve, concurrency 1 | $(field 1 p50_ms) | $(field 1 p90_ms) | $(field 1 p99_ms) | $(field 1 rps) | $(field 1 errors) | ${passes[1]} |
| berth serve, concurrency 8 | $(field 8 p50_ms) | $(field 8 p90_ms) | $(field 8 p99_ms) | $(field 8 rps) | $(field 8 errors) | ${passes[8]} |
| berth serve, concurrency 64 | $(field 64 p50_ms) | $(field 64 p90_ms) | $(field 64 p99_ms) | $(field 64 rps) | $(field 64 errors) | ${passes[64]} |
| PyTorch pipeline, batch 1, in-process | $(printf %.2f "$torch_p50") | $(printf %.2f "$torch_p90") | $(printf %.2f "$torch_p99") | $(printf %.2f "$torch_rate") | | 1 |
| offline \`berth predict\`, batch 32 (mean of before and after) | | | | $offline_rps | | 32 |

## Targets

- Concurrency 1, server p50 at most PyTorch's batch-1 p50:
  $(field 1 p50_ms) ms against $(printf %.2f "$torch_p50") ms, **$latency_ok**.
- Concurrency 64, at least 0.8× offline \`berth predict\`:
  $(field 64 rps) against $offline_rps requests/s, ${throughput_ratio}×, **$throughput_ok**
  (against the before and after figures alone: $(awk -v s="$(field 64 rps)" -v o="$offline_before" 'BEGIN { printf "%.2f", s / o }')× and $(awk -v s="$(field 64 rps)" -v o="$offline_after" 'BEGIN { printf "%.2f", s / o }')×).
- Zero errors (wrk's connection, timeout and non-2xx errors, and the server's
  error counters): $total_errors, **$errors_ok**.

The server's latency is measured by wrk from outside (the HTTP exchange
over loopback), PyTorch's inside the Python process around each pipeline
call. Requests per second at concurrency 1 is the inverse of the mean
latency, so it does not compare with the batched figures.
EOF
echo "wrote $OUT"
