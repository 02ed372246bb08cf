#!/usr/bin/env bash
# Continue the embedded default's training from its committed state, in the background.
#
#   bash benchmarks/default_model/continue.sh [TOTAL_STEPS]     (from the repository root)
#
# A session's machine may be fresh: this copies the committed state into runs/default unless a
# run is already there, fetches the photographs if they are missing, and starts `deblur train
# --resume` as one process per core (two at most: torchrun, gloo, one thread each). On this
# project's 2-core machines two single-thread processes train 1.7x faster than one process with
# two threads. TOTAL_STEPS moves the end of the cosine schedule (pick it so the run ends before
# the session does: about 2.2 steps per second on two cores of a CPU that computes bf16 natively
# (AVX512-BF16 or AMX, which `deblur doctor` reports; training then uses bf16 autocast), 1.6 on others).
# Watch runs/default/train.out; stop with: pkill -f 'torchrun.*deblurcli.train'
# Before stopping a session, commit the state: bash benchmarks/default_model/continue.sh --save
set -euo pipefail
run=runs/default
state=benchmarks/default_model/state
PY=${PYTHON:-python3}

if [ "${1:-}" = "--save" ]; then
    # The checkpoint and the log up to it (a resumed run redoes, and logs again, what follows).
    cp "$run/last.pt" "$run/config.yaml" "$state/"
    step=$("$PY" - "$state/last.pt" <<'EOF'
import sys, torch
print(int(torch.load(sys.argv[1], map_location="cpu", weights_only=True)["step"]))
EOF
)
    "$PY" - "$run/log.jsonl" "$state/log.jsonl" "$step" <<'EOF'
import json, sys
src, dst, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = [x for x in open(src).read().splitlines() if x.strip() and json.loads(x)["step"] <= step]
open(dst, "w").write("\n".join(lines) + "\n")
EOF
    echo "saved the state at step $step into $state/ (commit it)"
    exit 0
fi

steps=${1:-}
mkdir -p "$run"
if [ ! -f "$run/last.pt" ]; then
    cp "$state/last.pt" "$state/log.jsonl" "$state/config.yaml" "$run/"
fi
if [ "$(find -L runs/photos -maxdepth 1 -type f 2>/dev/null | wc -l)" -lt 35 ]; then
    "$PY" benchmarks/default_model/prepare_photos.py runs/photos
fi
procs=$(( $(nproc) >= 2 ? 2 : 1 ))
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
nohup nice -n 5 torchrun --standalone --nproc_per_node "$procs" -m deblurcli.train \
    --config "$run/config.yaml" --set threads=1 ${steps:+--set train.steps=$steps} --resume \
    >> "$run/train.out" 2>&1 &
echo "training in the background ($procs process(es)); log: $run/train.out"
