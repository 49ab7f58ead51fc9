"""Checkpoint files read as numpy arrays without importing torch (for the numpy query backend).

- ``read_safetensors(path)``: every tensor of a ``.safetensors`` file as a read-only view of the
  memory-mapped file (nothing is read until used); bf16 widened to float32 (a copy, exact).
- ``read_torch_state(path)``: a ``torch.save``d dict of tensors (our ColBERT projection heads) as
  float32/int arrays, through a restricted unpickler that builds arrays from the zip archive's raw
  storages, the way ``torch.load(weights_only=True)`` does; any other object in the pickle is refused.

Contract: both return None for anything they cannot read exactly (a missing or damaged file, an
unknown dtype, a legacy non-zip torch file, a big-endian archive); the caller then loads through
torch, which gives the proper error if there is one.
"""

from __future__ import annotations

import collections
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

_SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                       "I8": "i1", "U8": "u1", "BOOL": "?"}  # the format is little-endian
_TORCH_STORAGES = {"FloatStorage": "<f4", "HalfStorage": "<f2", "DoubleStorage": "<f8", "LongStorage": "<i8",
                   "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
                   "BoolStorage": "?", "BFloat16Storage": "bf16"}


def widen_bf16(bits: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) as the same values in float32 (the 16 bits moved up: exact)."""
    return (bits.astype("<u4") << 16).view("<f4")


def read_safetensors(path: str | Path) -> dict[str, np.ndarray] | None:
    """The tensors of a safetensors file (layout: an 8-byte little-endian header size, a JSON header
    of ``name -> {dtype, shape, data_offsets}``, then the data; offsets count from the data's start).
    Tensors of a dtype numpy lacks other than bf16 are left out."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        raw = np.memmap(path, dtype=np.uint8, mode="r")
        size = struct.unpack("<Q", raw[:8].tobytes())[0]
        header = json.loads(raw[8 : 8 + size].tobytes())
        data = raw[8 + size :]
        state = {}
        for name, info in header.items():
            kind = info.get("dtype") if isinstance(info, dict) and name != "__metadata__" else None
            dtype = "<u2" if kind == "BF16" else _SAFETENSORS_DTYPES.get(kind)
            if dtype is None:
                continue
            start, end = (int(v) for v in info["data_offsets"])
            tensor = np.asarray(data[start:end]).view(dtype).reshape(tuple(info["shape"]))
            state[name] = widen_bf16(tensor) if kind == "BF16" else tensor
        return state
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error):
        return None


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = _TORCH_STORAGES[name]


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *_rest) -> np.ndarray:
    size, stride = tuple(size), tuple(stride)
    if not size:
        return np.array(storage[offset])
    span = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if any(n == 0 for n in size):
        return np.zeros(size, dtype=storage.dtype)
    if span > len(storage):
        raise pickle.UnpicklingError("tensor beyond its storage")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(s * storage.itemsize for s in stride))
    return np.ascontiguousarray(view)


class _StateUnpickler(pickle.Unpickler):
    """Builds a ``torch.save``d state dict from the archive's storages; refuses any other class."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(file)
        self.archive = archive
        self.prefix = prefix
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _TORCH_STORAGES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not a tensor state")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError("unknown persistent id")
        _kind, storage_type, key, _location, _numel = pid
        if key not in self.storages:
            raw = self.archive.read(f"{self.prefix}/data/{key}")
            if storage_type.dtype == "bf16":
                self.storages[key] = widen_bf16(np.frombuffer(raw, dtype="<u2"))
            else:
                self.storages[key] = np.frombuffer(raw, dtype=storage_type.dtype)
        return self.storages[key]


def read_torch_state(path: str | Path) -> dict[str, np.ndarray] | None:
    """A ``torch.save``d dict of tensors (zip format) as numpy arrays, or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                return None
            prefix = pickles[0][: -len("/data.pkl")]
            order = f"{prefix}/byteorder"
            if order in archive.namelist() and archive.read(order).strip() != b"little":
                return None
            with archive.open(pickles[0]) as file:
                state = _StateUnpickler(file, archive, prefix).load()
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, KeyError, ValueError, TypeError,
            AttributeError, IndexError, EOFError):
        return None
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        return None
    return dict(state)
