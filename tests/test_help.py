"""`--help` and `-h` of every command, found from the typer app so a new command is covered too.

Every usage error tells the user to run ``deblur CMD -h``; a crash there (rich once read
``hf:OWNER/REPO[/FILE][@REV]`` in an option's help as a markup tag) leaves a new user stuck.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from deblurcli.cli import app

ROOT = typer.main.get_command(app)


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, group
    # typer may ship its own copy of click, so look for sub-commands rather than a click.Group.
    for name, sub in sorted(getattr(group, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(ROOT))
IDS = [" ".join(p) or "deblur" for p, _ in COMMANDS]


def _squash(text: str) -> str:
    """Help is re-wrapped to the terminal width, so compare text with all whitespace removed."""
    return "".join(text.split())


def test_every_command_is_discovered() -> None:
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"run", "batch", "eval", "bench", "models", "models info", "convert", "download", "train",
            "synth", "doctor"} <= paths


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_help_exits_0_with_usage(path: tuple[str, ...], command: Any, flag: str) -> None:
    res = CliRunner().invoke(app, [*path, flag])
    assert res.exit_code == 0, (res.output, res.exception)
    assert res.exception is None
    assert res.stdout.startswith(f"Usage: deblur {' '.join(path)}".rstrip()), res.stdout[:200]
    if command.help:
        assert _squash(command.help.split("\n\n")[0][:40]) in _squash(res.stdout)


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_help_text_is_printed_verbatim(path: tuple[str, ...], command: Any) -> None:
    """Each option's help appears exactly as written: no markup read into it, no colour codes.

    Fails if rich markup is switched back on (brackets such as ``[/FILE]`` would vanish or
    crash) or if any help string carries escape sequences.
    """
    res = CliRunner().invoke(app, [*path, "--help"], env={"FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.stdout
    for text in [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]:
        assert "\x1b" not in text, f"escape sequence in help of {' '.join(path)}: {text!r}"
        if text and not getattr(command, "hidden", False):
            assert _squash(text.replace("\b", "")) in _squash(res.stdout), text


def test_help_keeps_the_model_reference_syntax() -> None:
    res = CliRunner().invoke(app, ["run", "--help"])
    assert "hf:OWNER/REPO[/FILE][@REV]" in _squash(res.stdout)


def test_help_through_the_real_entry_point() -> None:
    """The console script path (``python -m deblurcli``), outside CliRunner's capture."""
    env = {**os.environ, "FORCE_COLOR": "1", "TERM": "xterm-256color", "COLUMNS": "100"}
    for args in (["run", "--help"], ["batch", "-h"], ["models", "info", "-h"]):
        p = subprocess.run([sys.executable, "-m", "deblurcli", *args], capture_output=True, text=True, env=env,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith("Usage: deblur "), p.stdout[:200]
        assert "Traceback" not in p.stderr and "\x1b" not in p.stdout


def test_size_limit_in_help_matches_the_error() -> None:
    """The --allow-large help and the refusal must name the same limit (they once said 178 and 179)."""
    from deblurcli.imageio import DEFAULT_MAX_PIXELS

    limit = f"{DEFAULT_MAX_PIXELS / 1e6:.0f}"
    for path, command in COMMANDS:
        for p in getattr(command, "params", []):
            if "--allow-large" in getattr(p, "opts", ()) and p.help:
                numbers = [w for w in p.help.split() if w.isdigit()]
                assert numbers == [limit], (path, p.help)
