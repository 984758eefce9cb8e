"""lyra2.convert: upstream Lyra 2.0 checkpoints -> one folder of safetensors files, without torch.

``convert(src, dst)`` (CLI ``lyra2 convert SRC DST [--force]``) reads what ``huggingface-cli download
nvidia/Lyra-2.0 --include "checkpoints/*"`` puts on disk (upstream ML:78-92, T2V:353-432, Z:464), or any single file:

- PyTorch ``torch.save`` zip archives (``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt``): ``data.pkl`` is read by
  the restricted C unpickler (csrc/io/unpickle.c), which only builds tensors, storages, OrderedDicts and
  plain containers and refuses any other global (``os.system``, ``builtins.eval``, numpy, ...) with
  ``Lyra2Error``; storages are read from ``<prefix>/data/<key>`` honouring offset and strides.
- PyTorch Distributed Checkpoint folders (``.metadata`` + ``*.distcp``): ``.metadata`` goes through the
  same unpickler (DCP dataclasses become plain records), every chunk blob is a small torch zip at
  (file, offset, length); chunks are checked to tile each tensor exactly and stitched.
- safetensors files: LoRAs are validated and copied byte for byte (their key formats are handled at
  load time, upstream T2V:353-432, Z:525-530, T2V:379-380); other safetensors (e.g. the Depth Anything 3 base) are
  re-written.

Output layout (DESIGN.md "Weights"; DST is a folder, or a ``.safetensors`` path for one source file):

    DST/dit.safetensors              Lyra-2 DiT        <- checkpoints/model/model/ (DCP)
    DST/vae.safetensors              Wan 2.1 VAE       <- checkpoints/vae/vae.pth
    DST/umt5.safetensors             umT5-XXL encoder  <- checkpoints/text_encoder/encoder.pth
    DST/negative_prompt.safetensors  {"t5_text_embeddings"} <- checkpoints/text_encoder/negative_prompt.pt
    DST/clip.safetensors             CLIP vision tower <- checkpoints/image_encoder/model.pth
    DST/da3.safetensors              DA3 nested        <- checkpoints/recon/model.pt (over the HF base if given)
    DST/moge.safetensors             MoGe v1           <- Ruicheng/moge-vitl model.pt
    DST/lora/<stem>.safetensors      LoRAs, verbatim   <- checkpoints/lora/*.safetensors
    DST/tokenizer/<file>             spiece.model / tokenizer.json when present in SRC
    DST/manifest.json                per file: source, family, detected config, sha256, bytes, and
                                     every tensor's name, shape, dtype; dropped keys with the reason

Files are recognised by their tensor names (``detect_family``), not by their paths.

Name mapping (keys keep their upstream module paths, upstream ML:74-92, Z:464-486, CTI:181-199, the modules of
upstream TOK, T5, CLIP, docs/REFERENCES.md#weight-names):
- DiT: ``net.`` is stripped; ``net_ema.*``, ``*._extra_state``, byte items, the ``net.accum_*`` training
  counters and keys outside ``net.`` are dropped (upstream ML:74-92, Z:464-486, CTI:181-199).
- A top-level ``module`` / ``model`` / ``state_dict`` sub-dict is taken when present (depth_utils.py
  order: ``module`` first, then ``model``); other top-level entries that are plain data (e.g. MoGe's
  ``model_config``) are kept as JSON in ``__metadata__["source_extras"]``.
- DA3 (``recon/model.pt`` and the HF base): only ``model.``-prefixed keys are used, prefix stripped, so
  names start ``da3.`` / ``da3_metric.`` (upstream Z:212, DU:149-194, DA3api:88-90).
- A ``module.`` (DDP) or ``_orig_mod.`` (torch.compile) prefix carried by every key is stripped.
- CLIP: ``textual.*`` (the unused text tower, ~2.2 GB fp32) is dropped; ``visual.*`` is kept whole.
- VAE, umT5, MoGe, negative prompt: names unchanged.

dtypes (``dtype="auto"``): floating tensors of the DiT, VAE, umT5, CLIP and the negative prompt are
stored as bf16 (upstream runs them in bf16/fp16; bf16 sources are copied bit for bit, f32/f16 sources
round to nearest even); DA3, MoGe and unrecognised files keep their source dtype (upstream keeps those
parameters in fp32). ``dtype="bf16"`` converts every floating tensor, ``dtype="keep"`` none. Integer
and bool tensors are never converted.
"""
from __future__ import annotations

import argparse
import datetime
import io as _io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile

import numpy as np

from . import _core
from . import io as lio
from ._core import Lyra2Error

__all__ = ["convert", "detect_config", "detect_family", "read_torch_file", "read_dcp", "main"]

FAMILY_FILES = {"dit": "dit.safetensors", "vae": "vae.safetensors", "umt5": "umt5.safetensors",
                "clip": "clip.safetensors", "negative_prompt": "negative_prompt.safetensors",
                "da3": "da3.safetensors", "moge": "moge.safetensors"}
BF16_FAMILIES = {"dit", "vae", "umt5", "clip", "negative_prompt"}
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Upstream files that inference never reads (upstream DU:167-176: load_mean_std=False).
UNUSED_FILES = ("images_mean_std.pt", "video_mean_std.pt")
DIT_COUNTERS = ("accum_video_sample_counter", "accum_image_sample_counter", "accum_iteration",
                "accum_train_in_hours")


# ---- records the unpickler builds -------------------------------------------------------------------

class TensorRef:
    """A tensor in a torch pickle: a view (offset, shape, stride in elements) of storage `key`."""
    __slots__ = ("key", "dtype", "offset", "shape", "stride", "numel")

    def __init__(self, key, dtype, offset, shape, stride, numel):
        self.key, self.dtype, self.offset = key, dtype, offset
        self.shape, self.stride, self.numel = tuple(shape), tuple(stride), numel

    def __repr__(self):
        return f"TensorRef({self.key!r}, {self.dtype}, shape={self.shape})"


class Record:
    """An allowed checkpoint-metadata object (DCP dataclasses): class short name + its fields."""

    def __init__(self, kind, fields):
        self.kind, self.fields = kind, fields

    def get(self, name, default=None):
        return self.fields.get(name, default)

    def __repr__(self):
        return f"Record({self.kind}, {sorted(self.fields)})"


def _object_factory(qualname, args, state):
    kind = qualname.rsplit(".", 1)[-1]
    fields = {}
    if isinstance(state, dict):
        fields = state
    elif isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
        for part in state:  # (dict state, slot state)
            fields.update(part or {})
    elif kind == "TensorProperties" and isinstance(state, tuple) and state:
        # its __getstate__ is a 5-tuple, dtype first (docs/REFERENCES.md#pytorch-checkpoint-formats)
        fields = {"dtype": state[0]}
    if kind == "MetadataIndex":
        # used as a dict key; identity is (fqn, offset) - `index` is only a lookup hint
        offset = fields.get("offset")
        return (fields.get("fqn"), None if offset is None else tuple(offset))
    return Record(kind, fields)


def _unpickle(data, what):
    return _core.unpickle(data, TensorRef, _object_factory, what)


# ---- torch.save zip archives ------------------------------------------------------------------------

class TorchArchive:
    """A torch.save zip (from a path or bytes): the unpickled object and the storage reader."""

    def __init__(self, source, name):
        self.name = name
        self._file = open(source, "rb") if isinstance(source, (str, os.PathLike)) else _io.BytesIO(source)
        try:
            magic = self._file.read(4)
            self._file.seek(0)
            if magic != b"PK\x03\x04":
                if magic[:2] == b"\x80\x02" or magic[:1] == b"\x80":
                    raise Lyra2Error(f"{name}: legacy (pre-1.6, non-zip) torch.save format is not supported; "
                                     "re-save it with a recent torch or convert it elsewhere")
                raise Lyra2Error(f"{name}: not a torch.save zip archive (first bytes {magic!r})")
            try:
                self.zf = zipfile.ZipFile(self._file)
            except (zipfile.BadZipFile, OSError) as e:
                raise Lyra2Error(f"{name}: corrupt zip archive: {e}") from None
            pkls = [n for n in self.zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            top = [n for n in pkls if n.count("/") <= 1]
            if len(top) != 1:
                raise Lyra2Error(f"{name}: expected one <prefix>/data.pkl in the archive, found {len(top)} "
                                 f"(not a torch.save file, or a TorchScript archive)")
            self.prefix = top[0][: -len("data.pkl")]
            if self.prefix + "byteorder" in self.zf.namelist():
                order = self.zf.read(self.prefix + "byteorder").decode("ascii", "replace").strip()
                if order != "little":
                    raise Lyra2Error(f"{name}: byteorder is {order!r}; only little-endian files are supported")
            self.obj = _unpickle(self._read_member(top[0]), f"{name}: {top[0]}")
        except BaseException:
            self._file.close()
            raise
        self._cache = (None, None)

    def _read_member(self, member):
        try:
            return self.zf.read(member)
        except KeyError:
            raise Lyra2Error(f"{self.name}: member {member!r} is missing from the archive") from None
        except (zipfile.BadZipFile, OSError, EOFError) as e:  # CRC mismatch, truncation
            raise Lyra2Error(f"{self.name}: member {member!r} is corrupt: {e}") from None

    def read(self, ref, what):
        """The raw little-endian values of tensor `ref` as a C-contiguous array (BF16 as uint16 bits)."""
        if ref.dtype not in lio.RAW_NUMPY:
            raise Lyra2Error(f"{self.name}: tensor '{what}' has unsupported dtype {ref.dtype}")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", ref.key):
            raise Lyra2Error(f"{self.name}: tensor '{what}' names a bad storage key {ref.key!r}")
        np_dtype = np.dtype(lio.RAW_NUMPY[ref.dtype]).newbyteorder("<")
        if int(np.prod(ref.shape, dtype=np.int64)) == 0:
            return np.zeros(ref.shape, np_dtype)
        if self._cache[0] != ref.key:
            self._cache = (None, None)
            self._cache = (ref.key, self._read_member(f"{self.prefix}data/{ref.key}"))
        raw = self._cache[1]
        need = ref.numel * np_dtype.itemsize
        if len(raw) < need:
            raise Lyra2Error(f"{self.name}: storage {ref.key} of tensor '{what}' holds {len(raw)} bytes, "
                             f"its header says {need} (truncated file?)")
        base = np.frombuffer(raw, dtype=np_dtype, count=ref.numel)
        # The C reader checked offset + sum((size-1)*stride) < numel, so this view stays inside `base`.
        contiguous = tuple(int(np.prod(ref.shape[i + 1:], dtype=np.int64)) for i in range(len(ref.shape)))
        n = int(np.prod(ref.shape, dtype=np.int64))
        if all(sz == 1 or st == c for sz, st, c in zip(ref.shape, ref.stride, contiguous)):
            return base[ref.offset: ref.offset + n].reshape(ref.shape)
        view = np.lib.stride_tricks.as_strided(base[ref.offset:], shape=ref.shape,
                                               strides=[s * np_dtype.itemsize for s in ref.stride],
                                               writeable=False)
        return np.ascontiguousarray(view)

    def close(self):
        self._cache = (None, None)
        self.zf.close()
        self._file.close()


def _flatten(obj, prefix, out, extras):
    """Nested dicts -> {dotted name: TensorRef}; non-tensor leaves go to `extras`."""
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, TensorRef):
            out[name] = v
        elif isinstance(v, dict) and any(_has_tensor(x) for x in v.values()):
            _flatten(v, name + ".", out, extras)
        else:
            extras[name] = v


def _has_tensor(v, seen=None):
    """Whether a TensorRef is reachable from v. Shared sub-objects are visited once, so a hostile
    pickle whose lists share children (a DAG with 2^n paths) is still walked in linear time."""
    seen = set() if seen is None else seen
    if isinstance(v, TensorRef):
        return True
    if isinstance(v, (dict, list, tuple)):
        if id(v) in seen:
            return False
        seen.add(id(v))
        items = v.values() if isinstance(v, dict) else v
        return any(_has_tensor(x, seen) for x in items)
    return False


def _jsonable(v, budget=100_000):
    """Plain data small enough to keep as JSON metadata. The walk counts every path (JSON would
    expand shared sub-objects), so it stops after `budget` nodes instead of blowing up."""
    count = 0

    def walk(x):
        nonlocal count
        count += 1
        if count > budget:
            return False
        if x is None or isinstance(x, (bool, int, float, str)):
            return True
        if isinstance(x, (list, tuple)):
            return all(walk(y) for y in x)
        if isinstance(x, dict):
            return all(isinstance(k, str) and walk(y) for k, y in x.items())
        return False

    return walk(v)


def read_torch_file(path):
    """Reads a torch.save file's tensor index without loading data.

    Returns (archive, {name: TensorRef}, notes) where notes lists how the state dict was selected and
    which non-tensor entries were found. Call archive.read(ref, name) for the values; archive.close()."""
    name = os.fspath(path)
    archive = TorchArchive(name, name)
    obj, notes, extras = archive.obj, [], {}
    if isinstance(obj, TensorRef):
        obj = {"tensor": obj}
    if not isinstance(obj, dict):
        archive.close()
        raise Lyra2Error(f"{name}: the pickled object is a {type(obj).__name__}, not a dict of tensors")
    for key in ("module", "model", "state_dict"):
        if isinstance(obj.get(key), dict) and _has_tensor(obj[key]):
            notes.append(f"took the '{key}' sub-dict")
            for k, v in obj.items():
                if k != key and not _has_tensor(v):
                    extras[k] = v
            obj = obj[key]
            break
    tensors, leftovers = {}, {}
    _flatten(obj, "", tensors, leftovers)
    extras.update(leftovers)
    return archive, tensors, {"notes": notes, "extras": extras}


# ---- Distributed Checkpoint folders -----------------------------------------------------------------

def _dtype_of(props, fqn, where):
    dtype = props.get("dtype") if isinstance(props, Record) else None
    if dtype not in lio.RAW_NUMPY:
        raise Lyra2Error(f"{where}: tensor '{fqn}' has unsupported dtype {dtype!r}")
    return dtype


def read_dcp(folder):
    """Reads a DCP folder's `.metadata`. Returns {fqn: spec} for tensor items, where spec is a dict
    with "shape", "dtype" and "chunks" [(offsets, sizes, (relative_path, offset, length) or None)],
    plus the list of byte items. Checks that the chunks tile every tensor exactly."""
    meta_path = os.path.join(folder, ".metadata")
    with open(meta_path, "rb") as f:
        meta = _unpickle(f.read(), meta_path)
    if not isinstance(meta, Record) or meta.kind != "Metadata":
        raise Lyra2Error(f"{meta_path}: not a torch.distributed.checkpoint Metadata object")
    sd_meta, storage = meta.get("state_dict_metadata"), meta.get("storage_data")
    if not isinstance(sd_meta, dict) or not isinstance(storage, dict):
        raise Lyra2Error(f"{meta_path}: Metadata lacks state_dict_metadata / storage_data")
    tensors, byte_items = {}, []
    for fqn, md in sd_meta.items():
        if not isinstance(md, Record):
            raise Lyra2Error(f"{meta_path}: entry '{fqn}' is not a storage metadata record")
        if md.kind == "BytesStorageMetadata":
            byte_items.append(fqn)
            continue
        if md.kind != "TensorStorageMetadata":
            raise Lyra2Error(f"{meta_path}: entry '{fqn}' has unknown metadata type {md.kind}")
        shape = tuple(md.get("size") or ())
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise Lyra2Error(f"{meta_path}: tensor '{fqn}' has a bad size {shape}")
        dtype = _dtype_of(md.get("properties"), fqn, meta_path)
        chunks, total = [], 0
        for ch in md.get("chunks") or []:
            offsets, sizes = tuple(ch.get("offsets") or ()), tuple(ch.get("sizes") or ())
            if len(offsets) != len(shape) or len(sizes) != len(shape) or any(
                    o < 0 or s < 0 or o + s > d for o, s, d in zip(offsets, sizes, shape)):
                raise Lyra2Error(f"{meta_path}: tensor '{fqn}' {list(shape)} has a chunk at {list(offsets)} "
                                 f"of size {list(sizes)} outside the tensor")
            n = int(np.prod(sizes, dtype=np.int64))
            if n == 0:
                continue  # FSDP2 gives trailing ranks empty shards (docs/REFERENCES.md#pytorch-checkpoint-formats)
            info = storage.get((fqn, offsets))
            if not isinstance(info, Record):
                raise Lyra2Error(f"{meta_path}: no storage entry for tensor '{fqn}' chunk at {list(offsets)}")
            rel = info.get("relative_path")
            if not isinstance(rel, str) or not rel or "/" in rel or "\\" in rel or rel in (".", ".."):
                raise Lyra2Error(f"{meta_path}: tensor '{fqn}': bad data file name {rel!r}")
            if info.get("transform_descriptors"):
                raise Lyra2Error(f"{meta_path}: tensor '{fqn}' is stored with transforms "
                                 f"{info.get('transform_descriptors')} (compressed DCP), which is not supported")
            off, length = info.get("offset"), info.get("length")
            if not (isinstance(off, int) and isinstance(length, int) and off >= 0 and length > 0):
                raise Lyra2Error(f"{meta_path}: tensor '{fqn}': bad offset/length in its storage entry")
            chunks.append((offsets, sizes, (rel, off, length)))
            total += n
        # exact tiling: chunks inside (checked), pairwise disjoint, and their volumes add up
        for i in range(len(chunks)):
            for j in range(i):
                a, b = chunks[i], chunks[j]
                if all(max(a[0][d], b[0][d]) < min(a[0][d] + a[1][d], b[0][d] + b[1][d]) for d in range(len(shape))):
                    raise Lyra2Error(f"{meta_path}: tensor '{fqn}': chunks at {list(a[0])} and {list(b[0])} overlap")
        numel = int(np.prod(shape, dtype=np.int64))
        if total != numel:
            raise Lyra2Error(f"{meta_path}: tensor '{fqn}' {list(shape)}: its chunks cover {total} of {numel} elements")
        tensors[fqn] = {"shape": shape, "dtype": dtype, "chunks": chunks}
    return tensors, byte_items


class _DcpReader:
    def __init__(self, folder):
        self.folder, self.files = folder, {}

    def tensor(self, fqn, spec):
        out = np.empty(spec["shape"], np.dtype(lio.RAW_NUMPY[spec["dtype"]]).newbyteorder("<"))
        for offsets, sizes, (rel, off, length) in spec["chunks"]:
            f = self.files.get(rel)
            if f is None:
                path = os.path.join(self.folder, rel)
                try:
                    f = self.files[rel] = open(path, "rb")
                except OSError as e:
                    raise Lyra2Error(f"{path}: cannot open DCP data file: {e}") from None
            f.seek(off)
            blob = f.read(length)
            where = f"{os.path.join(self.folder, rel)} @ {off}"
            if len(blob) != length:
                raise Lyra2Error(f"{where}: tensor '{fqn}' chunk is truncated ({len(blob)} of {length} bytes)")
            archive = TorchArchive(blob, where)
            try:
                ref = archive.obj
                if not isinstance(ref, TensorRef):
                    raise Lyra2Error(f"{where}: chunk of '{fqn}' does not hold a tensor")
                if ref.dtype != spec["dtype"] or ref.shape != tuple(sizes):
                    raise Lyra2Error(f"{where}: chunk of '{fqn}' is {ref.dtype} {list(ref.shape)}, metadata says "
                                     f"{spec['dtype']} {list(sizes)}")
                out[tuple(slice(o, o + s) for o, s in zip(offsets, sizes))] = archive.read(ref, fqn)
            finally:
                archive.close()
        return out

    def close(self):
        for f in self.files.values():
            f.close()
        self.files = {}


# ---- recognising files and their configuration ------------------------------------------------------

def _strip_common(names, prefix):
    return all(n.startswith(prefix) for n in names) and names


def detect_family(names):
    """Which network a set of tensor names belongs to: "dit", "vae", "umt5", "clip", "da3", "moge",
    "lora", "negative_prompt", or "unknown"."""
    names = set(names)
    if not names:
        return "unknown"
    if any("lora_" in n or ".lora." in n or n.endswith(".alpha") and "lora" in n for n in names):
        return "lora"
    if "t5_text_embeddings" in names:
        return "negative_prompt"
    if "patch_embedding.weight" in names and "head.head.weight" in names and any(
            re.fullmatch(r"blocks\.\d+\.self_attn\.q\.weight", n) for n in names):
        return "dit"
    if "encoder.conv1.weight" in names and "decoder.conv1.weight" in names:
        return "vae"
    if "token_embedding.weight" in names and any(re.fullmatch(r"blocks\.\d+\.attn\.q\.weight", n) for n in names):
        return "umt5"
    if "visual.patch_embedding.weight" in names:
        return "clip"
    if any(n.startswith("da3.") or n.startswith("da3_metric.") for n in names):
        return "da3"
    if "backbone.patch_embed.proj.weight" in names and any(n.startswith("head.upsample_blocks.") for n in names):
        return "moge"
    return "unknown"


def _count(names, pattern):
    rx = re.compile(pattern)
    return len({m.group(1) for n in names for m in [rx.fullmatch(n)] if m})


def detect_config(names_to_shapes, metadata=None):
    """Model configuration read from tensor names and shapes: ``{"family": ..., ...}``.

    Head counts are not stored in the weights of the DiT, CLIP or the DINOv2 towers (their q/k/v are
    square and their norms span the full width), so they follow the upstream head-size conventions and
    are marked as such: DiT head_dim 128 (Wan 14B: 5120/128 = 40 heads), CLIP ViT-H head_dim 80
    (1280/80 = 16), DINOv2 head_dim 64 (ViT-L 16, ViT-g 24; DA3 reads its q_norm width instead when the
    weights have one). A width that the convention does not divide gives ``heads=None``. ``metadata``
    (a safetensors ``__metadata__``) may override with an integer "num_heads". umT5 heads are exact
    (relative-position table width)."""
    shapes = {k: tuple(v) for k, v in names_to_shapes.items()}
    names = set(shapes)
    family = detect_family(names)
    cfg = {"family": family}
    override = None
    if metadata and str(metadata.get("num_heads", "")).isdigit():
        override = int(metadata["num_heads"])

    def heads_by(width, head_dim, source="convention"):
        if override:
            return override, "metadata"
        return (width // head_dim, source) if width and width % head_dim == 0 else (None, source)

    missing = []

    def dim(name, axis):
        """shapes[name][axis], or None (recorded) when the tensor is absent: a partial file still
        yields every field it can."""
        shape = shapes.get(name)
        if shape is None or not -len(shape) <= axis < len(shape):
            missing.append(name)
            return None
        return shape[axis]

    _fill_config(cfg, family, shapes, names, heads_by, dim)
    if missing:
        cfg["incomplete"] = "tensors needed for some fields are missing: " + ", ".join(sorted(set(missing)))
    return cfg


def _div(a, b):
    return None if a is None else a // b


def _fill_config(cfg, family, shapes, names, heads_by, dim):
    if family == "dit":
        width = dim("patch_embedding.weight", 0)
        cfg.update(dim=width, layers=_count(names, r"blocks\.(\d+)\..*"),
                   ffn_dim=dim("blocks.0.ffn.0.weight", 0),
                   in_dim=_div(dim("patch_embedding.weight", 1), 4),  # patch (1, 2, 2) (upstream EXP:21-62)
                   out_dim=_div(dim("head.head.weight", 0), 4),
                   text_dim=dim("text_embedding.0.weight", 1),
                   freq_dim=dim("time_embedding.0.weight", 1),
                   model_type="i2v" if "img_emb.proj.1.weight" in names else "t2v")
        cfg["heads"], cfg["heads_source"] = heads_by(width, 128)
        if "img_emb.proj.1.weight" in names:
            cfg["clip_dim"] = dim("img_emb.proj.1.weight", 1)
        if "blocks.0.cam_encoder.weight" in names:
            cfg["cam_dim"] = dim("blocks.0.cam_encoder.weight", 1)
        if "blocks.0.buffer_encoder.0.weight" in names:
            cfg.update(buffer_squeeze_dim=dim("blocks.0.buffer_encoder.0.weight", 0),
                       buffer_embed_dim=dim("blocks.0.buffer_encoder.0.weight", 1))
        n_clean = _count(names, r"clean_patch_embeddings\.(\d+)\.weight")
        if n_clean:
            # per history kernel: in_features = in_dim * kt * kh * kw (upstream WL:86-96, WL:99-115, WL:286)
            cfg["clean_patch_in_features"] = [dim(f"clean_patch_embeddings.{i}.weight", 1) for i in range(n_clean)]
    elif family == "vae":
        base = dim("encoder.conv1.weight", 0)
        stages, current, temporal = [], [], []
        for i in range(_count(names, r"encoder\.downsamples\.(\d+)\..*")):
            if f"encoder.downsamples.{i}.residual.2.weight" in names:
                current.append(shapes[f"encoder.downsamples.{i}.residual.2.weight"][0])
            elif f"encoder.downsamples.{i}.resample.1.weight" in names:
                stages.append(current)
                current = []
                temporal.append(f"encoder.downsamples.{i}.time_conv.weight" in names)
        stages.append(current)
        cfg.update(dim=base, z_dim=dim("conv2.weight", 0),
                   dim_mult=[s[-1] // base for s in stages if s] if base else None,
                   num_res_blocks=len(stages[0]), temporal_downsample=temporal)
    elif family == "umt5":
        cfg.update(vocab=dim("token_embedding.weight", 0), dim=dim("token_embedding.weight", 1),
                   layers=_count(names, r"blocks\.(\d+)\..*"),
                   dim_attn=dim("blocks.0.attn.q.weight", 0), ffn_dim=dim("blocks.0.ffn.fc1.weight", 0),
                   # the relative-position table is [buckets, heads]: heads are exact here
                   heads=dim("blocks.0.pos_embedding.embedding.weight", 1), heads_source="weights",
                   num_buckets=dim("blocks.0.pos_embedding.embedding.weight", 0))
    elif family == "clip":
        width, patch = dim("visual.patch_embedding.weight", 0), dim("visual.patch_embedding.weight", 2)
        tokens = dim("visual.pos_embedding", 1)
        grid = int(round((tokens - 1) ** 0.5)) if tokens else None
        cfg.update(width=width, patch=patch, layers=_count(names, r"visual\.transformer\.(\d+)\..*"),
                   mlp_dim=dim("visual.transformer.0.mlp.0.weight", 0),
                   image_size=grid * patch if grid and patch else None)
        if "visual.head" in names:
            cfg["embed_dim"] = dim("visual.head", 1)
        cfg["heads"], cfg["heads_source"] = heads_by(width, 80)
        cfg["has_text_tower"] = any(n.startswith("textual.") for n in names)
    elif family == "da3":
        for part in ("da3", "da3_metric"):
            pre = f"{part}.backbone.pretrained."
            if pre + "cls_token" not in names:
                continue
            width = dim(pre + "cls_token", -1)
            sub = {"width": width, "depth": _count(names, re.escape(pre) + r"blocks\.(\d+)\..*"),
                   "patch": dim(pre + "patch_embed.proj.weight", 2),
                   "camera_token": pre + "camera_token" in names}
            rx = re.compile(re.escape(pre) + r"blocks\.(\d+)\.attn\.q_norm\.weight")
            qn = sorted(int(m.group(1)) for n in names for m in [rx.fullmatch(n)] if m)
            if qn and width:
                # q_norm is a LayerNorm over one head: its width is head_dim (upstream DA3dino:22-64, DA3vit:454-466,
                # DA3cfg/da3-giant:6-17)
                sub["qknorm_start"] = qn[0]
                sub["heads"], sub["heads_source"] = width // dim(f"{pre}blocks.{qn[0]}.attn.q_norm.weight", 0), "weights"
            else:
                sub["heads"], sub["heads_source"] = heads_by(width, 64)
            sub["ffn"] = "swiglu" if pre + "blocks.0.mlp.w12.weight" in names else "mlp"
            cfg[part] = sub
    elif family == "moge":
        width = dim("backbone.cls_token", -1)
        cfg.update(width=width, depth=_count(names, r"backbone\.blocks\.(\d+)\..*"),
                   dim_proj=dim("head.projects.0.weight", 0),
                   # ConvTranspose weights are [in, out, k, k]
                   dim_upsample=[dim(f"head.upsample_blocks.{b}.0.0.weight", 1)
                                 for b in range(_count(names, r"head\.upsample_blocks\.(\d+)\.0\.0\.weight"))])
        cfg["heads"], cfg["heads_source"] = heads_by(width, 64)
    elif family == "lora":
        downs = sorted(n for n in names if n.endswith(("lora_down.weight", "lora_A.weight")))
        if downs:
            cfg["rank"] = shapes[downs[0]][0]
        cfg["modules"] = len(downs)


# ---- mapping source names to output names -----------------------------------------------------------

def _map_names(names, source_kind):
    """{source name: output name or None} and {dropped name: reason}; returns (mapping, dropped)."""
    mapping, dropped = {}, {}
    names = list(names)
    for wrapper in ("module.", "_orig_mod."):
        if _strip_common(names, wrapper):
            names_new = [n[len(wrapper):] for n in names]
            mapping = dict(zip(names, names_new))
            names = names_new
            break
    else:
        mapping = {n: n for n in names}
    out = {}
    has_net = any(n.startswith("net.") for n in names)
    has_model_da3 = any(n.startswith(("model.da3.", "model.da3_metric.")) for n in names)
    for src, n in mapping.items():
        if has_net or source_kind == "dcp_dit":
            if not n.startswith("net."):
                dropped[src] = "outside net. (EMA or training state)"
            elif "_extra_state" in n:
                dropped[src] = "TransformerEngine extra state"
            elif n[4:] in DIT_COUNTERS:
                dropped[src] = "training counter"
            else:
                out[src] = n[4:]
        elif has_model_da3:
            if n.startswith("model."):
                out[src] = n[len("model."):]
            else:
                dropped[src] = "outside model. (depth_utils.py keeps only model.* keys)"
        else:
            out[src] = n
    fam = detect_family(out.values())
    if fam == "clip":
        for src in [s for s, n in out.items() if n.startswith("textual.")]:
            dropped[src] = "CLIP text tower (unused)"
            del out[src]
    return out, dropped


# ---- jobs ---------------------------------------------------------------------------------------------

class _Job:
    """One output file: items [(out_name, src_dtype, shape, load)], family, provenance."""

    def __init__(self, source, family, items, dropped, notes, extras=None, copy_from=None, closer=None):
        self.source, self.family, self.items = source, family, items
        self.dropped, self.notes, self.extras = dropped, notes, extras or {}
        self.copy_from, self.closer = copy_from, closer
        self.output = None


def _torch_job(path):
    archive, refs, info = read_torch_file(path)
    mapping, dropped = _map_names(refs, "torch")
    items = [(out, refs[src].dtype, refs[src].shape, (lambda r=refs[src], s=src: archive.read(r, s)))
             for src, out in mapping.items()]
    family = detect_family(mapping.values())
    extras = {k: v for k, v in info["extras"].items() if _jsonable(v)}
    for k in info["extras"]:
        if k not in extras:
            dropped[k] = "non-tensor entry that is not plain data"
    return _Job(path, family, items, dropped, info["notes"], extras, closer=archive.close)


def _safetensors_job(path):
    info = lio.safetensors_info(path)["tensors"]
    names = list(info)
    if detect_family(names) == "lora":
        return _Job(path, "lora", [(n, t["dtype"], tuple(t["shape"]), None) for n, t in info.items()], {}, [],
                    copy_from=path)
    mapping, dropped = _map_names(names, "safetensors")

    def loader(t):
        dt = np.dtype(lio.RAW_NUMPY[t["dtype"]]).newbyteorder("<")
        if t["nbytes"] == 0:
            return np.zeros(t["shape"], dt)
        # offsets were validated by the C reader (inside the file, tiling the data area)
        return np.memmap(path, dtype=dt, mode="r", offset=t["offset"], shape=tuple(t["shape"]))

    items = [(out, info[src]["dtype"], tuple(info[src]["shape"]), (lambda t=info[src]: loader(t)))
             for src, out in mapping.items()]
    return _Job(path, detect_family(mapping.values()), items, dropped, [])


def _dcp_job(folder, explicit):
    tensors, byte_items = read_dcp(folder)
    mapping, dropped = _map_names(tensors, "dcp")
    if not explicit and not any(f.startswith("net.") for f in tensors):
        return None  # optim/, scheduler/, trainer/ siblings of model/ (upstream Z:158, ML:82, DCP:17-36)
    for b in byte_items:
        dropped[b] = "byte item (pickled non-tensor state)"
    reader = _DcpReader(folder)
    items = [(out, tensors[src]["dtype"], tensors[src]["shape"],
              (lambda s=src: reader.tensor(s, tensors[s]))) for src, out in mapping.items()]
    return _Job(folder, detect_family(mapping.values()), items, dropped, [], closer=reader.close)


def _convert_array(raw, src_dtype, out_dtype):
    if src_dtype == out_dtype:
        return raw
    if out_dtype == "BF16":
        if src_dtype == "F16":
            raw = raw.astype(np.float32)
        return lio.to_bf16_bits(raw)
    raise AssertionError(f"no conversion {src_dtype} -> {out_dtype}")


def _out_dtype(src_dtype, family, policy):
    if src_dtype not in ("F16", "F32", "F64", "BF16"):
        return src_dtype
    if policy == "bf16" or (policy == "auto" and family in BF16_FAMILIES):
        return "BF16"
    return src_dtype


# ---- progress ---------------------------------------------------------------------------------------

class _Progress:
    def __init__(self, enabled, label, total):
        self.enabled, self.label, self.total, self.done = enabled, label, max(total, 1), 0
        self.start = self.last = time.monotonic()
        self._draw(force=True)

    def add(self, n):
        self.done += n
        self._draw()

    def _draw(self, force=False):
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2 and self.done < self.total:
            return
        self.last = now
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        rate = self.done / max(now - self.start, 1e-6) / 1e6
        sys.stderr.write(f"\r{self.label[:40]:<40} [{bar:<30}] {frac * 100:5.1f}% "
                         f"{self.done / 1e9:7.2f}/{self.total / 1e9:.2f} GB {rate:7.1f} MB/s")
        sys.stderr.flush()

    def finish(self):
        if self.enabled:
            self.done = self.total
            self._draw(force=True)
            sys.stderr.write("\n")
            sys.stderr.flush()


# ---- the converter ----------------------------------------------------------------------------------

def _collect(src, dst_abs):
    """Jobs for every convertible file under src; returns (jobs, tokenizer files, skipped)."""
    jobs = []
    try:
        return _collect_into(src, dst_abs, jobs)
    except Lyra2Error as e:
        for job in jobs:
            if job.closer:
                job.closer()
        if os.path.isdir(src) and not os.path.exists(os.path.join(src, ".metadata")):
            raise Lyra2Error(f"{e}\n(while scanning the folder {src}; nothing was written - convert the other "
                             "checkpoints by naming them one by one)") from None
        raise
    except BaseException:
        for job in jobs:
            if job.closer:
                job.closer()
        raise


def _collect_into(src, dst_abs, jobs):
    tok, skipped = [], []
    if os.path.isfile(src):
        jobs.append(_job_for_file(src, explicit=True))
        return jobs, tok, skipped
    if not os.path.isdir(src):
        raise FileNotFoundError(f"convert: source {src!r} does not exist")
    if os.path.exists(os.path.join(src, ".metadata")):
        return [_dcp_job(src, explicit=True)], tok, skipped
    for root, dirs, files in os.walk(src):
        dirs.sort()
        if os.path.abspath(root) == dst_abs or os.path.abspath(root).startswith(dst_abs + os.sep):
            dirs[:] = []
            continue
        if ".metadata" in files:
            dirs[:] = []
            job = _dcp_job(root, explicit=False)
            if job is None:
                skipped.append((root, "DCP folder without net.* tensors (optimizer/trainer state)"))
            else:
                jobs.append(job)
            continue
        for fn in sorted(files):
            path = os.path.join(root, fn)
            if fn in TOKENIZER_FILES:
                tok.append(path)
            elif fn in UNUSED_FILES:
                skipped.append((path, "not used by inference (load_mean_std=False)"))
            elif fn.endswith(".safetensors") or fn.endswith(TORCH_SUFFIXES):
                job = _job_for_file(path, explicit=False)
                if job is None:
                    skipped.append((path, "not a torch.save zip"))
                else:
                    jobs.append(job)
            else:
                skipped.append((path, "not a checkpoint file"))
    return jobs, tok, skipped


def _job_for_file(path, explicit):
    if path.endswith(".safetensors"):
        return _safetensors_job(path)
    if not explicit and path.endswith(".bin"):
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                return None
    return _torch_job(path)


def _merge_da3(jobs):
    """Several DA3 sources: the HF base (safetensors) first, then recon/model.pt keys over it
    (upstream Z:212, DU:149-194, DA3api:88-90: base = HF nested weights; overlay every checkpoint key)."""
    da3 = [j for j in jobs if j.family == "da3"]
    if len(da3) < 2:
        return jobs
    da3.sort(key=lambda j: 0 if str(j.source).endswith(".safetensors") else 1)
    merged, order = {}, []
    for j in da3:
        for it in j.items:
            if it[0] not in merged:
                order.append(it[0])
            merged[it[0]] = it
    base = da3[0]
    notes = [f"merged {', '.join(str(j.source) for j in da3)} (later sources override earlier keys)"]
    dropped = {}
    for j in da3:
        dropped.update(j.dropped)
    closers = [j.closer for j in da3 if j.closer]
    job = _Job(" + ".join(str(j.source) for j in da3), "da3", [merged[n] for n in order], dropped, notes,
               base.extras, closer=lambda: [c() for c in closers])
    return [j for j in jobs if j.family != "da3"] + [job]


def convert(src, dst, *, force=False, progress=True, dtype="auto"):
    """Converts upstream checkpoints at `src` (a file, a DCP folder, or a folder of them such as
    Lyra-2's ``checkpoints/``) into safetensors under `dst` (see the module docstring for the layout and
    the name mapping). Writes ``manifest.json`` beside the outputs and returns its content.

    Refuses to overwrite an existing output unless ``force=True`` (FileExistsError). The outputs are
    written into a staging folder inside `dst` and moved into place only when all of them are complete, so
    a failed run leaves `dst` as it was (no partial file, no earlier output overwritten)."""
    if dtype not in ("auto", "bf16", "keep"):
        raise ValueError(f"dtype={dtype!r} is not allowed (allowed: 'auto', 'bf16', 'keep')")
    src, dst = os.fspath(src), os.fspath(dst)
    single = dst.endswith(".safetensors")
    out_dir = os.path.dirname(os.path.abspath(dst)) if single else os.path.abspath(dst)
    if single and not os.path.isfile(src) and not os.path.exists(os.path.join(src, ".metadata")):
        raise ValueError(f"convert: dst {dst!r} names one .safetensors file, so src must be one checkpoint "
                         f"(a file or a DCP folder), but {src!r} is a folder of them")
    jobs, tok, skipped = _collect(src, out_dir)
    try:
        jobs = _merge_da3(jobs)
        if not jobs and not tok:
            raise ValueError(f"convert: found no checkpoint files under {src!r}")
        used = {}
        for job in jobs:
            if single:
                rel = os.path.basename(dst)
            elif job.family == "lora":
                rel = os.path.join("lora", os.path.basename(str(job.source)))
            elif job.family in FAMILY_FILES:
                rel = FAMILY_FILES[job.family]
            else:
                rel = os.path.splitext(os.path.basename(str(job.source).rstrip("/")))[0] + ".safetensors"
            if rel in used:
                raise ValueError(f"convert: {used[rel]} and {job.source} would both be written to {rel} "
                                 "(two checkpoints of the same network); convert them separately")
            used[rel] = job.source
            job.output = rel
        outputs = [os.path.join(out_dir, j.output) for j in jobs]
        outputs += [os.path.join(out_dir, "tokenizer", os.path.basename(t)) for t in tok]
        existing = [p for p in outputs if os.path.exists(p)]
        if existing and not force:
            raise FileExistsError(f"convert: {', '.join(existing)} already exist(s); pass force=True "
                                  "(CLI: --force) to overwrite")

        manifest_path = (dst + ".manifest.json") if single else os.path.join(out_dir, "manifest.json")
        manifest = {"format": "lyra2-converted-checkpoint", "version": 1, "files": {}}
        if os.path.exists(manifest_path):
            try:
                with open(manifest_path) as f:
                    old = json.load(f)
                if isinstance(old.get("files"), dict):
                    manifest["files"].update(old["files"])
            except (OSError, ValueError):
                pass  # an unreadable old manifest is simply replaced
        # Every output is written into a staging folder inside out_dir and moved into place only once all of
        # them are written, so a failing job (a corrupt later checkpoint) leaves dst as it was: no
        # half-converted set without a manifest that a rerun would refuse to overwrite.
        created = _missing_dirs(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        stage = tempfile.mkdtemp(prefix=".lyra2-convert-", dir=out_dir)
        try:
            for i, job in enumerate(jobs):
                manifest["files"][job.output] = _write_job(job, stage, dtype, progress, f"[{i + 1}/{len(jobs)}]")
            for t in tok:
                rel = os.path.join("tokenizer", os.path.basename(t))
                manifest["files"][rel] = _copy_file(t, os.path.join(stage, rel), "tokenizer")
            manifest["skipped"] = {str(p): why for p, why in skipped}
            manifest["updated"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            for rel in [j.output for j in jobs] + [os.path.join("tokenizer", os.path.basename(t)) for t in tok]:
                final = os.path.join(out_dir, rel)
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(os.path.join(stage, rel), final)
            _write_json_atomic(manifest_path, manifest)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            for d in reversed(created):  # folders this run created, innermost first, if still empty
                try:
                    os.rmdir(d)
                except OSError:
                    break
            raise
        shutil.rmtree(stage, ignore_errors=True)
        return manifest
    finally:
        for job in jobs:
            if job.closer:
                job.closer()


def _copy_file(src, dst, family, source=None):
    import hashlib

    os.makedirs(os.path.dirname(dst), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(dst) + ".", suffix=".tmp", dir=os.path.dirname(dst))
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
            while True:
                block = f.read(1 << 24)
                if not block:
                    break
                h.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        shutil.copymode(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return {"source": str(source or src), "family": family, "sha256": h.hexdigest(), "bytes": os.path.getsize(dst)}


def _missing_dirs(path):
    """The folders of `path` that do not exist yet, outermost first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing[::-1]


def _write_json_atomic(path, obj):
    """Writes `obj` as JSON to a unique temporary file beside `path`, then renames it over `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, lio.default_file_mode())  # mkstemp makes 0600; a manifest is as readable as any file
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_job(job, out_dir, policy, progress, tag):
    target = os.path.join(out_dir, job.output)
    names_to_shapes = {n: s for n, _, s, _ in job.items}
    config = detect_config(names_to_shapes)
    if job.copy_from is not None:
        entry = _copy_file(job.copy_from, target, job.family)
        if progress:
            sys.stderr.write(f"{tag} {job.output}: copied ({entry['bytes'] / 1e6:.1f} MB)\n")
        tensors = [{"name": n, "shape": list(s), "dtype": d} for n, d, s, _ in job.items]
        entry.update(config=config, tensors=tensors, dropped={}, notes=["validated and copied verbatim"])
        return entry
    entries, tensors = [], []
    for name, src_dtype, shape, load in job.items:
        out_dtype = _out_dtype(src_dtype, job.family, policy)
        entries.append((name, out_dtype, shape,
                        (lambda load=load, s=src_dtype, o=out_dtype: _convert_array(load(), s, o))))
        tensors.append({"name": name, "shape": list(shape), "dtype": out_dtype})
    total = sum(int(np.prod(s, dtype=np.int64)) * lio.ITEMSIZE[d] for _, d, s, _ in entries)
    metadata = {"format": "pt", "lyra2_family": job.family, "lyra2_source": str(job.source)}
    if job.extras:
        metadata["source_extras"] = json.dumps(job.extras, sort_keys=True)
        if job.family == "moge" and isinstance(job.extras.get("model_config"), dict):
            # MoGe's settings that are not in the weights (token range, mask threshold, remap): the loader
            # (lyra2/models/moge.py) reads them from this entry.
            metadata["model_config"] = json.dumps(job.extras["model_config"], sort_keys=True)
    bar = _Progress(progress, f"{tag} {job.output}", total)
    sha = lio.write_safetensors(target, entries, metadata=metadata, on_bytes=bar.add)
    bar.finish()
    return {"source": str(job.source), "family": job.family, "sha256": sha, "bytes": os.path.getsize(target),
            "config": config, "tensors": tensors, "dropped": job.dropped, "notes": job.notes}


def main(argv=None):
    """CLI: ``lyra2 convert SRC DST [--force] [--dtype auto|bf16|keep] [--quiet]``. Returns an exit code."""
    p = argparse.ArgumentParser(prog="lyra2 convert",
                                description="Convert Lyra 2.0 checkpoints (.pth / .pt zips, Distributed Checkpoint "
                                            "folders, LoRA safetensors) into lyra2's safetensors folder, "
                                            "without torch.")
    p.add_argument("src", help="a checkpoint file, a DCP folder, or a folder of them (e.g. Lyra-2/checkpoints)")
    p.add_argument("dst", help="output folder (or a .safetensors path when SRC is one checkpoint)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--dtype", choices=("auto", "bf16", "keep"), default="auto",
                   help="auto: bf16 for DiT/VAE/umT5/CLIP, source dtype for depth models (default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        manifest = convert(args.src, args.dst, force=args.force, progress=not args.quiet, dtype=args.dtype)
    except (Lyra2Error, ValueError, OSError) as e:
        print(f"lyra2 convert: error: {e}", file=sys.stderr)
        return 1
    for rel, entry in sorted(manifest["files"].items()):
        print(f"{rel}: {entry.get('family')} from {entry.get('source')}")
    return 0
