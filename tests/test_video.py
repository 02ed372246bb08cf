"""Videos: what a viewer or an editor relies on survives restoration, on clips made here with PyAV."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

av = pytest.importorskip("av")

from deblurcli.api import Deblurrer  # noqa: E402
from deblurcli.errors import DeblurError  # noqa: E402
from deblurcli.video import VideoOptions, is_video, preview_path, restore_video, sniff_video, work_dir  # noqa: E402

W, H, N = 64, 48, 48


def make_clip(path: Path, *, n: int = N, vfr: bool = False, rotation: int | None = None, pix_fmt: str = "yuv420p",
              audio: bool = True, video: bool = True, faststart: bool = False) -> Path:
    """h264 (+ AAC) with BT.709 colour tags; VFR clips get irregular 30/50/41 ms frame steps."""
    rng = np.random.default_rng(1)
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as c:
        if video:
            v = c.add_stream("libx264", rate=24, options={"crf": "10"})
            v.width, v.height, v.pix_fmt = W, H, pix_fmt
            v.codec_context.time_base = Fraction(1, 1000) if vfr else Fraction(1, 24)
            for k in ("color_primaries", "color_trc", "colorspace"):
                setattr(v.codec_context, k, 1)
            v.codec_context.color_range = 1
            if rotation is not None:
                v.set_display_rotation(rotation)
        if audio:
            a = c.add_stream("aac", rate=48000)
            a.layout = "mono"
        t = 0
        base = rng.random((H, W, 3))
        for i in range(n if video else 0):
            img = (np.clip(base + 0.3 * np.sin(i / 5), 0, 1) * 255).astype(np.uint8)
            img[:, (i * 3) % W] = 255  # something moving, so frames differ
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = t if vfr else i
            t += (30, 50, 41)[i % 3]
            for p in v.encode(f):
                c.mux(p)
        if video:
            for p in v.encode():
                c.mux(p)
        if audio:
            samples, pos = int((t / 1000 if vfr else n / 24) * 48000), 0
            while pos < samples:
                k = min(1024, samples - pos)
                x = (0.1 * np.sin(np.arange(pos, pos + k) * 2 * np.pi * 440 / 48000)).astype(np.float32)[None]
                af = av.AudioFrame.from_ndarray(x, format="fltp", layout="mono")
                af.sample_rate, af.pts = 48000, pos
                for p in a.encode(af):
                    c.mux(p)
                pos += k
            for p in a.encode():
                c.mux(p)
    return path


def facts(path: Path) -> dict[str, Any]:
    """What must survive: per-frame times, durations, rotation, colour, depth and the audio packets."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        frames = list(c.decode(vs))
        c.seek(0)
        audio = [(bytes(p), float(p.pts * p.time_base), float(p.dts * p.time_base), float(p.duration * p.time_base))
                 for p in c.demux(c.streams.audio) if p.size] if c.streams.audio else []
        return {
            "count": len(frames),
            "times": [round(float(f.pts * f.time_base), 6) for f in frames],
            "duration": round(float(vs.duration * vs.time_base), 4) if vs.duration else None,
            "rotation": frames[0].rotation,
            "color": (frames[0].color_primaries, frames[0].color_trc, frames[0].colorspace, frames[0].color_range),
            "pix_fmt": vs.codec_context.pix_fmt,
            "size": (frames[0].width, frames[0].height),
            "codec": vs.codec_context.name,
            "audio": audio,
        }


def pixels(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24", src_color_range=1, dst_color_range=2) for f in c.decode(video=0)]


def through_yuv420(rgb: np.ndarray) -> np.ndarray:
    """What 4:2:0 BT.709 limited-range storage does to an RGB frame."""
    f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", src_colorspace=1, dst_colorspace=1,
                                                                 dst_color_range=1)
    return f.to_ndarray(format="rgb24", src_colorspace=1, dst_colorspace=1, src_color_range=1, dst_color_range=2)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "cfr": make_clip(d / "cfr.mp4"),
        "vfr": make_clip(d / "vfr.mp4", vfr=True),
        "rotated": make_clip(d / "rotated.mp4", rotation=90),
        "10bit": make_clip(d / "tenbit.mp4", pix_fmt="yuv420p10le"),
        "mkv": make_clip(d / "vfr.mkv", vfr=True),
    }


@pytest.fixture(scope="module")
def deblurrer(tiny_model: Path) -> Deblurrer:
    return Deblurrer(tiny_model, device="cpu", tile=0, progress=False)


@pytest.mark.parametrize("kind", ["cfr", "vfr", "rotated", "10bit", "mkv"])
def test_timing_audio_rotation_colour_and_depth_are_kept(kind: str, clips: dict[str, Path], deblurrer: Deblurrer,
                                                         tmp_path: Path) -> None:
    src = clips[kind]
    dst = tmp_path / f"out{src.suffix}"
    res = restore_video(deblurrer, src, dst)
    a, b = facts(src), facts(dst)
    assert b["count"] == a["count"] == N
    assert b["times"] == a["times"]
    if a["duration"] is not None:
        assert b["duration"] == a["duration"]
    assert b["audio"] == a["audio"] and len(a["audio"]) > 20  # packet for packet: bytes and timestamps
    for k in ("rotation", "color", "pix_fmt", "size", "codec"):
        assert b[k] == a[k], k
    assert a["rotation"] == (90 if kind == "rotated" else 0)
    assert a["pix_fmt"] == ("yuv420p10le" if kind == "10bit" else "yuv420p")
    assert res.status == "ok" and "libx264, crf 18" in res.notes[0]
    assert not work_dir(dst).exists()
    # the model really ran: the frames changed
    assert np.abs(pixels(dst)[10].astype(int) - pixels(src)[10].astype(int)).mean() > 1.0


def test_each_frame_goes_through_the_deblurrer_lossless_and_strength(clips: dict[str, Path], deblurrer: Deblurrer,
                                                                       tmp_path: Path) -> None:
    src = clips["cfr"]
    full = tmp_path / "full.mkv"
    res = restore_video(deblurrer, src, full, VideoOptions(lossless=True))
    assert facts(full)["codec"] == "ffv1" and "ffv1" in res.notes[0]
    with av.open(str(src)) as c:
        frame = next(iter(c.decode(video=0)))
        rgb = frame.to_ndarray(format="rgb24", src_color_range=1, dst_color_range=2).astype(np.float32) / 255
    expected = through_yuv420((np.clip(deblurrer.restore(rgb), 0, 1) * 255 + 0.5).astype(np.uint8))
    got = pixels(full)[0]
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1  # FFV1: nothing lost but 4:2:0 storage
    none = tmp_path / "none.mkv"
    restore_video(deblurrer, src, none, VideoOptions(lossless=True, strength=0.0))
    assert np.abs(pixels(none)[0].astype(int) - through_yuv420((rgb * 255 + 0.5).astype(np.uint8))).max() <= 1


def test_section_and_preview(clips: dict[str, Path], deblurrer: Deblurrer, tmp_path: Path) -> None:
    src = clips["cfr"]
    dst = tmp_path / "section.mp4"
    restore_video(deblurrer, src, dst, VideoOptions(start=0.5, duration=0.5))
    f = facts(dst)
    assert f["count"] == 12
    assert f["times"] == [round(i / 24, 6) for i in range(12)]
    audio_seconds = sum(p[3] for p in f["audio"])
    assert 0.4 < audio_seconds < 0.6 and f["audio"][0][1] < 0.03
    src_audio = {p[0] for p in facts(src)["audio"]}
    assert all(p[0] in src_audio for p in f["audio"])  # copied, not re-encoded

    out = preview_path(tmp_path / "look.mp4")
    assert out == tmp_path / "look_preview.mp4"
    restore_video(deblurrer, src, out, VideoOptions(preview=0.25))
    p = facts(out)
    assert p["size"] == (2 * W + 8, H) and p["count"] == 6
    frame, before = pixels(out)[0].astype(int), pixels(src)[0].astype(int)
    left, right = np.abs(frame[:, :W] - before).mean(), np.abs(frame[:, W + 8:] - before).mean()
    assert left < 0.5 * right, (left, right)  # input | result


def test_interrupted_run_leaves_nothing_and_resumes_to_the_same_frames(clips: dict[str, Path], deblurrer: Deblurrer,
                                                                        tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    src = clips["vfr"]
    whole = tmp_path / "whole.mp4"
    restore_video(deblurrer, src, whole, VideoOptions(segment_frames=8))

    dst = tmp_path / "resumed.mp4"

    def interrupt(index: int) -> None:
        if index == 21:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        restore_video(deblurrer, src, dst, VideoOptions(segment_frames=8, on_frame=interrupt))
    assert not dst.exists()
    assert sorted(p.name for p in work_dir(dst).glob("packets_*.bin")) == [
        "packets_000000.bin", "packets_000001.bin"]

    calls = []
    restore = deblurrer.restore
    monkeypatch.setattr(deblurrer, "restore", lambda x, **kw: calls.append(1) or restore(x, **kw))
    res = restore_video(deblurrer, src, dst, VideoOptions(segment_frames=8))
    assert len(calls) == N - 16  # the first two segments were not restored again
    assert any("resumed: 16 frames" in n for n in res.notes)
    assert facts(dst) == facts(whole)
    assert all(np.array_equal(a, b) for a, b in zip(pixels(dst), pixels(whole), strict=True))
    assert not work_dir(dst).exists()


def test_changed_settings_do_not_reuse_old_frames(clips: dict[str, Path], deblurrer: Deblurrer,
                                                   tmp_path: Path) -> None:
    src, dst = clips["cfr"], tmp_path / "o.mp4"

    def interrupt(index: int) -> None:
        if index == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        restore_video(deblurrer, src, dst, VideoOptions(segment_frames=4, on_frame=interrupt))
    res = restore_video(deblurrer, src, dst, VideoOptions(segment_frames=4, strength=0.5))
    assert not any("resumed" in n for n in res.notes)


def test_bad_inputs_are_one_line_errors(clips: dict[str, Path], deblurrer: Deblurrer, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video at all" * 100)
    cut = tmp_path / "cut.mp4"
    data = clips["cfr"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    audio_only = make_clip(tmp_path / "sound.m4a", video=False)
    cases = [(junk, "not a video"), (cut, "truncated or corrupt"), (audio_only, "no video stream (it has audio only)")]
    for path, words in cases:
        with pytest.raises(DeblurError) as exc:
            restore_video(deblurrer, path, tmp_path / "x.mp4")
        msg = str(exc.value)
        assert words in msg and str(path) in msg and "\n" not in msg
    assert not (tmp_path / "x.mp4").exists()
    with pytest.raises(DeblurError, match="already exists"):
        restore_video(deblurrer, clips["cfr"], clips["vfr"])  # never replaces an existing file unasked
    with pytest.raises(DeblurError, match="FFV1 cannot go into .mov"):
        restore_video(deblurrer, clips["cfr"], tmp_path / "y.mov", VideoOptions(lossless=True))
    with pytest.raises(DeblurError, match=r"audio stream \(aac\) cannot be copied into .webm without re-encoding; "
                       r"write .mp4 instead"):
        restore_video(deblurrer, clips["cfr"], tmp_path / "y.webm")
    assert not work_dir(tmp_path / "y.webm").exists()  # nothing restored yet: no work folder left behind


def test_a_file_cut_short_and_an_unreadable_codec_are_one_line_errors(deblurrer: Deblurrer, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    whole = make_clip(tmp_path / "whole.mp4", faststart=True)  # index first: a cut file still opens
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(DeblurError, match=r"cut.mp4: truncated: only \d+ of its 48 frames could be read") as exc:
        restore_video(deblurrer, cut, tmp_path / "out.mp4")
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "out.mp4").exists() and not work_dir(tmp_path / "out.mp4").exists()

    from deblurcli.video import probing

    real = probing._can_decode
    monkeypatch.setattr(probing, "_can_decode", lambda name: name != "h264" and real(name))
    with pytest.raises(DeblurError, match=r"whole.mp4: unsupported video codec h264; this build reads hevc, vp9"):
        restore_video(deblurrer, whole, tmp_path / "out.mp4")


def test_detection_is_by_content(clips: dict[str, Path], tmp_path: Path) -> None:
    renamed = tmp_path / "clip.bin"
    renamed.write_bytes(clips["cfr"].read_bytes())
    assert sniff_video(renamed) == "mp4" and is_video(renamed)
    assert sniff_video(clips["mkv"]) == "matroska"
    photo = tmp_path / "photo.mp4"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert sniff_video(photo) is None


def test_the_deblurrers_strength_blends_frames_once(clips: dict[str, Path], deblurrer: Deblurrer,
                                                     tmp_path: Path) -> None:
    """--strength reaches videos through the engine options, exactly as through VideoOptions."""
    src = clips["cfr"]  # the first three frames are enough to compare the first
    half = Deblurrer(options=deblurrer.options.replace(strength=0.5), progress=False)
    restore_video(half, src, tmp_path / "engine.mkv", VideoOptions(lossless=True, duration=0.125))
    restore_video(deblurrer, src, tmp_path / "video.mkv", VideoOptions(lossless=True, duration=0.125, strength=0.5))
    # blended once, at 0.5 (not 0.25)
    restore_video(half, src, tmp_path / "both.mkv", VideoOptions(lossless=True, duration=0.125, strength=0.5))
    a, b = pixels(tmp_path / "engine.mkv")[0].astype(int), pixels(tmp_path / "video.mkv")[0].astype(int)
    assert np.abs(a - b).max() <= 1
    assert np.abs(pixels(tmp_path / "both.mkv")[0].astype(int) - a).max() <= 1
    full = tmp_path / "full.mkv"
    restore_video(deblurrer, src, full, VideoOptions(lossless=True, duration=0.125))
    assert np.abs(pixels(full)[0].astype(int) - a).max() > 1  # and it did blend: not the full restoration


# -- the command line -------------------------------------------------------------------------------
def _cli(tiny_model: Path, *args: str | Path) -> Any:
    from typer.testing import CliRunner

    from deblurcli.cli import app

    argv = [str(a) for a in args] + ["--model", str(tiny_model), "--device", "cpu", "--threads", "1"]
    return CliRunner().invoke(app, argv)


def test_cli_run_video_section_preview_and_errors(clips: dict[str, Path], tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    src.write_bytes(clips["rotated"].read_bytes())
    res = _cli(tiny_model, "run", src, "--start", "1", "--duration", "0.5")
    assert res.exit_code == 0, res.stderr
    out = tmp_path / "clip_deblurred.mp4"
    assert "libx264, crf 18" in res.stderr and f"{src} -> {out}" in res.stderr
    f = facts(out)
    assert f["count"] == 12 and f["rotation"] == 90

    res = _cli(tiny_model, "run", src, "-o", tmp_path / "look.mkv", "--preview", "0.25", "--codec", "h264")
    assert res.exit_code == 0, res.stderr
    assert not (tmp_path / "look.mkv").exists()
    p = facts(tmp_path / "look_preview.mkv")
    assert p["size"] == (W, 2 * H + 8) and p["count"] == 6  # shown rotated: input | result side by side

    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"\x00" * 4096)
    for path, code, words in [(junk, 1, "not a video"), (make_clip(tmp_path / "a.m4a", video=False), 1,
                                                               "no video stream")]:
        res = _cli(tiny_model, "run", path, "-o", tmp_path / "o.mp4")
        err = res.stderr.strip()
        assert res.exit_code == code and len(err.splitlines()) == 1 and err.startswith("error:"), err
        assert words in err and str(path) in err
    res = _cli(tiny_model, "run", src, "-o", tmp_path / "o.png")
    assert res.exit_code == 2 and "is a video; end the output name in .mp4" in res.stderr


def test_cli_batch_takes_videos_beside_photos_and_resumes(clips: dict[str, Path], tiny_model: Path,
                                                          tmp_path: Path) -> None:
    import cv2

    src = tmp_path / "in"
    src.mkdir()
    (src / "clip.mp4").write_bytes(clips["cfr"].read_bytes())
    cv2.imwrite(str(src / "photo.png"), np.full((40, 40, 3), 128, np.uint8))
    res = _cli(tiny_model, "batch", src, tmp_path / "out", "--json")
    assert res.exit_code == 0, res.stderr
    lines = {r["input"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert lines["clip.mp4"]["status"] == "ok" and lines["photo.png"]["status"] == "ok"
    assert facts(tmp_path / "out" / "clip.mp4")["times"] == facts(src / "clip.mp4")["times"]
    res = _cli(tiny_model, "batch", src, tmp_path / "out", "--json")
    assert [json.loads(x)["status"] for x in res.stdout.splitlines()] == ["skipped", "skipped"]


@pytest.mark.parametrize("leave", [8_000, 30_000], ids=["at-start", "while-encoding"])
def test_batch_retries_a_video_that_met_a_full_disk_without_retry_failed(clips: dict[str, Path], tiny_model: Path,
                                                                        tmp_path: Path, leave: int,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk says nothing about the input: once space is freed, the next run redoes the
    video by itself, as it does for photos (--retry-failed is for inputs that cannot be read).

    "at-start" is refused by the space estimate before any work; "while-encoding" switches that
    estimate off to meet the full disk itself, as a job whose output outgrows the guess would.
    """
    from tmpfs import fill, small_tmpfs

    from deblurcli.video import pipeline

    if leave > 8_000:
        monkeypatch.setattr(pipeline, "_check_disk", lambda *a, **k: None)
    src = tmp_path / "in"
    src.mkdir()
    (src / "clip.mp4").write_bytes(clips["cfr"].read_bytes())
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        out = disk / "out"
        out.mkdir()
        fill(disk, leave=leave)  # room for the journal lines, not for the video
        res = _cli(tiny_model, "batch", src, out, "--json", "--crf", "0")
        assert res.exit_code == 1
        rec = json.loads(res.stdout.splitlines()[0])
        why = "not enough disk space" if leave == 8_000 else "disk full"
        assert rec["status"] == "failed" and why in rec["error"], rec
        assert not (out / "clip.mp4").exists()
        for p in disk.glob("filler*"):
            p.unlink()
        res = _cli(tiny_model, "batch", src, out, "--json", "--crf", "0")
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout.splitlines()[0])["status"] == "ok"
        assert facts(out / "clip.mp4")["count"] == N


HDR10 = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"


def _hdr10_clip(path: Path, n: int = 6) -> Path:
    """10-bit HEVC, PQ/BT.2020, with mastering-display and light-level SEI (what HDR phones record)."""
    rng = np.random.default_rng(3)
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx265", rate=24, options={
            "crf": "20", "x265-params": f"master-display={HDR10}:max-cll=1000,400:log-level=error"})
        v.width, v.height, v.pix_fmt = W, H, "yuv420p10le"
        v.codec_context.color_primaries, v.codec_context.color_trc, v.codec_context.colorspace = 9, 16, 9
        for i in range(n):
            f = av.VideoFrame.from_ndarray((rng.random((H, W, 3)) * 255).astype(np.uint8), format="rgb24")
            f = f.reformat(format="yuv420p10le")
            f.pts = i
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    return path


def _first_frame_hdr(path: Path) -> dict | None:
    from deblurcli.video import hdr_metadata

    with av.open(str(path)) as c:
        return hdr_metadata(next(c.decode(video=0)))


@pytest.mark.parametrize("codec", [None, "av1", "h264"])
def test_hdr10_metadata_survives_the_reencode(tiny_model: Path, tmp_path: Path, codec: str | None) -> None:
    """A TV tone-maps HDR10 by its mastering display and light levels: dropping them makes the
    restored clip look different from the input even where the pixels are the same."""
    src = _hdr10_clip(tmp_path / "hdr.mkv")
    hdr = _first_frame_hdr(src)
    assert hdr is not None and hdr["light"] == (1000, 400)
    assert hdr["primaries"] == ((0.68, 0.32), (0.265, 0.69), (0.15, 0.06)) and hdr["luminance"] == (0.005, 1000.0)
    d = Deblurrer(tiny_model, device="cpu", threads=1, progress=False)
    out = tmp_path / f"out_{codec}.mkv"
    res = restore_video(d, src, out, VideoOptions(codec=codec))
    assert "HDR10 metadata kept" in " ".join(res.notes), res.notes
    got = _first_frame_hdr(out)
    assert got is not None and got["light"] == (1000, 400)
    for a, b in zip([*got["primaries"], got["white"], got["luminance"]],
                    [*hdr["primaries"], hdr["white"], hdr["luminance"]], strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_hdr10_metadata_an_encoder_cannot_carry_is_named(tiny_model: Path, tmp_path: Path) -> None:
    src = _hdr10_clip(tmp_path / "hdr.mkv", n=2)
    d = Deblurrer(tiny_model, device="cpu", threads=1, progress=False)
    res = restore_video(d, src, tmp_path / "o.mkv", VideoOptions(lossless=True))
    assert any("cannot carry the input's HDR10 metadata" in n for n in res.notes), res.notes


def _clip_with_subtitles(path: Path, codec: str, n: int = 12) -> list[tuple[bytes, int | None, int | None]]:
    """A short clip with a subtitle track of two cues (made with a mux-only stream: no encoder
    needed); returns the cues as (text, pts, duration) in milliseconds."""
    cues = [(b"first line", 100, 200), ("second, ü".encode(), 300, 150)]
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        st = c.add_mux_stream(codec)
        st.time_base = Fraction(1, 1000)
        st.metadata["language"] = "deu"
        st.disposition = av.stream.Disposition.forced
        rng = np.random.default_rng(5)
        for i in range(n):
            f = av.VideoFrame.from_ndarray((rng.random((H, W, 3)) * 255).astype(np.uint8), format="rgb24")
            f.pts = i
            for p in v.encode(f):
                c.mux(p)
        for text, pts, dur in cues:
            pk = av.Packet(text)
            pk.stream, pk.pts, pk.dts, pk.duration, pk.time_base = st, pts, pts, dur, Fraction(1, 1000)
            c.mux(pk)
        for p in v.encode():
            c.mux(p)
    return cues


def _subtitle_cues(path: Path) -> tuple[list[tuple[bytes, int, int]], str | None, bool]:
    with av.open(str(path)) as c:
        st = c.streams.subtitles[0]
        tb = st.time_base
        cues = [(bytes(p), round(p.pts * tb * 1000), round(p.duration * tb * 1000))
                for p in c.demux(st) if p.size and bytes(p).strip(b"\x00")]
        return cues, st.metadata.get("language"), bool(st.disposition & av.stream.Disposition.forced)


@pytest.mark.parametrize(("ext", "codec"), [(".mkv", "subrip"), (".mp4", "mov_text"), (".mkv", "ass")])
def test_subtitle_tracks_are_copied_cue_for_cue(tiny_model: Path, tmp_path: Path, ext: str, codec: str) -> None:
    src = tmp_path / f"sub{ext}"
    cues = _clip_with_subtitles(src, codec)
    before, lang, forced = _subtitle_cues(src)
    assert [c[0] for c in before] == [c[0] for c in cues] and lang == "deu" and forced
    d = Deblurrer(tiny_model, device="cpu", threads=1, progress=False)
    out = tmp_path / f"out{ext}"
    restore_video(d, src, out, VideoOptions())
    assert _subtitle_cues(out) == (before, "deu", True)  # cues, language, forced flag
    assert facts(out)["count"] == 12


def test_batch_lossless_writes_mkv_for_containers_that_cannot_hold_ffv1(clips: dict[str, Path], tiny_model: Path,
                                                                       tmp_path: Path) -> None:
    """A batch has no output name to fix by hand: --lossless on .mp4 inputs writes .mkv beside them."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.mp4").write_bytes(clips["cfr"].read_bytes())
    (src / "b.mkv").write_bytes(clips["mkv"].read_bytes())
    res = _cli(tiny_model, "batch", src, tmp_path / "out", "--json", "--lossless")
    assert res.exit_code == 0, res.stderr
    assert {r["input"]: r["status"] for r in map(json.loads, res.stdout.splitlines())} == {"a.mp4": "ok", "b.mkv": "ok"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == ["a.mkv", "b.mkv"]
    assert facts(tmp_path / "out" / "a.mkv")["count"] == N
    res = _cli(tiny_model, "batch", src, tmp_path / "out", "--json", "--lossless")  # resumes under the new name
    assert [json.loads(x)["status"] for x in res.stdout.splitlines()] == ["skipped", "skipped"]


# Each output-deciding VideoOptions field with a value that changes the written video; the assertion
# on the keys makes a new field fail here until it has one, so batch resume cannot miss it.
_CHANGED_VIDEO = {"crf": 30, "codec": "h264", "lossless": True, "start": 0.1, "duration": 0.1, "preview": 0.1,
                  "strength": 0.5}


def test_changed_video_fields_cover_every_output_deciding_field() -> None:
    from deblurcli.options import output_settings

    assert set(_CHANGED_VIDEO) == set(output_settings(VideoOptions()))


def test_every_name_the_package_exports_resolves_to_its_module() -> None:
    """deblurcli.video imports its heavy modules on first use: a name missing from its table would fail only then."""
    import importlib

    import deblurcli.video as video

    for name in video.__all__:
        module = video._LAZY.get(name, "options")
        assert getattr(video, name) is getattr(importlib.import_module(f"deblurcli.video.{module}"), name), name


def test_run_and_batch_take_their_video_flags_from_one_declaration() -> None:
    """A flag's limits or help changed on VideoOptions changes both commands: they cannot drift apart."""
    import typer.main

    from deblurcli.cli import app

    group = typer.main.get_command(app)
    specs = {s.flag: s for s in VideoOptions.specs()}
    for command, flags in (("run", list(specs)), ("batch", ["--crf", "--codec", "--lossless"])):
        params = {p.opts[0]: p for p in group.commands[command].params if p.opts}  # type: ignore[attr-defined]
        for flag in flags:
            s = specs[flag]
            assert params[flag].help == s.help and params[flag].default == s.default, (command, flag)
        assert not set(specs) - set(flags) & set(params), command  # batch has no --start/--duration/--preview


@pytest.mark.parametrize(("given", "flag"), [({"start": float("nan")}, "--start"), ({"start": 1e300}, "--start"),
                                             ({"duration": 0.0}, "--duration"),
                                             ({"preview": float("inf")}, "--preview")])
def test_checked_refuses_numbers_that_mean_no_stretch_of_video(given: dict[str, float], flag: str) -> None:
    from deblurcli.errors import UsageError

    with pytest.raises(UsageError, match=f"^{flag} "):
        VideoOptions.checked(**given)
    assert VideoOptions.checked(start=2.0, duration=1.0, preview=3.0).duration == 1.0


def test_video_flags_on_photos_alone_are_a_usage_error_naming_them() -> None:
    from deblurcli.errors import UsageError

    opts = VideoOptions.checked(crf=20, lossless=True)
    with pytest.raises(UsageError, match="^--crf, --lossless: video options, but no input is a video"):
        opts.check_used([False, False])
    opts.check_used([False, True])  # one video among photos: the flags act on it
    opts.check_used([])  # nothing left to run: the inputs' own errors are the news
    VideoOptions(strength=0.5).check_used([False])  # not a command-line flag


@pytest.mark.parametrize("name", sorted(_CHANGED_VIDEO))
def test_batch_redoes_a_finished_video_when_an_output_deciding_video_option_changes(
        name: str, deblurrer: Deblurrer, tmp_path: Path) -> None:
    from deblurcli.batch import BatchOptions, run_batch

    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in" / "clip.mkv", n=6, audio=False)

    def status(video: VideoOptions) -> str:
        summary = run_batch(deblurrer, tmp_path / "in", tmp_path / "out", BatchOptions(video=video))
        (res,) = summary.results
        assert res.status != "failed", res.error
        return res.status

    assert status(VideoOptions()) == "ok"
    assert status(VideoOptions()) == "skipped"
    assert status(VideoOptions(**{name: _CHANGED_VIDEO[name]})) == "ok"


def test_a_clip_holds_one_tile_and_leaves_the_deblurrers_setting_alone(clips: dict[str, Path], tiny_model: Path,
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Automatic tiles are chosen once per clip (a tile that changed mid-clip would move the seams from
    frame to frame), and meanwhile the Deblurrer keeps its own setting: another caller sharing it
    (a photo restored between frames) still gets automatic tiles."""
    d = Deblurrer(tiny_model, device="cpu", tile="auto", progress=False)
    asked: list[tuple[int, int]] = []
    real = d.tile_for
    monkeypatch.setattr(d, "tile_for", lambda h, w: asked.append((h, w)) or real(h, w))
    seen: list[Any] = []
    restore_video(d, clips["cfr"], tmp_path / "o.mkv",
                  VideoOptions(lossless=True, duration=0.25, on_frame=lambda i: seen.append(d.tile)))
    assert len(seen) == 6 and set(seen) == {"auto"}
    assert asked == [(H, W)]
