#!/usr/bin/env bash
# Train the embedded default on a lent GPU for a fixed time, from the newest committed weights (a
# warm restart, as continue.sh makes one), and bring the run back. A few GPU minutes outweigh the CPU hours (synthesis runs on the GPU machine's
# 16 cores, the network at batch 64 of 256 px crops on the GPU: the CPU run gained most from
# larger crops at its end, see trials.md).
#
#   here, once:    bash benchmarks/default_model/gpu_train.sh --pack        # -> gpu_pack/ (ignored, ~7 MB)
#   on the device: bash benchmarks/default_model/gpu_train.sh --run SECONDS [TOTAL_STEPS]
#                  (device tool: carry ["gpu_pack"]; the files come back from $OUT)
#   here, after:   bash benchmarks/default_model/gpu_train.sh --unpack FILES_AT   # -> runs/default/
#   check on CPU:  DEVICE=cpu BATCH=4 PATCH=128 WORKERS=1 bash benchmarks/default_model/gpu_train.sh --run 60
#
# The device machine reaches no network and its tree may hold at most 64 MiB, so the photographs
# travel as JPEG (quality 92, at most 1024 px: ~7 MB) rather than the 1600 px PNGs the CPU run
# reads; crops are still taken at random scales of them. Files come back at most 16 MiB each, so
# last.pt (32 MB) returns in pieces. The run stops by SIGINT after SECONDS; it resumes from its
# last checkpoint (every 500 steps), which is what comes back.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benchmarks/default_model
PY=${PYTHON:-python3}  # the device image's python3 holds its CUDA torch
case "${1:-}" in
--pack)
    [ -d runs/photos ] || "$PY" benchmarks/default_model/prepare_photos.py runs/photos
    mkdir -p gpu_pack/photos
    grep -qx "/gpu_pack/" .git/info/exclude 2>/dev/null || echo "/gpu_pack/" >> .git/info/exclude
    "$PY" - <<'EOF'
from pathlib import Path
from PIL import Image
for src in sorted(Path("runs/photos").iterdir()):
    with Image.open(src) as im:
        im = im.convert("RGB")
        im.thumbnail((1024, 1024), Image.LANCZOS)
        im.save(Path("gpu_pack/photos") / f"{src.stem}.jpg", quality=92, subsampling=0)
EOF
    du -sh gpu_pack
    ;;
--run)
    seconds=${2:?--run SECONDS [TOTAL_STEPS]}
    run=runs/gpu
    mkdir -p "$run"
    total=${3:-20000}
    if [ -f "$run/last.pt" ]; then
        how=(--config "$run/config.yaml" --resume)
    else  # no optimizer state is committed: a warm restart from the newest committed weights
        init=weights/default.safetensors
        [ ! -f "$here/checkpoint.safetensors" ] || init=$here/checkpoint.safetensors
        how=(--config "$here/resume.yaml" --set train.init="$init" --set train.progressive=[]
             --set train.warmup_steps=200)
    fi
    out=${OUT:-gpu_pack/out}
    mkdir -p "$out"
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$out/device.txt" 2>&1 || true
    # SIGINT after SECONDS: the trainer stops cleanly, keeping its last checkpoint.
    timeout -s INT --kill-after=30 "$seconds" "$PY" -m deblurcli.train "${how[@]}" \
        --set out="$run" --set device="${DEVICE:-cuda}" --set threads=0 \
        --set data.synthetic=gpu_pack/photos --set data.num_workers="${WORKERS:-14}" \
        --set train.patch_size="${PATCH:-256}" --set train.batch_size="${BATCH:-64}" \
        --set train.lr="${LR:-0.001}" --set train.steps="$total" \
        --set checkpoint.every=500 --set val.every=2000 --set log.every=100 \
        > "$out/train.out" 2>&1 || true
    tail -3 "$out/train.out"
    split -b 15M -d "$run/last.pt" "$out/last.pt.part"
    cp "$run/log.jsonl" "$run/config.yaml" "$out/"
    [ ! -f "$run/last.safetensors" ] || cp "$run/last.safetensors" "$out/"
    ls -la "$out"
    ;;
--unpack)
    from=${2:?--unpack FOLDER: the device tool files_at}
    mkdir -p runs/default
    cat "$from"/last.pt.part* > runs/default/last.pt
    cp "$from/log.jsonl" runs/default/
    cp "$here/resume.yaml" runs/default/config.yaml  # the CPU run's own settings (device, photos, batch) again
    [ ! -f "$from/last.safetensors" ] || cp "$from/last.safetensors" runs/default/
    "$PY" -c "import torch; print('step', torch.load('runs/default/last.pt', map_location='cpu', weights_only=True)['step'])"
    echo "evaluate runs/default/last.safetensors, then continue on CPU: bash benchmarks/default_model/continue.sh STEPS"
    ;;
*)
    sed -n '2,16p' "$0"
    exit 2
    ;;
esac
