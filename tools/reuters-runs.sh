#!/usr/bin/env bash
# The Reuters-21578 runs of docs/results.md (issue 20): all-MiniLM-L6-v2 on
# the CPU, multi-label over the 90 ModApte topics, --max-length 128.
#
#   tools/reuters-runs.sh [truncate|chunk_mean|chunk_mean_doc|chunk_max|recipe|recipe_truncate ...]   # default: the first four
#
# The thresholds are tuned (and the best epoch picked) on the odd lines of
# dev.jsonl; the report is `berth eval` on the even lines, which neither
# training nor the tuning saw. Each run writes runs/reuters-<name>/ and
# runs/reuters-<name>.log, the held-out report runs/reuters-<name>.eval(.json),
# and its row of docs/results.md (tools/reuters-summary.py).
set -euo pipefail
cd "$(dirname "$0")/.."
data=../shared/data/reuters
[ -d "$data" ] || { echo "reuters-runs: ../shared/data/reuters is missing; nothing to run" >&2; exit 0; }
tools/fetch-model.sh >/dev/null
# BERTH: a copy of the binary, so that builds during the runs do not change it.
# EPOCHS: 2 unless set. RUN_TAG: appended to every run's name (say -5ep), so
# that a longer run does not overwrite an earlier one's model and report.
if [ -z "${BERTH:-}" ]; then cargo build --release --bin berth; fi
berth=${BERTH:-target/release/berth}
model=models/all-MiniLM-L6-v2
mkdir -p runs/reuters
awk 'NR % 2 == 1' $data/dev.jsonl > runs/reuters/dev-tune.jsonl
awk 'NR % 2 == 0' $data/dev.jsonl > runs/reuters/dev-report.jsonl

common=(train --task multi-label --model $model --train $data/train.jsonl --eval runs/reuters/dev-tune.jsonl
    --labels $data/labels.txt --text-column text --label-column labels --tune-thresholds --head-bias-init prior
    --epochs ${EPOCHS:-2} --batch-size 32 --lr 1e-4 --warmup-ratio 0.1 --weight-decay 0.01 --max-length 128 --seed 42
    --logging-steps 100 --overwrite)

run() {
    local name=$1${RUN_TAG:-}
    shift
    echo "=== reuters-$name: berth $*"
    local t0=$SECONDS
    "$berth" "$@" --output runs/reuters-$name 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | grep -v '=>\|step [0-9]*/' > "runs/reuters-$name.log" \
        || { tail -n 20 "runs/reuters-$name.log"; return 1; }
    local trained=$((SECONDS - t0))
    echo "--- reuters-$name: trained in $trained s"
    # The saved model carries its long-text setting, so eval windows as training did.
    "$berth" eval --model runs/reuters-$name/best --data runs/reuters/dev-report.jsonl \
        --text-column text --label-column labels --output "runs/reuters-$name.eval.json" 2>&1 | tee "runs/reuters-$name.eval" | tail -n 30
    python3 tools/reuters-summary.py "$name" "$trained"
}

truncate() { run truncate "${common[@]}"; }
chunk_mean() { run chunk-mean "${common[@]}" --long-text chunk --chunk-stride 32 --aggregate mean --chunk-loss window; }
# Mean aggregation with the loss on the document's mean logits, so training
# optimises the very aggregate that eval scores.
chunk_mean_doc() { run chunk-mean-doc "${common[@]}" --long-text chunk --chunk-stride 32 --aggregate mean --chunk-loss document; }
chunk_max() { run chunk-max "${common[@]}" --long-text chunk --chunk-stride 32 --aggregate max --chunk-loss document; }
# The chapter's recipe on top of the document-loss run: sigmoid focal loss
# and the multi-label oversampler (a document drawn by its rarest label).
# R is a floor of n_max / R draws per group: on this training set R = 150
# draws a document of a rare topic (one on under 1% of documents) about
# three times as often as the data holds it, the chapter's "3x".
recipe() { run recipe "${common[@]}" --long-text chunk --chunk-stride 32 --aggregate "${RECIPE_AGGREGATE:-max}" \
    --chunk-loss "${RECIPE_CHUNK_LOSS:-document}" --loss focal --sampler weighted:150; }

# The same recipe on top of truncation (in the first session's runs the best of
# truncate and chunk_max on the held-out half).
recipe_truncate() { run recipe-truncate "${common[@]}" --loss focal --sampler weighted:150; }

for name in "${@:-truncate chunk_mean chunk_max recipe}"; do
    for n in $name; do "$n"; done
done
