"""The engines the plugins register, and which one runs a backbone (`--engine auto|NAME`).

`auto` is OpenVINO on a machine without a GPU, TensorFlow where a GPU is visible or where
OpenVINO is not installed. Whatever is chosen, an engine that cannot run a backbone falls back to
TensorFlow with one warning line: the engine never fails a run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from zoo.catalog.backbone import Backbone
from zoo.catalog.plugins import PluginSet
from zoo.errors import UsageError
from zoo.extraction.engines.base import Engine, EngineUnavailable, ResolvedBackbone

AUTO = "auto"
FALLBACK = "tensorflow"
# An engine factory: (resolved backbone, precision) -> an Engine, cheaply (nothing loaded yet).
EngineFactory = Callable[[ResolvedBackbone, str], Engine]


@dataclass
class Engines:
    factories: dict[str, EngineFactory] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return sorted(self.factories)

    def check(self, requested: str, precision: str) -> None:
        """A usage error, before any work starts, for an engine or precision this machine lacks."""
        if requested != AUTO and requested not in self.factories:
            raise UsageError(
                f"unknown engine {requested!r}; choose auto or one of: {', '.join(self.names)}"
            )
        if precision != "fp32" and not self._offering(requested, precision):
            raise UsageError(
                f"--precision {precision} needs an engine that computes it natively on this CPU "
                f"({self._capabilities()}); use --precision fp32"
            )

    def _offering(self, requested: str, precision: str) -> list[str]:
        candidates = self.names if requested == AUTO else [requested]
        if (
            precision == "fp32"
        ):  # every engine computes fp32: ask none (OpenVINO takes 0.5 s to import)
            return candidates
        return [name for name in candidates if precision in _precisions(self.factories[name])]

    def _capabilities(self) -> str:
        offers = [f"{name}: {', '.join(_precisions(f))}" for name, f in self.factories.items()]
        return "; ".join(offers) or "no engine installed"

    def choose(self, requested: str, precision: str) -> tuple[str, str | None]:
        """(engine name, why auto chose it) for a request; no backbone is loaded."""
        if requested != AUTO:
            return requested, None
        if gpu_visible():
            return FALLBACK, "a GPU is visible"
        offering = [n for n in self._offering(AUTO, precision) if n != FALLBACK]
        if "openvino" in offering:
            return "openvino", "no GPU is visible"
        if offering:
            return offering[0], "no GPU is visible"
        return FALLBACK, "openvino is not installed"

    def build(self, name: str, resolved: ResolvedBackbone, precision: str) -> Engine:
        return self.factories[name](resolved, precision)

    def start(
        self,
        engine: Engine,
        resolved: ResolvedBackbone,
        warn: Callable[[str], None],
    ) -> Engine:
        """`engine`, loaded; or the TensorFlow engine, loaded, if it cannot run (one warning)."""
        try:
            engine.load()
            return engine
        except EngineUnavailable as error:
            if engine.name == FALLBACK:
                raise
            warn(_fallback_line(resolved, str(error)))
        fallback = self.build(FALLBACK, resolved, "fp32")
        fallback.load()
        return fallback

    def planned(
        self,
        resolved: ResolvedBackbone,
        requested: str,
        precision: str,
        warn: Callable[[str], None],
    ) -> Engine:
        """The engine a run will start with (not loaded yet).

        A failure an earlier run remembered switches to TensorFlow now, with the warning, so the
        feature cache is looked up under the engine that will really compute.
        """
        name, _ = self.choose(requested, precision)
        engine = self.build(name, resolved, precision)
        known_failure = engine.known_failure()
        if not known_failure:
            return engine
        warn(_fallback_line(resolved, known_failure))
        return self.build(FALLBACK, resolved, "fp32")


def _fallback_line(resolved: ResolvedBackbone, reason: str) -> str:
    return f"{resolved.backbone.name}: {reason}; extracting features with {FALLBACK} fp32 instead"


def _precisions(factory: EngineFactory) -> tuple[str, ...]:
    precisions = getattr(factory, "precisions", None)
    return tuple(precisions()) if callable(precisions) else ("fp32",)


def gpu_visible() -> bool:
    """Does TensorFlow see a GPU? Asked of TensorFlow once it is imported; before that (fast
    commands such as `zoo show`) judged from the NVIDIA driver and CUDA_VISIBLE_DEVICES."""
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def load_engines(plugins: PluginSet) -> Engines:
    """Every engine the plugins register through `register_engines(register)`.

    Each plugin's hook is called on its own through pluggy (`PluginSet.call_each`), so one that
    raises is reported by name and skipped while the others still register.
    """
    engines = Engines()
    for _ in plugins.call_each(
        "register_engines", lambda name: {"register": _registrar(name, engines)}, engines.problems
    ):
        pass
    return engines


def _registrar(plugin_name: str, engines: Engines) -> Callable[[str, EngineFactory], None]:
    def register(name: str, factory: EngineFactory) -> None:
        if name == AUTO or not callable(factory):
            raise UsageError(f"plugin {plugin_name!r} registered engine {name!r} badly")
        if name in engines.factories:
            engines.problems.append(
                f"plugin {plugin_name!r} registered engine {name!r}, which another plugin "
                "already provides; the second one was skipped"
            )
            return
        engines.factories[name] = factory

    return register


def describe_engine(engines: Engines, backbone: Backbone, folder: Path | None) -> dict[str, str]:
    """Which engine `zoo run` (default: auto, fp32) will use for a backbone, and why."""
    if backbone.trains_end_to_end:
        return {"engine": FALLBACK, "engine_note": "trains end to end, always on TensorFlow"}
    name, why = engines.choose(AUTO, "fp32")
    if name == FALLBACK or folder is None:
        note = f"auto: {why}" + ("" if folder else "; once the backbone is downloaded")
        return {"engine": name, "engine_note": note}
    engine = engines.build(name, ResolvedBackbone(backbone, folder), "fp32")
    failure = engine.known_failure()
    if failure:
        return {"engine": FALLBACK, "engine_note": f"auto: {failure}"}
    converted = engine.ir_folder
    state = (
        f"converted at {converted}"
        if converted is not None and converted.is_dir()
        else "converted on first run"
    )
    return {"engine": f"{name} fp32", "engine_note": f"auto: {why}; {state}"}
