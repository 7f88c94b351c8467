"""A frozen backbone's engine in a short-lived child process, so that its memory leaves with it.

Loading a backbone, converting it to OpenVINO IR and compiling it leave hundreds of MB behind
in the process that did it, which neither `gc`, `clear_session` nor `malloc_trim` give back
(docs/benchmarks.md): one `zoo run` over many backbones grew with their number. Here each
backbone's engine starts in a child: a fresh Python interpreter (a process holding TensorFlow
is never forked), which decodes and encodes the missing images and sends their
vectors back a batch at a time. The parent writes them to the feature cache as before (shards
written atomically), so progress bars advance batch by batch and a child that dies loses no
stored vector. The child exits when the backbone's extraction is done (`close()`); a child
that dies becomes a failure naming the backbone, never a hang.

`ZOO_EXTRACT_HERE=1` keeps every engine in the main process (the way to step through an engine
in a debugger); so does an `Engines` set the child cannot rebuild from the plugins.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from zoo.catalog.backbone import Backbone
from zoo.catalog.plugins import load_plugins
from zoo.errors import BackboneUnavailable, ZooError
from zoo.extraction.engines import Engines, ResolvedBackbone, load_engines
from zoo.extraction.extract import Batch, Transform, local_compute

IN_PROCESS_VARIABLE = "ZOO_EXTRACT_HERE"
POLL_SECONDS = 0.5  # how often a parent waiting for a batch checks that its child still lives
STOP_SECONDS = 10.0  # how long an idle child is given to exit on its own before it is ended


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


class ExtractionFailed(ZooError):
    """An error in the child that cannot be sent back as itself: its type and message."""


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
        self._process, self._connection = _spawn()
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
        """Stop the child: asked to exit when idle, ended at once when it is mid-work (the
        caller stopped reading: an error, Ctrl-C)."""
        if self._process.poll() is None and not self._busy:
            with contextlib.suppress(OSError):
                self._connection.send(("stop",))
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(STOP_SECONDS)
        for end in (self._process.terminate, self._process.kill):
            if self._process.poll() is None:
                end()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(STOP_SECONDS)
        self._connection.close()

    def _receive(self, *kinds: str) -> tuple:
        """The child's next message of one of `kinds`; its warnings said on the way; its error
        raised here; its death a BackboneUnavailable naming the backbone."""
        while True:
            while not self._connection.poll(POLL_SECONDS):
                if self._process.poll() is not None and not self._connection.poll(0):
                    raise self._died()
            try:
                message = self._connection.recv()
            except (EOFError, OSError):
                raise self._died() from None
            if message[0] == "warning":
                self.warn(message[1])
            elif message[0] == "failed":
                raise _rebuilt(*message[1:])
            elif message[0] in kinds:
                return message

    def _died(self) -> BackboneUnavailable:
        self._busy = True  # nothing more comes; close() must not wait for it
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(STOP_SECONDS)
        code = self._process.returncode
        if code is not None and code < 0:
            how = f"killed by {signal.Signals(-code).name}"
            if -code == signal.SIGKILL:
                how += ", perhaps for want of memory"
        else:
            how = f"exit code {code}"
        return BackboneUnavailable(
            f"{self.backbone.name}: its extraction process stopped ({how}) before it finished; "
            f"the vectors it sent are cached, run again to compute the rest (or set "
            f"{IN_PROCESS_VARIABLE}=1 to extract in the main process)"
        )


def _rebuilt(pickled: bytes | None, text: str, child_traceback: str) -> BaseException:
    """The child's error as the parent raises it, with the child's traceback as a note."""
    error: BaseException = ExtractionFailed(text)
    if pickled is not None:
        with contextlib.suppress(Exception):
            error = pickle.loads(pickled)
    error.add_note(f"in the extraction process:\n{child_traceback}")
    return error


def _spawn() -> tuple[subprocess.Popen, Connection]:
    """A fresh Python running `serve`, and the parent's end of its two pipes.

    A plain subprocess rather than multiprocessing's "spawn": that one imports the parent's
    main script again in the child, which runs a user's script that calls `zoo.run` without an
    `if __name__ == "__main__"` guard a second time.
    """
    child_reads, parent_writes = os.pipe()
    parent_reads, child_writes = os.pipe()
    child_ends = (child_reads, child_writes)
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD_PROGRAM, str(child_reads), str(child_writes)],
            pass_fds=child_ends,
            stdin=subprocess.DEVNULL,
        )
    except BaseException:
        for fd in (parent_reads, parent_writes):
            os.close(fd)
        raise
    finally:
        for fd in child_ends:  # the parent's copies: once the child is gone, reads end (EOF)
            os.close(fd)
    connection = _Duplex(
        Connection(parent_reads, writable=False), Connection(parent_writes, readable=False)
    )
    connection.send(sys.path)  # the child imports what the parent does
    return process, connection


_CHILD_PROGRAM = (
    "import sys; from zoo.extraction.process import serve; serve(*map(int, sys.argv[1:]))"
)


class _Duplex:
    """Two one-way pipes as one connection (what multiprocessing.Pipe gives, without its spawn)."""

    def __init__(self, reader: Connection, writer: Connection):
        self._reader, self._writer = reader, writer

    def send(self, message: Any) -> None:
        self._writer.send(message)

    def recv(self) -> Any:
        return self._reader.recv()

    def poll(self, timeout: float) -> bool:
        return self._reader.poll(timeout)

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


def serve(read_fd: int, write_fd: int) -> None:
    """The child's side: load the engine, then compute each batch asked for until told to stop.
    Ctrl-C reaches the whole process group: the child then just ends; so it does when the
    parent is gone (its end of the pipe closed)."""
    connection = _Duplex(Connection(read_fd, writable=False), Connection(write_fd, readable=False))
    with contextlib.suppress(KeyboardInterrupt, EOFError, BrokenPipeError, ConnectionError):
        sys.path[:] = connection.recv()
        try:
            _serve(connection, *connection.recv())
        except Exception as error:
            connection.send(("failed", _pickled(error), _one_line(error), traceback.format_exc()))


def _serve(
    connection: _Duplex,
    backbone: Backbone,
    folder: Path,
    engine_name: str,
    precision: str,
    batch_size: int,
) -> None:
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


def _pickled(error: Exception) -> bytes | None:
    """zoo's own errors go back as themselves (a DataError stays one); others as text."""
    if not isinstance(error, ZooError):
        return None
    try:
        pickled = pickle.dumps(error)
        pickle.loads(pickled)
        return pickled
    except Exception:
        return None


def _one_line(error: Exception) -> str:
    text = str(error) if isinstance(error, ZooError) else f"{type(error).__name__}: {error}"
    return text.splitlines()[0] if text else type(error).__name__
