"""`deblur doctor`: the installation's facts, and each gap named with its fix."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deblurcli import ssm
from deblurcli.cli import app
from deblurcli.imageio import formats


def doctor(*args: str) -> tuple[int, dict, str]:
    res = CliRunner().invoke(app, ["doctor", "--json", *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, json.loads(res.stdout), res.stderr


def test_report_states_this_installation() -> None:
    code, r, _ = doctor()
    assert code == (1 if r["problems"] else 0)
    assert {f["format"]: f["read"] for f in r["formats"]}["PNG"] is True
    assert Path(r["models"]["default"]).is_file()  # the embedded model the README's first command uses
    assert r["scan"]["cpu"] in r["scan"]["available"]
    assert r["torch"]["version"]


def test_plain_report_has_one_line_per_fact_and_per_gap() -> None:
    code, r, _ = doctor()
    res = CliRunner().invoke(app, ["doctor"])
    lines = res.stdout.splitlines()
    assert res.exit_code == code and lines[0].startswith(f"deblurcli {r['deblurcli']} (Python {r['python']}")
    assert f"default model: {r['models']['default']}" in lines
    assert ("problems: none" in lines) == (not r["problems"])
    assert all(f"  - {gap}" in lines for gap in r["problems"] + r["optional"])


def test_missing_optional_plugin_is_named_but_not_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    heif = next(f for f in formats.FORMATS if f.name == "HEIF")
    without = tuple(replace(f, available=lambda: False) if f is heif else f for f in formats.FORMATS)
    monkeypatch.setattr(formats, "FORMATS", without)
    code, r, _ = doctor()
    assert any("HEIC" in line and "pillow-heif" in line for line in r["optional"]), r["optional"]
    assert not any("HEIC" in line for line in r["problems"])
    assert code == (1 if r["problems"] else 0)


def test_missing_numba_is_a_problem_with_its_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ssm._cache, "numba", None)
    code, r, _ = doctor()
    assert code == 1
    assert r["scan"]["cpu"] == "torch"
    assert any("pip install numba" in line for line in r["problems"]), r["problems"]


def test_a_broken_probe_does_not_stop_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    import deblurcli.video

    def broken() -> dict:
        raise OSError("libavcodec.so: cannot open shared object file")

    monkeypatch.setattr(deblurcli.video, "capabilities", broken)
    code, r, _ = doctor()
    assert code == 1 and r["video"] is None
    assert any(line.startswith("video: could not be inspected") and "libavcodec" in line for line in r["problems"])
    assert r["models"] is not None and r["formats"] is not None


def test_plain_report_lists_each_gap_with_its_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ssm._cache, "numba", None)
    res = CliRunner().invoke(app, ["doctor"])
    assert res.exit_code == 1
    lines = res.stdout.splitlines()
    assert lines[0].startswith("deblurcli ") and "problems:" in lines
    assert any(line.startswith("  - ") and "pip install numba" in line for line in lines)
