"""Tell the plugins' `run_finished` hooks (trackers) about a stored run: every writer of a run
(the runner, `zoo ensemble`) calls this once the row is stored."""

from __future__ import annotations

from collections.abc import Callable

from zoo.catalog.plugins import load_plugins
from zoo.runs.store import get_run


def announce(run_id: int, warn: Callable[[str], None]) -> None:
    """Call each `run_finished` hook with the stored record in its JSON form (the dict `zoo
    compare --json` prints: plugins depend on that, never on RunRecord's attributes); one that
    fails is a warning only."""
    plugins = load_plugins()
    if not plugins.implementers("run_finished"):
        return
    record, problems = get_run(run_id).to_json(), []
    for _ in plugins.call_each("run_finished", lambda name: {"run": record}, problems):
        pass
    for problem in problems:
        warn(problem)
