"""Work in a short-lived child process, so that the memory it takes leaves with it.

TensorFlow, OpenVINO and TFLite keep hundreds of MB in a process that loaded a model, which
neither `gc`, `clear_session` nor `malloc_trim` give back (docs/benchmarks.md): zoo runs each
backbone's extraction (zoo.extraction.process) and each deployment measurement
(zoo.runs.deploy) in a child of its own. A child is a fresh Python interpreter (a process
holding TensorFlow is never forked), joined to the parent by two pipes carrying pickled
messages; its errors come back as themselves when they are zoo's own, else as their text.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from zoo.errors import ZooError

STOP_SECONDS = 10.0  # how long a child is given to exit on its own before it is ended
POLL_SECONDS = 0.5  # how often a parent waiting for a message checks that its child still lives


class ChildFailed(ZooError):
    """An error in a child that cannot be sent back as itself: its type and message."""


def spawn(entry: str) -> tuple[subprocess.Popen, Duplex]:
    """A fresh Python running `entry(connection)` ("package.module:function"), and the
    parent's end of its pipes.

    A plain subprocess rather than multiprocessing's "spawn": that one imports the parent's
    main script again in the child, which runs a user's script that calls `zoo.run` without an
    `if __name__ == "__main__"` guard a second time.
    """
    module, function = entry.split(":")
    child_reads, parent_writes = os.pipe()
    parent_reads, child_writes = os.pipe()
    child_ends = (child_reads, child_writes)
    program = (
        f"import sys, zoo.child; from {module} import {function} as work; "
        "zoo.child.serve(work, *map(int, sys.argv[1:]))"
    )
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", program, str(child_reads), str(child_writes)],
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
    connection = Duplex(
        Connection(parent_reads, writable=False), Connection(parent_writes, readable=False)
    )
    connection.send(sys.path)  # the child imports what the parent does
    return process, connection


def serve(function: Any, read_fd: int, write_fd: int) -> None:
    """The child's side: `function(connection)` after the parent's import path is set; its
    error is sent back as a ("failed", ...) message. Ctrl-C reaches the whole process group:
    the child then just ends; so it does when the parent is gone (its pipe closed)."""
    import traceback

    connection = Duplex(Connection(read_fd, writable=False), Connection(write_fd, readable=False))
    with contextlib.suppress(KeyboardInterrupt, EOFError, BrokenPipeError, ConnectionError):
        sys.path[:] = connection.recv()
        try:
            function(connection)
        except Exception as error:
            connection.send(("failed", pickled(error), one_line(error), traceback.format_exc()))


class Duplex:
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


def receive(
    process: subprocess.Popen, connection: Duplex, died: Callable[[], BaseException]
) -> tuple:
    """The child's next message; its error raised here as itself (`rebuilt`); `died()` raised
    when the child is gone before it sent one: never a hang."""
    while not connection.poll(POLL_SECONDS):
        if process.poll() is not None and not connection.poll(0):
            raise died()
    try:
        message = connection.recv()
    except (EOFError, OSError):
        raise died() from None
    if message[0] == "failed":
        raise rebuilt(*message[1:])
    return message


def stop(process: subprocess.Popen, connection: Duplex, busy: bool) -> None:
    """End a child: asked to exit when idle, ended at once when it is mid-work (the caller
    stopped reading: an error, Ctrl-C)."""
    if process.poll() is None and not busy:
        with contextlib.suppress(OSError):
            connection.send(("stop",))
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_SECONDS)
    for end in (process.terminate, process.kill):
        if process.poll() is None:
            end()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_SECONDS)
    connection.close()


def how_it_ended(process: subprocess.Popen) -> str:
    """'killed by SIGKILL, perhaps for want of memory', 'exit code 1', ..."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_SECONDS)
    code = process.returncode
    if code is not None and code < 0:
        how = f"killed by {signal.Signals(-code).name}"
        if -code == signal.SIGKILL:
            how += ", perhaps for want of memory"
        return how
    return f"exit code {code}"


def rebuilt(pickled_error: bytes | None, text: str, child_traceback: str) -> BaseException:
    """The child's error as the parent raises it, with the child's traceback as a note."""
    error: BaseException = ChildFailed(text)
    if pickled_error is not None:
        with contextlib.suppress(Exception):
            error = pickle.loads(pickled_error)
    error.add_note(f"in the child process:\n{child_traceback}")
    return error


def pickled(error: Exception) -> bytes | None:
    """zoo's own errors go back as themselves (a DataError stays one); others as text."""
    if not isinstance(error, ZooError):
        return None
    try:
        data = pickle.dumps(error)
        pickle.loads(data)
        return data
    except Exception:
        return None


def one_line(error: Exception) -> str:
    text = str(error) if isinstance(error, ZooError) else f"{type(error).__name__}: {error}"
    return text.splitlines()[0] if text else type(error).__name__
