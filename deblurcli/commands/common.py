"""What every ``deblur`` command shares: the app, where it prints, how an error becomes one line, shared options.

Conventions: results and ``--json`` go to stdout (`out`); progress, notes and errors to stderr
(`err`). A user error is one line (``error: ...``) and exit code 1 (2 for wrong usage); ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from .. import __version__
from ..errors import DeblurError
from ..options import EngineOptions, flag_for
from ..video.options import VideoOptions

# stderr is for people and logs: one message per line (never wrapped at 80 columns when it is a
# file), no colour guessing from file names. stdout carries only results.
err = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console()
F = TypeVar("F", bound=Callable[..., Any])

# Typer ships its own copy of click in recent versions and uses the click package in older
# ones; its BadParameter derives from whichever ClickException is really raised.
_CLICK_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class _OneLineErrors(TyperGroup):
    """Wrong usage (unknown option, value out of range, missing argument) as one ``error:`` line.

    Click's own report is a usage block and a boxed panel; a script's log and a person's
    terminal are both better served by the single line every other error of ours uses.
    """

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name or "deblur", complete_var, standalone_mode=False, **extra)
        except _CLICK_ERROR as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help has been printed already
                sys.exit(exc.exit_code)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
            message = " ".join(exc.format_message().split())
            typer.echo(f"error: {message}{hint}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def say(prefix: str, message: str) -> None:
    """One line on stderr; the message is escaped because paths may contain [brackets]."""
    err.print(f"{prefix}{escape(message)}")


def error(message: str) -> None:
    say("[bold red]error:[/] ", message)


def fail(message: str, code: int) -> None:
    error(message)
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn library errors into one line and an exit code (a traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.get("debug") or os.environ.get("DEBLUR_DEBUG") == "1"
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except DeblurError as exc:
            if debug:
                raise
            fail(exc.cli_message(flag_for), exc.exit_code)
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            raise  # the reader went away (| head): click exits quietly
        except Exception as exc:
            if debug:
                raise
            fail(f"{type(exc).__name__}: {exc} (run again with --debug for the traceback)", 1)

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    """The ``--version`` callback: print it and stop before any command runs."""
    if value:
        out.print(f"deblur {__version__}")
        raise typer.Exit()


def note_printer(quiet: bool) -> Callable[[str], None]:
    """What the library's ``on_note`` callbacks get: a yellow ``note:`` line on stderr, none when quiet."""

    def note(msg: str) -> None:
        if not quiet:
            say("[yellow]note:[/] ", msg)

    return note


def make_deblurrer(engine: EngineOptions, *, quiet: bool, debug: bool) -> Any:
    """The Deblurrer every command uses: notes on stderr unless quiet, bars on a terminal, --debug's JSON."""
    from .. import ssm
    from ..api import Deblurrer

    note = note_printer(quiet)
    ssm.set_notice(note)  # e.g. the numba scan compiling on a first run, which would look like a hang
    d = Deblurrer(options=engine, progress=not quiet and stderr_is_tty(), console=None if quiet else err,
                  on_note=note)
    if debug:
        err.print(escape(json.dumps(d.describe(), indent=1)))
    return d


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def second_interrupt_exits_now() -> None:
    """First Ctrl-C: stop cleanly (the file being written is finished, exit 130). Second: leave at once.

    Without this, a second Ctrl-C lands in the interpreter's exit-time join of worker threads
    and prints an ``atexit`` traceback. Every output is written atomically, so leaving at once
    loses only the file in progress, whose temporary file the next run removes.
    """
    import signal

    def again(signum: int, frame: Any) -> None:
        os.write(2, b"interrupted\n")
        os._exit(130)

    def first(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, again)
        raise KeyboardInterrupt

    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, first)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass


def leave(code: object) -> None:
    """End the process with ``code`` (a ``SystemExit.code``) without the interpreter's teardown.

    Once torch and numba are loaded, tearing down their modules takes about a second (measured:
    0.95 s of a 1 MP photo's 8.7 s), after every output is already written and closed. So when
    nothing can still be running, stdout and stderr are flushed, the ``atexit`` handlers run (they
    are what libraries register for cleanup: logging, multiprocessing, temporary folders) and the
    process ends at once. With a live non-daemon thread, or without torch loaded (``--help``, a
    usage error), the ordinary exit runs instead, which also joins threads.
    """
    import atexit
    import threading

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    busy = any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread())
    if "torch" not in sys.modules or busy:
        sys.exit(status)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (``| head``): nothing more can reach it
            pass
    atexit._run_exitfuncs()
    os._exit(status)


# -- the app: deblurcli/cli.py registers every command on it, in --help order -----------------------
app = typer.Typer(
    name="deblur",
    help="Remove motion blur from photos with ALGNet, EVSSM and XYScanNet.",
    cls=_OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    # Help is plain text: option help quotes syntax such as hf:OWNER/REPO[/FILE][@REV], which rich
    # would read as markup tags (and crash on); plain click help also suits pipes, logs and screen readers.
    rich_markup_mode=None,
)
models_app = typer.Typer(help="List the named models, or show one (deblur models info NAME).",
                         invoke_without_command=True, rich_markup_mode=None)
app.add_typer(models_app, name="models")


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Remove motion blur from photos. Start with: deblur run photo.jpg"""


# -- options several commands share -------------------------------------------------------------------
# The options of run/batch/eval/bench that say which model and how to run it are EngineOptions
# (deblurcli/options.py), added to each command by @engine_options(): declared once, there.
# Output encoding, shared by the commands that write images beside their inputs (run, batch).
FormatOpt = typer.Option(None, "--format", help="Output format: png, jpg, tif, webp, ... (default: the output "
                         "name's extension, else the input's)")
QualityOpt = typer.Option(95, "--quality", min=1, max=100, help="JPEG/WebP quality")
AllowLargeOpt = typer.Option(False, "--allow-large", help="Accept images over 179 megapixels")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print nothing but errors (and --json)")
DebugOpt = typer.Option(False, "--debug", envvar="DEBLUR_DEBUG", help="Show tracebacks and internal choices")
# The video flags of run (all six) and batch (crf, codec, lossless): declared on VideoOptions's
# fields (deblurcli/video/options.py), which also validates them (VideoOptions.checked).
_VIDEO = {s.name: s.typer_option() for s in VideoOptions.specs()}
CrfOpt = _VIDEO["crf"]
CodecOpt = _VIDEO["codec"]
LosslessOpt = _VIDEO["lossless"]
StartOpt = _VIDEO["start"]
DurationOpt = _VIDEO["duration"]
PreviewOpt = _VIDEO["preview"]
