"""No file that lies: truncated and impossible images, photos named like videos, audio-only files,
videos on stdin, video options that make no sense, and a video job the disk cannot hold."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from deblurcli.errors import DeblurError, ImageError
from deblurcli.imageio import decode, read_image

av = pytest.importorskip("av")

from test_video import make_clip  # noqa: E402

from deblurcli.api import Deblurrer  # noqa: E402
from deblurcli.video import VideoOptions, restore_video, work_dir  # noqa: E402


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png(w: int, h: int, raw: bytes, *, depth: int = 8, colour: int = 2) -> bytes:
    """A PNG whose chunks are all well formed (valid CRCs, IEND present) around ``raw`` inflated rows."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b""))


def _rows(a: np.ndarray) -> bytes:
    return b"".join(b"\x00" + row.tobytes() for row in a)


def _interlaced_png(a: np.ndarray, keep: float = 1.0) -> bytes:
    """An Adam7 PNG of ``a`` (Pillow cannot write one), its inflated data cut to the ``keep`` fraction."""
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)):
        sub = a[y0::dy, x0::dx]
        if sub.size:
            raw += _rows(sub)
    h, w = a.shape[:2]
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    body = zlib.compress(raw[: int(len(raw) * keep)], 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def _photo(h: int = 96, w: int = 128) -> np.ndarray:
    return (np.random.default_rng(3).random((h, w, 3)) * 255).astype(np.uint8)


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to decode pixels fails the test: a refusal must come from the header and sizes alone."""

    def boom(*a: Any, **k: Any) -> Any:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(decode, "_decode_8bit", boom)
    monkeypatch.setattr(decode, "_cv2_decode", boom)


# -- images -----------------------------------------------------------------------------------------
def test_a_png_whose_rows_stop_halfway_is_truncated_not_half_black(tmp_path: Path) -> None:
    a = _photo()
    half = tmp_path / "half.png"
    half.write_bytes(_png(128, 96, _rows(a[:48])))  # a complete zlib stream, but only half the rows
    with pytest.raises(ImageError, match=r"half\.png: file is truncated") as exc:
        read_image(half)
    assert "\n" not in str(exc.value)
    deep = tmp_path / "deep.png"
    deep.write_bytes(_png(128, 96, _rows(a[:48].astype(">u2") * 257), depth=16))
    with pytest.raises(ImageError, match=r"deep\.png: file is truncated"):
        read_image(deep)
    inter = tmp_path / "inter.png"
    inter.write_bytes(_interlaced_png(a, keep=0.9))  # the last pass (odd rows) cut short
    with pytest.raises(ImageError, match=r"inter\.png: file is truncated"):
        read_image(inter)


def test_a_truncated_jpeg_is_truncated(tmp_path: Path) -> None:
    buf = io.BytesIO()
    PILImage.fromarray(_photo()).save(buf, "JPEG", quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg: file is truncated"):
        read_image(cut)


def test_a_size_the_data_cannot_fill_is_refused_before_decoding(tmp_path: Path, no_pixel_decoding: None) -> None:
    liar = tmp_path / "liar.png"
    liar.write_bytes(_png(12000, 12000, _rows(np.full((2, 12000, 3), 128, np.uint8))))
    assert len(liar.read_bytes()) < 200  # the 149-byte file, near enough
    with pytest.raises(ImageError, match=r"liar\.png: file is truncated or corrupt \(it declares 12000x12000"):
        read_image(liar)

    buf = io.BytesIO()
    PILImage.fromarray(_photo()).save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 12000, 12000)  # the header now claims 144 MP
    big = tmp_path / "liar.jpg"
    big.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"liar\.jpg: file is truncated or corrupt \(it declares 12000x12000"):
        read_image(big)


def test_honest_files_at_the_edge_still_read(tmp_path: Path) -> None:
    """What the checks must never refuse: all black (deflate's best case), a black last row, interlaced."""
    black = tmp_path / "black.png"
    PILImage.new("RGB", (2000, 1500)).save(black, optimize=True)
    assert read_image(black).samples.shape == (1500, 2000, 3)
    a = _photo()
    a[-1] = 0
    last = tmp_path / "last.png"
    PILImage.fromarray(a).save(last)
    assert np.array_equal(read_image(last).samples, a)
    inter = tmp_path / "inter.png"
    inter.write_bytes(_interlaced_png(_photo()))
    assert np.array_equal(read_image(inter).samples, _photo())
    buf = io.BytesIO()
    PILImage.fromarray(_photo()).save(buf, "JPEG", quality=5)  # as small as a real JPEG gets
    small = tmp_path / "small.jpg"
    small.write_bytes(buf.getvalue())
    assert read_image(small).samples.shape == (96, 128, 3)


# -- the command line -------------------------------------------------------------------------------
def _cli(tiny_model: Path, *args: str | Path, input: bytes | None = None) -> Any:
    from typer.testing import CliRunner

    from deblurcli.cli import app

    argv = [str(a) for a in args] + ["--model", str(tiny_model), "--device", "cpu", "--threads", "1", "--tile", "0"]
    return CliRunner().invoke(app, argv, input=input)


def _one_error(res: Any, code: int) -> str:
    err = res.stderr.strip()
    assert res.exit_code == code, (res.exit_code, err)
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert "Traceback" not in err and "OverflowError" not in err
    return err


def test_cli_truncated_png_fails_naming_the_file(tiny_model: Path, tmp_path: Path) -> None:
    half = tmp_path / "half.png"
    half.write_bytes(_png(128, 96, _rows(_photo()[:48])))
    res = _cli(tiny_model, "run", half, "-o", tmp_path / "out.png")
    assert res.exit_code == 1 and "half.png: file is truncated" in res.stderr
    assert not (tmp_path / "out.png").exists()


def test_a_jpeg_named_mp4_is_restored_as_the_jpeg_it_is(tiny_model: Path, tmp_path: Path) -> None:
    photo = tmp_path / "holiday.mp4"
    PILImage.fromarray(_photo()).save(photo, "JPEG", quality=90)
    res = _cli(tiny_model, "run", photo)
    assert res.exit_code == 0, res.stderr
    out = tmp_path / "holiday_deblurred.jpg"
    with PILImage.open(out) as im:
        assert im.format == "JPEG" and im.size == (128, 96)
    assert not (tmp_path / "holiday_deblurred.mp4").exists()
    assert res.stderr.count("is a JPEG photo, not a video") == 1  # told once
    res = _cli(tiny_model, "run", photo, "-o", tmp_path / "clip.mp4")
    err = _one_error(res, 2)
    assert "holiday.mp4 is a JPEG photo, not a video" in err and ".jpg" in err


def test_an_audio_only_file_has_no_video_stream_whatever_the_output_name(tiny_model: Path, tmp_path: Path) -> None:
    song = make_clip(tmp_path / "song.m4a", video=False)
    for extra in ([], ["-o", tmp_path / "x.mp4"], ["-o", tmp_path / "x.m4a"], ["-o", tmp_path / "x.png"]):
        err = _one_error(_cli(tiny_model, "run", song, *extra), 1)
        assert f"{song}: no video stream (it has audio only)" in err
        assert "is a video" not in err and "end the output name" not in err


def test_a_video_on_stdin_is_told_to_give_the_file(tiny_model: Path, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", n=4, audio=False).read_bytes()
    err = _one_error(_cli(tiny_model, "run", "-", "-o", tmp_path / "out.mp4", input=clip), 2)
    assert "videos cannot be read from stdin" in err and "unknown output format" not in err
    res = _cli(tiny_model, "run", "-", "-o", tmp_path / "out.png", input=clip)
    assert res.exit_code == 1 and "is a video, not a photo; videos cannot be piped, give the file" in res.stderr


@pytest.mark.parametrize("args", [["--start", "1e308"], ["--start", "nan"], ["--duration", "0"], ["--preview", "0"],
                                  ["--duration", "inf"]])
def test_video_numbers_that_mean_nothing_are_usage_errors(tiny_model: Path, tmp_path: Path, args: list[str]) -> None:
    clip = make_clip(tmp_path / "clip.mp4", n=4, audio=False)
    err = _one_error(_cli(tiny_model, "run", clip, *args), 2)
    assert args[0] in err
    assert not (tmp_path / "clip_deblurred.mp4").exists()


def test_video_options_on_photos_are_not_silently_ignored(tiny_model: Path, tmp_path: Path) -> None:
    photo = tmp_path / "p.png"
    PILImage.fromarray(_photo()).save(photo)
    for args in (["--crf", "20"], ["--lossless"], ["--start", "2", "--duration", "1"], ["--preview", "3"],
                 ["--codec", "hevc"]):
        err = _one_error(_cli(tiny_model, "run", photo, *args), 2)
        assert args[0] in err and "no input is a video" in err
    assert not (tmp_path / "p_deblurred.png").exists()


def test_ctrl_c_during_a_video_says_where_to_resume_from(tiny_model: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from deblurcli import video

    clip = make_clip(tmp_path / "clip.mp4", n=2 * video.DEFAULT_SEGMENT_FRAMES + 4, audio=False)
    calls = [0]
    real = Deblurrer.restore

    def restore(self: Deblurrer, x: Any, **kw: Any) -> Any:
        calls[0] += 1
        if calls[0] == video.DEFAULT_SEGMENT_FRAMES + 6:
            raise KeyboardInterrupt
        return real(self, x, **kw)

    monkeypatch.setattr(Deblurrer, "restore", restore)
    res = _cli(tiny_model, "run", clip)
    work = work_dir(tmp_path / "clip_deblurred.mp4")
    assert res.exit_code == 130 and work.is_dir()
    assert f"kept in {work}" in res.stderr and "run the same command again to resume" in res.stderr


# -- video encoding and disk ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deblurrer(tiny_model: Path) -> Deblurrer:
    return Deblurrer(tiny_model, device="cpu", tile=0, progress=False)


def test_a_444_input_written_to_mp4_plays_in_browsers(deblurrer: Deblurrer, tmp_path: Path) -> None:
    src = tmp_path / "master.mkv"
    with av.open(str(src), "w") as c:
        s = c.add_stream("ffv1", rate=24)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv444p"
        for i in range(4):
            f = av.VideoFrame.from_ndarray(_photo(48, 64), format="rgb24").reformat(format="yuv444p")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    notes: list[str] = []
    restore_video(deblurrer, src, tmp_path / "web.mp4", on_note=notes.append)
    with av.open(str(tmp_path / "web.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert any("written as yuv420p (4:2:0) so that browsers and phones play" in n for n in notes)
    restore_video(deblurrer, src, tmp_path / "keep.mkv", VideoOptions(codec="h264"))  # .mkv keeps 4:4:4
    with av.open(str(tmp_path / "keep.mkv")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv444p"


def test_the_work_folder_keeps_encoded_frames_not_lossless_ones(deblurrer: Deblurrer, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mp4", n=40, audio=False)
    whole = tmp_path / "whole.mp4"
    restore_video(deblurrer, src, whole, VideoOptions(segment_frames=8))

    def interrupt(index: int) -> None:
        if index == 37:
            raise KeyboardInterrupt

    dst = tmp_path / "cut.mp4"
    with pytest.raises(KeyboardInterrupt):
        restore_video(deblurrer, src, dst, VideoOptions(segment_frames=8, on_frame=interrupt))
    size = whole.stat().st_size
    stored = sum(f.stat().st_size for f in work_dir(dst).glob("packets_*.bin"))
    kept = sum(f.stat().st_size for f in work_dir(dst).iterdir() if f.is_file())  # with the partial output
    assert stored < 1.2 * size and kept < 3 * size, (stored, kept, size)  # lossless RGB frames were ~20x


def test_a_video_the_disk_cannot_hold_is_refused_before_any_work(deblurrer: Deblurrer, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    src = make_clip(tmp_path / "clip.mp4", n=8, audio=False)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=20_000))
    calls = []
    monkeypatch.setattr(deblurrer, "restore", lambda x, **kw: calls.append(1))
    dst = tmp_path / "out.mp4"
    with pytest.raises(DeblurError, match=r"out\.mp4: not enough disk space: this video needs about \d+ MB .* "
                       r"has 0 MB free") as exc:
        restore_video(deblurrer, src, dst)
    assert "\n" not in str(exc.value) and not calls
    assert not dst.exists() and not work_dir(dst).exists()
