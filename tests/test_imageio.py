"""Image file layer: faithful round trips, metadata, orientation, errors and atomic writes."""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageCms, ImageOps, JpegImagePlugin

from deblurcli import imageio
from deblurcli.errors import ImageError
from deblurcli.imageio import Image, encode_image, output_notes, read_image, same_file, write_image

RNG = np.random.default_rng(1234)
# The phone formats this Python can read and write (HEIC needs pillow-heif, AVIF a Pillow with libavif).
ISO_MEDIA = [e for e in ("avif", "heic") if "." + e in imageio.FORMAT_EXTENSIONS]
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    b'tiff:Orientation="6"><dc:creator>Ada</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>'
    b'<?xpacket end="w"?>'
)


def photo(h: int, w: int, c: int = 3, depth: int = 8) -> np.ndarray:
    """Smooth gradients plus mild noise: photo-like, so lossy codecs behave as on real photos."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = [0.5 + 0.4 * np.sin(x / (7 + 3 * i) + y / (11 + 2 * i) + i) for i in range(c)]
    img = np.stack(chans, axis=2) + RNG.normal(0, 0.01, (h, w, c)).astype(np.float32)
    maxval = 255 if depth == 8 else 65535
    out = np.clip(np.rint(img * maxval), 0, maxval).astype(np.uint8 if depth == 8 else np.uint16)
    return out[..., 0] if c == 1 else out


def exif_blob(orientation: int = 6) -> bytes:
    ex = PILImage.Exif()
    ex[0x0112] = orientation
    ex[0x010F] = "Canon"
    ex[0x0110] = "EOS R5"
    ifd = ex.get_ifd(0x8769)
    ifd[0x829A] = (1, 250)  # ExposureTime
    ifd[0x9003] = "2024:05:01 10:00:00"  # DateTimeOriginal
    return ex.tobytes()


def pil_save(arr: np.ndarray, path: Path, fmt: str, mode: str | None = None, **kw) -> Path:
    im = PILImage.fromarray(arr)
    if mode and im.mode != mode:
        im = im.convert(mode)
    im.save(path, fmt, **kw)
    return path


def cv_save(arr: np.ndarray, path: Path) -> Path:
    """16-bit files come from OpenCV (channel order reversed), independent of our writer."""
    if arr.ndim == 3:
        arr = arr[..., [2, 1, 0, 3][: arr.shape[2]]] if arr.shape[2] == 4 else arr[..., ::-1]
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(arr))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def cv_load(path: Path) -> np.ndarray:
    arr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr.ndim == 3:
        arr = arr[..., [2, 1, 0, 3]] if arr.shape[2] == 4 else arr[..., ::-1]
    return arr


def as_uint(img: Image) -> np.ndarray:
    maxval = 255 if img.bit_depth == 8 else 65535
    dtype = np.uint8 if img.bit_depth == 8 else np.uint16
    px = img.pixels[..., 0] if img.channels in ("L", "LA") else img.pixels
    out = np.rint(px * maxval).astype(dtype)
    if img.alpha is not None:
        a = np.rint(img.alpha * maxval).astype(dtype)
        out = np.dstack([out, a]) if out.ndim == 3 else np.dstack([out, a])
    return out


def psnr(a: np.ndarray, b: np.ndarray, maxval: float) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(maxval**2 / mse)


def one_line_error(exc: pytest.ExceptionInfo[ImageError], name: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(name), msg
    return msg


# ------------------------------------------------------------------------------------------
# Round trips


LOSSLESS_8 = [
    ("png", "PNG", 3, {}),
    ("png", "PNG", 1, {}),
    ("png", "PNG", 4, {}),
    ("png", "PNG", 2, {}),
    ("tif", "TIFF", 3, {}),
    ("tif", "TIFF", 1, {}),
    ("tif", "TIFF", 4, {}),
    ("bmp", "BMP", 3, {}),
    ("bmp", "BMP", 1, {}),
    ("webp", "WEBP", 3, {"lossless": True}),
    ("webp", "WEBP", 4, {"lossless": True}),
]


@pytest.mark.parametrize(("ext", "fmt", "c", "kw"), LOSSLESS_8, ids=[f"{e}-{c}ch" for e, _, c, _ in LOSSLESS_8])
def test_8bit_lossless_round_trip(tmp_path: Path, ext: str, fmt: str, c: int, kw: dict) -> None:
    arr = photo(37, 53, c)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
    src = tmp_path / f"in.{ext}"
    im = PILImage.fromarray(arr) if c != 2 else PILImage.merge("LA", [PILImage.fromarray(arr[..., i]) for i in (0, 1)])
    im.save(src, fmt, **kw)
    img = read_image(src)
    assert img.format == fmt and img.bit_depth == 8 and img.channels == mode
    assert img.pixels.dtype == np.float32 and img.pixels.shape == (37, 53, 3)
    assert img.pixels.flags.c_contiguous
    assert (img.alpha is not None) == (c in (2, 4))
    np.testing.assert_array_equal(as_uint(img), arr)

    out = tmp_path / f"out.{ext}"
    notes = write_image(img, img.pixels, out, quality=100)
    assert notes == []
    back = PILImage.open(out)
    assert back.mode == mode
    np.testing.assert_array_equal(np.asarray(back), arr)


@pytest.mark.parametrize("c", [1, 3, 4])
@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_round_trip_exact(tmp_path: Path, ext: str, c: int) -> None:
    arr = photo(29, 41, c, depth=16)
    src = cv_save(arr, tmp_path / f"in.{ext}")
    img = read_image(src)
    assert img.bit_depth == 16
    assert img.channels == {1: "L", 3: "RGB", 4: "RGBA"}[c]
    np.testing.assert_array_equal(as_uint(img), arr)
    # values that do not fit 8 bits really are there (not 8-bit data scaled up)
    assert np.any(as_uint(img) % 257 != 0)

    out = tmp_path / f"out.{ext}"
    assert write_image(img, img.pixels, out) == []
    back = cv_load(out)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, arr)
    again = read_image(out)
    assert again.bit_depth == 16 and again.channels == img.channels


def grey_alpha_16(h: int, w: int) -> tuple[Image, np.ndarray, np.ndarray]:
    """A 16-bit grey photo with transparency, as read, and its grey and alpha samples."""
    g, a = photo(h, w, 1, 16), photo(h, w, 1, 16)[::-1].copy()
    img = Image(
        pixels=np.repeat((g / 65535.0).astype(np.float32)[..., None], 3, axis=2),
        alpha=(a / 65535.0).astype(np.float32),
        bit_depth=16,
        channels="LA",
    )
    return img, g, a


def test_16bit_grey_alpha_png_and_tiff(tmp_path: Path) -> None:
    """Grey+alpha at 16 bits: neither Pillow nor OpenCV can write it, our writers can."""
    img, g, a = grey_alpha_16(19, 23)
    for ext in ("png", "tif"):
        out = tmp_path / f"la.{ext}"
        write_image(img, img.pixels, out)
        back = read_image(out)
        assert back.channels == "LA" and back.bit_depth == 16
        np.testing.assert_array_equal(as_uint(back), np.dstack([g, a]))


@pytest.mark.parametrize("c", [3, 4])
def test_8bit_tiff_read_by_other_decoders(tmp_path: Path, c: int) -> None:
    arr = photo(40, 30, c)
    img = read_image(pil_save(arr, tmp_path / "in.png", "PNG"))
    write_image(img, img.pixels, tmp_path / "out.tif")
    np.testing.assert_array_equal(np.asarray(PILImage.open(tmp_path / "out.tif")), arr)
    if c == 3:  # (libtiff's 8-bit RGBA interface, used by OpenCV, premultiplies alpha)
        np.testing.assert_array_equal(cv_load(tmp_path / "out.tif"), arr)


def test_jpeg_round_trip_quality_and_444(tmp_path: Path) -> None:
    arr = photo(64, 96, 3)
    src = pil_save(arr, tmp_path / "in.jpg", "JPEG", quality=98, subsampling=0)
    img = read_image(src)
    assert img.format == "JPEG" and img.bit_depth == 8 and img.channels == "RGB"
    np.testing.assert_array_equal(as_uint(img), np.asarray(PILImage.open(src)))
    out = tmp_path / "out.jpg"
    write_image(img, img.pixels, out)
    back = PILImage.open(out)
    assert JpegImagePlugin.get_sampling(back) == 0  # 4:4:4
    assert psnr(np.asarray(back), as_uint(img), 255) > 36  # noisy test photo, re-encoded once
    # quality is honoured: a lower quality gives a smaller file
    write_image(img, img.pixels, tmp_path / "low.jpg", quality=50)
    assert (tmp_path / "low.jpg").stat().st_size < out.stat().st_size


def test_grey_stays_grey_jpeg(tmp_path: Path) -> None:
    arr = photo(32, 32, 1)
    img = read_image(pil_save(arr, tmp_path / "g.jpg", "JPEG", quality=100))
    assert img.channels == "L"
    np.testing.assert_array_equal(img.pixels[..., 0], img.pixels[..., 2])
    write_image(img, img.pixels, tmp_path / "o.jpg")
    assert PILImage.open(tmp_path / "o.jpg").mode == "L"


def test_webp_lossy_is_close(tmp_path: Path) -> None:
    arr = photo(48, 64, 3)
    img = read_image(pil_save(arr, tmp_path / "in.png", "PNG"))
    write_image(img, img.pixels, tmp_path / "o.webp", quality=95)
    assert psnr(np.asarray(PILImage.open(tmp_path / "o.webp")), arr, 255) > 30


def test_alpha_untouched_when_pixels_change(tmp_path: Path) -> None:
    arr = photo(21, 34, 4, depth=16)
    img = read_image(cv_save(arr, tmp_path / "in.png"))
    write_image(img, 1.0 - img.pixels, tmp_path / "out.png")
    back = cv_load(tmp_path / "out.png")
    np.testing.assert_array_equal(back[..., 3], arr[..., 3])
    np.testing.assert_array_equal(back[..., :3], 65535 - arr[..., :3])


def test_palette_png_with_transparency_becomes_rgba(tmp_path: Path) -> None:
    arr = photo(16, 16, 3)
    im = PILImage.fromarray(arr).quantize(16)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    img = read_image(tmp_path / "p.png")
    assert img.channels == "RGBA" and img.alpha is not None
    assert set(np.unique(img.alpha)) <= {0.0, 1.0}


def test_cmyk_jpeg_reads_as_rgb(tmp_path: Path) -> None:
    arr = np.zeros((8, 8, 3), np.uint8)
    arr[:, 4:] = 255
    pil_save(arr, tmp_path / "c.jpg", "JPEG", mode="CMYK", quality=100)
    img = read_image(tmp_path / "c.jpg")
    assert img.channels == "RGB"
    assert img.pixels[:, :3].max() < 0.05 and img.pixels[:, 5:].min() > 0.95


# ------------------------------------------------------------------------------------------
# Bit depth, rounding and notes


def test_16bit_to_jpeg_is_rounded_to_8bit_with_a_note(tmp_path: Path) -> None:
    arr = photo(20, 20, 3, depth=16)
    img = read_image(cv_save(arr, tmp_path / "in.png"))
    expected_note = output_notes(img, tmp_path / "o.jpg")
    notes = write_image(img, img.pixels, tmp_path / "o.jpg", quality=100)
    assert notes == expected_note
    assert any("8-bit" in n and ".png or .tif" in n for n in notes)
    back = np.asarray(PILImage.open(tmp_path / "o.jpg"))
    assert back.dtype == np.uint8
    assert psnr(back, np.floor(arr / 65535 * 255 + 0.5), 255) > 40
    # PNG/TIFF keep 16 bits, no note
    assert output_notes(img, tmp_path / "o.tif") == []


def test_alpha_to_jpeg_is_dropped_with_note(tmp_path: Path) -> None:
    img = read_image(pil_save(photo(8, 8, 4), tmp_path / "in.png", "PNG"))
    notes = write_image(img, img.pixels, tmp_path / "o.jpg")
    assert any("alpha" in n for n in notes)
    assert PILImage.open(tmp_path / "o.jpg").mode == "RGB"


def test_rounding_is_half_up_and_clamped(tmp_path: Path) -> None:
    k = np.arange(0, 250, dtype=np.float32)
    row = np.concatenate([(k + 0.5) / 255, (k + 0.49) / 255, [-0.3, 1.7, 0.0, 1.0]]).astype(np.float32)
    px = np.repeat(row[None, :, None], 3, axis=2)
    img = Image(pixels=px, bit_depth=8, channels="RGB")
    data = encode_image(img, px, format="png")
    got = np.asarray(PILImage.open(io.BytesIO(data)))[0, :, 0].astype(int)
    n = len(k)
    np.testing.assert_array_equal(got[:n], k.astype(int) + 1)
    np.testing.assert_array_equal(got[n : 2 * n], k.astype(int))
    np.testing.assert_array_equal(got[2 * n :], [0, 255, 0, 255])


def test_nan_output_is_refused_and_nothing_written(tmp_path: Path) -> None:
    img = Image(pixels=np.zeros((4, 4, 3), np.float32))
    bad = img.pixels.copy()
    bad[1, 1, 1] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        write_image(img, bad, tmp_path / "o.png")
    assert list(tmp_path.iterdir()) == []


def test_encode_image_defaults_to_source_format(tmp_path: Path) -> None:
    arr = photo(10, 12, 3)
    img = read_image(pil_save(arr, tmp_path / "x.tif", "TIFF"))
    data = encode_image(img, img.pixels)
    assert data[:4] == b"II*\x00"
    np.testing.assert_array_equal(as_uint(read_image(data)), arr)
    assert encode_image(img, img.pixels, format="jpg")[:3] == b"\xff\xd8\xff"


def test_dpi_is_kept(tmp_path: Path) -> None:
    src = pil_save(photo(8, 8), tmp_path / "in.jpg", "JPEG", dpi=(300, 300))
    img = read_image(src)
    assert img.dpi == (300, 300)
    for ext in ("png", "tif", "jpg"):
        write_image(img, img.pixels, tmp_path / f"o.{ext}")
        assert read_image(tmp_path / f"o.{ext}").dpi == (300, 300)


# ------------------------------------------------------------------------------------------
# Orientation and metadata


def stored_pattern(h: int = 10, w: int = 16) -> np.ndarray:
    """Asymmetric in every direction, so any wrong flip or turn shows."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 15, y * 25, (x + 2 * y) * 5], axis=2).astype(np.uint8)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(tmp_path: Path, orientation: int) -> None:
    arr = stored_pattern()
    src = pil_save(arr, tmp_path / "o.png", "PNG", exif=exif_blob(orientation))
    img = read_image(src)
    assert img.orientation == orientation
    upright = np.asarray(ImageOps.exif_transpose(PILImage.open(src)))
    np.testing.assert_array_equal(as_uint(img), upright)

    # written upright with the tag reset to 1: reading it again changes nothing
    write_image(img, img.pixels, tmp_path / "out.png")
    again = read_image(tmp_path / "out.png")
    assert again.orientation == 1
    assert PILImage.open(tmp_path / "out.png").getexif().get(0x0112) == 1
    np.testing.assert_array_equal(as_uint(again), upright)

    # "original" restores the stored layout and the original tag
    write_image(img, img.pixels, tmp_path / "orig.png", keep_orientation="original")
    np.testing.assert_array_equal(np.asarray(PILImage.open(tmp_path / "orig.png")), arr)
    assert PILImage.open(tmp_path / "orig.png").getexif().get(0x0112) == orientation


@pytest.mark.parametrize("depth", [8, 16])
def test_png_exif_after_image_data(tmp_path: Path, depth: int) -> None:
    """eXIf may follow the pixel data; it must still be found (without decoding twice)."""
    arr = stored_pattern().astype(np.uint16) * (257 if depth == 16 else 1)
    src = tmp_path / "late.png"
    cv_save(arr.astype(np.uint8 if depth == 8 else np.uint16), src)
    data = src.read_bytes()
    body = exif_blob(6)[6:]
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    src.write_bytes(data[:-12] + chunk + data[-12:])  # just before IEND
    img = read_image(src)
    assert img.orientation == 6 and img.bit_depth == depth
    np.testing.assert_array_equal(as_uint(img), np.rot90(arr, -1))


@pytest.mark.parametrize("depth", [8, 16])
def test_tiff_orientation_applied_once(tmp_path: Path, depth: int) -> None:
    arr = stored_pattern().astype(np.uint16) * (257 if depth == 16 else 1)
    arr = arr.astype(np.uint8 if depth == 8 else np.uint16)
    stored = Image(
        pixels=(arr / (255.0 if depth == 8 else 65535.0)).astype(np.float32),
        bit_depth=depth,
        orientation=6,
        exif=exif_blob(6),
    )
    # Store `arr` with orientation 6 in the TIFF directory, as a camera app would ("original"
    # un-rotates upright pixels, so hand it `arr` turned upright).
    data = encode_image(stored, imageio._orient(stored.pixels, 6), format="tiff", keep_orientation="original")
    (tmp_path / "in.tif").write_bytes(data)
    tags = PILImage.open(tmp_path / "in.tif").tag_v2
    assert tags.get(0x0112, 6) == 6  # (Pillow >= 12 consumes the tag while loading)
    img = read_image(tmp_path / "in.tif")
    assert img.orientation == 6 and img.bit_depth == depth
    np.testing.assert_array_equal(as_uint(img), np.rot90(arr, -1))


def test_exif_icc_xmp_round_trip_jpeg(tmp_path: Path) -> None:
    arr = stored_pattern(12, 20)
    src = pil_save(arr, tmp_path / "cam.jpg", "JPEG", quality=100, exif=exif_blob(6), icc_profile=SRGB_ICC, xmp=XMP)
    img = read_image(src)
    assert img.orientation == 6 and img.icc == SRGB_ICC and img.xmp is not None
    assert img.pixels.shape == (20, 12, 3)  # upright: stored 12x20 turned a quarter

    for ext in ("jpg", "png", "tif", "webp", *ISO_MEDIA):
        out = tmp_path / f"out.{ext}"
        write_image(img, img.pixels, out)
        back = PILImage.open(out)
        assert back.size == (12, 20), ext  # upright
        exif = back.getexif()
        assert exif.get(0x0112) == 1, ext
        assert exif.get(0x010F) == "Canon" and exif.get(0x0110) == "EOS R5", ext
        sub = exif.get_ifd(0x8769)
        exposure = sub[0x829A]
        exposure = exposure[0] / exposure[1] if isinstance(exposure, tuple) else float(exposure)
        assert exposure == pytest.approx(1 / 250) and sub[0x9003] == "2024:05:01 10:00:00", ext
        assert back.info.get("icc_profile") == SRGB_ICC, ext
        again = read_image(out)
        assert again.orientation == 1 and again.icc == SRGB_ICC, ext
        assert again.xmp is not None and b"<dc:creator>Ada</dc:creator>" in again.xmp, ext
        assert re.search(rb'tiff:Orientation="1"', again.xmp), ext
        assert again.pixels.shape == (20, 12, 3), ext  # never rotated twice


def test_jpeg_exif_is_copied_byte_for_byte_except_orientation(tmp_path: Path) -> None:
    src = pil_save(stored_pattern(), tmp_path / "cam.jpg", "JPEG", exif=exif_blob(8))
    img = read_image(src)
    write_image(img, img.pixels, tmp_path / "out.jpg")
    out_exif = PILImage.open(tmp_path / "out.jpg").info["exif"]
    assert len(out_exif) == len(img.exif)
    diff = [i for i, (a, b) in enumerate(zip(out_exif, img.exif, strict=True)) if a != b]
    assert len(diff) == 1  # the single byte holding the orientation value (8 -> 1)


def test_stale_exif_thumbnail_is_unlinked(tmp_path: Path) -> None:
    """The EXIF thumbnail shows the blurry original, stored sideways: it must not survive."""
    blob = bytearray(exif_blob(6))
    body = blob[6:]
    assert body[:2] == b"MM"
    ifd0 = struct.unpack_from(">I", body, 4)[0]
    n = struct.unpack_from(">H", body, ifd0)[0]
    next_at = ifd0 + 2 + 12 * n
    ifd1 = len(body)  # append IFD1: one tag (ImageWidth = 1), no successor
    body += struct.pack(">HHHII", 1, 0x0100, 4, 1, 1) + b"\0\0\0\0"
    struct.pack_into(">I", body, next_at, ifd1)
    src = pil_save(stored_pattern(), tmp_path / "cam.jpg", "JPEG", exif=b"Exif\x00\x00" + bytes(body))
    img = read_image(src)
    write_image(img, img.pixels, tmp_path / "out.jpg")
    out = PILImage.open(tmp_path / "out.jpg").info["exif"][6:]
    assert struct.unpack_from(">I", out, next_at)[0] == 0
    assert PILImage.open(tmp_path / "out.jpg").getexif().get(0x010F) == "Canon"


def test_bad_options() -> None:
    img = Image(pixels=np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError):
        encode_image(img, img.pixels, format="jpg", quality=0)
    with pytest.raises(ValueError):
        encode_image(img, img.pixels, format="png", keep_orientation="sideways")


def test_16bit_png_metadata(tmp_path: Path) -> None:
    arr = photo(9, 14, 3, depth=16)
    img = read_image(cv_save(arr, tmp_path / "in.png"))
    img.exif, img.icc, img.xmp = exif_blob(1), SRGB_ICC, XMP
    write_image(img, img.pixels, tmp_path / "o.png")
    back = read_image(tmp_path / "o.png")
    assert back.icc == SRGB_ICC and back.xmp is not None and b"Ada" in back.xmp
    assert PILImage.open(tmp_path / "o.png").getexif().get(0x010F) == "Canon"
    np.testing.assert_array_equal(as_uint(back), arr)


def test_tiff_source_exif_keeps_descriptive_tags_only(tmp_path: Path) -> None:
    src = pil_save(photo(8, 8), tmp_path / "in.tif", "TIFF", exif=exif_blob(1))
    img = read_image(src)
    assert img.exif is not None
    tags = {t.tag for t in imageio._exif_tags(img.exif)}
    assert {0x010F, 0x0110, 0x8769} <= tags
    assert not tags & {256, 257, 273, 279, 259}  # strip layout never travels
    write_image(img, img.pixels, tmp_path / "o.jpg")
    assert PILImage.open(tmp_path / "o.jpg").getexif().get(0x0110) == "EOS R5"


def test_bmp_output_notes_metadata_loss(tmp_path: Path) -> None:
    img = read_image(pil_save(photo(8, 8), tmp_path / "in.jpg", "JPEG", exif=exif_blob(1), icc_profile=SRGB_ICC))
    assert any("BMP" in n for n in write_image(img, img.pixels, tmp_path / "o.bmp"))


def test_multipage_tiff_note(tmp_path: Path) -> None:
    a = PILImage.fromarray(photo(8, 8))
    a.save(tmp_path / "m.tif", save_all=True, append_images=[a])
    img = read_image(tmp_path / "m.tif")
    assert img.frames == 2
    assert any("first of 2" in n for n in output_notes(img, "x.png"))


# ------------------------------------------------------------------------------------------
# Bad input


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as exc:
        read_image(tmp_path / "nope.jpg")
    assert "no such file" in one_line_error(exc, str(tmp_path / "nope.jpg"))


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as exc:
        read_image(tmp_path)
    assert "folder" in one_line_error(exc, str(tmp_path))


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ImageError) as exc:
        read_image(tmp_path / "e.png")
    assert "empty" in one_line_error(exc, str(tmp_path / "e.png"))


@pytest.mark.parametrize("kind", ["jpg", "png", "png16", "tif16", "webp"])
def test_truncated(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"t.{kind.rstrip('16')}"
    if kind.endswith("16"):
        cv_save(photo(64, 64, 3, 16), path)
    else:
        pil_save(photo(64, 64), path, {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[kind])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as exc:
        read_image(path)
    msg = one_line_error(exc, str(path))
    assert "truncated or corrupt" in msg and "re-download" in msg
    if kind == "jpg":
        assert "JPEG ended early" in msg


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("shopping list: milk, eggs\n")
    with pytest.raises(ImageError) as exc:
        read_image(tmp_path / "notes.jpg")
    assert "not an image" in one_line_error(exc, str(tmp_path / "notes.jpg"))


def test_unsupported_format(tmp_path: Path) -> None:
    path = pil_save(photo(8, 8), tmp_path / "a.gif", "GIF")
    with pytest.raises(ImageError) as exc:
        read_image(path)
    msg = one_line_error(exc, str(path))
    assert "unsupported format GIF" in msg and "convert" in msg


HEIC_HEAD = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
# A generic major brand with the specific one among the compatible brands, as many encoders write.
AVIF_HEAD = b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf"


@pytest.mark.parametrize(("name", "head", "label", "fix"), [
    ("IMG_0001.HEIC", HEIC_HEAD, "HEIC", "pillow-heif"),
    ("a.avif", AVIF_HEAD, "AVIF", "pillow>=11.3"),
])  # fmt: skip
def test_heic_avif_without_their_plugin_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     name: str, head: bytes, label: str, fix: str) -> None:
    """Without the plug-in a photo is refused with what to install, not "not an image"."""
    from dataclasses import replace

    from deblurcli.imageio import formats

    fmt = {"HEIC": "HEIF"}.get(label, label)
    monkeypatch.setitem(formats._BY_NAME, fmt, replace(formats._BY_NAME[fmt], available=lambda: False))
    path = tmp_path / name
    path.write_bytes(head + b"\0" * 64)
    with pytest.raises(ImageError) as exc:
        read_image(path)
    msg = one_line_error(exc, str(path))
    assert f"reading {label} needs" in msg and fix in msg and "convert" in msg
    assert imageio.unreadable_file(path) == msg  # what `deblur run` says before planning an output


def test_canon_cr3_is_refused_as_raw(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0001.CR3"
    path.write_bytes(b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom" + b"\0" * 64)
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "camera raw" in one_line_error(exc, str(path))


def test_iso_media_photos_are_not_videos(tmp_path: Path) -> None:
    """HEIC, AVIF and CR3 share MP4's ftyp box; only the brands tell a photo from a clip."""
    from deblurcli.video import sniff_video

    for name, head in [("a.heic", HEIC_HEAD), ("a.avif", AVIF_HEAD),
                       ("a.cr3", b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom")]:
        (tmp_path / name).write_bytes(head + b"\0" * 64)
        assert sniff_video(tmp_path / name) is None, name
    (tmp_path / "clip.bin").write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\0" * 64)
    assert sniff_video(tmp_path / "clip.bin") == "mp4"


@pytest.mark.parametrize("ext", ISO_MEDIA)
def test_heic_avif_round_trip(tmp_path: Path, ext: str) -> None:
    """Phones' formats in and out: upright, alpha and grey kept, close to the input at quality 95."""
    pil_fmt = {"heic": "HEIF", "avif": "AVIF"}[ext]
    arr = photo(48, 64)
    src = pil_save(arr, tmp_path / f"cam.{ext}", pil_fmt, quality=100, exif=exif_blob(6))
    img = read_image(src)
    assert img.pixels.shape == (64, 48, 3)  # shown turned a quarter, as the EXIF (or HEIF's irot) says
    assert psnr(np.rint(img.pixels * 255), np.rot90(arr, -1), 255) > 35
    out = tmp_path / f"out.{ext}"
    write_image(img, img.pixels, out)
    again = read_image(out)
    assert again.pixels.shape == (64, 48, 3) and again.format == pil_fmt
    assert psnr(np.rint(again.pixels * 255), np.rint(img.pixels * 255), 255) > 35
    for channels, mode in [(4, "RGBA"), (1, "L")]:
        png = read_image(pil_save(photo(16, 16, channels), tmp_path / f"c{channels}.png", "PNG"))
        out = tmp_path / f"c{channels}.{ext}"
        write_image(png, png.pixels, out)
        assert PILImage.open(out).mode == mode, out


def heif_10bit(arr16: np.ndarray, path: Path, **nclx: int) -> Path:
    """A 10-bit HEIC as a camera's HDR mode writes it, made with pillow-heif, not our writer."""
    pillow_heif = pytest.importorskip("pillow_heif")
    mode = {2: "I;16", 3: "RGB;16"}[arr16.ndim if arr16.ndim == 2 else arr16.shape[2]]
    h, w = arr16.shape[:2]
    heif = pillow_heif.from_bytes(mode, (w, h), np.ascontiguousarray(arr16, "<u2").tobytes())
    heif.save(path, quality=-1, **({"chroma": 444} if mode != "I;16" else {}), **nclx)
    return path


HLG = {"color_primaries": 9, "transfer_characteristics": 18, "matrix_coefficients": 9, "full_range_flag": 1}


def test_10bit_hdr_heic_keeps_its_depth_and_colour_description(tmp_path: Path) -> None:
    """A camera's HLG HEIC: read at 10 bits (not cut to 8), written back at 10 bits with BT.2020
    HLG still declared, so it still shows as HDR; any other format says the colours change."""
    arr = photo(40, 56, depth=16)
    src = heif_10bit(arr, tmp_path / "hlg.heic", **HLG)
    img = read_image(src)
    assert img.bit_depth == 16 and img.cicp == (9, 18, 9, 1)
    assert np.abs(img.samples.astype(int) - arr).max() <= 3 * 64  # within 3 steps of 10 bits
    assert len(np.unique(img.samples >> 6)) > 256  # more levels than 8 bits hold

    assert write_image(img, img.pixels, tmp_path / "out.heic") == []
    again = read_image(tmp_path / "out.heic")
    assert again.cicp == (9, 18, 9, 1) and again.bit_depth == 16
    assert PILImage.open(tmp_path / "out.heic").info["bit_depth"] == 10
    assert psnr(again.pixels, img.pixels, 1.0) > 40  # the default quality (95) is lossy

    notes = write_image(img, img.pixels, tmp_path / "out.png")
    assert any("BT.2020 HLG" in n and ".heic" in n for n in notes), notes
    assert read_image(tmp_path / "out.png").bit_depth == 16


def test_10bit_grey_heic_is_read(tmp_path: Path) -> None:
    """pillow-heif hands 10-bit grey to Pillow as I;16, which OpenCV cannot decode: read it ourselves."""
    arr = photo(24, 32, 1, depth=16) >> 6 << 6
    img = read_image(heif_10bit(arr, tmp_path / "g.heic"))
    assert img.is_grey and img.bit_depth == 16
    assert np.array_equal(img.samples, arr)  # lossless grey has no colour conversion to round


def test_sixteen_bits_to_heic_says_ten_and_srgb_heic_says_nothing(tmp_path: Path) -> None:
    pytest.importorskip("pillow_heif")
    png = read_image(cv_save(photo(16, 16, depth=16), tmp_path / "a.png"))
    notes = output_notes(png, tmp_path / "a.heic")
    assert any("10 bits" in n and ".png" in n for n in notes), notes
    phone = read_image(pil_save(photo(16, 16), tmp_path / "phone.heic", "HEIF", quality=90))
    assert phone.cicp is not None and output_notes(phone, tmp_path / "phone.jpg") == []


def test_16bit_grey_with_alpha_to_heic_is_said_before_the_run_and_keeps_its_alpha(tmp_path: Path) -> None:
    """libheif would drop a 10-bit grey image's alpha: the plan stores it as RGBA, and says so
    before the model runs (once), not only after the file is written."""
    pytest.importorskip("pillow_heif")
    img, _, a = grey_alpha_16(20, 24)
    before = output_notes(img, tmp_path / "la.heic")
    assert [n for n in before if "stored as RGB" in n and "transparency" in n], before
    assert write_image(img, img.pixels, tmp_path / "la.heic") == before
    back = read_image(tmp_path / "la.heic")
    assert back.alpha is not None and back.bit_depth == 16
    assert np.abs(as_uint(back)[..., -1].astype(int) - a).max() < 0.01 * 65535  # alpha kept (lossy, 10 bits)
    assert output_notes(img, tmp_path / "la.png") == []  # PNG keeps 16-bit grey with alpha as it is


def test_colour_description_of_damaged_files_is_none_not_a_crash(tmp_path: Path) -> None:
    from deblurcli.imageio.metadata import iso_cicp

    data = heif_10bit(photo(16, 16, depth=16), tmp_path / "h.heic", **HLG).read_bytes()
    assert iso_cicp(data) == (9, 18, 9, 1)
    for cut in range(0, len(data), 7):
        assert iso_cicp(data[:cut]) in (None, (9, 18, 9, 1))
    assert iso_cicp(bytes(RNG.integers(0, 256, 4096, dtype=np.uint8))) is None


def test_camera_raw_is_refused(tmp_path: Path) -> None:
    path = pil_save(photo(8, 8), tmp_path / "DSC_0001.NEF", "TIFF")  # raw files open as TIFF
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "raw" in one_line_error(exc, str(path))


def test_float_tiff_is_refused(tmp_path: Path) -> None:
    PILImage.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ImageError) as exc:
        read_image(tmp_path / "f.tif")
    assert "16-bit" in one_line_error(exc, str(tmp_path / "f.tif"))


def _png_claiming(w: int, h: int, *, fill: bool) -> bytes:
    """A grey PNG header declaring w x h; with ``fill``, IDAT data that really inflates to that size
    (deflated zeros: a true decompression bomb), else a few bytes (a file that lies about its size)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    if fill:
        z = zlib.compressobj(9)
        row_block = b"\0" * ((w + 1) * 64)
        idat = b"".join(z.compress(row_block) for _ in range(h // 64)) + z.compress(b"\0" * ((w + 1) * (h % 64)))
        idat += z.flush()
    else:
        idat = zlib.compress(b"\0" * 16)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_without_allocating(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(20_000, 10_000, fill=True))  # 200 MP of zeros in about 200 kB
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "--allow-large" in one_line_error(exc, str(path))


def test_a_size_its_data_cannot_fill_is_truncated_not_large(tmp_path: Path) -> None:
    path = tmp_path / "liar.png"
    path.write_bytes(_png_claiming(20_000, 10_000, fill=False))  # 200 MP declared by a 100-byte file
    with pytest.raises(ImageError) as exc:
        read_image(path, allow_large=True)
    msg = one_line_error(exc, str(path))
    assert "truncated" in msg and "--allow-large" not in msg


def test_settable_pixel_limit_and_allow_large(tmp_path: Path) -> None:
    path = pil_save(photo(100, 100), tmp_path / "big.png", "PNG")
    with pytest.raises(ImageError) as exc:
        read_image(path, max_pixels=5_000)
    assert "--allow-large" in one_line_error(exc, str(path))
    assert read_image(path, max_pixels=5_000, allow_large=True).pixels.shape == (100, 100, 3)


def test_bytes_input_uses_given_name(tmp_path: Path) -> None:
    data = pil_save(photo(8, 8), tmp_path / "a.png", "PNG").read_bytes()
    img = read_image(data, name="<stdin>")
    assert img.source is None and img.format == "PNG"
    with pytest.raises(ImageError) as exc:
        read_image(data[:40], name="<stdin>")
    one_line_error(exc, "<stdin>")
    with pytest.raises(ImageError, match="^<stdin>: file is empty"):
        read_image(b"")


# ------------------------------------------------------------------------------------------
# Output paths and atomic writes


def _small(tmp_path: Path) -> Image:
    return read_image(pil_save(photo(8, 8), tmp_path / "in.png", "PNG"))


def test_output_format_errors(tmp_path: Path) -> None:
    img = _small(tmp_path)
    with pytest.raises(ImageError) as exc:
        write_image(img, img.pixels, tmp_path / "out.gif")
    assert ".png" in one_line_error(exc, str(tmp_path / "out.gif"))
    with pytest.raises(ImageError, match="no extension"):
        write_image(img, img.pixels, tmp_path / "out")
    with pytest.raises(ImageError, match="does not exist"):
        write_image(img, img.pixels, tmp_path / "missing" / "out.png")
    with pytest.raises(ImageError, match="WEBP cannot hold"):
        wide = np.zeros((1, 16_384, 3), np.float32)
        write_image(Image(pixels=wide), wide, tmp_path / "wide.webp")


def test_refuses_to_overwrite_the_input(tmp_path: Path) -> None:
    img = _small(tmp_path)
    before = (tmp_path / "in.png").read_bytes()
    os.symlink(tmp_path / "in.png", tmp_path / "link.png")
    for target in (tmp_path / "in.png", tmp_path / "sub" / ".." / "in.png", tmp_path / "link.png"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(ImageError, match="input file"):
            write_image(img, img.pixels, target)
    assert (tmp_path / "in.png").read_bytes() == before
    assert same_file(tmp_path / "in.png", tmp_path / "link.png")
    assert not same_file(tmp_path / "in.png", tmp_path / "other.png")
    assert not same_file(None, tmp_path / "in.png")
    write_image(img, 1 - img.pixels, tmp_path / "in.png", overwrite_source=True)
    assert (tmp_path / "in.png").read_bytes() != before


def test_atomic_write_leaves_no_temp_file_and_normal_permissions(tmp_path: Path) -> None:
    img = _small(tmp_path)
    old = os.umask(0o022)
    try:
        write_image(img, img.pixels, tmp_path / "out.jpg")
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.jpg"]
    assert (tmp_path / "out.jpg").stat().st_mode & 0o777 == 0o644


# ENOSPC -> "disk full": one format is enough (tests/test_write_failures.py runs every real encoder).
@pytest.mark.parametrize("ext", ["png"])
def test_failed_write_keeps_existing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ext: str) -> None:
    img = _small(tmp_path)
    out = tmp_path / f"out.{ext}"
    out.write_bytes(b"precious")

    def explode(f, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        f.write(b"partial data " * 100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imageio.encode, "_encode_into", explode)
    with pytest.raises(ImageError) as exc:
        write_image(img, img.pixels, out)
    assert "disk full" in one_line_error(exc, str(out))
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", f"out.{ext}"]


@pytest.mark.parametrize(("dtype", "shape"), [(np.uint8, (9, 13, 3)), (np.uint16, (9, 13, 3)), (np.uint8, (9, 13))])
def test_save_png_writes_the_samples_exactly(tmp_path: Path, dtype: type, shape: tuple[int, ...]) -> None:
    """Training pairs and evaluation outputs go through `save_png`: what is read back is what was given."""
    rng = np.random.default_rng(7)
    samples = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    out = tmp_path / "new" / "pair.png"  # missing folders are made
    imageio.save_png(samples, out)
    back = read_image(out)
    assert back.format == "PNG" and back.bit_depth == (16 if dtype == np.uint16 else 8)
    assert back.samples.dtype == dtype and np.array_equal(back.samples.reshape(shape), samples)
    assert [p.name for p in out.parent.iterdir()] == ["pair.png"]  # no temporary file left


def test_save_png_failure_is_one_line_and_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "pair.png"
    out.write_bytes(b"precious")

    def full(f, arr, enc):  # noqa: ANN001
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imageio.encode, "write_png", full)
    with pytest.raises(ImageError) as exc:
        imageio.save_png(np.zeros((4, 4, 3), np.uint8), out)
    assert "disk full" in one_line_error(exc, str(out))
    assert out.read_bytes() == b"precious" and [p.name for p in tmp_path.iterdir()] == ["pair.png"]
    with pytest.raises(ValueError, match="uint8/uint16"):
        imageio.save_png(np.zeros((4, 4, 3), np.float32), out)


def test_interrupted_write_keeps_existing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    img = _small(tmp_path)
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")

    def interrupt(src, dst):  # noqa: ANN001
        raise KeyboardInterrupt

    monkeypatch.setattr(imageio.encode.os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_image(img, img.pixels, out)
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.png"]


def test_every_format_extension_is_an_input_everywhere(tmp_path: Path) -> None:
    """One list of photo extensions: a `.jfif` that `run` reads is also found by batch, eval and training."""
    from deblurcli import batch
    from deblurcli.eval import datasets
    from deblurcli.synth import pairs

    src = Image(pixels=photo(16, 24, 3).astype(np.float32) / 255.0)
    for ext in sorted(imageio.IMAGE_EXTENSIONS):
        write_image(src, src.pixels, tmp_path / f"p{ext.replace('.', '_')}{ext}")
        assert read_image(tmp_path / f"p{ext.replace('.', '_')}{ext}").format == imageio.format_for_path(f"x{ext}")
    (tmp_path / "notes.txt").write_text("not a photo")
    want = sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".txt")
    assert ".jfif" in imageio.IMAGE_EXTENSIONS and len(want) == len(imageio.IMAGE_EXTENSIONS)
    assert sorted(p.name for p in batch.list_inputs(tmp_path, batch.BatchOptions())) == want
    assert sorted(p.name for p in datasets._images(tmp_path)) == want
    assert sorted(p.name for p in pairs._list_images(tmp_path)) == want


def test_one_format_option_check(tmp_path: Path) -> None:
    """`run` and `batch` refuse the same --format values with the same message, and accept every extension."""
    from deblurcli.batch import BatchOptions, prepare
    from deblurcli.errors import UsageError
    from deblurcli.runplan import plan_outputs

    for ok in [*(e.lstrip(".") for e in imageio.IMAGE_EXTENSIONS), "JPEG", "WebP", ".tif"]:
        assert imageio.unknown_format_error(ok) is None, ok
        assert imageio.format_for_path("out", ok) in {f.name for f in imageio.FORMATS}
    message = imageio.unknown_format_error("gif")
    assert message and "gif" in message and "png" in message and "jfif" in message
    (tmp_path / "in").mkdir()
    with pytest.raises(UsageError) as exc:
        prepare(tmp_path / "in", tmp_path / "out", BatchOptions(format="gif"))
    assert str(exc.value) == message
    (p,) = plan_outputs([str(tmp_path / "a.png")], None, fmt="gif")
    assert p.error == message


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_large_16bit_written_in_parallel_blocks_reads_back_everywhere(tmp_path: Path, ext: str) -> None:
    """Big enough for several independently compressed blocks (PNG) and many strips (TIFF), so the
    stitched deflate stream and its checksum are checked by libpng/libtiff (OpenCV) and Pillow."""
    arr = photo(620, 1150, 3, 16)  # 4.3 MB of samples: three 2 MB PNG blocks
    img = Image(arr, bit_depth=16)
    out = tmp_path / f"big.{ext}"
    write_image(img, arr, out)
    np.testing.assert_array_equal(cv_load(out), arr)
    np.testing.assert_array_equal(read_image(out).samples, arr)
    if ext == "png":  # Pillow reads 16-bit colour only as 8-bit, but its inflate checks the Adler-32
        PILImage.open(out).load()
    grey = np.ascontiguousarray(arr[..., 1])
    write_image(Image(grey, bit_depth=16, channels="L"), grey, out)
    np.testing.assert_array_equal(cv_load(out), grey)
    np.testing.assert_array_equal(np.asarray(PILImage.open(out)), grey)


def test_big_endian_16bit_tiff_reads_exactly(tmp_path: Path) -> None:
    """A Motorola-order ("MM") 16-bit TIFF goes through our strip decoder, which swaps bytes in place."""
    grey = photo(37, 53, 1, 16).reshape(37, 53)
    path = tmp_path / "be.tif"
    PILImage.fromarray(grey.astype(">u2")).save(path)  # mode I;16B: Pillow writes it big-endian
    assert path.read_bytes()[:2] == b"MM"
    img = read_image(path)
    assert img.bit_depth == 16 and img.channels == "L"
    np.testing.assert_array_equal(img.samples, grey)


def test_format_option_names_outputs_alike_in_run_and_batch(tmp_path: Path) -> None:
    """`--format jpeg` gives `a.jpg` from both `run` and `batch` (batch used to write `a.jpeg`)."""
    from deblurcli.batch import BatchOptions, output_path
    from deblurcli.runplan import plan_outputs

    (tmp_path / "a.png").write_bytes(b"")  # planning only looks at names
    for fmt, ext in [("jpeg", ".jpg"), ("JPEG", ".jpg"), ("tiff", ".tif"), ("jpe", ".jpe"), ("webp", ".webp")]:
        (p,) = plan_outputs([str(tmp_path / "a.png")], str(tmp_path / "out") + "/", fmt=fmt)
        assert p.error is None and Path(p.dst).name == f"a{ext}", (fmt, p)
        assert output_path(tmp_path, Path("a.png"), BatchOptions(format=fmt)).name == f"a{ext}", fmt
