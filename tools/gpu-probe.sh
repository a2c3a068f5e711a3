#!/usr/bin/env bash
# Probe a lent GPU machine: what is installed there, whether our binary runs,
# and whether our PTX loads and computes GELU correctly (tools/gpu-probe.py).
#
#   bash tools/gpu-probe.sh        # from the repo root, with gpu-bundle/ carried
#
# Expects gpu-bundle/gelu.ptx (nvcc -arch=sm_90 -ptx kernels/gelu.cu) and,
# optionally, gpu-bundle/berth (built here with --release).
# Every step runs under `timeout` and the script goes on past failures; the
# whole run stays under 3 minutes. Exit status: that of gpu-probe.py.
set -u
cd "$(dirname "$0")/.." || exit 1

START=$SECONDS
STOP_AT=120      # seconds since START by which the steps before the probe must end
RESULTS=()
LAST_RC=0

# step NAME LIMIT CMD...: run CMD for at most LIMIT seconds (less when the
# budget up to STOP_AT is nearly spent), print its output and how it ended.
step() {
    local name=$1 limit=$2 rc status
    shift 2
    local left=$((STOP_AT - (SECONDS - START) - 2))   # 2 s for timeout's kill grace
    if ((left < 1)); then
        echo "=== $name: skipped, time budget spent"
        RESULTS+=("$name: skipped, time budget spent")
        LAST_RC=125
        return 0
    fi
    ((limit > left)) && limit=$left
    echo
    echo "=== $name (limit ${limit}s)"
    timeout -k 2 "$limit" "$@" 2>&1
    rc=$?
    case $rc in
        0) status="ok" ;;
        124 | 137) status="timed out after ${limit}s" ;;
        127) status="command not found (rc 127)" ;;
        *) status="failed (rc $rc)" ;;
    esac
    echo "--- $name: $status"
    RESULTS+=("$name: $status")
    LAST_RC=$rc
    return 0
}

echo "gpu-probe: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), in $PWD"

step nvidia-smi 10 nvidia-smi
step glibc 5 bash -c 'ldd --version | head -n 1'
step uname 5 uname -a
step python 5 python3 --version
step torch 20 python3 -c '
try:
    import torch
except Exception as e:
    print(f"torch does not import: {type(e).__name__}: {e}")
    raise SystemExit(1)
print("torch", torch.__version__, "built for CUDA", torch.version.cuda,
      "cuda available:", torch.cuda.is_available())
'
step ldconfig 5 bash -c "ldconfig -p | grep -E 'libcuda|libcublas|libnvrtc' || echo '(none in the ldconfig cache)'"
LIBS_FOUND=$(mktemp)
step find-libs 60 bash -c "find / \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o \
    \\( -name 'libcublasLt.so*' -o -name 'libnvrtc.so*' \\) -print 2>/dev/null | head -n 30 | tee $LIBS_FOUND"

if [[ -f gpu-bundle/berth ]]; then
    if [[ ! -x gpu-bundle/berth ]]; then
        echo "gpu-bundle/berth is not executable; setting +x"
        chmod +x gpu-bundle/berth
    fi
    step berth-version 10 gpu-bundle/berth --version
    if ((LAST_RC == 0)); then echo "berth ran"; else echo "berth did NOT run (rc $LAST_RC)"; fi
    step ldd-berth 5 ldd gpu-bundle/berth
    # berth's own CUDA probe (cudarc, dynamic loading): first with the
    # loader's default paths, then with the folders find-libs found, so we
    # learn whether the libraries are reachable without help.
    step berth-device-info 30 gpu-bundle/berth device-info
    # (stubs/ is left out: its libcuda stub makes context creation fail with CUDA_ERROR_STUB_LIBRARY)
    EXTRA_DIRS=$(xargs -r -n1 dirname < "$LIBS_FOUND" | grep -v '/stubs$' | sort -u | paste -sd: -)
    if [[ -n "$EXTRA_DIRS" ]]; then
        echo "library folders found: $EXTRA_DIRS"
        step berth-device-info-with-found-libs 30 env LD_LIBRARY_PATH="$EXTRA_DIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" gpu-bundle/berth device-info
    fi
else
    echo
    echo "=== berth: gpu-bundle/berth not present, skipped"
    RESULTS+=("berth: not present")
fi

STOP_AT=172      # the probe gets what is left of the 3 minutes, at most 50 s
step gpu-probe 50 python3 tools/gpu-probe.py gpu-bundle/gelu.ptx
PROBE_RC=$LAST_RC

echo
echo "=== summary ($((SECONDS - START)) s)"
printf '  %s\n' "${RESULTS[@]}"
exit "$PROBE_RC"
