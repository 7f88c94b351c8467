"""Library chatter kept off the terminal: what TensorFlow, TFLite and OpenVINO's tools print on
their own (C++ log lines written to file descriptor 2, past Python's streams) is not zoo's to
show. Their errors still arrive as exceptions.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def stderr_hidden() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null while the body runs (Python warnings included)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow() -> None:
    """Import TensorFlow and tf_keras with their start-up lines hidden (absl's notice, the oneDNN
    note, a failed cuInit on a machine without a GPU): printed before logging can be set up.
    Called where a process may import TensorFlow first, the CLI and zoo's child processes."""
    if "tensorflow" in sys.modules:
        return
    with stderr_hidden():
        import tensorflow
        import tf_keras  # noqa: F401

        tensorflow.config.list_physical_devices()  # device probing logs here too
        tensorflow.get_logger().setLevel("ERROR")
