"""Hand-written PyTorch checkpoint files for tests, without torch.

A tiny pickle *writer* that emits protocol-2 opcodes directly (no pickle module involved), plus the
zip container of ``torch.save`` and the folder layout of a Distributed Checkpoint. The object tree uses
the marker classes below for the parts that need globals; plain None/bool/int/float/str/tuple/list/dict
serialize as themselves. Used by tests/test_convert.py and to make the fuzz seeds.
"""
import io
import struct
import zipfile

import numpy as np


class Global:
    def __init__(self, module, name):
        self.module, self.name = module, name


class Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, tuple(args)


class NewObj:
    def __init__(self, cls, args=()):
        self.cls, self.args = cls, tuple(args)


class Build:
    def __init__(self, obj, state):
        self.obj, self.state = obj, state


class PersId:
    def __init__(self, pid):
        self.pid = pid


class ODict:
    """collections.OrderedDict, pickled as torch does: GLOBAL, EMPTY_TUPLE, REDUCE, then SETITEMS."""

    def __init__(self, items):
        self.items = list(items)


def dumps(obj, proto=2):
    """Serializes obj with binary opcodes of protocol `proto` (2 by default, torch's DEFAULT_PROTOCOL)."""
    out = bytearray(b"\x80" + bytes([proto]))
    memo = {}
    keep = []  # memoized objects stay alive so their id() cannot be reused by a temporary

    def put(o):
        idx = len(memo)
        memo[id(o)] = idx
        keep.append(o)
        out.extend(b"q" + bytes([idx]) if idx < 256 else b"r" + struct.pack("<I", idx))

    def emit(o):
        if id(o) in memo and isinstance(o, (list, dict, Global, ODict, PersId, NewObj, Build, Reduce)):
            idx = memo[id(o)]
            out.extend(b"h" + bytes([idx]) if idx < 256 else b"j" + struct.pack("<I", idx))
            return
        if o is None:
            out.extend(b"N")
        elif o is True:
            out.extend(b"\x88")
        elif o is False:
            out.extend(b"\x89")
        elif isinstance(o, int):
            if 0 <= o < 256:
                out.extend(b"K" + bytes([o]))
            elif 0 <= o < 65536:
                out.extend(b"M" + struct.pack("<H", o))
            elif -(2 ** 31) <= o < 2 ** 31:
                out.extend(b"J" + struct.pack("<i", o))
            else:
                n = (o.bit_length() + 8) // 8
                out.extend(b"\x8a" + bytes([n]) + o.to_bytes(n, "little", signed=True))
        elif isinstance(o, float):
            out.extend(b"G" + struct.pack(">d", o))
        elif isinstance(o, str):
            b = o.encode("utf-8")
            out.extend(b"X" + struct.pack("<I", len(b)) + b)
        elif isinstance(o, bytes):
            # protocol 2 has no bytes opcode: _codecs.encode(text, 'latin1'), as Python writes it
            emit(Reduce(Global("_codecs", "encode"), (o.decode("latin1"), "latin1")))
        elif isinstance(o, tuple):
            if not o:
                out.extend(b")")
            elif len(o) <= 3:
                for x in o:
                    emit(x)
                out.extend(bytes([0x84 + len(o)]))
            else:
                out.extend(b"(")
                for x in o:
                    emit(x)
                out.extend(b"t")
        elif isinstance(o, list):
            out.extend(b"]")
            put(o)
            if o:
                out.extend(b"(")
                for x in o:
                    emit(x)
                out.extend(b"e")
        elif isinstance(o, dict):
            out.extend(b"}")
            put(o)
            if o:
                out.extend(b"(")
                for k, v in o.items():
                    emit(k)
                    emit(v)
                out.extend(b"u")
        elif isinstance(o, ODict):
            emit(Global("collections", "OrderedDict"))
            out.extend(b")R")
            put(o)
            if o.items:
                out.extend(b"(")
                for k, v in o.items:
                    emit(k)
                    emit(v)
                out.extend(b"u")
        elif isinstance(o, Global):
            out.extend(b"c" + f"{o.module}\n{o.name}\n".encode())
            put(o)
        elif isinstance(o, Reduce):
            emit(o.func)
            emit(o.args)
            out.extend(b"R")
            put(o)
        elif isinstance(o, NewObj):
            emit(o.cls)
            emit(o.args)
            out.extend(b"\x81")
            put(o)
        elif isinstance(o, Build):
            emit(o.obj)
            emit(o.state)
            out.extend(b"b")
        elif isinstance(o, PersId):
            emit(o.pid)
            out.extend(b"Q")
            put(o)
        else:
            raise TypeError(f"cannot serialize {type(o).__name__}")

    emit(obj)
    out.extend(b".")
    return bytes(out)


STORAGE_CLASS = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float16): "HalfStorage",
                 np.dtype(np.int64): "LongStorage", np.dtype(np.int32): "IntStorage",
                 np.dtype(np.uint8): "ByteStorage", np.dtype(np.bool_): "BoolStorage",
                 np.dtype(np.float64): "DoubleStorage"}


class Storages:
    """Collects storages (raw bytes) by key while a tree is being built."""

    def __init__(self):
        self.data = {}

    def add(self, raw, storage_class, numel):
        key = str(len(self.data))
        self.data[key] = raw
        return PersId(("storage", Global("torch", storage_class), key, "cpu", numel))


def tensor(storages, array=None, *, bf16_bits=None, view=None):
    """A `_rebuild_tensor_v2` node for `array` (contiguous), or for raw bf16 bits (uint16 array).
    view=(storage_array, offset, shape, stride) describes a view into a larger storage instead."""
    if view is not None:
        base, offset, shape, stride = view
        cls = "BFloat16Storage" if bf16_bits is not None else STORAGE_CLASS[base.dtype]
        pid = storages.add(np.ascontiguousarray(base).tobytes(), cls, base.size)
    else:
        a = np.ascontiguousarray(bf16_bits if bf16_bits is not None else array)
        cls = "BFloat16Storage" if bf16_bits is not None else STORAGE_CLASS[a.dtype]
        pid = storages.add(a.tobytes(), cls, a.size)
        offset, shape = 0, a.shape
        stride = tuple(int(s // a.itemsize) for s in a.strides) if a.ndim else ()
    return Reduce(Global("torch._utils", "_rebuild_tensor_v2"),
                  (pid, offset, tuple(shape), tuple(stride), False, ODict([])))


def torch_zip_bytes(obj, storages, prefix="archive", *, byteorder=True):
    """The bytes of a torch.save zip holding `obj` (a tree) and the collected storages."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", dumps(obj))
        if byteorder:
            z.writestr(f"{prefix}/byteorder", "little")
        for key, raw in storages.data.items():
            z.writestr(f"{prefix}/data/{key}", raw)
        z.writestr(f"{prefix}/version", "3\n")
    return buf.getvalue()


def state_dict(arrays, storages):
    """An OrderedDict state dict of contiguous tensors (bf16 entries given as ('bf16', bits))."""
    items = []
    for name, a in arrays.items():
        if isinstance(a, tuple) and a[0] == "bf16":
            items.append((name, tensor(storages, bf16_bits=a[1])))
        else:
            items.append((name, tensor(storages, a)))
    return ODict(items)


DCP = "torch.distributed.checkpoint.metadata"


def _size(dims):
    return Reduce(Global("torch", "Size"), (tuple(int(d) for d in dims),))


def _dataclass(name, state, module=DCP):
    return Build(NewObj(Global(module, name), ()), state)


def dcp_folder(folder, tensors, *, files=2, extra_bytes_item=True):
    """Writes a Distributed Checkpoint folder: `.metadata` + `__<i>_0.distcp`.

    tensors: {fqn: (dtype_name, array_or_bits, row_chunks)} where dtype_name is a torch dtype name
    ('bfloat16' with uint16 bits, or 'float32', ...) and the array is split into `row_chunks` pieces
    along dim 0 (FSDP-style; empty trailing chunks allowed). Chunks go round-robin over `files` files."""
    import os

    os.makedirs(folder, exist_ok=True)
    blobs = [bytearray() for _ in range(files)]
    sd_meta, storage_data = {}, {}
    slot = 0
    for fqn, (dtype_name, arr, n_chunks) in tensors.items():
        rows = arr.shape[0]
        step = -(-rows // n_chunks)
        chunks = []
        for c in range(n_chunks):
            lo, hi = min(c * step, rows), min((c + 1) * step, rows)
            offsets = (lo,) + (0,) * (arr.ndim - 1)
            sizes = (hi - lo,) + arr.shape[1:]
            chunks.append(_dataclass("ChunkStorageMetadata", {"offsets": _size(offsets), "sizes": _size(sizes)}))
            if hi == lo:
                continue  # FSDP2 gives trailing ranks empty shards; nothing is stored for them
            st = Storages()
            piece = np.ascontiguousarray(arr[lo:hi])
            node = tensor(st, bf16_bits=piece) if dtype_name == "bfloat16" else tensor(st, piece)
            blob = torch_zip_bytes(node, st)
            f = slot % files
            slot += 1
            info = _dataclass("_StorageInfo", {"relative_path": f"__{f}_0.distcp", "offset": len(blobs[f]),
                                               "length": len(blob)},
                              module="torch.distributed.checkpoint.filesystem")
            blobs[f] += blob
            key = _dataclass("MetadataIndex", {"fqn": fqn, "offset": _size(offsets), "index": c})
            storage_data[key] = info
        props = _dataclass("TensorProperties", (Global("torch", dtype_name), Global("torch", "strided"), False,
                                                Reduce(Global(DCP, "_MEM_FORMAT_ENCODING"), (0,)), False))
        sd_meta[fqn] = _dataclass("TensorStorageMetadata", {"properties": props, "size": _size(arr.shape),
                                                            "chunks": chunks})
    if extra_bytes_item:
        # a TransformerEngine-style byte item: must be skipped by the converter
        sd_meta["net.blocks.0.self_attn.attn_op._extra_state"] = _dataclass("BytesStorageMetadata", {})
    meta = _dataclass("Metadata", {
        "state_dict_metadata": sd_meta,
        "planner_data": {k: (k,) for k in sd_meta},
        "storage_data": storage_data,
        "storage_meta": _dataclass("StorageMeta", {
            "checkpoint_id": Reduce(Global("pathlib", "PosixPath"), ("/", "ckpt", "iter_000001", "model")),
            "save_id": "abc", "load_id": None, "modules": []}),
    })
    for f, blob in enumerate(blobs):
        with open(os.path.join(folder, f"__{f}_0.distcp"), "wb") as fh:
            fh.write(blob)
    with open(os.path.join(folder, ".metadata"), "wb") as fh:
        fh.write(dumps(meta))
