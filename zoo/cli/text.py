"""Outside text made safe for a terminal: control characters shown escaped, never obeyed.

A class folder, a file name or a registry description may hold ESC sequences (clear the screen,
recolour, an OSC-8 link, a window title). Rich escapes markup but passes ESC through, so every
value zoo did not write goes through `printable` (tables.py), and `SafeConsole` applies it to
whatever else is printed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment

# C0 controls but newline, DEL and the C1 controls (a lone 0x9b is a CSI on some terminals).
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
SHOWN = {"\t": "\\t", "\r": "\\r"}


def printable(text: str) -> str:
    """`text` with each control character but newline written as an escape: ESC as `\\x1b`."""
    return CONTROL.sub(lambda found: SHOWN.get(found[0], f"\\x{ord(found[0]):02x}"), text)


class SafeConsole(Console):
    """A Rich console whose text segments are `printable`; its own control codes pass."""

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterable[Segment]:
        if isinstance(renderable, str):
            renderable = printable(renderable)
        for segment in super().render(renderable, options):
            if segment.control or not CONTROL.search(segment.text):
                yield segment
            else:
                yield Segment(printable(segment.text), segment.style)
