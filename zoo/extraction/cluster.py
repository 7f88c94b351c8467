"""Feature extraction across a Ray cluster: `zoo run ... --ray ADDRESS|auto`.

Workers need no filesystem shared with the driver. The driver sends the backbone's SavedModel
folder once (an archive in Ray's object store) and each batch's image files as bytes; every
worker is a Ray actor that unpacks the model, starts its engine once (the engine the driver chose,
with the same fallback to TensorFlow as in-process), decodes with zoo's decoder and returns the
vectors. The driver alone writes the feature cache, so cluster and local runs share it, and the
head trains on the driver. Sending bytes costs the driver's network what a shared filesystem
would cost its disks, and works on any cluster, including one of rented machines with nothing
mounted.

A worker that dies has its batches retried by Ray on a restarted actor (`max_restarts`,
`max_task_retries`); each batch's result is taken once, by its object reference, so no row is
missing or doubled.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import socket
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import UsageError, ZooError
from zoo.extraction.engines.base import ResolvedBackbone
from zoo.extraction.extract import Batch

INSTALL_HINT = "pip install 'zoo[ray]' on this machine and on every node of the cluster"
BATCHES_IN_FLIGHT = 2  # per worker: one decoding while the other runs the backbone
CONNECT_TIMEOUT_SECONDS = 5
UNPACKED_PREFIX = "zoo-ray-model-"  # a worker's copy of the model, in its node's temp folder


class ClusterUnavailable(UsageError):
    """`--ray` names a cluster that cannot be reached, or Ray is not installed."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable(f"--ray needs Ray: {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def connected(address: str) -> Iterator[None]:
    """Connected to the Ray cluster at `address` (`auto`: the one started on this machine).

    A process already connected (a test's cluster, a notebook) keeps its connection.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield
        return
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ClusterUnavailable(
            f"cannot connect to the Ray cluster at {address} ({_first_line(error)}); start one "
            "with `ray start --head` or pass its HOST:PORT"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def check_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a `--ray` address, None for auto; a usage error for anything else."""
    if address == "auto":
        return None
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):  # an IPv6 address: [::1]:6379
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterUnavailable(
            f"--ray {address}: give the head's HOST:PORT (e.g. 10.0.0.5:6379) or auto"
        )
    return host, int(port)


def _check_reachable(address: str) -> None:
    """One line within seconds for a wrong address (ray.init itself retries for a minute)."""
    host, port = check_address(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_SECONDS).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ClusterUnavailable(
            f"cannot reach the Ray cluster at {address} ({reason}); start its head with "
            "`ray start --head --port PORT` or check the address"
        ) from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


@dataclass(frozen=True)
class WorkerEngine:
    """What the workers compute with: the feature cache keys their vectors by it."""

    name: str
    version: str
    precision: str
    workers: int

    @property
    def label(self) -> str:
        return f"{self.name} {self.version} {self.precision} on ray ({self.workers} workers)"


class FeatureWorker:
    """One backbone on one Ray node: image bytes in, feature vectors out.

    Two batches run at once (`max_concurrency`): one decodes in threads while the other holds
    the engine, which computes one batch at a time.
    """

    def __init__(self, backbone, model_archive: bytes, engine_name: str, precision: str):
        from zoo.catalog.plugins import load_plugins
        from zoo.extraction.engines import load_engines

        folder = unpacked_model(model_archive)
        try:
            local = replace(backbone, handle=str(folder), fallback_handles=())
            resolved = ResolvedBackbone(local, folder)
            engines = load_engines(load_plugins())
            self.warnings: list[str] = []
            planned = engines.build(engine_name, resolved, precision)
            self.engine = engines.start(planned, resolved, self.warnings.append)
        finally:  # the started engine holds what it needs; a restarted actor unpacks afresh
            shutil.rmtree(folder, ignore_errors=True)
        self.preprocessing = local.preprocessing
        self.lock = threading.Lock()

    def identity(self) -> tuple[str, str, str, list[str]]:
        return self.engine.name, self.engine.version, self.engine.precision, self.warnings

    def pid(self) -> int:
        return os.getpid()

    def encode(self, images: list[bytes]) -> tuple[list[int], np.ndarray, dict[int, str]]:
        from zoo.data.decode import DECODE_THREADS, BadImage, load_pixels

        def decode(index: int):
            try:
                return load_pixels(io.BytesIO(images[index]), self.preprocessing)
            except BadImage as error:
                return str(error)

        with ThreadPoolExecutor(DECODE_THREADS) as pool:
            decoded = list(pool.map(decode, range(len(images))))
        good = [i for i, pixels in enumerate(decoded) if not isinstance(pixels, str)]
        failures = {i: reason for i, reason in enumerate(decoded) if isinstance(reason, str)}
        if not good:
            return good, np.zeros((0, 0), np.float32), failures
        with self.lock:
            vectors = self.engine(np.stack([decoded[i] for i in good]))
        return good, np.asarray(vectors, np.float32), failures


class ClusterCompute:
    """One feature worker per node of the cluster for one backbone; `compute` feeds extract().

    Use it as a context manager: the workers are stopped when the backbone is done.
    """

    def __init__(
        self,
        resolved: ResolvedBackbone,
        engine_name: str,
        precision: str,
        batch_size: int,
        warn: Callable[[str], None],
    ):
        ray = import_ray()
        self.batch_size = batch_size
        self.name = resolved.backbone.name
        # Held for the pool's lifetime: a restarted worker reads its constructor's arguments
        # again, and Ray deletes a put object once the driver drops its last reference.
        self._model_archive = ray.put(_archive(resolved.folder))
        shipped = replace(resolved.backbone, build_savedmodel=None)
        worker_class = ray.remote(FeatureWorker)
        self.workers = [
            _on_node(worker_class, node).remote(
                shipped, self._model_archive, engine_name, precision
            )
            for node in _nodes_with_cpus(ray)
        ]
        identities = self._get([worker.identity.remote() for worker in self.workers])
        for line in dict.fromkeys(w for *_, warnings in identities for w in warnings):
            warn(line)
        engines = {identity[:3] for identity in identities}
        if len(engines) > 1:
            raise ZooError(
                f"{self.name}: the Ray workers started different engines "
                f"({', '.join(' '.join(e) for e in sorted(engines))}); install the same "
                "zoo and engines on every node"
            )
        self.engine = WorkerEngine(*identities[0][:3], workers=len(self.workers))

    def __enter__(self) -> ClusterCompute:
        return self

    def __exit__(self, *exc) -> None:
        ray = import_ray()
        for worker in self.workers:
            ray.kill(worker)
        self._model_archive = None  # Ray may free it now

    def worker_pids(self) -> list[int]:
        return self._get([worker.pid.remote() for worker in self.workers])

    def compute(self, paths: list[Path], digests: list[str]) -> Iterator[Batch]:
        """Batches of `paths` spread over the workers, each kept busy; results as they come."""
        ray = import_ray()
        chunks = [
            list(range(start, min(start + self.batch_size, len(paths))))
            for start in range(0, len(paths), self.batch_size)
        ]
        queue = iter(chunks)
        pending: dict[Any, tuple[Any, list[int], dict[int, str]]] = {}

        def submit(worker) -> None:
            chunk = next(queue, None)
            if chunk is not None:
                sent, unreadable = _read_files(paths, chunk)
                pending[worker.encode.remote([data for _, data in sent])] = (
                    worker,
                    [i for i, _ in sent],
                    unreadable,
                )

        for worker in self.workers:
            for _ in range(BATCHES_IN_FLIGHT):
                submit(worker)
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            worker, sent, unreadable = pending.pop(done)
            good, vectors, failures = self._get(done)
            submit(worker)
            failures = {sent[i]: reason for i, reason in failures.items()}
            yield [sent[i] for i in good], vectors, {**unreadable, **failures}

    def _get(self, refs):
        ray = import_ray()
        try:
            return ray.get(refs)
        except ray.exceptions.RayError as error:
            cause = getattr(error, "cause", None) or error
            if isinstance(cause, ZooError):
                raise cause from None
            raise ZooError(f"{self.name}: a Ray worker failed ({_first_line(cause)})") from None


def _read_files(paths: list[Path], chunk: list[int]) -> tuple[list[tuple[int, bytes]], dict]:
    """The chunk's files as bytes, and the ones that cannot be read with why."""
    sent, unreadable = [], {}
    for index in chunk:
        try:
            sent.append((index, paths[index].read_bytes()))
        except OSError as error:
            unreadable[index] = f"cannot read it ({error.strerror or error})"
    return sent, unreadable


def unpacked_model(model_archive: bytes) -> Path:
    """The model unpacked into a folder of this actor's own in the node's temp folder, named
    `zoo-ray-model-<digest>-*`; the actor removes it once its engine has started, so neither a
    restarted actor nor the next run leaves a copy behind."""
    digest = hashlib.sha256(model_archive).hexdigest()[:24]
    folder = Path(tempfile.mkdtemp(prefix=f"{UNPACKED_PREFIX}{digest}-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(model_archive)) as archive:
            archive.extractall(folder, filter="data")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def _archive(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(folder, arcname=".")
    return buffer.getvalue()


def _nodes_with_cpus(ray) -> list[dict]:
    nodes = [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) >= 1]
    if not nodes:
        raise ZooError("the Ray cluster has no live node with a CPU to extract features on")
    return nodes


def _on_node(worker_class, node: dict):
    """The worker actor, pinned to `node` with all its CPUs; restarted (and its batches
    retried) wherever Ray can if its process dies."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return worker_class.options(
        num_cpus=int(node["Resources"]["CPU"]),
        max_concurrency=BATCHES_IN_FLIGHT,
        max_restarts=-1,
        max_task_retries=-1,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=True),
    )
