"""How large a video's work folder gets next to its output: ``python benchmarks/bench_video_workspace.py``.

Makes a 10 s 1280x720 24 fps H.264 clip with PyAV (a blurred random texture panning, with a
little sensor-like noise, so it neither compresses to nothing nor is pure noise), restores it
with ``deblur run`` and a tiny random ALGNet (``--tile 0``; the network's speed does not matter
here, only the sizes), and samples the work folder's size while it runs. Prints the output's
size, the work folder's peak, their ratio, and the disk space the job asked for beforehand.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

W, H, FPS = 1280, 720, 24


def make_clip(path: Path, seconds: float) -> None:
    import av
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(0)
    tex = rng.random((H // 8 + 20, (W + 4 * FPS * int(seconds)) // 8 + 20, 3)).astype(np.float32)
    big = np.kron(tex, np.ones((8, 8, 1), np.float32))
    big = np.asarray(Image.fromarray((big * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(3)))
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS, options={"crf": "20", "preset": "fast"})
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i in range(int(seconds * FPS)):
            f = big[10 : 10 + H, 4 * i : 4 * i + W].astype(np.float32) / 255
            f = np.clip(f + rng.normal(0, 0.01, f.shape).astype(np.float32), 0, 1)
            vf = av.VideoFrame.from_ndarray((f * 255).astype(np.uint8), format="rgb24")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def tiny_model(path: Path) -> None:
    import torch

    from deblurcli.models import create
    from deblurcli.weights import save_model

    cfg = {"width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1], "dec_blk_nums": [1, 1, 1, 1], "d_state": 4}
    torch.manual_seed(0)
    save_model(create("algnet", cfg, "plain"), path, arch="algnet", config=cfg, variant="plain")


def folder_bytes(path: Path) -> int:
    try:
        return sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    except OSError:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--keep", type=Path, help="folder to work in (kept); default: a temporary one")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="deblur-ws-"))
    root.mkdir(parents=True, exist_ok=True)
    clip, model, out = root / "clip.mp4", root / "tiny.safetensors", root / "sharp.mp4"
    make_clip(clip, args.seconds)
    tiny_model(model)
    work = out.with_name(f".{out.name}.deblur-work")
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], folder_bytes(work))
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "deblurcli", "run", str(clip), "-o", str(out), "--model", str(model),
           "--tile", "0", "--device", "cpu", "--overwrite"]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    done.set()
    from deblurcli.video import EncoderChoice, VideoOptions, choose_encoder, probe, work_space

    info = probe(clip)
    enc: EncoderChoice = choose_encoder(info, out.suffix, VideoOptions())
    est_out, need = work_space(info, enc, VideoOptions(), clip.stat().st_size)
    size = out.stat().st_size
    took = time.perf_counter() - t0
    print(f"clip: {clip.stat().st_size / 1e6:.2f} MB, {args.seconds:g} s {W}x{H} {FPS} fps; run {took:.0f} s")
    print(f"output: {size / 1e6:.2f} MB; work folder peak: {peak[0] / 1e6:.2f} MB = {peak[0] / size:.2f}x the output")
    print(f"estimated beforehand: output {est_out / 1e6:.1f} MB, disk needed {need / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
