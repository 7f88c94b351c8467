"""A frozen backbone's engine in a short-lived child process, so that its memory leaves with it.

Loading a backbone, converting it to OpenVINO IR and compiling it leave hundreds of MB behind
in the process that did it (docs/benchmarks.md): one `zoo run` over many backbones grew with
their number. Here each backbone's engine starts in a child (zoo.child: a fresh Python
interpreter), which decodes and encodes the missing images and sends their vectors back a batch
at a time. The parent writes them to the feature cache as before (shards
written atomically), so progress bars advance batch by batch and a child that dies loses no
stored vector. The child exits when the backbone's extraction is done (`close()`); a child
that dies becomes a failure naming the backbone, never a hang.

`ZOO_EXTRACT_HERE=1` keeps every engine in the main process (the way to step through an engine
in a debugger); so does an `Engines` set the child cannot rebuild from the plugins.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from zoo.catalog.backbone import Backbone
from zoo.catalog.plugins import load_plugins
from zoo.child import Duplex, how_it_ended, receive, spawn, stop
from zoo.errors import BackboneUnavailable
from zoo.extraction.engines import Engines, ResolvedBackbone, load_engines
from zoo.extraction.extract import Batch, Transform, local_compute

IN_PROCESS_VARIABLE = "ZOO_EXTRACT_HERE"


def wanted(engines: Engines, backbone: Backbone) -> bool:
    """Extract in a child? Yes, unless the user keeps engines here, or the child, which loads
    the plugins afresh, would not find `engines`' factories or could not be sent `backbone`
    (a plugin's `make_layer` closure)."""
    if os.environ.get(IN_PROCESS_VARIABLE, "") not in ("", "0"):
        return False
    if engines.factories != load_engines(load_plugins()).factories:
        return False
    try:
        pickle.dumps(_sendable(backbone))
    except Exception:  # pickle raises PicklingError, AttributeError, TypeError...
        return False
    return True


def _sendable(backbone: Backbone) -> Backbone:
    """The backbone as the child gets it: its SavedModel is on disk, nothing to build."""
    return replace(backbone, build_savedmodel=None)


@dataclass(frozen=True)
class EngineFacts:
    """What the parent knows of the child's engine: enough for cache keys and run records."""

    name: str
    version: str
    precision: str
    width: int  # features per image, asked of one blank image once the engine is loaded

    @property
    def label(self) -> str:
        return f"{self.name} {self.version} {self.precision}"


class ChildEngine:
    """The parent's end: starts the child, which loads the engine (`engine_name`, or the
    TensorFlow fallback with a warning), and streams the vectors it computes."""

    def __init__(
        self,
        resolved: ResolvedBackbone,
        engine_name: str,
        precision: str,
        batch_size: int,
        warn: Callable[[str], None],
    ):
        self.backbone, self.warn = resolved.backbone, warn
        self._process, self._connection = spawn("zoo.extraction.process:serve")
        self._connection.send(
            (_sendable(resolved.backbone), resolved.folder, engine_name, precision, batch_size)
        )
        self._busy = True  # until the child says it started
        try:
            _, name, version, precision, width = self._receive("started")
        except BaseException:
            self.close()
            raise
        self.facts = EngineFacts(name, version, precision, width)
        self._busy = False

    @property
    def pid(self) -> int:
        return self._process.pid

    def compute(
        self, paths: list[Path], digests: list[str], transform: Transform | None = None
    ) -> Iterator[Batch]:
        """The batches of `paths`, as the child computes them (a `Compute`)."""
        self._busy = True
        try:
            self._connection.send(("extract", paths, digests, transform))
        except OSError:  # BrokenPipeError: the child is gone
            raise self._died() from None
        while True:
            message = self._receive("batch", "done")
            if message[0] == "done":
                self._busy = False
                return
            yield message[1], message[2], message[3]

    def close(self) -> None:
        """Stop the child (ended at once when mid-work: the caller stopped reading)."""
        stop(self._process, self._connection, self._busy)

    def _receive(self, *kinds: str) -> tuple:
        """The child's next message of one of `kinds`; its warnings said on the way; its error
        raised here; its death a BackboneUnavailable naming the backbone."""
        while True:
            message = receive(self._process, self._connection, self._died)
            if message[0] == "warning":
                self.warn(message[1])
            elif message[0] in kinds:
                return message

    def _died(self) -> BackboneUnavailable:
        self._busy = True  # nothing more comes; close() must not wait for it
        how = how_it_ended(self._process)
        return BackboneUnavailable(
            f"{self.backbone.name}: its extraction process stopped ({how}) before it finished; "
            f"the vectors it sent are cached, run again to compute the rest (or set "
            f"{IN_PROCESS_VARIABLE}=1 to extract in the main process)"
        )


def serve(connection: Duplex) -> None:
    """The child's side (zoo.child.serve calls it): load the engine, then compute each batch
    asked for until told to stop."""
    backbone, folder, engine_name, precision, batch_size = connection.recv()
    engines = load_engines(load_plugins())
    resolved = ResolvedBackbone(backbone, folder)
    planned = engines.build(engine_name, resolved, precision)
    engine = engines.start(planned, resolved, lambda text: connection.send(("warning", text)))
    height, width = backbone.input_size
    blank = np.zeros((1, height, width, 3), np.uint8)
    features = int(engine(blank).shape[-1])
    connection.send(("started", engine.name, engine.version, engine.precision, features))
    while True:
        request = connection.recv()
        if request[0] == "stop":
            return
        _, paths, digests, transform = request
        compute = local_compute(backbone.preprocessing, engine, batch_size, transform)
        for indices, vectors, failures in compute(paths, digests):
            connection.send(("batch", indices, vectors, failures))
        connection.send(("done",))
