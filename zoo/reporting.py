"""What the engine tells its caller while it works: events, never formatting.

The engine calls a Reporter; the CLI passes one that renders the events with Rich
(`zoo.cli.progress`). The base class is silent: the Python API and tests.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator


class Reporter:
    """Progress is silent by default (the Python API, tests); warnings are Python warnings.
    Override any method to show an event."""

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A stage of `total` steps; the engine calls the yielded function with steps done."""
        yield lambda advance: None

    def backbone_started(self, name: str, mode: str) -> None:
        """A backbone's run begins (mode: feature-extraction, fine-tune or from-scratch)."""

    def warning(self, text: str) -> None:
        """Something the user should know that does not stop the run (plain text)."""
        warnings.warn(text, stacklevel=2)
