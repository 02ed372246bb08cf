#!/usr/bin/env bash
# Continue the embedded default's training in the background (from the repository root):
#
#   bash benchmarks/default_model/continue.sh TOTAL_STEPS    # start or go on
#   bash benchmarks/default_model/continue.sh --save         # a weights-only checkpoint to commit
#
# Optimizer state is never committed (it made every commit 30 MB and the clone 500 MB). So a
# machine that still has runs/default/last.pt (the same session, or a kept machine) resumes it
# exactly with --resume; a fresh machine makes a warm restart instead: the network starts from the
# newest committed weights (benchmarks/default_model/checkpoint.safetensors, else the shipped
# weights/default.safetensors) with a new Adam state and a new short cosine (384 px crops, one per
# process, lr 3e-5 after 200 warm-up steps), which is what every earlier session's warm restart
# did anyway: the moments Adam carries over decay within a few hundred steps.
# TOTAL_STEPS ends the cosine: about 1.9 steps per second at 384 px on two cores of a CPU that
# computes bf16 natively (`deblur doctor`), so 14000 steps is about 2 h. A warm restart counts its
# steps from 0. Two single-thread processes (torchrun, gloo) on a machine with two or more cores:
# on this project's 2-core machines they train 1.7x faster than one process with two threads.
# Watch runs/default/train.out; stop with: pkill -f 'torchrun.*deblurcli.train'
# While a run spans days, commit at most one checkpoint a day (--save writes it, 8 MB).
set -euo pipefail
run=runs/default
here=benchmarks/default_model
PY=${PYTHON:-python3}

if [ "${1:-}" = "--save" ]; then
    [ -f "$run/last.safetensors" ] || { echo "no $run/last.safetensors: nothing trained yet" >&2; exit 1; }
    cp "$run/last.safetensors" "$here/checkpoint.safetensors"
    echo "saved the run's EMA weights into $here/checkpoint.safetensors (commit at most one a day)"
    exit 0
fi

steps=${1:?usage: continue.sh TOTAL_STEPS | --save}
if [ "$(find -L runs/photos -maxdepth 1 -type f 2>/dev/null | wc -l)" -lt 35 ]; then
    "$PY" benchmarks/default_model/prepare_photos.py runs/photos
fi
procs=$(( $(nproc) >= 2 ? 2 : 1 ))
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
if [ -f "$run/last.pt" ]; then
    how=(--config "$run/config.yaml" --resume)
else
    init=weights/default.safetensors
    [ ! -f "$here/checkpoint.safetensors" ] || init=$here/checkpoint.safetensors
    mkdir -p "$(dirname "$run")"
    how=(--config "$here/resume.yaml" --set out="$run" --set train.init="$init" --set train.progressive=[]
         --set train.patch_size=384 --set train.batch_size=1 --set train.lr=3e-5 --set train.warmup_steps=200)
    echo "warm restart from $init"
fi
mkdir -p "$run"
nohup nice -n 5 torchrun --standalone --nproc_per_node "$procs" -m deblurcli.train \
    "${how[@]}" --set threads=1 --set train.steps="$steps" >> "$run/train.out" 2>&1 &
echo "training in the background ($procs process(es)); log: $run/train.out"
