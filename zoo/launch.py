"""The `zoo` console script's first code: a Ctrl-C while zoo is still starting is one line too.

Importing the command line (typer, Rich, numpy, the plugins) takes a few tenths of a second; a
Ctrl-C or SIGTERM then would print the traceback of whichever import it cut short. Until the
command's own error handling is in place (`app.main`), either signal ends zoo at once with the
usual line: nothing has been written yet.
"""

from __future__ import annotations

import os
import signal

INTERRUPTED_LINE = b"error: interrupted; runs and caches already stored are intact\n"


def console_main() -> None:
    """The `zoo` command (see pyproject.toml): guard the start-up, then run the app."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_while_starting)
    from zoo.cli.app import console_main as run_app

    run_app()


def _stop_while_starting(signum, frame) -> None:
    os.write(2, INTERRUPTED_LINE)
    os._exit(130)
