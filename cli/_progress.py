"""Progress bars for the library's ``progress(done, total)`` callbacks: rich stays in ``cli/``."""

from __future__ import annotations

from rich.progress import Progress, TaskID

__all__ = ["CountBar"]


class CountBar:
    """A rich bar driven by ``progress(done, total)`` calls, used as the callback itself.

    The bar appears on the first call and closes when ``done`` reaches ``total`` or the ``with``
    block ends, so a command can print freely before and after it. ``description`` may name
    ``{total}``.
    """

    def __init__(self, description: str) -> None:
        self.description = description
        self._bar: tuple[Progress, TaskID] | None = None

    def __enter__(self) -> CountBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            progress = Progress()
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
