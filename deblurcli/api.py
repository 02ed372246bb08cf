"""`Deblurrer`: load a model once, restore many images — what the CLI, batch, eval and Python
users share, so that every front end behaves the same.

    from deblurcli import Deblurrer
    d = Deblurrer("evssm", device="cuda")
    sharp = d.restore(pixels)            # HxWx3 float32 in [0, 1]
    d.restore_file("in.jpg", "out.jpg")  # metadata, bit depth and alpha kept, written atomically

``Deblurrer("shake")`` is the classical camera-shake engine (`deblurcli.shake`, no network), and
``Deblurrer(deconv="auto")`` (opt-in; "off" is the default) lets the embedded default deconvolve
shake it measured and trusts; what the engine did to the last photo this thread restored is in
``last_outcome`` (and ``RestoreResult.shake``).

The options (device, precision, tiles, strength, ...) are `deblurcli.options.EngineOptions`, the
same object the ``deblur`` commands build from their flags: ``Deblurrer(options=opts)`` or keyword
arguments named like its fields.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from . import multiscale, shake, ssm, tiling
from .allocator import keep_freed_memory
from .errors import DeblurError, KernelError, OptionError, UsageError
from .fsutil import input_as_output
from .imageio import (
    Image,
    as_float_rgb,
    encode_image,
    output_layout,
    output_notes,
    read_image,
    to_samples,
    write_image,
)
from .models import get_arch, registry
from .options import DEFAULT_OVERLAP, DEVICES, PRECISIONS, EngineOptions
from .weights import ModelSpec, load_model, sha256_file

log = logging.getLogger("deblurcli")
#: Scan backends that run on a CUDA GPU only.
GPU_SCANS = frozenset({"triton", "cuda"})

__all__ = ["DEFAULT_OVERLAP", "DEVICES", "PRECISIONS", "Deblurrer", "EngineOptions", "RestoreResult"]

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# torch.OutOfMemoryError exists from torch 2.5 (pyproject admits 2.2); torch.cuda.OutOfMemoryError,
# its alias there, from 1.13.
_OOM_ERRORS: tuple[type[Exception], ...] = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),
                                             torch.cuda.OutOfMemoryError)


@dataclass
class RestoreResult:
    """What happened to one file: for progress lines, the batch journal and JSON output."""

    input: str
    output: str | None
    status: str = "ok"
    seconds: float = 0.0
    width: int = 0
    height: int = 0
    #: Size of the written file in bytes (None when nothing was written, or for stdout).
    bytes: int | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    #: `Deblurrer.tile_check`'s report when one was asked for.
    tile_check: dict[str, Any] | None = None
    #: The camera-shake kernel's figures when one was estimated or given (`shake.Outcome.stats`):
    #: ``path`` (deconvolved, kernel, shake or network), ``shake_px``, ``direction_deg``, ``trusted``.
    shake: dict[str, Any] | None = None
    #: The failure is about the options given (e.g. a --region outside this photo): exit code 2.
    usage: bool = False

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``error`` is always present so scripts can test it without a default."""
        d = {k: v for k, v in self.__dict__.items() if (v is not None or k == "error") and (k != "usage" or v)}
        if self.width and self.height:
            d["size"] = f"{self.width}x{self.height}"
        return d


def pick_device(device: str) -> torch.device:
    """The torch device for ``--device``, with a one-line error when it cannot be had.

    ``cuda:N`` picks one GPU of several, as ``deblur train --device`` does.
    """
    index = device.partition(":")[2] if device.startswith("cuda:") else None
    if device not in DEVICES and not (index and index.isdigit()):
        raise OptionError("device", f"unknown device {device!r}; choose {', '.join(DEVICES)} or cuda:N")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError("device", "no CUDA GPU is available to PyTorch here; use cpu (or auto)", value=device)
    if index is not None and int(index) >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise OptionError("device", f"PyTorch sees {n} CUDA GPU(s) here: cuda:0 to cuda:{n - 1}", value=device)
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise OptionError("device", "Apple's Metal backend is not available here; use cpu (or auto)", value=device)
    return torch.device(device)


def pick_precision(precision: str, device: torch.device) -> str:
    """fp32 on CPU unless bf16 is asked for; fp16 is refused there (slow and inaccurate)."""
    if precision not in PRECISIONS:
        raise OptionError("precision", f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    if device.type == "cpu":
        if precision == "fp16":
            raise OptionError("precision", "not supported on the CPU; use fp32 (default) or bf16", value=precision)
        return "fp32" if precision == "auto" else precision
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp16"
    return precision


def set_threads(threads: int | None) -> None:
    """One thread count for torch, numba and the OpenMP pool, so nothing oversubscribes the cores.

    A spinning OpenMP pool on a busy machine can slow the scan by an order of magnitude; a
    passive wait policy costs nothing here, so it is set before the pool starts where possible.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads is None or threads == 0:  # 0 = torch's default, as `deblur train --threads 0` means
        return
    if threads < 0:
        raise OptionError("threads", "must be 0 (torch's default, all cores) or a count of threads", value=threads)
    torch.set_num_threads(threads)


class Deblurrer:
    """A loaded model plus how to run it (device, precision, tiles, strength).

    ``Deblurrer(model, options=EngineOptions(...), **changes)``: ``changes`` are `EngineOptions`
    fields (``tile=512``), applied over ``options``; ``model`` over ``options.model``. ``options``
    keeps what was asked for; the attributes (``device``, ``precision``, ``tile``, ...) hold what
    it resolved to.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        options: EngineOptions | None = None,
        progress: bool = True,
        console: Any = None,
        on_note: Callable[[str], None] | None = None,
        **changes: Any,
    ) -> None:
        opts = options or EngineOptions()
        if model is not None:
            changes["model"] = model
        unknown = set(changes) - {f.name for f in dataclasses.fields(EngineOptions)}
        if unknown:
            raise TypeError(f"Deblurrer() got unknown option(s) {', '.join(sorted(unknown))}; "
                            f"see deblurcli.options.EngineOptions")
        self.options = opts = opts.replace(**changes)
        set_threads(opts.threads)
        #: ``--model shake``: the classical engine alone, no network and no weights.
        self.classical = _names_shake(opts.model)
        self._check_shake_options(opts)
        self.kernel_size = int(opts.kernel_size)  # 0: automatic
        #: ``--region`` as (x, y, w, h), or None for the engine's own choice.
        self.region_box = shake.parse_region(None if opts.region == "auto" else opts.region)
        # Read and checked now, so a bad file is one error before any photo is touched.
        self.kernel = None if opts.kernel is None else shake.load_kernel(opts.kernel)
        self.deconv = opts.deconv
        # Per thread: one Deblurrer may restore photos on several threads at once, and each caller
        # must read what was done to its own photo.
        self._calls = threading.local()
        if opts.scan_backend != "auto" and opts.scan_backend not in ssm.BACKENDS:
            raise OptionError("scan_backend", f"unknown scan backend; choose auto, {', '.join(ssm.BACKENDS)}",
                              value=opts.scan_backend)
        #: This object's scan backend, in force during its own model calls only ("auto": the process default).
        self.scan_backend = opts.scan_backend
        self.device = pick_device(opts.device)
        if self.device.type == "cpu":
            keep_freed_memory()  # photo-sized CPU buffers reused rather than faulted in again at each step
        _check_scan_backend(opts.scan_backend, self.device)
        self.precision = pick_precision(opts.precision, self.device)
        self.tile = _parse_tile(opts.tile)
        if opts.tile_overlap < 0:
            raise OptionError("tile_overlap", "must be >= 0", value=opts.tile_overlap)
        self.tile_overlap = int(opts.tile_overlap)
        if opts.batch_size < 1:
            raise OptionError("batch_size", "must be at least 1", value=opts.batch_size)
        self.batch_size = int(opts.batch_size)
        self.scale = _parse_scale(opts.scale)
        if opts.ensemble not in ENSEMBLES:
            raise OptionError("ensemble", "must be 1, 2, 4 or 8", value=opts.ensemble)
        self.ensemble = int(opts.ensemble)
        self.strength = _check_strength(opts.strength)
        self._note = on_note or (lambda msg: log.warning(msg))
        self._noted: set[str] = set()
        self._lock = threading.Lock()
        if self.classical:
            self._init_classical()
            return

        self._load_network(opts, progress, console)
        self._check_kernel_use(opts)

    def _load_network(self, opts: EngineOptions, progress: bool, console: Any) -> None:
        """Resolve the named model, load its weights onto the device, frozen, and say what a tile
        this small cannot do."""
        if self.device.type == "cpu":  # the scan kernel gets ready while the weights and the photo load
            ssm.preload_in_background(self.scan_backend)
        from .hub import resolve  # the Hub client is only imported when a model is resolved

        self.resolved = resolve(None if opts.model is None else str(opts.model), offline=opts.offline or None,
                                progress=progress, console=console)
        self.path = Path(self.resolved.path)
        net, spec = load_model(self.path, variant=opts.variant)
        self.spec: ModelSpec = spec
        self.arch = get_arch(spec.arch)
        self.model = net.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        if self.device.type == "cpu" and self.precision == "bf16":
            self.model = self.model.to(torch.bfloat16)
        #: The largest blur (px) the model was trained on, where its training recorded it: `scale_for` uses it.
        self.trained_blur_px = _int_or_none(spec.metadata.get("train_blur_px"))
        self.name = self.resolved.entry.name if self.resolved.entry is not None else str(opts.model or "default")
        warn = (tiling.too_small_tile_warning(self.tile, self.arch.min_tile, self.arch.title)
                if isinstance(self.tile, int) else None)
        if warn:
            self._say(warn)

    def _check_kernel_use(self, opts: EngineOptions) -> None:
        """Which networks take the camera-shake options, and whether the default runs its hybrid path.

        The papers' networks learned GoPro's blur and take no kernel; on the default, the options
        that steer estimation mean nothing while ``--deconv off`` skips it.
        """
        is_default = self.resolved.entry is not None and self.resolved.entry.name == registry.DEFAULT_NAME
        if not is_default and (opts.kernel is not None or self.kernel_size or self.region_box is not None):
            given = "kernel" if opts.kernel is not None else "kernel_size" if self.kernel_size else "region"
            raise UsageError(f"{{{given}}}: {self.name} is a network trained on GoPro-style blur and takes no blur "
                             "kernel; use the default model or {model} shake", names=(given, "model"))
        if is_default and self.deconv == "off" and (self.kernel_size or self.region_box is not None):
            given = "kernel_size" if self.kernel_size else "region"
            raise UsageError(f"{{{given}}} acts where the shake is estimated: add {{deconv}} auto, or use {{model}} "
                             "shake", names=(given, "deconv", "model"))
        #: The embedded default's hybrid path: estimate, deconvolve trusted shake, else the network
        #: (a kernel of the user's own is deconvolved whatever --deconv says: that is what it asks for).
        self.hybrid = is_default and (self.deconv == "auto" or self.kernel is not None)

    def _check_shake_options(self, opts: EngineOptions) -> None:
        """Refuse engine options that would silently do nothing the user asked for.

        ``--model shake`` has no tiles, no scales, no ensemble, no scan and runs on the CPU in
        float32 (``--deconv`` is its whole job, so either value is accepted there).
        """
        if opts.deconv not in shake.DECONV_CHOICES:
            raise OptionError("deconv", f"choose {' or '.join(shake.DECONV_CHOICES)}", value=opts.deconv)
        if opts.kernel_size and opts.kernel_size < 3:
            raise OptionError("kernel_size", "must be 0 (automatic) or at least 3 px", value=opts.kernel_size)
        if not self.classical:
            return
        refused = [name for name, unused in (
            ("variant", opts.variant is not None),
            ("tile", str(opts.tile) not in ("auto", "0")), ("tile_overlap", opts.tile_overlap != DEFAULT_OVERLAP),
            ("scale", str(opts.scale) not in ("auto", "1")), ("ensemble", opts.ensemble != 1),
            ("batch_size", opts.batch_size != 1), ("scan_backend", opts.scan_backend != "auto"),
            ("precision", opts.precision not in ("auto", "fp32")), ("device", opts.device not in ("auto", "cpu")),
        ) if unused]
        if refused:
            flags = ", ".join("{" + n + "}" for n in refused)
            raise UsageError(f"{flags}: not used by {{model}} shake (classical deconvolution of the whole photo "
                             "in float32 on the CPU); drop it", names=(*refused, "model"))

    def _init_classical(self) -> None:
        """``--model shake``: what the rest of the tool reads off a Deblurrer, without a network."""
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.tile, self.scale, self.ensemble = 0, 1, 1
        self.resolved = None
        self.path = None
        self.spec = None
        self.arch = None
        self.model = None
        self.trained_blur_px = None
        self.hybrid = False
        self.name = shake.SHAKE_MODEL

    # -- identity ---------------------------------------------------------------------------
    @property
    def weights_sha256(self) -> str | None:
        """The weights file's hash: batch journals key finished work on it (None: ``shake`` has none)."""
        if self.classical:
            return None
        if getattr(self, "_sha", None) is None:
            self._sha = self.resolved.sha256 or sha256_file(self.path)
        return self._sha

    def describe(self) -> dict[str, Any]:
        if self.classical:
            return {"model": self.name, "arch": shake.SHAKE_MODEL, "variant": "", "config": {}, "weights": None,
                    "weights_sha256": None, "device": "cpu", "precision": "fp32", "scan_backend": "none",
                    "tile": 0, "tile_overlap": 0, "scale": 1, "ensemble": 1, "trained_blur_px": None,
                    "kernel": self.options.kernel, "kernel_size": self.kernel_size, "region": self.region_box}
        return {
            "model": self.name,
            "arch": self.spec.arch,
            "variant": self.spec.variant,
            "config": self.spec.config,
            "weights": str(self.path),
            "weights_sha256": self.weights_sha256,
            "device": str(self.device),
            "precision": self.precision,
            "scan_backend": ssm.resolve_backend(self.scan_backend, torch.empty(0, device=self.device)),
            "tile": self.tile,
            "tile_overlap": self.tile_overlap,
            "scale": self.scale,
            "ensemble": self.ensemble,
            "trained_blur_px": self.trained_blur_px,
            "deconv": "auto (camera shake)" if self.hybrid else "off",
        }

    @property
    def variant(self) -> str:
        """The variant the model runs as (the one asked for, else the one stored with the weights)."""
        return "" if self.spec is None else self.spec.variant

    def settings_key(self) -> dict[str, Any]:
        """The settings that change the pixels written: work done with other ones is redone.

        Derived from the `EngineOptions` fields marked as deciding the output, each as this
        object resolved it (``precision="auto"`` -> ``"fp32"``), so a new option cannot be
        forgotten here. The model is keyed on its weights' hash and architecture, not the name
        or path it was given by: ./w.safetensors today and /abs/w.safetensors tomorrow is the
        same finished batch.
        """
        key: dict[str, Any] = {}
        for name in EngineOptions.output_fields():
            if name == "model":
                key.update(arch=shake.SHAKE_MODEL if self.spec is None else self.spec.arch,
                           weights_sha256=self.weights_sha256)
            elif name == "kernel":  # the kernel's content decides, not the name of its file
                key[name] = "none" if self.options.kernel is None else "sha256:" + sha256_file(self.options.kernel)
            else:
                # as resolved onto self (precision "auto" -> "fp32") where it is, else as given
                key[name] = getattr(self, name) if hasattr(self, name) else getattr(self.options, name)
        return key

    def _say(self, msg: str) -> None:
        if msg not in self._noted:
            self._noted.add(msg)
            self._note(msg)

    # -- the model on one batch of tiles ----------------------------------------------------------
    def _forward(self, x: torch.Tensor, precision: str) -> torch.Tensor:
        x = x.to(self.device)
        with torch.inference_mode():
            if self.device.type == "cpu" or precision == "fp32":
                y = self.arch.restore(self.model, x.to(next(self.model.parameters()).dtype))
            else:
                with torch.autocast(device_type=self.device.type, dtype=_DTYPES[precision]):
                    y = self.arch.restore(self.model, x)
        return y.float()

    @contextmanager
    def _scan_backend(self) -> Iterator[None]:
        """The asked-for scan backend for this object's model calls, not for every model in the process.

        (Setting it process-wide once made a later ``Deblurrer(scan_backend="auto")`` keep another's.)
        """
        if self.scan_backend == "auto":
            yield
            return
        before = ssm.get_backend()
        ssm.set_backend(self.scan_backend)
        try:
            yield
        finally:
            ssm.set_backend(before)

    def run_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Restore a batch of tiles (N, 3, h, w) in [0, 1], averaged over `ensemble` mirrored copies.

        Blur mirrored is blur too, so each copy is a fair second opinion; their errors are partly
        independent and averaging them gains a little (for the default model, under a tenth of a dB
        at 2 copies: `evaluate.py --ensemble 2`, figures in weights/README.md). Each copy is put
        back before averaging, so this composes with tiles, scales and strength.
        """
        if self.ensemble == 1:
            return self._run_batch(x)
        with torch.inference_mode():  # the model's outputs are inference tensors: sum them in that mode
            total = self._run_batch(x)
            for k in range(1, self.ensemble):
                total = total + _dihedral(self._run_batch(_dihedral(x, k)), k, inverse=True)
            return total / self.ensemble

    def _run_batch(self, x: torch.Tensor) -> torch.Tensor:
        """One model call on a batch of tiles; NaN/Inf in half precision is redone in fp32."""
        with self._lock, self._scan_backend():  # one model, possibly several reader threads
            threads = torch.get_num_threads()
            y = self._forward(x, self.precision)
            if torch.get_num_threads() != threads:
                # numba's OpenMP pool can reset the process-wide OpenMP thread count when it starts;
                # keep --threads in force for everything that runs after it.
                torch.set_num_threads(threads)
            if self.precision != "fp32" and not torch.isfinite(y).all():
                self._say(f"{self.precision} gave non-finite values on a tile; recomputed it in fp32")
                if self.device.type == "cpu" and self.precision == "bf16":
                    y = self.arch.restore(self.model.float(), x.float())
                    self.model.to(torch.bfloat16)
                else:
                    y = self._forward(x, "fp32")
            return y.cpu()

    # -- whole images ------------------------------------------------------------------------------
    def tile_for(self, h: int, w: int) -> int:
        """The tile side for an image: the user's, or `tiling.auto_tile`'s for this device (0 = whole image)."""
        if self.spec is None or isinstance(self.tile, int):
            return self.tile
        # The architecture's own memory hint; full precision gets twice the half-precision estimate.
        bpp = self.arch.bytes_per_pixel(self.spec.config) * (2 if self.precision == "fp32" else 1)
        cuda = self.device.type == "cuda"
        free = torch.cuda.mem_get_info(self.device)[0] if cuda else _available_memory()
        return tiling.auto_tile(h, w, free_bytes=free, bytes_per_pixel=bpp, multiple=self.spec.pad_multiple,
                                minimum=self.arch.min_tile, overlap=self.tile_overlap, batch_size=self.batch_size,
                                cpu=not cuda)

    def scale_for(self, h: int, w: int) -> int:
        """The reduction the model runs at for an image: the user's, or `multiscale.auto_scale`'s."""
        if self.spec is None or isinstance(self.scale, int):
            return self.scale
        s = multiscale.auto_scale(h, w, self.trained_blur_px)
        # The shake estimate follows the long side; a strip (20000x20) must not shrink to a few rows,
        # so never below the architecture's smallest useful size on the short side.
        while s > 1 and min(h, w) / s < self.arch.min_tile:
            s //= 2
        return s

    # -- camera shake (deblurcli.shake) --------------------------------------------------------------
    @property
    def uses_engine(self) -> bool:
        """Whether each photo goes through the deconvolution engine (shake, or the default's hybrid)."""
        return self.classical or self.hybrid

    @property
    def last_outcome(self) -> shake.Outcome | None:
        """What the engine did to the last photo restored on the calling thread (None: nothing asked of it)."""
        return getattr(self._calls, "outcome", None)

    @last_outcome.setter
    def last_outcome(self, outcome: shake.Outcome | None) -> None:
        self._calls.outcome = outcome

    def _engine(self, pixels: np.ndarray, progress: Callable[[int, int], None] | None,
                label: str) -> np.ndarray | None:
        """The engine on a whole photo (HxWx3 float in [0, 1]): the result, or None for "run the network".

        What it did (path, note, kernel) is left in `last_outcome` for the caller to report.
        """
        h, w = pixels.shape[:2]
        shake.check_region(self.region_box, w, h, label)
        kernel = self.kernel
        if kernel is not None:
            from .deconv.kernels import check_fits

            check_fits(kernel, pixels.shape, source=str(self.options.kernel))
        tick = None if progress is None else (lambda f, _text: progress(int(round(100 * f)), 100))
        common = dict(kernel=kernel, kernel_size=self.kernel_size or None, region=self.region_box, progress=tick)
        if self.classical:
            try:
                out, outcome = shake.run_shake(pixels, **common)
            except KernelError as exc:
                if kernel is not None:
                    raise
                raise KernelError(f"{label}: {exc}; give the blur yourself with {{kernel}} FILE, or use the "
                                  "default model", names=("kernel",)) from None
        else:
            caller = threading.get_ident()

            def network(img: np.ndarray) -> np.ndarray:
                """The network alone on the photo (or its estimation region), as `restore` runs it.

                `shake.try_deconvolve` may run it on a thread of its own beside the estimate; from
                there it reports no progress, so the one bar follows the caller's thread."""
                res = self._scaled(img, progress if threading.get_ident() == caller else None)
                assert res is not None
                return np.clip(res, 0.0, 1.0, out=res)

            out, outcome = shake.try_deconvolve(pixels, network=network, **common)
        self.last_outcome = outcome
        return out

    def restore(self, pixels: np.ndarray, *, strength: float | None = None,
                progress: Callable[[int, int], None] | None = None, tile: int | None = None,
                deconv: bool = True) -> np.ndarray:
        """Restore an HxWx3 float32 image in [0, 1]; returns the same shape, clamped to [0, 1].

        ``strength`` (default: this object's) < 1 blends the result back toward the input.
        ``tile`` (default: `tile_for` this image) holds the tile side for this call: a video's
        frames all use one, so seams do not move from frame to frame.
        ``deconv=False`` keeps the default model's network alone for this call (video frames:
        their blur is the scene's motion more often than the camera's, and estimating a kernel
        per frame would multiply the time). What the engine did is in `last_outcome`.
        """
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 image, got shape {pixels.shape}")
        strength = self.strength if strength is None else _check_strength(strength)
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        self.last_outcome = None
        if self.classical and not deconv:
            raise UsageError("{model} shake restores photos, not video frames; use the default model for videos",
                             names=("model",))
        out = self._engine(pixels, progress, "the image") if self.uses_engine and deconv else None
        if out is None:
            out = self._scaled(pixels, progress, tile=tile)
        assert out is not None
        np.clip(out, 0.0, 1.0, out=out)
        if strength < 1.0:
            out = pixels + strength * (out - pixels)
        return out

    def _scaled(self, image: np.ndarray, progress: Callable[[int, int], None] | None,
                sink: Callable[[int, np.ndarray], None] | None = None, *,
                reads_back: bool = False, tile: int | None = None) -> np.ndarray | None:
        """`_tiled` at the scale `scale_for` picks: at 1/N, the model's correction upsampled onto the image.

        Like `_tiled`, rows go to ``sink`` top to bottom (`image` may be samples as stored) or,
        without one, into the returned float array.
        """
        h, w = image.shape[:2]
        s = self.scale_for(h, w)
        if s == 1:
            return self._tiled(image, progress, sink, reads_back=reads_back, tile=tile)
        if self.scale == "auto":
            self._say(f"ran the model at 1/{s} size: shake on a {w}x{h} image is likely larger than the "
                      f"{self.trained_blur_px} px it learned (--scale 1 for full size)")
        small = multiscale.reduce(image, s)
        restored = self._tiled(small, progress, tile=tile)
        assert restored is not None
        np.clip(restored, 0.0, 1.0, out=restored)
        correction = np.subtract(restored, small, out=restored)
        del small
        out = np.empty((h, w, 3), np.float32) if sink is None else None
        for y0, y1 in multiscale.bands(h, s):
            rows = as_float_rgb(image[y0:y1]) + multiscale.detail_rows(correction, s, y0, y1, w)
            if out is None:
                assert sink is not None
                sink(y0, rows)
            else:
                out[y0:y1] = rows
        return out

    def _tiled(self, image: np.ndarray, progress: Callable[[int, int], None] | None,
               sink: Callable[[int, np.ndarray], None] | None = None, *, reads_back: bool = False,
               tile: int | None = None) -> np.ndarray | None:
        """`tiling.restore_tiled` with this model, retrying with smaller tiles when the GPU runs out.

        `reads_back` says the sink writes into `image` itself: once it has, a retry would read
        restored rows as input, so an out-of-memory error after the first finished strip is final.
        """
        h, w = image.shape[:2]
        tile = self.tile_for(h, w) if tile is None else tile
        started = False

        def track(y: int, rows: np.ndarray) -> None:
            nonlocal started
            started = True
            assert sink is not None
            sink(y, rows)

        while True:
            try:
                return tiling.restore_tiled(
                    image, self.run_batch, tile=tile, overlap=self.tile_overlap, multiple=self.spec.pad_multiple,
                    batch_size=self.batch_size, progress=progress, sink=None if sink is None else track,
                )
            except _OOM_ERRORS:
                if self.device.type != "cuda":
                    raise DeblurError("out of memory on the CPU; use smaller tiles", hint=("tile", 512)) from None
            # Outside the except block the exception and its traceback are gone, and with them the
            # failed attempt's frames and tensors: only now can empty_cache() return their memory.
            torch.cuda.empty_cache()
            current = tile or max(h, w)
            smaller = (current // 2) // self.spec.pad_multiple * self.spec.pad_multiple
            if smaller < 128:
                raise DeblurError("out of GPU memory even with 128 px tiles; run on the CPU", hint=("device", "cpu"))
            if started and reads_back:
                raise DeblurError(f"out of GPU memory with {current} px tiles", hint=("tile", smaller))
            self._say(f"GPU out of memory with {current} px tiles; retrying with {smaller} px")
            tile = smaller

    def tile_check(self, pixels: np.ndarray, *, tile: int | None = None) -> dict[str, Any]:
        """How far tiles change the result, measured on a centre crop of the user's own photo.

        `pixels` is float HxWx3 in [0, 1] or a photo's samples as stored (`Image.samples`).

        The crop is two tiles wide, so it holds real seams; the result is restored whole and
        tiled, and we report the PSNR of one against the other and how much larger the
        difference is in the overlap bands than elsewhere (near 1 means no visible seams).
        ``whole`` says the run itself cut no tiles (the figures are then about tiles it did not use).
        """
        s = self.scale_for(*pixels.shape[:2])
        if s > 1:  # the model sees the reduced image: so must the check
            pixels = multiscale.reduce(pixels, s)
        h, w = pixels.shape[:2]
        # Whether the run itself restores this image in one piece: then the figures describe tiles
        # it did not use, and whoever reads them must not be told to change the tile size.
        used = self.tile_for(h, w) if tile is None else tile
        run_whole = used == 0 or used >= max(h, w)
        t = tile or self.tile_for(h, w) or (min(512, max(h, w) // 2) // self.spec.pad_multiple * self.spec.pad_multiple)
        t = max(t, 2 * self.tile_overlap + self.spec.pad_multiple)
        side = min(h, w, 2 * t - self.tile_overlap)
        y0, x0 = (h - side) // 2, (w - side) // 2
        crop = np.ascontiguousarray(as_float_rgb(pixels[y0:y0 + side, x0:x0 + side]))
        common = dict(overlap=self.tile_overlap, multiple=self.spec.pad_multiple, batch_size=self.batch_size)
        whole = tiling.restore_tiled(crop, self.run_batch, tile=0, **common)
        tiled = tiling.restore_tiled(crop, self.run_batch, tile=t, **common)
        whole, tiled = np.clip(whole, 0, 1), np.clip(tiled, 0, 1)
        err = np.abs(whole - tiled).mean(axis=2)
        mse = float(np.mean((whole - tiled) ** 2))
        cover = np.zeros(crop.shape[:2], np.int32)
        for tl in tiling.plan_tiles(side, side, t, self.tile_overlap):
            cover[tl.slices] += 1
        seam = cover > 1
        inner = err[~seam].mean() if (~seam).any() else 0.0
        ratio = float(err[seam].mean() / max(inner, 1e-12)) if seam.any() else 1.0
        # Identical results are reported as 100 dB rather than infinity, which JSON cannot carry.
        psnr = 100.0 if mse <= 1e-10 else float(10 * np.log10(1.0 / mse))
        return {"crop": f"{side}x{side}", "tile": t, "psnr": psnr, "seam_ratio": ratio, "whole": run_whole}

    def restore_image(self, img: Image, *, strength: float | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      layout: tuple[int, bool] | None = None, in_place: bool = False,
                      label: str | None = None) -> np.ndarray:
        """Restore a decoded photo; ``strength`` (default: this object's) < 1 blends back toward the input.

        Returns HxWx3 float32 in [0, 1], or with ``layout=(bit_depth, grey)`` (from
        `imageio.output_layout`) the samples `write_image` stores: uint8/uint16, HxW when grey.
        The result is finished strip by strip from the photo's own samples, so the only
        full-size buffers are the photo and the result at their stored size (no float copies);
        ``in_place`` writes the result into ``img.samples`` when it has that layout, leaving
        one buffer in all. `label` names the file in errors.
        """
        strength = self.strength if strength is None else _check_strength(strength)
        src = img.samples
        h, w = img.height, img.width
        name = label or img.name
        self.last_outcome = None
        if layout is None:
            out = np.empty((h, w, 3), np.float32)
        else:
            depth, grey = layout
            shape, dtype = ((h, w) if grey else (h, w, 3)), (np.uint8 if depth == 8 else np.uint16)
            fits = src.shape == shape and src.dtype == dtype and src.flags.c_contiguous and src.flags.writeable
            out = src if in_place and fits else np.empty(shape, dtype)

        def finish(y: int, rows: np.ndarray) -> None:
            band = slice(y, y + len(rows))
            np.clip(rows, 0.0, 1.0, out=rows)
            if strength < 1.0:
                before = as_float_rgb(src[band])
                rows = before + strength * (rows - before)
            out[band] = rows if layout is None else to_samples(rows, layout[0], layout[1], name)

        if self.uses_engine:
            # The engine needs the whole photo as floats (one copy; the network path streams strips).
            done = self._engine(as_float_rgb(src), progress, str(img.source or name))
            if done is not None:
                finish(0, done)
                return out
        self._scaled(src, progress, finish, reads_back=out is src)
        return out

    def restore_file(
        self, src: str | os.PathLike[str] | bytes, dst: str | os.PathLike[str] | BinaryIO, *,
        overwrite: bool = False, quality: int = 95, strength: float | None = None, allow_large: bool = False,
        compare: str | os.PathLike[str] | None = None, format: str | None = None, tile_check: bool = False,
        progress: Callable[[int, int], None] | None = None, save_kernel: str | os.PathLike[str] | None = None,
    ) -> RestoreResult:
        """Read, restore and write one photo; never writes over the input or, unasked, an existing file.

        ``src`` may be the bytes of a photo (stdin) and ``dst`` a binary stream (stdout); a stream
        gets ``format`` or else the input's format, since it has no extension to go by.
        ``save_kernel`` writes the camera-shake kernel as a PNG picture (shake and the default
        model; the kernel is also a panel of the ``compare`` image).
        """
        import time

        t0 = time.perf_counter()
        to_stream = not isinstance(dst, (str, os.PathLike))
        if isinstance(src, (bytes, bytearray)):
            label = "-"
            img = read_image(bytes(src), allow_large=allow_large, name="<stdin>")
        else:
            label = str(src)
            if not to_stream:
                _check_destination(Path(src), Path(dst), overwrite)  # type: ignore[arg-type]
            img = read_image(src, allow_large=allow_large)
        if compare is not None:
            _check_destination(img.source, Path(compare), overwrite)
        if save_kernel is not None:
            if not self.uses_engine:
                raise UsageError("{save_kernel} needs a kernel: use the default model (with {deconv} auto) or "
                                 "{model} shake", names=("save_kernel", "deconv", "model"))
            _check_destination(img.source, Path(save_kernel), overwrite)
        if tile_check and self.classical:
            raise UsageError("{tile_check}: {model} shake uses no tiles", names=("tile_check", "model"))
        report = self.tile_check(img.samples) if tile_check else None
        before = np.array(_comparison_crop(img.samples)) if compare is not None else None
        fmt = (format or img.format) if to_stream else format
        layout = output_layout(img, "<stdout>" if to_stream else dst, format=fmt)  # type: ignore[arg-type]
        # In place: from here on img.samples holds the result, not the photo.
        out = self.restore_image(img, strength=strength, progress=progress, layout=layout, in_place=True,
                                 label="-" if to_stream else str(dst))
        size: int | None = None
        if to_stream:
            data = encode_image(img, out, format=fmt, quality=quality)
            dst.write(data)  # type: ignore[union-attr]
            dst.flush()  # type: ignore[union-attr]
            notes = output_notes(img, "<stdout>", format=fmt)
            where = "-"
        else:
            where = str(dst)
            notes = list(write_image(img, out, where, quality=quality, format=format))
            size = Path(where).stat().st_size
        outcome = self.last_outcome
        kernel = outcome.kernel if outcome is not None else None
        if outcome is not None:
            notes.insert(0, outcome.note)
        if save_kernel is not None:
            if kernel is not None:
                shake.save_kernel(kernel, save_kernel)
            else:
                notes.append(f"no kernel to save to {save_kernel}: none could be estimated")
        if compare is not None:
            assert before is not None
            write_comparison(before, out, compare, kernel=kernel)
        return RestoreResult(
            input=label, output=where, seconds=time.perf_counter() - t0, width=img.width, height=img.height,
            bytes=size, notes=notes, tile_check=report, shake=outcome.stats() if outcome is not None else None,
        )


def _check_destination(src: Path | None, dst: Path, overwrite: bool) -> None:
    """Refuse to replace the photo being read, or any existing file unless asked to."""
    refusal = input_as_output(src, dst)
    if refusal:
        raise UsageError(refusal)
    if dst.exists() and not overwrite:
        raise DeblurError(f"{dst}: already exists; allow replacing it", hint=("overwrite", True))


def _comparison_crop(arr: np.ndarray) -> np.ndarray:
    """The whole photo, or for a large one a centre crop: side by side they would be too small to judge."""
    h, w = arr.shape[:2]
    if max(h, w) <= 1600:
        return arr
    side = min(h, w, 512)
    y0, x0 = (h - side) // 2, (w - side) // 2
    return arr[y0:y0 + side, x0:x0 + side]


def write_comparison(before: np.ndarray, after: np.ndarray, path: str | os.PathLike[str], *,
                     kernel: np.ndarray | None = None) -> None:
    """A side-by-side PNG (input | result), or a zoomed crop pair for large photos.

    Either side may be float HxWx3 in [0, 1] or stored samples, and `before` may already be
    its `_comparison_crop` (taken before the result overwrote the photo). With ``kernel``, the
    camera-shake kernel is a third panel (white trail on black), so the result can be judged
    against what was undone.
    """
    from .imageio import Image as _Image

    before, after = as_float_rgb(_comparison_crop(before)), as_float_rgb(_comparison_crop(after))
    gap = np.ones((before.shape[0], 8, 3), np.float32)
    panels = [before, gap, after]
    if kernel is not None:
        panels += [gap, shake.kernel_panel(kernel, before.shape[0])]
    canvas = np.concatenate(panels, axis=1)
    write_image(_Image(pixels=canvas, format="PNG"), canvas, path)


def _parse_tile(tile: int | str) -> int | str:
    if isinstance(tile, str):
        if tile == "auto":
            return "auto"
        try:
            tile = int(tile)
        except ValueError:
            raise OptionError("tile", "must be a number of pixels, 0 (whole image) or auto", value=tile) from None
    if tile < 0:
        raise OptionError("tile", "must be >= 0", value=tile)
    return int(tile)


ENSEMBLES = (1, 2, 4, 8)


def _dihedral(x: torch.Tensor, k: int, *, inverse: bool = False) -> torch.Tensor:
    """Copy ``k`` (1-7) of a (N, C, H, W) batch: bit 0 mirrors left-right, 1 up-down, 2 transposes.

    Copies 1-3 need no transpose, so ``--ensemble 2`` and ``4`` keep each tile's shape.
    """
    if inverse and k & 4:
        x = x.transpose(-1, -2)
    if k & 1:
        x = x.flip(-1)
    if k & 2:
        x = x.flip(-2)
    if not inverse and k & 4:
        x = x.transpose(-1, -2)
    return x.contiguous()


def _check_scan_backend(backend: str, device: torch.device) -> None:
    """Refuse, before the model loads, a scan backend that cannot run on ``device`` (Triton and
    mamba-ssm's kernel need a CUDA GPU), naming those that can."""
    if backend == "auto":
        return
    loadable = set(ssm.available_backends())
    # TRITON_INTERPRET=1 is Triton's own CPU emulator (slow, for testing): then it runs here too.
    emulated = {"triton"} if os.environ.get("TRITON_INTERPRET") == "1" else set()
    here = [b for b in ssm.BACKENDS if b in loadable and (device.type == "cuda" or b not in GPU_SCANS - emulated)]
    if backend in here:
        return
    why = "needs a CUDA GPU" if backend in GPU_SCANS and device.type != "cuda" else "is not installed"
    raise OptionError("scan_backend", f"{why}; on {device.type} choose auto, {', '.join(here)}", value=backend)


def _parse_scale(scale: int | str) -> int | str:
    if scale == "auto":
        return "auto"
    try:
        value = int(scale)
    except (TypeError, ValueError):
        value = 0
    if not 1 <= value <= multiscale.MAX_SCALE or value != float(scale):
        raise OptionError("scale", f"must be auto or a whole number from 1 to {multiscale.MAX_SCALE}", value=scale)
    return value


def _names_shake(model: str | os.PathLike[str] | None) -> bool:
    """Whether ``--model`` names the classical engine (an existing file of that name wins, as in `hub.resolve`)."""
    text = "" if model is None else str(model).strip()
    if not text or Path(text).expanduser().exists():
        return False
    entry = registry.find(text)
    return entry is not None and entry.name == shake.SHAKE_MODEL


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _check_strength(strength: float) -> float:
    if not 0.0 <= strength <= 1.0:
        raise OptionError("strength", "must be between 0 and 1", value=strength)
    return float(strength)


def _available_memory() -> int:
    """Free RAM in bytes (MemAvailable on Linux; a conservative guess elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        warnings.warn("could not read free memory; assuming 4 GB", stacklevel=2)
        return 4 << 30
