#!/usr/bin/env bash
# Proof of the CUDA path in at most ten minutes on one GPU; see benchmarks/gpu_check.py for the steps.
#
#   PYTHONPATH=. bash benchmarks/gpu_check.sh            # on a GPU machine, from a checkout
#   PYTHONPATH=. bash benchmarks/gpu_check.sh --dry-run  # the same steps on CPU, tiny shapes (< 2 min)
#
# Needs a CUDA torch with triton, the packages deblurcli itself imports (pyproject's dependencies)
# and pytest for the tests step; installs nothing: deblurcli runs from the checkout, weights are
# read by path, mamba-ssm is used only if present and working. Writes gpu_check.json and
# gpu_check.md under $OUT (default benchmarks/results/gpu_check), plus gpu_tests.xml/.log.
# Exit 0 when every step passed or was skipped for a stated reason, 1 when one failed, 2 on misuse.
set -euo pipefail

cd "$(dirname "$0")/.."
DRY=()
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=(--dry-run) ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $arg (only --dry-run)" >&2; exit 2 ;;
    esac
done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
OUT="${OUT:-benchmarks/results/gpu_check}"
mkdir -p "$OUT"
if [ ${#DRY[@]} -gt 0 ]; then
    # CPU only, and Triton through its interpreter: both must be set before torch/triton import.
    export CUDA_VISIBLE_DEVICES="" TRITON_INTERPRET=1
    LIMIT=115
else
    LIMIT=595
fi
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec timeout --kill-after=5 "$LIMIT" "$PY" benchmarks/gpu_check.py --out "$OUT" "${DRY[@]}"
