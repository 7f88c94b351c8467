"""The engine's events drawn with Rich: progress bars and one-line notes on stderr."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from zoo.reporting import Reporter


class RichReporter(Reporter):
    def __init__(self, console: Console):
        self.console = console

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        if not self.console.is_terminal:  # a log or a pipe: a bar would leave a blank line
            yield lambda advance: None
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as progress:
            task_id = progress.add_task(escape(description), total=total)
            yield lambda advance: progress.advance(task_id, advance)

    def backbone_started(self, name: str, mode: str) -> None:
        self.console.print(f"[bold]{escape(name)}[/] ({escape(mode)})", highlight=False)

    def warning(self, text: str) -> None:
        # Outside values (file names, plugin messages) may hold [brackets]: never read as markup.
        self.console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False)


class WarningsOnly(Reporter):
    """For `--json`: no progress, and warnings as one `warning:` line each on stderr (not a
    Python UserWarning with its source line)."""

    def __init__(self, console: Console):
        self.console = console

    warning = RichReporter.warning
