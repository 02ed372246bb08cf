"""A write that the operating system refuses part-way, with each real encoder doing the writing.

The file-size limit (RLIMIT_FSIZE) makes the kernel refuse any write past a few kilobytes, so the
PNG, TIFF, JPEG, WebP, BMP, AVIF and HEIC encoders each hit a genuine write error in the middle of their
output. Whatever the encoder does with it, the user's existing file must survive untouched, no
temporary file may be left behind, and the error must be one line naming the file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from deblurcli.errors import ImageError
from deblurcli.imageio import FORMAT_EXTENSIONS, read_image, write_image

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX file-size limits")

LIMIT = 4096  # bytes; every output below is several times larger


@pytest.fixture
def size_limit():  # noqa: ANN201 - a context for the test body
    import contextlib
    import resource
    import signal

    @contextlib.contextmanager
    def limited():  # noqa: ANN202
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, old_handler)

    return limited


# AVIF and HEIC where this Python has their plug-in: their encoders hand over the whole file at once.
ISO_MEDIA = [(e, 8) for e in ("avif", "heic") if "." + e in FORMAT_EXTENSIONS]


@pytest.mark.parametrize(("ext", "bit_depth"), [("png", 8), ("png", 16), ("tif", 8), ("tif", 16), ("jpg", 8),
                                                ("webp", 8), ("bmp", 8), *ISO_MEDIA])
def test_refused_write_keeps_the_existing_file(tmp_path: Path, size_limit, ext: str, bit_depth: int) -> None:
    src = tmp_path / "in.png"
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    from PIL import Image as PILImage

    PILImage.fromarray(noise).save(src)
    img = read_image(src)
    out = tmp_path / f"out.{ext}"
    out.write_bytes(b"precious")
    with size_limit(), pytest.raises(ImageError) as exc:
        write_image(img, img.pixels, out, overwrite_source=False, bit_depth=bit_depth)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(str(out)), msg
    assert "cannot write the output" in msg or "disk full" in msg, msg
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", f"out.{ext}"]
    # and with room to write, the same call succeeds: the limit, not the settings, made it fail
    write_image(img, img.pixels, out, bit_depth=bit_depth)
    assert out.stat().st_size > LIMIT
