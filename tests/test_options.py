"""One set of engine options: ``run``, ``batch``, ``eval`` and ``bench`` take the same flags with the same
meaning, and ``batch`` redoes a finished file when any option that decides its pixels changes.

Both tests walk `EngineOptions`' own fields, so an option added there is covered here without an
edit: it must reach every command, and if it decides the output, change the resume key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
import typer.main
from PIL import Image as PILImage
from typer.testing import CliRunner

from deblurcli import api
from deblurcli.cli import app
from deblurcli.errors import OptionError
from deblurcli.options import EngineOptions, OptionSpec, output_settings, upgrade_settings, with_options

runner = CliRunner()
COMMANDS = ("run", "batch", "eval", "bench")
SPECS = {s.name: s for s in EngineOptions.specs()}


def _png(path: Path, seed: int = 0, size: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    PILImage.fromarray(arr).save(path)
    return path


def _command_args(tmp: Path) -> dict[str, list[str]]:
    """Arguments with which each command gets as far as building its model."""
    _png(tmp / "in" / "a.png")
    _png(tmp / "blurred" / "a.png", seed=1)
    _png(tmp / "sharp" / "a.png", seed=2)
    return {
        "run": ["run", str(tmp / "in" / "a.png"), "-o", str(tmp / "out.png")],
        "batch": ["batch", str(tmp / "in"), str(tmp / "out")],
        "eval": ["eval", "--dataset", "pairs", "--data-dir", str(tmp / "blurred"), "--sharp-dir", str(tmp / "sharp")],
        "bench": ["bench", "--no-scan-shapes"],
    }


def _example_args(spec: OptionSpec) -> list[str]:
    if spec.cli_type is bool:
        return [spec.flag] if spec.example else []
    return [spec.flag, str(spec.example if spec.example is not None else "some-model")]


def _cli_params(command: str) -> dict[str, click.Parameter]:
    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {p.name: p for p in cmd.params if p.name}


@pytest.mark.parametrize("name", list(SPECS))
def test_every_engine_option_has_one_declaration_in_all_commands(name: str) -> None:
    spec = SPECS[name]
    seen = []
    for command in COMMANDS:
        p = _cli_params(command).get(name)
        assert p is not None, f"deblur {command} lacks {spec.flag}"
        kind = getattr(getattr(p, "type_descriptor", None), "annotation", None)  # typer's own click copy
        seen.append((tuple(p.opts), p.help, repr(kind), p.is_flag, p.min, p.max))
    assert len(set(seen)) == 1, f"{spec.flag} differs between commands: {seen}"
    assert seen[0][1] == spec.help and seen[0][1]


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[EngineOptions]:
    """Stand in for `Deblurrer`: record the options a command built, then stop the command."""
    got: list[EngineOptions] = []

    class Stop(Exception):
        pass

    def fake(model: Any = None, *, options: EngineOptions | None = None, **_: Any) -> None:
        got.append(options or EngineOptions())
        raise Stop

    monkeypatch.setattr(api, "Deblurrer", fake)
    return got


@pytest.mark.parametrize("name", list(SPECS))
def test_every_engine_option_means_the_same_in_run_batch_eval_bench(name: str, tmp_path: Path,
                                                                   captured: list[EngineOptions]) -> None:
    spec = SPECS[name]
    args = _command_args(tmp_path)
    for command in COMMANDS:
        runner.invoke(app, [*args[command], *_example_args(spec)])
    assert len(captured) == len(COMMANDS), "a command stopped before building its model"
    values = [getattr(o, name) for o in captured]
    expected = spec.cli_type(spec.example) if spec.example is not None else "some-model"
    assert values == [expected] * len(COMMANDS)
    assert values[0] != spec.default


def test_only_declared_defaults_differ_between_commands(tmp_path: Path, captured: list[EngineOptions]) -> None:
    args = _command_args(tmp_path)
    for command in COMMANDS:
        runner.invoke(app, args[command])
    run, batch, eval_, bench = captured
    assert run == batch == eval_ == EngineOptions()
    # bench times the model on the whole image unless --tile is given; nothing else differs
    assert bench == EngineOptions(tile="0")


# -- batch resume follows every output-deciding option -------------------------------------------------------
def test_output_fields_are_those_marked() -> None:
    assert set(EngineOptions.output_fields()) >= {"model", "variant", "precision", "tile", "tile_overlap", "strength"}
    assert "device" not in EngineOptions.output_fields() and "threads" not in EngineOptions.output_fields()
    assert output_settings(EngineOptions()) == {n: getattr(EngineOptions(), n) for n in EngineOptions.output_fields()}


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny ALGNet: same architecture and config as ``tiny_model``, other weights."""
    import torch
    from conftest import TINY_ALGNET

    from deblurcli.models import create
    from deblurcli.weights import save_model

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("other") / "other.safetensors"
    save_model(create("algnet", TINY_ALGNET, "plain"), path, arch="algnet", config=TINY_ALGNET, variant="plain")
    return path


@pytest.mark.parametrize("name", EngineOptions.output_fields())
def test_batch_redoes_a_finished_file_when_an_output_deciding_option_changes(
        name: str, tmp_path: Path, tiny_model: Path, other_model: Path) -> None:
    # The camera-shake options act where a kernel is estimated (the default model, --deconv auto), on a photo
    # large enough to hold a --region; --kernel's example must be a real kernel file.
    shake_option = name in ("kernel", "kernel_size", "region")
    _png(tmp_path / "in" / "a.png", size=64 if shake_option else 24)
    base = ["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--model",
            "default" if shake_option else str(tiny_model), "--device", "cpu", "--tile", "0", "--json",
            *(["--deconv", "auto"] if shake_option else [])]

    def statuses(*extra: str) -> list[str]:
        res = runner.invoke(app, [*base, *extra])
        assert res.exit_code == 0, res.stderr
        return [json.loads(line)["status"] for line in res.stdout.splitlines()]

    assert statuses() == ["ok"]
    assert statuses() == ["skipped"]  # nothing changed: nothing to do
    spec = SPECS[name]
    changed = ["--model", str(other_model)] if name == "model" else _example_args(spec)
    if name == "kernel":
        np.save(tmp_path / "kernel.npy", np.eye(5, dtype=np.float32))
        changed = ["--kernel", str(tmp_path / "kernel.npy")]
    assert statuses(*changed) == ["ok"], f"{spec.flag} changed but batch kept the old result"
    assert statuses(*changed) == ["skipped"]


#: The output-deciding options when options.py first declared them: batch journals since key on these.
FIRST_RELEASE_KEYS = {"model", "variant", "precision", "tile", "tile_overlap", "strength"}


def test_every_output_option_added_later_says_what_reproduces_older_output() -> None:
    later = [s for s in EngineOptions.specs() if s.decides_output and s.name not in FIRST_RELEASE_KEYS]
    assert later, "the list above is out of date"
    for spec in later:
        assert spec.before is not None, f"{spec.flag} decides the output but gives no before= value"
        older_key = {s.name: s.default for s in EngineOptions.specs() if s.decides_output and s.name != spec.name}
        assert upgrade_settings(older_key)[spec.name] == spec.before


# -- errors name the flag in the CLI and the parameter in Python ---------------------------------------------
def test_option_errors_name_the_flag_on_the_command_line(tmp_path: Path, tiny_model: Path) -> None:
    src = _png(tmp_path / "a.png")
    res = runner.invoke(app, ["run", str(src), "--model", str(tiny_model), "--tile", "big"])
    assert res.exit_code == 2
    assert "--tile big: must be a number of pixels" in res.stderr
    res = runner.invoke(app, ["run", str(src), "--model", str(tiny_model), "--scan", "nope"])
    assert res.exit_code == 2 and "--scan nope:" in res.stderr
    with pytest.raises(OptionError, match="^scan_backend='nope'"):
        api.Deblurrer(tiny_model, scan_backend="nope", progress=False)


def test_deblurrer_takes_the_options_object_as_is(tiny_model: Path) -> None:
    opts = EngineOptions(model=str(tiny_model), device="cpu", tile=16, tile_overlap=4, strength=0.0)
    d = api.Deblurrer(options=opts, progress=False)
    assert d.options == opts and (d.tile, d.tile_overlap, d.strength) == (16, 4, 0.0)
    x = np.random.default_rng(0).random((20, 20, 3), dtype=np.float32)
    np.testing.assert_array_equal(d.restore(x), x)  # strength 0: the input back, as --strength 0 promises
    assert api.Deblurrer(tiny_model, options=opts, tile=0, progress=False).tile == 0  # keywords over the object
    with pytest.raises(TypeError, match="overlap"):
        api.Deblurrer(tiny_model, overlap=3, progress=False)


def test_with_options_refuses_a_command_that_declares_an_option_twice() -> None:
    def cmd(tile: str = "1", engine: EngineOptions = EngineOptions()) -> None:
        pass

    with pytest.raises(TypeError, match="tile"):
        with_options(EngineOptions.specs(), EngineOptions, param="engine")(cmd)


# -- eval's --json is the flag it is everywhere; the file is --report ------------------------------------------
def test_eval_json_flag_and_report_file(tmp_path: Path, tiny_model: Path) -> None:
    args = _command_args(tmp_path)["eval"] + ["--model", str(tiny_model), "--device", "cpu"]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["summary"]["count"] == 1  # the JSON, not the table
    report = tmp_path / "r.json"
    res = runner.invoke(app, [*args, "--report", str(report), "--quiet"])
    assert res.exit_code == 0 and res.stdout == ""
    assert json.loads(report.read_text())["summary"]["count"] == 1
    res = runner.invoke(app, [*args, "stray"])
    assert res.exit_code == 2 and "stray" in res.stderr
    res = runner.invoke(app, [*args, "--json", "--csv", "-"])
    assert res.exit_code == 2 and "--json and --csv - would all write to stdout" in res.stderr


# -- training flags: one declaration for deblur train and python -m deblurcli.train ------------------------
def test_train_flags_are_declared_once_for_both_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    import deblurcli.train as train_pkg
    from deblurcli.errors import DeblurError
    from deblurcli.options import TRAIN_FLAGS
    from deblurcli.train.__main__ import build_parser
    from deblurcli.train.__main__ import main as torchrun_main
    from deblurcli.train.config import FLAG_KEYS

    assert FLAG_KEYS == {s.name: s.key for s in TRAIN_FLAGS if s.key}
    calls: list[tuple[Any, list[str], dict[str, Any]]] = []

    def fake_load_config(path: Any, overrides: Any, **flags: Any) -> None:
        calls.append((path, list(overrides), flags))
        raise DeblurError("stop")

    monkeypatch.setattr(train_pkg, "load_config", fake_load_config)
    samples = {int: "3", float: "0.5", str: "x"}
    argv = [a for s in TRAIN_FLAGS for a in (s.flag, samples[s.cli_type])] + ["--set", "train.lr=1"]
    res = runner.invoke(app, ["train", *argv])
    assert res.exit_code == 1 and "stop" in res.stderr
    assert torchrun_main(argv) == 1
    (cli_call, main_call) = calls
    assert cli_call == main_call  # same values reach load_config, whichever way training starts
    assert cli_call[0] == "x" and cli_call[1] == ["train.lr=1"]
    assert set(cli_call[2]) == set(FLAG_KEYS) and cli_call[2]["steps"] == 3 and cli_call[2]["lr"] == 0.5

    cli_help = {p.name: p.help for p in _cli_params("train").values()}
    argparse_help = {a.dest: a.help for a in build_parser()._actions}
    for s in TRAIN_FLAGS:
        assert cli_help[s.name] == argparse_help[s.name] == s.help


def test_library_hints_name_parameters_and_the_cli_names_flags(tmp_path: Path, tiny_model: Path) -> None:
    from deblurcli.errors import DeblurError
    from deblurcli.eval.datasets import find_pairs

    args = _command_args(tmp_path)["eval"]
    _png(tmp_path / "blurred" / "lonely.png")  # a blurred image without its sharp partner
    with pytest.raises(DeblurError, match=r"\(allow_unmatched=True\)$"):
        find_pairs("pairs", tmp_path / "blurred", sharp_dir=tmp_path / "sharp")
    res = runner.invoke(app, [*args, "--model", str(tiny_model)])
    assert res.exit_code == 1 and res.stderr.rstrip().endswith("(--allow-unmatched)")
    res = runner.invoke(app, ["batch", str(tmp_path / "in"), str(tmp_path / "in"), "--model", str(tiny_model)])
    assert res.exit_code == 2 and "(--suffix _deblurred)" in res.stderr and "suffix=" not in res.stderr


def test_renamed_options_keep_their_old_names_hidden(tmp_path: Path, captured: list[EngineOptions]) -> None:
    args = _command_args(tmp_path)
    runner.invoke(app, [*args["run"], "--batch-size", "3"])
    assert captured[-1].batch_size == 3
    # One visible meaning per name: tiles per call is --tile-batch, a count of pairs is --dead-leaves-pairs;
    # --batch-size (training crops) and --dead-leaves (a fraction) are train's alone.
    group = typer.main.get_command(app)
    for flag in ("--batch-size", "--dead-leaves"):
        visible = {name for name, cmd in group.commands.items()  # type: ignore[attr-defined]
                   for p in getattr(cmd, "params", []) if flag in p.opts and not getattr(p, "hidden", False)}
        assert visible == {"train"}, (flag, visible)


def test_training_errors_name_config_keys_in_python_and_flags_on_the_command_line(tmp_path: Path) -> None:
    from deblurcli.train.__main__ import main as torchrun_main
    from deblurcli.train.data import list_photos

    with pytest.raises(OptionError, match=r"^data\.synthetic='.*nowhere': no such folder"):
        list_photos(tmp_path / "nowhere")
    args = ["--synthetic", str(tmp_path / "nowhere"), "--steps", "1", "--out", str(tmp_path / "run"),
            "--device", "cpu", "--num-workers", "0"]
    res = runner.invoke(app, ["train", *args])
    assert res.exit_code == 2 and f"--synthetic {tmp_path / 'nowhere'}: no such folder" in res.stderr
    assert torchrun_main(args) == 2


def test_named_options_in_a_message_are_flags_on_the_command_line() -> None:
    from deblurcli.errors import UsageError
    from deblurcli.options import flag_for

    exc = UsageError("runs/a already holds a run; continue it with {resume}, or choose another {out}; "
                     "or {data.dead_leaves}=1", names=("resume", "out", "data.dead_leaves"))
    assert str(exc) == ("runs/a already holds a run; continue it with resume, or choose another out; "
                        "or data.dead_leaves=1")
    assert exc.cli_message(flag_for) == ("runs/a already holds a run; continue it with --resume, or choose another "
                                         "--out; or --dead-leaves=1")


def test_batch_per_file_errors_name_flags_in_the_cli_and_parameters_in_python(tmp_path: Path,
                                                                               tiny_model: Path) -> None:
    from deblurcli.batch import BatchOptions, run_batch

    _png(tmp_path / "in" / "a.png")
    _png(tmp_path / "out" / "a.png", seed=3)  # not ours: batch must not replace it unasked
    res = runner.invoke(app, ["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--model", str(tiny_model),
                              "--json"])
    (rec,) = map(json.loads, res.stdout.splitlines())
    assert res.exit_code == 1 and rec["error"].endswith("replace it with --overwrite")
    d = api.Deblurrer(tiny_model, device="cpu", progress=False)
    _png(tmp_path / "other" / "a.png", seed=3)
    (py,) = run_batch(d, tmp_path / "in", tmp_path / "other", BatchOptions()).results
    assert py.status == "failed" and (py.error or "").endswith("replace it with overwrite")


def test_scan_backend_is_each_deblurrers_own(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--scan torch on one Deblurrer must not make a later one with auto run torch too."""
    import torch

    from deblurcli import ssm

    before = ssm.get_backend()
    forced = api.Deblurrer(tiny_model, device="cpu", tile=0, scan_backend="torch", progress=False)
    auto = api.Deblurrer(tiny_model, device="cpu", tile=0, progress=False)
    assert ssm.get_backend() == before
    seen: list[str] = []
    real = ssm.resolve_backend

    def spy(backend: str, u: torch.Tensor) -> str:
        seen.append(real(backend, u))
        return seen[-1]

    monkeypatch.setattr(ssm, "resolve_backend", spy)
    x = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    forced.restore(x)
    assert seen and set(seen) == {"torch"}
    seen.clear()
    auto.restore(x)
    assert seen and set(seen) == {real("auto", torch.empty(0))}
    assert ssm.get_backend() == before
    assert forced.describe()["scan_backend"] == "torch"
