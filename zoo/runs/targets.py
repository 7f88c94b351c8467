"""Deployment targets: where a run's model is shipped to (`--deploy TARGET`), as plugins.

A target turns a stored run's SavedModel into what a user ships (a TFLite file, an OpenVINO IR
folder, ...) and runs that file through its real interpreter or runtime. Targets are registered
by plugins through `register_deploy_targets(register)`, like extraction engines; the built-ins
(`tflite-float16`, `tflite-int8`, `openvino-fp32`, `openvino-int8`) are plugins too.

Importing this module is cheap (no TensorFlow, no OpenVINO): `zoo run --deploy` checks the
names and `available()` before any work starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from zoo.analysis.record import RunRecord
from zoo.catalog.plugins import PluginSet
from zoo.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

# A predictor: float32 raw 0..255 pixels [N, height, width, 3] -> class probabilities [N, classes].
Predictor = Callable[["np.ndarray"], "np.ndarray"]


class DeployTarget:
    """Base class of deployment targets. Subclasses set `name` and implement `export` and
    `predictor`; `available()` says in one line why this machine cannot use the target."""

    name: ClassVar[str] = ""
    # Images a call in the accuracy pass over the test set; above 1 only where the runtime gives
    # the same predictions at that batch as one image a call (the latency is timed at batch 1).
    test_batch: ClassVar[int] = 1

    def available(self) -> str | None:
        """None when the target can run here; else one line saying why not and how to fix it.

        Must be cheap (no import of a heavy library): it is asked before any work starts.
        """
        return None

    def export(self, run: RunRecord, folder: Path) -> Path:
        """Write what a user ships for stored run `run` into the empty `folder`; return the file
        or folder (inside `folder`) whose size on disk is the deployed size."""
        raise NotImplementedError

    def predictor(self, path: Path, threads: int) -> Predictor:
        """The exported model at `path`, loaded by its runtime on `threads` CPU threads."""
        raise NotImplementedError


@dataclass
class DeployTargets:
    targets: dict[str, DeployTarget] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return sorted(self.targets)

    def chosen(self, names: list[str]) -> list[DeployTarget]:
        """The named targets, checked: an unknown or unavailable one is a usage error (one line)."""
        chosen = []
        for name in names:
            if name not in self.targets:
                raise UsageError(
                    f"unknown deploy target {name!r}; choose from: {', '.join(self.names)}"
                )
            reason = self.targets[name].available()
            if reason:
                raise UsageError(f"deploy target {name!r} cannot run here: {reason}")
            chosen.append(self.targets[name])
        return chosen


def parse_target_names(values: list[str] | None) -> list[str]:
    """`--deploy a --deploy b,c` -> ['a', 'b', 'c'] (repeats dropped, order kept)."""
    names: list[str] = []
    for value in values or []:
        for part in value.split(","):
            if part.strip() and part.strip() not in names:
                names.append(part.strip())
    if values and not names:
        raise UsageError("--deploy needs a target name, e.g. --deploy tflite-int8")
    return names


def choose_targets(
    deploy: list[str] | None,
    budget_ms: float | None,
    budget_mb: float | None,
    prefer: str,
    plugins: Callable[[], PluginSet],
    warn: Callable[[str], None],
) -> list[DeployTarget]:
    """The `--deploy` targets, checked with the budget flags before any work starts: a usage
    error is one line. `plugins` is called only when a target is named (the CLI's compare loads
    no catalogue otherwise); each broken plugin's problem goes to `warn`."""
    from zoo.analysis.budget import check_budget

    names = parse_target_names(deploy)
    check_budget(budget_ms, budget_mb, prefer, names)
    if not names:
        return []
    found = load_targets(plugins())
    for problem in found.problems:
        warn(problem)
    return found.chosen(names)


def load_targets(plugins: PluginSet) -> DeployTargets:
    """Every target the plugins register through `register_deploy_targets(register)`; a plugin
    whose hook raises is reported by name and skipped."""
    targets = DeployTargets()
    for _ in plugins.call_each(
        "register_deploy_targets",
        lambda name: {"register": _registrar(name, targets)},
        targets.problems,
    ):
        pass
    return targets


def _registrar(plugin_name: str, targets: DeployTargets) -> Callable[[DeployTarget], None]:
    def register(target: DeployTarget) -> None:
        if not isinstance(target, DeployTarget) or not target.name:
            raise UsageError(
                f"plugin {plugin_name!r} registered {target!r}, not a named zoo.DeployTarget"
            )
        if target.name in targets.targets:
            targets.problems.append(
                f"plugin {plugin_name!r} registered deploy target {target.name!r}, which "
                "another plugin already provides; the second one was skipped"
            )
            return
        targets.targets[target.name] = target

    return register
