"""Where end-to-end training runs: one device, the local GPUs, or several workers (tf.distribute).

- `default`: TensorFlow's default strategy, one device.
- `mirrored`: MirroredStrategy, a replica on each local GPU (without GPUs, on each logical CPU
  device: one, unless the process configured more, as the tests do).
- `multi-worker`: MultiWorkerMirroredStrategy across processes or machines, each started with
  the same command and its own `TF_CONFIG` (docs/scale.md). Every worker trains; worker 0, the
  chief, stores the run.
- `auto`: multi-worker when `TF_CONFIG` names more than one worker, mirrored when more than one
  GPU is visible, else default.

`--batch-size` is the global batch, split across the replicas: results stay comparable with a
single device. The learning rate is not rescaled; scale it with the batch if you raise that.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

from zoo.errors import UsageError, ZooError

STRATEGIES = ("auto", "default", "mirrored", "multi-worker")


def cluster_workers() -> int:
    """How many workers TF_CONFIG describes (1 when it is unset)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 1
    try:
        return len(json.loads(raw)["cluster"]["worker"])
    except (ValueError, KeyError, TypeError):
        raise UsageError(
            'TF_CONFIG is not valid JSON of the form {"cluster": {"worker": [...]}, "task": '
            '{"type": "worker", "index": N}}; fix it or unset it'
        ) from None


def is_chief() -> bool:
    """Worker 0 stores the run; every other worker only trains (and a lone process is chief)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw or cluster_workers() == 1:
        return True
    return int(json.loads(raw).get("task", {}).get("index", 0)) == 0


def resolve(name: str) -> str:
    """The strategy `auto` stands for on this machine; others as they are."""
    if name != "auto":
        return name
    if cluster_workers() > 1:
        return "multi-worker"
    import tensorflow as tf

    return "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"


def make_strategy(name: str) -> Any:
    import tensorflow as tf

    chosen = resolve(name)
    if chosen == "multi-worker":
        if cluster_workers() < 2:
            raise UsageError(
                "--strategy multi-worker needs TF_CONFIG naming two or more workers (docs/scale.md)"
            )
        return _multi_worker(tf)
    if chosen == "mirrored":  # the GPUs; without any, the logical CPUs (one unless configured)
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    return tf.distribute.get_strategy()


_multi_worker_strategy = None


def _multi_worker(tf) -> Any:
    """TensorFlow allows one MultiWorkerMirroredStrategy per process: create it once."""
    global _multi_worker_strategy
    if _multi_worker_strategy is None:
        _multi_worker_strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return _multi_worker_strategy


@contextlib.contextmanager
def cluster_failures_explained() -> Iterator[None]:
    """A worker that dies aborts the others' collectives (UnavailableError): say so in one line."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as error:
        if cluster_workers() < 2:
            raise
        raise ZooError(
            f"a worker of the cluster stopped or cannot be reached ({type(error).__name__}); "
            "this run was not trained to the end; start every worker again"
        ) from None
