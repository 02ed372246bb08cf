"""Progress bars on stderr, drawn one way: for tiles of an image, files of a batch, bytes of a download.

They show only where a person watches (the caller passes ``show``; the CLI decides from whether
stderr is a terminal), never redirect stdout (``--json`` lines must reach the pipe untouched),
and the per-image and download bars vanish when done so that the log keeps only result lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

Unit = Literal["tiles", "items", "bytes"]


def bar(console: Console, unit: Unit, *, show: bool = True, field: str | None = None,
        transient: bool | None = None) -> Progress:
    """A rich `Progress` for ``unit``; ``field`` adds a text column fed by ``update(task, **{field: ...})``.

    Not started: use it as a context manager (or ``start``/``stop``). ``show=False`` draws nothing.
    """
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
    if unit == "tiles":
        columns += [_count_column("tiles"), TimeElapsedColumn()]
    elif unit == "bytes":
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns.append(MofNCompleteColumn())
    if field:
        columns.append(TextColumn(f"{{task.fields[{field}]}}"))
    columns.append(TimeRemainingColumn())
    return Progress(*columns, console=console, disable=not show, redirect_stdout=False, redirect_stderr=False,
                    transient=unit != "items" if transient is None else transient)


def _count_column(noun: str) -> Any:
    """``3/12 tiles``; before the count is known, ``starting`` rather than ``0/None tiles``."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class CountColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            if task.total is None:
                return Text("starting")
            return Text(f"{int(task.completed)}/{int(task.total)} {noun}")

    return CountColumn()


@contextmanager
def tile_progress(console: Console, label: str, *, show: bool, steps: bool = False,
                  ) -> Iterator[Callable[[int, int], None] | None]:
    """A per-image bar of tiles done, as the ``progress(done, total)`` callback `Deblurrer.restore` takes.

    ``steps``: for the deconvolution engine, whose steps are hundredths of the work (then, when the
    default model falls back to its network, tiles): a count, never called tiles, gone when done.
    """
    if not show:
        yield None
        return
    with bar(console, "items", transient=True) if steps else bar(console, "tiles") as prog:
        task = prog.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update


@contextmanager
def frame_progress(console: Console, label: str, *, show: bool, log: Callable[[str], None] | None = None,
                   every: float = 30.0) -> Iterator[Callable[[int, int | None, float], None] | None]:
    """A video's frames done, frames per second and time left, as ``progress(done, total, fps)``.

    A bar where a person watches; otherwise, for a log, one line through ``log`` every ``every``
    seconds (a long job in a batch system should still say how far it is); nothing without either.
    """
    if show:
        with bar(console, "items", field="fps") as prog:
            task = prog.add_task(label, total=None, fps="")

            def update(done: int, total: int | None, fps: float) -> None:
                prog.update(task, completed=done, total=total, fps=f"{fps:.2f} frames/s")

            yield update
        return
    if log is None:
        yield None
        return
    import time

    last = [time.monotonic()]

    def line(done: int, total: int | None, fps: float) -> None:
        if time.monotonic() - last[0] >= every:
            last[0] = time.monotonic()
            log(f"{label}: {frames_text(done, total, fps)}")

    yield line


def frames_text(done: int, total: int | None, fps: float) -> str:
    """``120/1440 frames, 2.30 frames/s, ETA 0:09:34``."""
    text = f"{done}/{total or '?'} frames, {fps:.2f} frames/s"
    if total and fps > 0 and done < total:
        left = int((total - done) / fps)
        text += f", ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"
    return text


class DownloadBar:
    """The progress bar huggingface_hub drives during a download, drawn with rich.

    huggingface_hub (2.x) builds its bar as ``tqdm_class(total=..., initial=..., desc=..., ...)``,
    uses it as a context manager and calls ``update(n)``; that is all this implements. It stays
    silent when the console is quiet or bars are off, and forwards progress to a callback
    for callers that draw their own.
    """

    def __init__(self, *, console: Console | None = None, show: bool = True, label: str | None = None,
                 callback: Callable[[int, int | None], None] | None = None, total: int | None = None, initial: int = 0,
                 desc: str = "", **_ignored: Any) -> None:
        self.total = total
        self.n = initial
        self._callback = callback
        self._progress: Any = None
        self._task: Any = None
        if show and console is not None and not console.quiet:
            self._progress = bar(console, "bytes")
            self._progress.start()
            self._task = self._progress.add_task(label or str(desc), total=total, completed=initial)

    def update(self, n: int | float = 1) -> None:
        self.n += int(n)
        if self._progress is not None:
            self._progress.update(self._task, completed=self.n)
        if self._callback is not None:
            self._callback(self.n, self.total)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> DownloadBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
