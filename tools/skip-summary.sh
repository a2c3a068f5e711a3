#!/usr/bin/env bash
# Prints the one line that ends a test run: how many tests skipped and what
# they were missing, from the log tests/common.rs `skip` appends to (one
# "test<TAB>what is missing" line per skip; a test may log several).
#   tools/skip-summary.sh LOG
set -euo pipefail
log=$1
if [[ ! -s "$log" ]]; then
  echo "0 tests skipped"
  exit 0
fi
tests=$(cut -f1 "$log" | sort -u | wc -l)
missing=$(sort -u "$log" | cut -f2- | sort | uniq -c | sort -rn | awk '{n=$1; $1=""; sub(/^ /, ""); printf "%s%s (%d)", sep, $0, n; sep="; "}')
echo "$tests tests skipped: $missing"
