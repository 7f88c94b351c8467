"""Read a legacy (pre-1.6, non-zip) PyTorch ``state_dict`` file into numpy arrays, without PyTorch.

The legacy format is a run of pickles followed by raw bytes::

    magic number | protocol version | sys_info | main pickle | list of storage keys
    | for each key in that list: int64 element count, then the storage's raw bytes

The main pickle refers to storages through ``persistent_id`` tuples and rebuilds tensors with
``torch._utils._rebuild_tensor_v2``. A pickle can call any importable function, so every pickle
here goes through `_RestrictedUnpickler`, which resolves only the handful of names a state dict
needs, each to a harmless stand-in defined in this module; anything else raises `WeightsError`.
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from zoo.errors import WeightsError

_MAGIC = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

# torch storage class name -> numpy dtype (byte order added later from sys_info).
_STORAGE_DTYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for a ``torch.*Storage`` class: only its element type matters."""

    dtype: str


@dataclass
class _Storage:
    """A storage named by the main pickle; its bytes are read later, after the pickle."""

    dtype: str
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    """What ``_rebuild_tensor_v2`` returned: a view description, materialised once bytes are in."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("tensor without a storage")
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None) -> Any:
    return data  # an nn.Parameter is just its tensor for our purposes


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RefusedGlobal(Exception):
    """A pickle asked for a global outside the allow-list (kept apart from corruption errors)."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; records storages named by persistent ids."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage_type, key, location, numel, view_metadata)
        if not (
            isinstance(pid, tuple)
            and len(pid) == 6
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
        ):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        _, stype, key, _location, numel, view = pid
        if view is not None:
            # Old views into a bigger storage are never written for plain state dicts.
            raise pickle.UnpicklingError("storage views are not supported")
        storage = self._storages.setdefault(str(key), _Storage(stype.dtype, int(numel)))
        return storage


def _materialise(ref: _TensorRef) -> np.ndarray:
    flat = ref.storage.data
    if flat is None:
        raise pickle.UnpicklingError("tensor refers to a storage with no data")
    if (
        len(ref.size) != len(ref.stride)
        or any(n < 0 for n in ref.size + ref.stride)
        or ref.offset < 0
    ):
        raise pickle.UnpicklingError("bad tensor size/stride")
    if 0 in ref.size:
        return np.empty(ref.size, dtype=flat.dtype.newbyteorder("="))
    # as_strided does no bounds checking, so prove every element lies inside the storage.
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= flat.size:
        raise pickle.UnpicklingError("tensor reaches past the end of its storage")
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset :],
        shape=ref.size,
        strides=[s * flat.itemsize for s in ref.stride],
        writeable=False,
    )
    return view.astype(flat.dtype.newbyteorder("="), copy=True)  # copy also fixes byte order


def _read_state_dict(f: BinaryIO, file_size: int) -> dict[str, np.ndarray]:
    storages: dict[str, _Storage] = {}

    def load() -> Any:
        return _RestrictedUnpickler(f, storages).load()

    if f.read(1) != b"\x80":  # every pickle here starts with a PROTO opcode
        raise _NotLegacy()
    f.seek(0)
    if load() != _MAGIC:
        raise _NotLegacy()
    if load() != _PROTOCOL_VERSION:
        raise pickle.UnpicklingError("unsupported protocol version")
    sys_info = load()
    byteorder = "<" if sys_info.get("little_endian", True) else ">"
    result = load()
    keys = load()
    if not isinstance(result, dict) or not isinstance(keys, list):
        raise pickle.UnpicklingError("not a state dict")

    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise pickle.UnpicklingError(f"unknown storage key {key!r:.40}")
        dtype = np.dtype(byteorder + storage.dtype)
        (count,) = struct.unpack("<q", _read_exact(f, 8))
        nbytes = count * dtype.itemsize
        # Check before reading so a corrupt count cannot make us allocate gigabytes.
        if count != storage.numel or nbytes > file_size - f.tell():
            raise pickle.UnpicklingError("storage size does not match the file")
        storage.data = np.frombuffer(_read_exact(f, nbytes), dtype=dtype)

    state: dict[str, np.ndarray] = {}
    for name, value in result.items():
        if isinstance(value, _TensorRef):
            state[str(name)] = _materialise(value)
    return state


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError("file ends early")
    return data


class _NotLegacy(Exception):
    """The file does not start with the legacy magic number."""


def read_state_dict(
    path: str | Path, *, hint: str = "reinstall the package that ships it"
) -> dict[str, np.ndarray]:
    """Return ``{parameter name: array}`` from a legacy PyTorch state-dict file.

    Raises `WeightsError` (one line naming the file, ending with `hint`) when it is missing,
    truncated, corrupt, not in the legacy format, or references anything but plain tensors.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            return _read_state_dict(f, path.stat().st_size)
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} does not exist; {hint}") from None
    except _RefusedGlobal as e:
        raise WeightsError(
            f"weights file {path} references {e}, which is not tensor data, so it "
            f"was not loaded; use only trusted weights: {hint}"
        ) from None
    except _NotLegacy:
        raise WeightsError(
            f"weights file {path} is not a legacy PyTorch state dict (wrong magic number); {hint}"
        ) from None
    except OSError as e:
        raise WeightsError(f"cannot read weights file {path} ({e.strerror or e}); {hint}") from None
    except Exception as e:  # a corrupt pickle fails in many ways (EOFError, struct.error, ...)
        raise WeightsError(
            f"weights file {path} is truncated or corrupt ({type(e).__name__}: {e}); {hint}"
        ) from None
