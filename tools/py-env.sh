#!/usr/bin/env bash
# Installs the pinned Python environment of tools/py-requirements.txt into
# .py-venv/ (git-ignored) and prints its python. Idempotent: a stamp holds
# the requirements' checksum, and a matching stamp means nothing to do.
# The tests find .py-venv/bin/python by themselves (tests/common.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.py-venv
req=tools/py-requirements.txt
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && "$(cat "$venv/.stamp" 2>/dev/null)" == "$want" ]]; then
  echo "$venv/bin/python"
  exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
# --no-deps: the file lists every package; torch's own dependency list would
# add about 1.3 GB it never loads for CPU use.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps -r "$req" >&2
"$venv/bin/python" -c 'import torch, transformers, huggingface_hub' >&2
echo "$want" > "$venv/.stamp"
echo "$venv/bin/python"
