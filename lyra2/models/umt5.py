"""umT5-XXL text encoder (Wan 2.1 ``T5Encoder`` as Lyra-2 runs it; upstream T5:544-577, Z:690-699, CTI:399-482), in C.

``UMT5Encoder(weights)(ids)`` returns what Lyra feeds the DiT: (B, L, dim) float32 where the rows past each
sequence's real tokens (content + ``</s>``) are exactly zero. ``encode_raw`` returns the encoder output at every
position (padded queries computed, padded keys masked), as upstream's ``T5Encoder.forward``.

Weights are the upstream state-dict names (``token_embedding.weight``, ``blocks.{i}.…``, ``norm.weight``; spec
Appendix B), given as a safetensors path or a mapping name -> array; the configuration (dim, layers, heads,
ffn, vocab, buckets) is read from their shapes. A safetensors file keeps its storage dtype (bf16 for the real
encoder: 11.4 GB); a mapping is stored as float32/float16 as given. The CPU path computes in float32.

Cost of umT5-XXL (``umt5_cost()``; dim 4096, 24 layers, 64 heads, ffn 10240, vocab 256384): 5,680,910,336
parameters = 11.36 GB bf16; one prompt of 512 positions = 4.84 TFLOP and a 177 MB activation arena (the
64×512×512 position bias dominates). ``__call__`` computes only the real tokens: ~1.19 TFLOP for 128.
"""
from __future__ import annotations

import numpy as np

from .. import _core
from .._core import Lyra2Error

__all__ = ["UMT5Encoder", "relative_position_bucket", "umt5_cost", "UMT5_XXL"]

PAD_ID = 0
# Wan's umt5_xxl() configuration (upstream T5:441-455), for cost estimates without weights.
UMT5_XXL = {"vocab": 256384, "dim": 4096, "dim_attn": 4096, "heads": 64, "ffn": 10240, "layers": 24,
            "buckets": 32, "shared_pos": False}


def check_device(device, placed=False) -> None:
    """Accepts "cpu", and "cuda" for a network whose glue places its weights on the device (``placed``: umT5);
    otherwise "cuda"/"cuda:N" raise Lyra2Error saying why."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a str ('cpu' or 'cuda'), got {type(device).__name__}")
    if device == "cpu" or (placed and device == "cuda"):
        return
    if placed and device.startswith("cuda:"):
        raise Lyra2Error(f"device={device!r}: only the first GPU is supported; use device='cuda'")
    if device == "cuda" or device.startswith("cuda:"):
        raise Lyra2Error(f"device={device!r} is not wired to the text encoders yet: "
                         "the CUDA backend runs every runtime op (see lyra2.backends()), but this network's glue still keeps its weights and activations in host memory (device placement of the weights and the arena is the remaining step); use device='cpu'")
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def _int_array(value, name) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "iub":
        raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (B, L), got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be (B, L) with B, L >= 1, got shape {a.shape}")
    return a


def check_precision(device, precision, allowed=("bf16", "f32")) -> str:
    """The storage precision of a network's activations (docs/PRECISION.md): None is upstream's GPU policy on
    "cuda" (``allowed[0]``) and "f32" on "cpu" (the only one the CPU backend computes)."""
    if precision is None:
        return allowed[0] if device == "cuda" else "f32"
    if precision not in allowed:
        raise ValueError(f"precision must be one of {list(allowed)}, got {precision!r}")
    if precision != "f32" and device != "cuda":
        raise ValueError(f"precision={precision!r} needs device='cuda' (the CPU backend computes f32)")
    return precision


def relative_position_bucket(rel, num_buckets=32, max_dist=128) -> np.ndarray:
    """Bucket of each relative position ``key − query`` (bidirectional, as T5RelativeEmbedding; upstream T5:259-296),
    computed by the C encoder's own function."""
    return _core.umt5_bucket(np.ascontiguousarray(rel, dtype=np.int64), int(num_buckets), int(max_dist))


def umt5_cost(config=None, tokens=512, batch=1, precision="f32") -> dict:
    """Parameters, weight bytes (bf16 and float32), activation arena bytes (activations stored as ``precision``,
    "f32" as on the CPU or "bf16" as on a device) and FLOPs (2 per multiply-add: projections, QKᵀ, PV, FFN) of one
    forward over ``batch`` sequences of ``tokens`` tokens, from a config dict (default: umT5-XXL)."""
    cfg = dict(UMT5_XXL if config is None else config)
    plan = _core.umt5_plan(cfg, int(batch), int(tokens), precision)
    return {"params": plan["params"], "weight_bytes_bf16": 2 * plan["params"],
            "weight_bytes_f32": 4 * plan["params"], "arena_bytes": plan["arena_bytes"], "flops": plan["flops"]}


class UMT5Encoder:
    """The umT5 encoder on the lyra2 runtime.

    ``enc(ids, mask=None)``: ids int (B, L) (Lyra uses L = 512, padded with 0), mask (B, L) nonzero on the real
    tokens (default ``ids != 0``) -> float32 (B, L, dim); with ``seq_len`` = number of nonzero mask entries of a
    row, rows >= seq_len are exactly 0 (upstream T5:522-537). When every mask row is a prefix only the first
    max(seq_len) positions are computed (identical result: padded keys have probability exactly 0).

    ``precision``: activation storage on "cuda", "bf16" (the default there: upstream builds the encoder in bf16,
    T5:496; matrices stored bf16, RMS statistics and softmax in f32, docs/PRECISION.md) or "f32" (a parity mode);
    the CPU computes "f32" only. The output is float32 either way."""

    def __init__(self, weights, device="cpu", precision=None):
        check_device(device, placed=True)
        if isinstance(weights, UMT5Encoder):
            raise TypeError("weights must be a safetensors path or a mapping name -> array")
        self.device = device
        self.precision = check_precision(device, precision)
        # "cuda": weights uploaded once; each call stages ids/mask/buckets and downloads the output
        self._net = _core.umt5_load(weights, device, self.precision)
        self.config = _core.umt5_config(self._net)

    @property
    def dim(self) -> int:
        return self.config["dim"]

    def _inputs(self, ids, mask):
        ids = _int_array(ids, "ids")
        if mask is None:
            mask = ids != PAD_ID
        else:
            mask = _int_array(mask, "mask")
            if mask.shape != ids.shape:
                raise ValueError(f"mask shape {mask.shape} must equal ids shape {ids.shape}")
        return ids.astype(np.int64), (mask != 0).astype(np.uint8)

    def __call__(self, ids, mask=None) -> np.ndarray:
        ids, mask = self._inputs(ids, mask)
        return _core.umt5_encode(self._net, ids, mask, True)

    def encode_raw(self, ids, mask=None) -> np.ndarray:
        """The encoder output at every position, as upstream ``T5Encoder.forward(ids, mask)``: padded queries are
        computed, padded keys masked. (A row without any real token attends to nothing here and its attention
        outputs are 0; upstream would average over all keys. Such rows are zeroed by ``__call__`` anyway.)"""
        ids, mask = self._inputs(ids, mask)
        return _core.umt5_encode(self._net, ids, mask, False)

    def position_bias(self, layer, lq, lk) -> np.ndarray:
        """Relative position bias of block ``layer``: float32 (heads, lq, lk), bias[n, i, j] = table[bucket(j − i), n]
        (the shared table for plain-T5 weights)."""
        return _core.umt5_position_bias(self._net, int(layer), int(lq), int(lk))

    def cost(self, tokens=512, batch=1) -> dict:
        """umt5_cost() for this encoder's configuration."""
        return umt5_cost(self.config, tokens, batch)

    def __repr__(self):
        c = self.config
        return (f"UMT5Encoder(dim={c['dim']}, layers={c['layers']}, heads={c['heads']}, ffn={c['ffn']}, "
                f"vocab={c['vocab']}, buckets={c['buckets']}, device={self.device!r})")
