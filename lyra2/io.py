"""lyra2.io: safetensors files, the only weight format the C core reads.

Reading goes through the C reader (csrc/io/safetensors.c) over an mmap, which validates the header
strictly (lengths, offsets inside the file, no overlapping or missing ranges, dtype x shape = byte
length, header size cap) and raises ``lyra2.Lyra2Error`` naming the file and tensor on any problem.

dtypes on load: BF16 -> float32 (NumPy has no bfloat16; the widening is exact), F16 -> float16 (kept
exact; call ``.astype(np.float32)`` for arithmetic), F32/F64 and the integer/bool types -> their NumPy
type. FP8 tensors raise ``Lyra2Error``.

Writing (``save_safetensors``) builds the header in Python and streams each tensor to a temporary file
beside the target that is renamed over it at the end, so a failed write never leaves a partial file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping

import numpy as np

from . import _core

__all__ = ["load_safetensors", "save_safetensors", "safetensors_info"]

# NumPy dtype -> safetensors dtype for arrays written as they are.
_ST_OF_NUMPY = {
    np.dtype(np.bool_): "BOOL", np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8",
    np.dtype(np.int16): "I16", np.dtype(np.uint16): "U16", np.dtype(np.float16): "F16",
    np.dtype(np.int32): "I32", np.dtype(np.uint32): "U32", np.dtype(np.float32): "F32",
    np.dtype(np.float64): "F64", np.dtype(np.int64): "I64", np.dtype(np.uint64): "U64",
}
ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4,
            "F32": 4, "F64": 8, "I64": 8, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
# safetensors dtype -> NumPy dtype of its raw little-endian bits (BF16 bits travel as uint16).
RAW_NUMPY = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16,
             "F16": np.float16, "BF16": np.uint16, "I32": np.int32, "U32": np.uint32, "F32": np.float32,
             "F64": np.float64, "I64": np.int64, "U64": np.uint64, "F8_E4M3": np.uint8, "F8_E5M2": np.uint8}
_FLOATS = ("F16", "BF16", "F32", "F64")
_DTYPE_ARG = {"bf16": "BF16", "bfloat16": "BF16", "f16": "F16", "float16": "F16", "f32": "F32",
              "float32": "F32"}


def load_safetensors(path, names=None) -> dict:
    """Reads a safetensors file into ``{name: ndarray}`` in header order (all tensors, or ``names``).

    BF16 comes back as float32 and F16 as float16 (see the module docstring). Raises Lyra2Error for a
    corrupt file, KeyError for a name that is not in the file."""
    if names is not None and isinstance(names, str):
        raise TypeError("names must be a list of tensor names, not a single string")
    arrays, _ = _core.st_load(os.fspath(path), None if names is None else list(names))
    return arrays


def safetensors_info(path) -> dict:
    """Validated header of a safetensors file without reading the data:
    ``{"tensors": {name: {"dtype", "shape", "offset", "nbytes"}}, "metadata": {str: str}}`` (``offset`` is
    the byte offset in the file)."""
    tensors, metadata = _core.st_info(os.fspath(path))
    return {
        "tensors": {n: {"dtype": d, "shape": list(s), "offset": o, "nbytes": b} for n, d, s, o, b in tensors},
        "metadata": metadata,
    }


def to_bf16_bits(array) -> np.ndarray:
    """float array -> uint16 bf16 bits, rounded to nearest even (float64 rounds to float32 first)."""
    return _core.f32_to_bf16(np.ascontiguousarray(array, dtype=np.float32))


def bf16_bits_to_f32(bits) -> np.ndarray:
    """uint16 bf16 bits -> float32 (exact)."""
    return _core.bf16_to_f32(np.ascontiguousarray(bits, dtype=np.uint16))


def save_safetensors(arrays, path, *, metadata=None, dtype=None) -> str:
    """Writes ``{name: array}`` as a safetensors file (atomically) and returns its sha256 (hex).

    dtype: None keeps each array's dtype; "bf16" / "f16" / "f32" converts every floating-point array to
    that type (bf16 by round-to-nearest-even); integer and bool arrays are always written unchanged.
    metadata: an optional ``{str: str}`` stored as ``__metadata__``."""
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays must be a mapping of name -> array, got {type(arrays).__name__}")
    target = None
    if dtype is not None:
        target = _DTYPE_ARG.get(str(dtype).lower())
        if target is None:
            raise ValueError(f"dtype={dtype!r} is not supported (allowed: None, 'bf16', 'f16', 'f32')")
    entries = []
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"tensor names must be non-empty strings, got {name!r}")
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved in safetensors and cannot be a tensor name")
        a = np.asarray(value)
        if a.dtype not in _ST_OF_NUMPY:
            raise TypeError(f"tensor '{name}': dtype {a.dtype} cannot be stored in safetensors "
                            f"(allowed: {', '.join(sorted(str(d) for d in _ST_OF_NUMPY))})")
        st = _ST_OF_NUMPY[a.dtype]
        if target is not None and st in _FLOATS:
            st = target
        entries.append((name, st, a.shape, _array_producer(a, st)))
    return write_safetensors(path, entries, metadata=metadata)


def _array_producer(a, st):
    def produce():
        if st == "BF16":
            return to_bf16_bits(a)
        return np.ascontiguousarray(a, dtype=np.dtype(RAW_NUMPY[st]).newbyteorder("<"))
    return produce


def _read_umask():
    """The process umask without changing it (Linux >= 4.7 reports it in /proc/self/status), or None."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_at_import():
    # Elsewhere the only portable way to read the umask is to set it and set it back, which races with other
    # threads creating files; done once here, while the module is imported, rather than on every write.
    mask = _read_umask()
    if mask is None:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_at_import()


def default_file_mode() -> int:
    """0o666 less the umask: the mode open() would give a new file (for files made by mkstemp, 0600)."""
    mask = _read_umask()
    return 0o666 & ~(_UMASK_AT_IMPORT if mask is None else mask)


def write_safetensors(path, entries, *, metadata=None, on_bytes=None) -> str:
    """Streams tensors into a safetensors file; returns the file's sha256 (hex).

    entries: a list of ``(name, st_dtype, shape, produce)`` where ``produce()`` returns a C-contiguous
    array (or bytes) of exactly ``prod(shape) * itemsize`` bytes of little-endian data; it is called once,
    in order, so only one tensor needs to be in memory. ``on_bytes(n)`` is called after each tensor
    (progress). The header is written first from the shapes, then the data; the file appears at ``path``
    only when complete (temporary file in the same folder, fsync, rename)."""
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                        for k, v in metadata.items()):
            raise TypeError("metadata must be a mapping of str -> str")
    header = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    sizes = []
    for name, st, shape, _ in entries:
        if name in header:
            raise ValueError(f"tensor '{name}' appears twice")
        if st not in ITEMSIZE:
            raise ValueError(f"tensor '{name}': unknown safetensors dtype {st!r}")
        shape = [int(d) for d in shape]
        if any(d < 0 for d in shape):
            raise ValueError(f"tensor '{name}': negative dimension in shape {shape}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * ITEMSIZE[st] if shape else ITEMSIZE[st]
        header[name] = {"dtype": st, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        sizes.append(nbytes)
        offset += nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # pad so the data area starts 8-byte aligned

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, default_file_mode())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            head = len(text).to_bytes(8, "little") + text
            f.write(head)
            digest.update(head)
            for (name, st, _, produce), nbytes in zip(entries, sizes):
                data = produce()
                if isinstance(data, np.ndarray):
                    view = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
                else:
                    view = memoryview(data).cast("B")
                if view.nbytes != nbytes:
                    raise ValueError(f"tensor '{name}': produced {view.nbytes} bytes, header says {nbytes}")
                f.write(view)
                digest.update(view)
                del view, data
                if on_bytes is not None:
                    on_bytes(nbytes)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return digest.hexdigest()
