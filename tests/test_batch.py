"""`deblur batch`: folder trees, the resume journal, shards, bad files, reports and exit codes.

The tiny random ALGNet stands in for a trained model; what matters here is which files are
done, skipped, redone or failed, and what a script sees on stdout and in the exit code.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner, Result

from deblurcli.batch import JOURNAL, BatchOptions, list_inputs, output_path, parse_shard, prepare
from deblurcli.cli import app
from deblurcli.errors import UsageError

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture
def batch(tiny_model: Path):  # noqa: ANN201 - a small callable
    runner = CliRunner()

    def call(*args: str | Path) -> Result:
        return runner.invoke(app, ["batch", *map(str, args), "--model", str(tiny_model), "--device", "cpu"])

    return call


def _save(path: Path, seed: int = 0, size: tuple[int, int] = (40, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    PILImage.fromarray(arr).save(path, **({"format": "JPEG"} if path.suffix.lower() == ".jpg" else {}))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """in/: a.png b.jpg c.tif sub/d.png sub/deeper/E.JPG, plus things that are not work."""
    src = tmp_path / "in"
    for i, rel in enumerate(["a.png", "b.jpg", "c.tif", "sub/d.png", "sub/deeper/E.JPG"]):
        _save(src / rel, seed=i)
    _save(src / ".hidden.png")
    (src / "notes.txt").write_text("not a photo")
    return src


def records(res: Result) -> dict[str, dict]:
    """stdout must be JSON lines and nothing else."""
    out = {}
    for line in res.stdout.splitlines():
        rec = json.loads(line)
        out[rec["input"]] = rec
    return out


def statuses(res: Result) -> dict[str, str]:
    return {k: v["status"] for k, v in records(res).items()}


ALL = {"a.png", "b.jpg", "c.tif", "sub/d.png", "sub/deeper/E.JPG"}


# -- unit: shards and listing ---------------------------------------------------------------------
@pytest.mark.parametrize(("text", "want"), [("1/1", (1, 1)), ("1/2", (1, 2)), ("4/4", (4, 4)), (" 2 / 3 ", (2, 3))])
def test_parse_shard(text: str, want: tuple[int, int]) -> None:
    assert parse_shard(text) == want


@pytest.mark.parametrize("text", ["0/1", "0/4", "2/1", "3/2", "-1/2", "0/0", "1/0", "a/b", "1", "1/2/3", ""])
def test_parse_shard_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="^shard=") as info:  # the CLI says --shard (test below)
        parse_shard(text)
    assert info.value.exit_code == 2


def test_list_inputs_recursive_glob_hidden(tree: Path) -> None:
    flat = {p.as_posix() for p in list_inputs(tree, BatchOptions())}
    assert flat == {"a.png", "b.jpg", "c.tif"}
    deep = [p.as_posix() for p in list_inputs(tree, BatchOptions(recursive=True))]
    assert deep == sorted(ALL)  # sorted: every shard sees the same order
    jpgs = {p.as_posix() for p in list_inputs(tree, BatchOptions(recursive=True, glob="*.jpg"))}
    assert jpgs == {"b.jpg", "sub/deeper/E.JPG"}  # camera .JPG found by '*.jpg'
    assert [p.as_posix() for p in list_inputs(tree, BatchOptions(recursive=True, glob="sub/*.png"))] == ["sub/d.png"]


@pytest.mark.parametrize("n", [2, 3])
def test_shards_are_disjoint_and_cover_everything(tree: Path, n: int) -> None:
    parts = [{p.as_posix() for p in list_inputs(tree, BatchOptions(recursive=True, shard=(i, n)))}
             for i in range(1, n + 1)]
    assert set().union(*parts) == ALL
    assert sum(len(p) for p in parts) == len(ALL)


def test_outputs_inside_the_input_folder_are_never_inputs(tree: Path) -> None:
    out = tree / "results"
    _save(out / "a.png")
    assert "results/a.png" not in {p.as_posix() for p in list_inputs(tree, BatchOptions(recursive=True), out)}
    # results beside their inputs (OUT_DIR = IN_DIR with a suffix): a_x.png is a.png's output
    _save(tree / "a_x.png")
    opts = BatchOptions(suffix="_x")
    assert {p.as_posix() for p in list_inputs(tree, opts, tree)} == {"a.png", "b.jpg", "c.tif"}
    with pytest.raises(UsageError, match="suffix=") as info:  # the library's name; the CLI says --suffix
        prepare(tree, tree, BatchOptions())
    assert "--suffix _deblurred" in info.value.cli_message(lambda name: "--" + name)


def test_prepare_refuses_two_inputs_for_one_output(tree: Path, tmp_path: Path) -> None:
    _save(tree / "a.jpg")
    with pytest.raises(UsageError, match="both be written"):
        prepare(tree, tmp_path / "out", BatchOptions(format="png"))
    assert output_path(tmp_path, Path("sub/x.tif"), BatchOptions(suffix="_s", format="PNG")) == tmp_path / "sub/x_s.png"


# -- the command ----------------------------------------------------------------------------------
def test_batch_mirrors_tree_and_resumes(batch, tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = batch(tree, out, "--recursive", "--json")
    assert first.exit_code == 0, first.stderr
    assert statuses(first) == dict.fromkeys(ALL, "ok")
    for rel in ALL:
        assert (out / rel).is_file()
    assert PILImage.open(out / "sub/deeper/E.JPG").format == "JPEG"
    assert "done" in ANSI.sub("", first.stderr)  # the summary table is on stderr
    # a repeated run does nothing
    again = batch(tree, out, "--recursive", "--json")
    assert again.exit_code == 0 and statuses(again) == dict.fromkeys(ALL, "skipped")
    # a changed input is redone, alone
    _save(tree / "b.jpg", seed=99)
    changed = batch(tree, out, "--recursive", "--json")
    assert statuses(changed) == {**dict.fromkeys(ALL, "skipped"), "b.jpg": "ok"}
    # a changed setting redoes everything
    stronger = batch(tree, out, "--recursive", "--json", "--strength", "0.5")
    assert statuses(stronger) == dict.fromkeys(ALL, "ok")
    # --overwrite redoes everything even with the same settings
    assert statuses(batch(tree, out, "--recursive", "--json", "--strength", "0.5", "--overwrite")) == \
        dict.fromkeys(ALL, "ok")


def test_interrupted_run_is_completed(batch, tree: Path, tmp_path: Path) -> None:
    """Simulate a kill: the last journal line lost, and one output never written."""
    out = tmp_path / "out"
    assert batch(tree, out, "--recursive").exit_code == 0
    journal = out / JOURNAL
    lines = journal.read_text().splitlines()
    last = json.loads(lines[-1])
    assert last["status"] == "ok"
    journal.write_text("\n".join(lines[:-1]) + '\n{"input": "cut mid-wri')  # and a torn final line
    (out / "a.png").unlink()
    res = batch(tree, out, "--recursive", "--json")
    assert res.exit_code == 0, res.stderr
    want = dict.fromkeys(ALL, "skipped")
    want[last["input"]] = "ok"  # its output exists, but was marked as ours before it was written
    want["a.png"] = "ok"
    assert statuses(res) == want


def test_a_journal_from_before_an_option_existed_still_counts_as_finished(batch, tree: Path, tmp_path: Path) -> None:
    """Upgrading deblurcli must not redo a finished batch because newer versions key more settings."""
    out = tmp_path / "out"
    assert batch(tree, out, "--recursive").exit_code == 0
    journal = out / JOURNAL
    older = []
    for line in journal.read_text().splitlines():
        rec = json.loads(line)
        if isinstance(rec.get("settings"), dict):
            for added in ("scale", "ensemble"):  # options later versions added
                rec["settings"].pop(added, None)
        older.append(json.dumps(rec))
    journal.write_text("\n".join(older) + "\n")
    assert statuses(batch(tree, out, "--recursive", "--json")) == dict.fromkeys(ALL, "skipped")
    # asking for something those versions could not do is new work
    assert statuses(batch(tree, out, "--recursive", "--json", "--ensemble", "2")) == dict.fromkeys(ALL, "ok")


def test_foreign_file_in_output_folder_is_not_replaced(batch, tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _save(out / "a.png", seed=7)
    before = (out / "a.png").read_bytes()
    res = batch(tree, out, "--json")
    assert res.exit_code == 1
    recs = records(res)
    assert recs["a.png"]["status"] == "failed" and "not from an earlier run" in recs["a.png"]["error"]
    assert recs["b.jpg"]["status"] == "ok"
    assert (out / "a.png").read_bytes() == before


def test_bad_files_do_not_stop_the_batch(batch, tree: Path, tmp_path: Path) -> None:
    (tree / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (tree / "empty.jpg").write_bytes(b"")
    out, report = tmp_path / "out", tmp_path / "report.json"
    res = batch(tree, out, "--json", "--report", report)
    assert res.exit_code == 1
    st = statuses(res)
    assert st == {"a.png": "ok", "b.jpg": "ok", "c.tif": "ok", "broken.png": "failed", "empty.jpg": "failed"}
    assert "empty" in records(res)["empty.jpg"]["error"]
    stderr = ANSI.sub("", res.stderr)
    assert "failed" in stderr and "Traceback" not in stderr
    rep = json.loads(report.read_text())
    assert (rep["ok"], rep["failed"], rep["skipped"]) == (3, 2, 0)
    by_name = {f["input"]: f for f in rep["files"]}
    for f in rep["files"]:
        assert {"status", "seconds", "error"} <= set(f)
    assert by_name["a.png"]["size"] == "40x32" and by_name["a.png"]["bytes"] == (out / "a.png").stat().st_size
    assert by_name["a.png"]["error"] is None and by_name["broken.png"]["error"]
    # a rerun skips the good ones and still reports the bad ones (exit 1) without retrying them...
    again = batch(tree, out, "--json")
    assert again.exit_code == 1
    assert statuses(again) == {**dict.fromkeys(["a.png", "b.jpg", "c.tif"], "skipped"),
                               "broken.png": "failed", "empty.jpg": "failed"}
    assert "--retry-failed" in records(again)["broken.png"]["error"]
    # ...until asked to, and a fixed file then succeeds
    _save(tree / "empty.jpg", seed=3)
    (tree / "broken.png").unlink()
    fixed = batch(tree, out, "--json", "--retry-failed")
    assert fixed.exit_code == 0 and statuses(fixed)["empty.jpg"] == "ok"


def test_shards_into_one_output_folder(batch, tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    s0 = batch(tree, out, "--recursive", "--shard", "1/2", "--json")
    s1 = batch(tree, out, "--recursive", "--shard", "2/2", "--json")
    assert s0.exit_code == 0 and s1.exit_code == 0
    done0 = {k for k, v in statuses(s0).items() if v == "ok"}
    done1 = {k for k, v in statuses(s1).items() if v == "ok"}
    assert done0 and done1 and not done0 & done1 and done0 | done1 == ALL
    whole = batch(tree, out, "--recursive", "--json")
    assert statuses(whole) == dict.fromkeys(ALL, "skipped")


def test_suffix_format_and_glob(batch, tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = batch(tree, out, "--recursive", "--glob", "*.jpg", "--format", "png", "--suffix", "_sharp", "--json")
    assert res.exit_code == 0, res.stderr
    assert set(statuses(res)) == {"b.jpg", "sub/deeper/E.JPG"}
    assert PILImage.open(out / "b_sharp.png").format == "PNG"
    assert (out / "sub/deeper/E_sharp.png").is_file()


def test_in_place_with_suffix_twice(batch, tree: Path) -> None:
    first = batch(tree, tree, "--suffix", "_d", "--json")
    assert first.exit_code == 0 and set(statuses(first)) == {"a.png", "b.jpg", "c.tif"}
    again = batch(tree, tree, "--suffix", "_d", "--json")
    assert statuses(again) == dict.fromkeys(["a.png", "b.jpg", "c.tif"], "skipped")  # no a_d_d.png


def _one_line(res: Result, code: int, needle: str) -> None:
    err = ANSI.sub("", res.stderr).strip()
    assert res.exit_code == code, (res.exit_code, err)
    assert len(err.splitlines()) == 1 and err.startswith("error:") and needle in err, err
    assert res.stdout == ""


def test_usage_errors(batch, tree: Path, tmp_path: Path) -> None:
    _one_line(batch(tmp_path / "nope", tmp_path / "out"), 2, "no such folder")
    _one_line(batch(tree / "a.png", tmp_path / "out"), 2, "is a file, not a folder")
    _one_line(batch(tree, tree / "a.png"), 2, "exists and is a file")
    _one_line(batch(tree, tree / "a.png" / "out"), 2, "is a file, not a folder")
    _one_line(batch(tree, tmp_path / "out", "--shard", "3/2"), 2, "--shard")
    _one_line(batch(tree, tmp_path / "out", "--format", "gif"), 2, "--format")
    _one_line(batch(tree, tree), 2, "--suffix")
    _one_line(batch(tree, tmp_path / "out", "--report", tmp_path / "missing" / "r.json"), 2, "--report")
    assert not (tmp_path / "out").exists()  # all refused before anything was written


def test_batch_subprocess_exit_code_and_clean_stdout(tiny_model: Path, tree: Path, tmp_path: Path) -> None:
    (tree / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 nothing else")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "NUMBA_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "deblurcli", "batch", str(tree), str(tmp_path / "out"), "--json",
                           "--model", str(tiny_model), "--device", "cpu"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {r["input"]: r["status"] for r in recs} == {"a.png": "ok", "b.jpg": "ok", "c.tif": "ok",
                                                     "broken.jpg": "failed"}
    assert "Traceback" not in proc.stderr and "\x1b[" not in proc.stderr


def test_json_reaches_stdout_while_progress_is_live(batch, tree: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """With a person watching stderr, the progress bar must not swallow the --json lines."""
    from rich.console import Console

    import deblurcli.cli as cli

    monkeypatch.setattr(cli, "_stderr_is_tty", lambda: True)
    monkeypatch.setattr(cli, "err", Console(stderr=True, force_terminal=True, soft_wrap=True, highlight=False))
    res = batch(tree, tmp_path / "out", "--json")
    assert res.exit_code == 0, res.stderr
    assert statuses(res) == dict.fromkeys(["a.png", "b.jpg", "c.tif"], "ok")
    assert "3/3" in ANSI.sub("", res.stderr)  # the bar itself went to stderr


def test_batch_blur_threshold_default_is_inspects() -> None:
    """batch restates inspect's threshold (importing it would make a cycle); a change to one must reach both."""
    from deblurcli import batch, inspect

    assert batch.DEFAULT_BLUR_THRESHOLD == inspect.DEFAULT_THRESHOLD
    assert batch.BatchOptions().blur_threshold == inspect.DEFAULT_THRESHOLD
