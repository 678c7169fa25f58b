"""Progress bars for the library's callbacks: rich stays in ``cli/``.

Every bar names what it counts (``clips``, ``files``, ``epochs``, ``probes``) next to its
``done/total`` column, so a number never stands alone.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["AttackBar", "CountBar", "ExtractBar", "PhaseBar"]


def _columns(unit: str) -> tuple:
    return (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


class CountBar:
    """A rich bar driven by ``progress(done, total)`` calls, used as the callback itself.

    The bar appears on the first call and closes when ``done`` reaches ``total`` or the ``with``
    block ends, so a command can print freely before and after it. ``description`` may name
    ``{total}``; ``unit`` names what is counted.
    """

    def __init__(self, description: str, unit: str = "", console: Console | None = None) -> None:
        self.description, self.unit, self.console = description, unit, console
        self._bar: tuple[Progress, TaskID] | None = None

    def __enter__(self) -> CountBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            # a console of its own, sized to the terminal as it is now (rich's global one keeps
            # the width it was first created with)
            progress = Progress(*_columns(self.unit), console=self.console or Console())
            progress.start()
            self._bar = (progress, progress.add_task(self.description.format(total=total)))
        progress, task = self._bar
        progress.update(task, completed=done, total=total)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar[0].stop()
            self._bar = None


class AttackBar:
    """One bar per attack run, fed the runner's ``AttackProgress`` events (``update``).

    An attack run counts clip passes, and says so: every test clip once clean and once per
    SNR, so a 400-clip corpus attacked at one SNR reads ``800/800 clip passes``. The bar closes
    when the run is complete; the next run (a new backbone or method, whose count starts
    again) opens a new one.
    """

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled, self.console = enabled, console
        self._bar: tuple[Progress, TaskID] | None = None
        self._done = 0

    def __enter__(self) -> AttackBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, event) -> None:  # event: trustser.attacks.runner.AttackProgress
        if not self.enabled:
            return
        if self._bar is not None and event.done < self._done:
            self.close()  # a new run started
        if self._bar is None:
            progress = Progress(*_columns("clip passes"), console=self.console, transient=False)
            progress.start()
            self._bar = (progress, progress.add_task(event.description, total=event.total))
        progress, task = self._bar
        progress.update(task, description=event.description, completed=event.done)
        self._done = event.done
        if event.done >= event.total:
            self.close()

    __call__ = update

    def close(self) -> None:
        if self._bar is not None:
            self._bar[0].stop()
            self._bar = None
        self._done = 0


class ExtractBar:
    """The extraction progress bar: clips done, clips/s, ETA (the summary adds audio-s/s).

    It fits an 80-column terminal beside a long backbone name: the bar shrinks, the counts do
    not get cut.

    Used as ``extract(..., progress=bar)``; it appears on the first event and closes with the
    ``with`` block. Disabled, it ignores every event.
    """

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("clips"),
            TextColumn("{task.fields[clips_rate]:.1f} clips/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            disable=not enabled,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> ExtractBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, event) -> None:
        if self._task is None:
            self._task = self._progress.add_task(event.label, total=event.total, clips_rate=0.0)
        self._progress.update(
            self._task,
            completed=event.done,
            total=event.total,
            clips_rate=event.clips_per_second,
        )


class PhaseBar:
    """One bar per phase of a run whose events name the phase, its unit and its count
    (``label``, ``unit``, ``done``, ``total``; e.g. the robustness run's extraction in clips,
    then its evaluation in clip passes): a new label closes the bar and opens the next one.
    Disabled, it ignores every event."""

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled, self.console = enabled, console
        self._bar: tuple[Progress, TaskID] | None = None
        self._label: str | None = None

    def __enter__(self) -> PhaseBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, event) -> None:  # event: label, unit, done, total
        if not self.enabled:
            return
        if self._bar is not None and event.label != self._label:
            self.close()
        if self._bar is None:
            progress = Progress(*_columns(event.unit), console=self.console)
            progress.start()
            self._bar = (progress, progress.add_task(event.label, total=event.total))
            self._label = event.label
        progress, task = self._bar
        progress.update(task, completed=event.done, total=event.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar[0].stop()
            self._bar = None
        self._label = None
