"""The ``deblur`` command: parse, call the library, print. No logic lives here that the library lacks.

This module registers every command on the app in ``--help`` order, those of ``deblurcli/commands/``
(download, convert, doctor, train, synth) included. What all commands share (the app, consoles,
one-line errors, shared options) is ``deblurcli/commands/common.py``, whose conventions hold here:
results and ``--json`` on stdout; progress, notes and errors on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from .commands import make, tools
from .commands.common import (
    AllowLargeOpt,
    CodecOpt,
    CrfOpt,
    DebugOpt,
    DurationOpt,
    FormatOpt,
    LosslessOpt,
    PreviewOpt,
    QualityOpt,
    QuietOpt,
    StartOpt,
    app,
    err,
    handle_errors,
    models_app,
    note_printer,
    out,
)
from .commands.common import error as _error
from .commands.common import leave as _leave
from .commands.common import make_deblurrer as _make_deblurrer
from .commands.common import say as _say
from .commands.common import second_interrupt_exits_now as _second_interrupt_exits_now
from .commands.common import stderr_is_tty as _stderr_is_tty
from .errors import DeblurError
from .options import EngineOptions, engine_options, flag_for
from .progress import bar, frame_progress, tile_progress
from .video.options import VideoOptions

#: `deblurcli.inspect.DEFAULT_THRESHOLD`, restated so that ``--help`` does not import numpy
#: (tests/test_inspect.py checks that the two agree).
DEFAULT_BLUR_THRESHOLD = 1.9


def _blur_threshold_opt(what: str) -> Any:
    """``--blur-threshold``, one flag with one default and range for `batch` and `inspect`."""
    return typer.Option(DEFAULT_BLUR_THRESHOLD, "--blur-threshold", min=1.0,
                        help=f"{what}: the edge width in px, weighted by how directional the blur is, as inspect's "
                        "blur_px (sharp photos measure about 1.3-1.8)")

# The options several commands share (engine, output, video) are declared once: EngineOptions in
# deblurcli/options.py, VideoOptions in deblurcli/video/options.py, the rest in deblurcli/commands/common.py.


# -- run ----------------------------------------------------------------------------------------------
@app.command()
@handle_errors
@engine_options()
def run(
    inputs: list[str] = typer.Argument(..., metavar="INPUT", help="Image or video files, or - for stdin (images)"),
    output: str | None = typer.Option(None, "--output", "-o", help="Output file (one input), folder, or - for stdout"),
    suffix: str = typer.Option("_deblurred", "--suffix", help="Added to the name when no -o is given"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files"),
    fmt: str | None = FormatOpt,
    quality: int = QualityOpt,
    compare: bool = typer.Option(False, "--compare", help="Also write NAME_compare.png (input | result, and the "
                                 "shake kernel when one was estimated)"),
    save_kernel: str | None = typer.Option(None, "--save-kernel", metavar="FILE",
                                           help="Write the camera-shake kernel as a PNG picture (one input; the "
                                                "default model or --model shake)"),
    tile_check: bool = typer.Option(False, "--tile-check", help="Report how closely tiles agree with the "
                                    "whole image on a crop of each input"),
    allow_large: bool = AllowLargeOpt,
    engine: EngineOptions = EngineOptions(),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object per result on stdout"),
    crf: int | None = CrfOpt,
    codec: str | None = CodecOpt,
    lossless: bool = LosslessOpt,
    start: float = StartOpt,
    duration: float | None = DurationOpt,
    preview: float | None = PreviewOpt,
    quiet: bool = QuietOpt,
    debug: bool = DebugOpt,
) -> None:
    """Deblur images or videos: deblur run photo.jpg [-o out.jpg], deblur run clip.mp4 [-o sharp.mp4]."""
    from .runplan import execute, plan_outputs

    plan = plan_outputs(inputs, output, suffix=suffix, fmt=fmt, overwrite=overwrite, compare=compare,
                        json_stdout=json_out, stdin_tty=sys.stdin.isatty(), stdout_tty=sys.stdout.isatty(),
                        preview=bool(preview), save_kernel=save_kernel)
    video = VideoOptions.checked(crf=crf, codec=codec, lossless=lossless, start=start, duration=duration,
                                 preview=preview)
    video.check_used([p.video for p in plan])
    failures = [p for p in plan if p.error]
    _say_plan_errors(failures, json_out=json_out)
    todo = [p for p in plan if not p.error]
    if not todo:
        raise typer.Exit(2 if any(p.usage for p in failures) else 1)
    from .fsutil import remove_stale_parts

    for folder in {str(Path(p.dst).parent) for p in todo if p.dst and p.dst != "-"}:
        remove_stale_parts(folder)  # temporary files of earlier runs that were killed mid-write
    d = _make_deblurrer(engine, quiet=quiet, debug=debug)
    if d.classical and any(p.video for p in todo):
        from .errors import UsageError

        raise UsageError("--model shake restores photos, not videos (a kernel per frame, for blur that is mostly "
                         "the scene's); use the default model for videos")
    failed = len(failures)
    usage_only = not failures  # exit 2 when every failure is an option that cannot apply (--region off the photo)
    live = not quiet and _stderr_is_tty()
    note = note_printer(quiet)
    for p in todo:
        bar = (frame_progress(err, Path(p.src).name, show=live, log=None if quiet else lambda m: _say("", m))
               if p.video else tile_progress(err, Path(p.src).name, show=live, steps=d.uses_engine))
        try:
            with bar as prog:
                res = execute(d, p, read_stdin=sys.stdin.buffer.read, stdout=sys.stdout.buffer, overwrite=overwrite,
                              quality=quality, allow_large=allow_large, fmt=fmt,
                              tile_check=tile_check, progress=prog, debug=debug, video=video, on_note=note,
                              save_kernel=p.kernel)
        except KeyboardInterrupt:
            _interrupted_video(p)
            raise
        if res.status != "ok":
            failed += 1
            usage_only = usage_only and res.usage
            _error(res.error or "failed")
        elif not quiet:
            _say_done(p, res)
        if json_out:
            print(json.dumps(res.as_dict()), flush=True)
    if failed:
        raise typer.Exit(2 if usage_only else 1)


def _say_plan_errors(failures: list[Any], *, json_out: bool) -> None:
    """Each planning error once (-o - with two inputs concerns both), and its JSON result per input."""
    said: set[str] = set()
    for p in failures:
        if p.error not in said:
            said.add(p.error or "")
            _error(p.error or "")
        if json_out:
            print(json.dumps(p.failed_result().as_dict()), flush=True)


def _say_done(p: Any, res: Any) -> None:
    """A restored input's lines: the tile check, its notes (a video's were said as it started), the summary."""
    from .runplan import summary_line, tile_check_line

    if res.tile_check:
        _say("", tile_check_line(p.src, res.tile_check))
    for n in [] if p.video else res.notes:
        _say("[yellow]note:[/] ", f"{res.output}: {n}")
    _say("", summary_line(res))


def _interrupted_video(p: Any) -> None:
    """After Ctrl-C on a video, say where its restored frames wait and how to pick them up."""
    from .video import interrupted_message

    message = interrupted_message(p.dst) if p.video else None
    if message:
        err.print(escape(message))
        raise typer.Exit(130)


# -- batch --------------------------------------------------------------------------------------------
@app.command()
@handle_errors
@engine_options()
def batch(
    in_dir: Path = typer.Argument(..., help="Folder of images and videos"),
    out_dir: Path = typer.Argument(..., help="Folder for the results (tree mirrored)"),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Include subfolders"),
    glob: str | None = typer.Option(None, "--glob", help="Only files matching this pattern, e.g. '*.jpg'"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo every file, ignoring the journal"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry files that failed in an earlier run"),
    shard: str = typer.Option("1/1", "--shard", help="I/N, counting from 1: the I-th of every N files; "
                              "shards 1/N ... N/N together do each file once (as --array=1-N numbers a job array)"),
    suffix: str = typer.Option("", "--suffix", help="Added to output names"),
    fmt: str | None = FormatOpt,
    quality: int = QualityOpt,
    report: Path | None = typer.Option(None, "--report", help="Write a JSON report (per file: status, seconds, "
                                       "size, error)"),
    allow_large: bool = AllowLargeOpt,
    engine: EngineOptions = EngineOptions(),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object per file on stdout"),
    crf: int | None = CrfOpt,
    codec: str | None = CodecOpt,
    lossless: bool = LosslessOpt,
    only_blurry: bool = typer.Option(False, "--only-blurry", help="Restore only the files judged blurred (as "
                                     "'deblur inspect' judges); the others are reported as skipped, with no output"),
    blur_threshold: float = _blur_threshold_opt("With --only-blurry: the blur above which a file counts as "
                                                "blurred"),
    keep_original_if_worse: bool = typer.Option(False, "--keep-original-if-worse", help="Where an output measures "
                                                "less sharp than its input, write the input instead"),
    quiet: bool = QuietOpt,
    debug: bool = DebugOpt,
) -> None:
    """Deblur a folder of photos and videos into another, resumably: deblur batch in/ out/."""
    from .batch import BatchInterrupted, BatchOptions, parse_shard, prepare, run_batch
    from .errors import UsageError
    from .inspect import inspect_video

    opts = BatchOptions(recursive=recursive, glob=glob, overwrite=overwrite, retry_failed=retry_failed,
                        shard=parse_shard(shard), suffix=suffix, format=fmt, quality=quality, allow_large=allow_large,
                        video=VideoOptions.checked(crf=crf, codec=codec, lossless=lossless), only_blurry=only_blurry,
                        blur_threshold=blur_threshold, keep_original_if_worse=keep_original_if_worse)
    if json_out and report is not None and str(report) == "-":
        raise UsageError("--report - and --json both write to stdout; give --report a file name")
    if blur_threshold != DEFAULT_BLUR_THRESHOLD and not only_blurry:
        raise UsageError("--blur-threshold only applies with --only-blurry; add --only-blurry or drop it")
    prepare(in_dir, out_dir, opts, report)  # bad folders fail before the model loads
    d = _make_deblurrer(engine, quiet=quiet, debug=debug)
    live = not quiet and _stderr_is_tty()
    progress = bar(err, "items", show=live)
    on_start, on_result = _batch_progress(progress, json_out=json_out, quiet=quiet, live=live)

    def on_note(msg: str) -> None:
        if not quiet:
            _say("[yellow]warning:[/] ", msg)

    try:
        with progress:
            summary = run_batch(d, in_dir, out_dir, opts, on_result=on_result, on_start=on_start, on_note=on_note,
                                spell_option=flag_for, judge_video=partial(inspect_video, kernel=False))
    except BatchInterrupted as stop:  # Ctrl-C: the report still says what is done and what is left
        summary = stop.summary
    _finish_batch(summary, report, quiet=quiet)


def _batch_progress(progress: Any, *, json_out: bool, quiet: bool, live: bool) -> tuple[Callable, Callable]:
    """The bar's callbacks: its total once the files are counted, and a line per file (always for a failure)."""
    task = progress.add_task("images", total=None)

    def on_start(total: int) -> None:
        progress.update(task, total=total)

    def on_result(res: Any, done: int, total: int) -> None:
        progress.update(task, completed=done)
        if json_out:
            print(json.dumps(res.as_dict()), flush=True)
        if res.status == "failed":
            progress.console.print(f"[bold red]failed:[/] {escape(res.error or '')}")
        elif not quiet and (not live or res.notes):
            why = f": {'; '.join(res.notes)}" if res.status == "skipped" and res.notes else ""
            _say("", f"{res.status} {res.input} ({res.seconds:.1f} s){why}")

    return on_start, on_result


def _finish_batch(summary: Any, report: Path | None, *, quiet: bool) -> None:
    """Write the report, show the summary even when the report failed, and exit 130, 1 or 0."""
    from .batch import write_report

    report_error = None
    if report:
        try:
            write_report(summary, report)
        except DeblurError as exc:  # e.g. a full disk: still show the summary, then fail
            report_error = str(exc)
    if not quiet:
        _print_batch_summary(summary)
        if summary.worse:
            _say("[yellow]note:[/] ", summary.worse_note())
    if report_error:
        _error(report_error)
    if summary.interrupted:
        err.print(f"interrupted: {summary.count('pending')} file(s) not done; run the same command again "
                  "to continue")
        raise typer.Exit(130)
    raise typer.Exit(1 if summary.failed or report_error else 0)


def _print_batch_summary(summary: Any) -> None:
    t = Table(title="deblur batch", show_edge=False)
    cols, cells = summary.table()
    for col in cols:
        t.add_column(col, justify="right")
    t.add_row(*cells)
    err.print(t)  # each failure has had its own line as it happened


# -- models, download ---------------------------------------------------------------------------------
@models_app.callback()
@handle_errors
def models(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Machine-readable list"),
) -> None:
    """List the named models."""
    if ctx.invoked_subcommand is not None:
        return
    from .catalog import models_table_rows
    from .catalog_text import models_lines

    rows = models_table_rows()
    if json_out:
        print(json.dumps(rows, indent=1))
        return
    print("\n".join(models_lines(rows)))


@models_app.command("info")
@handle_errors
def models_info(
    name: str = typer.Argument(..., help="Model name"),
    json_out: bool = typer.Option(False, "--json", help="Print every field as JSON on stdout"),
) -> None:
    """Show one model: description, licence, paper and its figures, weights file and its sha256."""
    from .catalog import model_details
    from .catalog_text import info_lines

    info = model_details(name)
    if json_out:
        print(json.dumps(info, indent=1, default=str))
        return
    print("\n".join(info_lines(info)))


app.command()(tools.download)


# -- convert ------------------------------------------------------------------------------------------
app.command()(tools.convert)


# -- eval ---------------------------------------------------------------------------------------------
@app.command("eval")
@handle_errors
@engine_options()
def eval_cmd(
    dataset: str = typer.Option(..., "--dataset", help="gopro | hide | realblur-j | realblur-r | pairs"),
    data_dir: Path = typer.Option(..., "--data-dir", help="Dataset folder (layout detected)"),
    sharp_dir: Path | None = typer.Option(None, "--sharp-dir", help="For --dataset pairs: the sharp folder"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N images"),
    save_dir: Path | None = typer.Option(None, "--save-dir", help="Save restored images here"),
    csv_path: str | None = typer.Option(None, "--csv", help="Per-image CSV (- for stdout)"),
    report: str | None = typer.Option(None, "--report", help="Write the full JSON result to this file (- for "
                                      "stdout)"),
    protocol: str = typer.Option("auto", "--protocol", help="auto | matlab | realblur"),
    allow_unmatched: bool = typer.Option(False, "--allow-unmatched", help="Skip files without a partner"),
    engine: EngineOptions = EngineOptions(),
    json_out: bool = typer.Option(False, "--json", help="Print the full JSON result on stdout instead of the table"),
    quiet: bool = QuietOpt,
    debug: bool = DebugOpt,
) -> None:
    """Benchmark a model on GoPro, HIDE, RealBlur or any paired folders, the papers' way."""
    from .errors import UsageError
    from .eval.datasets import find_pairs
    from .eval.runner import evaluate, write_csv, write_json
    from .eval.summary import paper_comparison

    to_stdout = [name for name, on in (("--json", json_out), ("--report -", report == "-"),
                                       ("--csv -", csv_path == "-")) if on]
    if len(to_stdout) > 1:
        raise UsageError(f"{' and '.join(to_stdout)} would all write to stdout; give the others a file name")
    pairs = find_pairs(dataset, data_dir, sharp_dir=sharp_dir, allow_unmatched=allow_unmatched)
    d = _make_deblurrer(engine, quiet=quiet, debug=debug)
    with bar(err, "items", show=not quiet and _stderr_is_tty(), field="psnr") as prog:
        task = prog.add_task(dataset, total=min(len(pairs), limit or len(pairs)), psnr="")

        def on_progress(done: int, total: int, record: dict[str, Any]) -> None:
            p = record.get("psnr")
            prog.update(task, completed=done, psnr=f"{p:.2f} dB" if isinstance(p, float) else "")

        result = evaluate(d.restore, pairs, dataset=dataset, protocol=protocol, limit=limit, save_dir=save_dir,
                          progress=on_progress)
    result["model"] = d.name
    result["weights_sha256"] = d.weights_sha256
    result["device"] = str(d.device)
    entry = getattr(d.resolved, "entry", None)
    if d.classical:
        from .models import registry

        entry = registry.get(d.name)
    result["paper"] = paper_comparison(result, entry)
    if report:
        write_json(result, report)
    if json_out:
        write_json(result, "-")
    if csv_path:
        write_csv(result, csv_path)
    if not quiet and not json_out:
        _print_eval_summary(result)
    if result["summary"].get("failed"):
        raise typer.Exit(1)


def _print_eval_summary(result: dict[str, Any]) -> None:
    from .eval.summary import SUMMARY_COLUMNS, summary_notes, summary_rows, summary_title

    t = Table(title=summary_title(result))
    for col in SUMMARY_COLUMNS:
        t.add_column(col, justify="right" if col != "metric" else "left")
    for row in summary_rows(result):
        t.add_row(*row)
    out.print(t)
    for line in summary_notes(result):
        out.print(escape(line), highlight=False)
# -- train, synth -------------------------------------------------------------------------------------
app.command()(make.train)
app.command()(make.synth)


# -- bench --------------------------------------------------------------------------------------------
@app.command()
@handle_errors
@engine_options(defaults={"tile": "0"})  # times the model on the whole image unless told otherwise
def bench(
    size: str = typer.Option("1024x1024", "--size", help="WxH of the synthetic test image"),
    repeat: int = typer.Option(3, "--repeat", min=1, help="Timed runs after a warm-up (the median is reported)"),
    scan_shapes: bool = typer.Option(True, "--scan-shapes/--no-scan-shapes",
                                     help="Also time the scan backends on the models' shapes"),
    engine: EngineOptions = EngineOptions(),
    json_out: bool = typer.Option(False, "--json", help="Print the timings as JSON on stdout"),
    quiet: bool = QuietOpt,
    debug: bool = DebugOpt,
) -> None:
    """Time a model end to end (and the scan backends side by side)."""
    from .bench import bench_model, bench_scans, parse_size

    w, h = parse_size(size)
    d = _make_deblurrer(engine, quiet=quiet, debug=debug)
    result: dict[str, Any] = {"model": bench_model(d, w, h, repeat=repeat)}
    if scan_shapes and not d.classical:  # shake runs no scan
        result["scan"] = bench_scans(d.device, repeat=repeat)
    if json_out:
        print(json.dumps(result, indent=1))
        return
    m = result["model"]
    t = Table(title=f"{m['model']} on {m['device']} ({m['precision']}, scan: {m['scan_backend']})")
    for col in ("size", "tile", "median s", "MP/s", "s/MP", "peak MB"):
        t.add_column(col, justify="right")
    t.add_row(f"{w}x{h}", str(m["tile"]), f"{m['seconds']:.3f}", f"{m['megapixels_per_second']:.3f}",
              f"{m['seconds_per_megapixel']:.2f}", f"{m['peak_memory_mb']:.0f}")
    out.print(t)
    if "scan" in result:
        # No outer border, and whole-number ratios from 10x up: four backends' cells then fit 80
        # columns on one line each (a cell folded over two lines reads as two numbers).
        st = Table(title="selective scan backends (median seconds; ratio to the Python loop)", show_edge=False)
        st.add_column("shape")
        backends = sorted({b for row in result["scan"] for b in row["seconds"]})
        for b in backends:
            st.add_column(b, justify="right")
        for row in result["scan"]:
            cells = []
            for b in backends:
                s = row["seconds"].get(b)
                r = row["ratio"].get(b)
                ratio = "" if not r else f" ({r:.0f}x)" if r >= 10 else f" ({r:.1f}x)"
                cells.append("-" if s is None else f"{s:.3f}{ratio}")
            st.add_row(row["shape"], *cells)
        out.print(st)


app.command()(tools.doctor)


@app.command("inspect")
@handle_errors
def inspect_cmd(
    inputs: list[Path] = typer.Argument(..., metavar="INPUT", help="Photos, videos, or folders (searched recursively)"),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list, one object per file, on stdout"),
    save_kernel: Path | None = typer.Option(None, "--save-kernel", help="Write the blur trace as a PNG: a file for "
                                            "one input, else a folder receiving NAME_kernel.png"),
    threshold: float = _blur_threshold_opt("The blur above which a photo counts as blurred"),
    verdict_only: bool = typer.Option(False, "--verdict-only", help="Only sharp or blurred (fast): no shake "
                                      "length or direction"),
    allow_large: bool = AllowLargeOpt,
    quiet: bool = QuietOpt,
    debug: bool = DebugOpt,
) -> None:
    """Which photos are blurred, and how: sharpness, verdict, shake length and direction, what to run."""
    from .inspect import inspect_path, list_files
    from .inspect import save_kernel as write_kernel

    files: list[Path] = []
    failed = 0
    rows: list[dict[str, Any]] = []
    for given in inputs:
        try:
            files.extend(list_files([given]))
        except DeblurError as exc:
            failed += 1
            _error(exc.cli_message(flag_for))
            rows.append({"file": str(given), "error": exc.cli_message(flag_for)})
    many = len(files) > 1 or any(p.is_dir() for p in inputs) or (save_kernel is not None and save_kernel.is_dir())
    table = Table(show_edge=False)
    for col in ("file", "verdict", "sharpness", "shake", "direction", "suggestion"):
        table.add_column(col)
    for f in files:
        try:
            rec = inspect_path(f, threshold=threshold, kernel=not verdict_only, allow_large=allow_large)
        except DeblurError as exc:
            failed += 1
            _error(exc.cli_message(flag_for))
            rows.append({"file": str(f), "error": exc.cli_message(flag_for)})
            continue
        row = rec.as_dict()
        if save_kernel is not None:
            dst = save_kernel / f"{f.stem}_kernel.png" if many else save_kernel
            if write_kernel(rec, dst):
                row["kernel_png"] = str(dst)
            elif not quiet:
                why = "judged sharp" if not rec.blurred else rec.note or "not estimated"
                _say("[yellow]note:[/] ", f"{f}: no blur trace to save ({why})")
        rows.append(row)
        verdict = f"{'blurred' if rec.blurred else 'sharp'} ({rec.confidence:.0%})"
        shake = "-" if rec.shake_px is None else f"{rec.shake_px:.0f} px"
        direction = "-" if rec.direction_deg is None else f"{rec.direction_deg:.0f}°"
        table.add_row(escape(str(f)), verdict, f"{rec.sharpness:.2f}", shake, direction, escape(rec.suggestion or "-"))
    if json_out:
        print(json.dumps(rows, indent=1))
    elif files:
        out.print(table)
    if failed:
        raise typer.Exit(1)




def main() -> None:
    """Console-script entry point (also ``python -m deblurcli``, which should still call itself deblur)."""
    _second_interrupt_exits_now()
    try:
        app(prog_name="deblur")
    except SystemExit as done:
        _leave(done.code)


if __name__ == "__main__":
    main()
