"""The Lyra-2 diffusion transformer (``Lyra2WanModel``): Wan 2.1 I2V with camera, correspondence-buffer and
FramePack history inputs, run by the C core (``csrc/models/dit*.c``; upstream WL, W: docs/REFERENCES.md).

>>> dit = LyraDiT("checkpoints/lyra2_dit.safetensors", lora=[("dmd.safetensors", 1.0)])
>>> v = dit(x_B_C_T_H_W=x, timesteps_B_T=t, crossattn_emb=t5, frame_cond_crossattn_emb_B_L_D=clip,
...         y_B_C_T_H_W=y, y_buffer_B_C_T_H_W=buf)          # float32 (1, 16, 20, H, W)

The configuration (width, heads, layers, FFN, channels, clean patch embeddings) is read from the weights'
names and shapes. The head count is not stored in the weights: it defaults to width / 128 (every released Wan
model has head_dim 128); pass ``num_heads`` for other sizes.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from .. import _core

__all__ = ["LyraDiT", "framepack_layout", "rope_angles", "DEFAULT_FRAMEPACK"]

DEFAULT_FRAMEPACK = "f1k1f4s2f1s1f16k4f2k2f1k1_g20"


def framepack_layout(layout: str = DEFAULT_FRAMEPACK, latent_hw=None) -> dict:
    """Parses a FramePack layout string (``f<n>{k|s}<K>..._g<N>``, upstream M:400-473, M:448-451, M:435-440).

    Returns ``splits``, ``kernel_sizes``, ``kernel_ids``, ``kernel_types`` (a string, one letter per history
    segment), ``new_frames``, ``history_frames``, ``total_frames``, ``spatial_frames``, ``temporal_frames``; with
    ``latent_hw=(h, w)`` also ``chunks`` (per chunk: kernel_id, type, kernel, slot0, frames, patch, grid, token0,
    n_tokens), ``tokens`` (sequence length) and ``gen_start``."""
    if not isinstance(layout, str):
        raise TypeError(f"framepack layout must be a str, got {type(layout).__name__}")
    if latent_hw is None:
        return _core.dit_framepack(layout)
    h, w = (int(v) for v in latent_hw)
    return _core.dit_framepack(layout, h, w)


def rope_angles(layout: str, latent_h: int, latent_w: int, head_dim: int = 128) -> np.ndarray:
    """RoPE angles (L, head_dim/2) of the packed sequence, t|h|w parts; compressed history tokens get the mean
    angle of their (replicate-padded) cell (upstream W:93-188, W:203-232, WL:586-596)."""
    return _core.dit_rope_angles(layout, int(latent_h), int(latent_w), int(head_dim))


def _is_source(obj) -> bool:
    return isinstance(obj, (str, bytes, os.PathLike, Mapping))


def _lora_name(source, index: int) -> str:
    if isinstance(source, (str, bytes, os.PathLike)):
        return os.path.basename(os.fsdecode(source))
    return f"lora{index}"


class LyraDiT:
    """The Lyra-2 DiT on the C core.

    weights: a safetensors path or a mapping name -> array with the upstream parameter names (a leading "net."
        is accepted). Matrices keep the file's dtype (bf16 stays bf16), everything else is float32. Or random
        weights of any size without a file (``lyra2.testing.random_weights("dit", ...)``): filled in host memory on
        "cpu", on the device at placement on "cuda" (no host copy, nothing uploaded).
    framepack: the FramePack layout string; its history segments must match the clean patch embeddings.
    lora: adapters applied at run time, unmerged (as upstream evaluates them; their weights stay settable per call,
        ``set_lora_weights``); each item is a source (path or mapping, weight 1.0) or a ``(source, weight)`` pair.
    fold_lora: fold the constructor's LoRAs into the weights (float32 sums, one rounding to the weights' dtype),
        as the generate pipeline does on a device: no adapter memory and no adapter GEMMs, but the weights are fixed
        (docs/PRECISION.md measures the bf16 drift). On "cuda" the placement folds them on the device, one Linear
        at a time (``csrc/models/dit_lora_fold.c``; the host keeps no folded copy); on "cpu" ``merge_lora``.
    device: "cpu", or "cuda": the weights and adapters are uploaded to the GPU once (after the constructor's
        LoRAs; later ones are uploaded when added), activations live in device memory, each call uploads its
        inputs and downloads the output. With ``LYRA2_EMULATED_CUDA=1`` "cuda" is the emulated device
        (``lyra2.backends()``). Lyra2Error when no device answers.
    precision: activation storage, "bf16" (default on "cuda": upstream's GPU policy, docs/PRECISION.md) or "f32"
        (default on "cpu", the only one the CPU backend computes; on "cuda" an f32 parity mode).
    num_heads: attention heads (default: width / 128).
    n_threads: CPU threads (0 = all).
    resident_blocks: blocks whose weights stay on the device; the others stay in host memory and stream through
        two block buffers, uploaded just before they run (default: all resident; see ``set_streaming``).
    dtype: the attention blocks' Linear weights, "bf16" (as the checkpoint stores them, the default) or "fp8":
        e4m3 codes (1 byte per weight) with a float32 scale per output channel and the inputs quantized per token
        on the model's device (``quantize_fp8``); the constructor's LoRAs are merged first (an fp8 model is
        specific to its adapters and their weights): on the host, or with ``fold_lora`` and random weights on "cuda"
        on the device, each block Linear filled, folded and quantized there.

    Missing, unexpected or mis-shaped tensors raise ``lyra2.Lyra2Error`` naming the tensor."""

    def __init__(self, weights, framepack: str = DEFAULT_FRAMEPACK, lora=(), device: str = "cpu", *,
                 num_heads: int | None = None, n_threads: int = 0, precision: str | None = None,
                 resident_blocks: int | None = None, dtype: str = "bf16", fold_lora: bool = False):
        if not isinstance(framepack, str):
            raise TypeError(f"framepack must be a layout string, got {type(framepack).__name__}")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if precision is None:
            precision = "bf16" if device == "cuda" else "f32"
        if precision not in ("bf16", "f32"):
            raise ValueError(f"precision must be 'bf16' or 'f32', got {precision!r}")
        if precision == "bf16" and device != "cuda":
            raise ValueError("precision='bf16' needs device='cuda' (the CPU backend computes f32 activations)")
        if dtype not in ("bf16", "fp8"):
            raise ValueError(f"dtype: {dtype!r} is not allowed; expected 'bf16' or 'fp8'")
        if not isinstance(fold_lora, bool):
            raise TypeError(f"fold_lora: expected a bool, got {fold_lora!r}")
        self.precision = precision
        random = hasattr(weights, "_lyra2_random_weights")  # lyra2.testing.RandomWeights
        if not random and not _is_source(weights):
            raise TypeError("weights must be a safetensors path, a mapping of name -> array or "
                            f"lyra2.testing.random_weights('dit', ...), got {type(weights).__name__}")
        if num_heads is not None and (not isinstance(num_heads, int) or num_heads < 1):
            raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
        self.device = device
        self.framepack = framepack
        # random weights on "cuda": filled there at placement, their host block never written
        self._model = _core.dit_load(weights, framepack, int(num_heads or 0), int(n_threads),
                                     random and device == "cuda")
        self.config = _core.dit_config(self._model)
        self.layout = framepack_layout(framepack)
        self.ignored_lora_keys = 0
        for item in lora:
            if isinstance(item, (tuple, list)) and len(item) == 2 and not _is_source(item[1]):
                self.add_lora(item[0], float(item[1]))
            else:
                self.add_lora(item, 1.0)
        deferred = random and device == "cuda"
        if fold_lora and device == "cuda" and (dtype != "fp8" or deferred):
            # folded into the weights where the placement puts them, on the device (csrc/models/dit_lora_fold.c);
            # fp8 random weights are filled, folded and quantized there
            _core.dit_lora_fold_at_placement(self._model)
        elif fold_lora or dtype == "fp8":
            self.merge_lora()                     # in host memory; fp8: the codes are of the merged weights
        if dtype == "fp8":
            self.quantize_fp8()                   # before the placement (deferred random weights: codes made there)
        if resident_blocks is not None:
            self.set_streaming(resident_blocks)   # before the placement: streamed blocks stay in host memory
        if device == "cuda":
            _core.dit_place(self._model, "cuda", precision)

    # ---------------- LoRA ----------------

    def add_lora(self, source, weight: float = 1.0, name: str | None = None) -> None:
        """Adds an adapter (upstream T2V:353-432, Z:525-530, T2V:379-380 key formats). Full-weight ``.diff`` deltas and
        negligible
        ``.diff_b`` biases are ignored as upstream does; their count accumulates in ``ignored_lora_keys``."""
        if not _is_source(source):
            raise TypeError(f"LoRA source must be a safetensors path or a mapping, got {type(source).__name__}")
        name = name or _lora_name(source, len(self.lora_adapters))
        self.ignored_lora_keys += _core.dit_lora_add(self._model, source, name, float(weight))

    @property
    def lora_adapters(self) -> list:
        """[(name, weight, rank, n_modules)] of the active adapters."""
        return _core.dit_lora_adapters(self._model)

    def set_lora_weights(self, weights) -> None:
        """Sets the activation weight of every adapter (in the order they were added)."""
        _core.dit_lora_adapters(self._model, [float(w) for w in weights])

    def merge_lora(self) -> None:
        """Folds the adapters into the base weights (W += Σ w_a B_a A_a, in float32, stored in W's dtype) and
        drops them; faster when the set of adapters is fixed, but the weights can no longer be changed."""
        _core.dit_lora_merge(self._model)

    # ---------------- memory ----------------

    def quantize_fp8(self) -> None:
        """Makes the attention blocks' Linear layers fp8 e4m3: 1-byte codes with a scale per output channel for the
        weights (max|row| / 448) and per token for the activations (quantized by a backend op on the model's
        device), products summed in float32 (``csrc/models/dit_fp8.c``). Merge the LoRA adapters first
        (``merge_lora``) and quantize before the model is on the device (``LyraDiT(..., dtype="fp8")`` does both).
        Irreversible."""
        _core.dit_quantize_fp8(self._model)

    @property
    def resident_blocks(self) -> int:
        """Attention blocks whose weights are used in place; the others stream (see ``set_streaming``)."""
        return _core.dit_streaming(self._model)["resident"]

    def set_streaming(self, resident_blocks: int) -> None:
        """Streams the weights of blocks ``resident_blocks..layers-1`` through two block-sized buffers: each
        forward uploads every streamed block once, just before it runs (``resident_blocks = layers`` turns
        streaming off). The output is bit-identical; the device holds only the resident blocks + two buffers
        (the plan of ``lyra2.memory_plan``). On "cuda" give ``resident_blocks=`` to the constructor instead:
        streaming is decided before the weights move (Lyra2Error afterwards)."""
        if isinstance(resident_blocks, bool) or not isinstance(resident_blocks, int):
            raise TypeError(f"resident_blocks: expected an int, got {resident_blocks!r}")
        if resident_blocks < 0:
            raise ValueError(f"resident_blocks: {resident_blocks} is outside 0..{self.config['num_layers']}")
        _core.dit_streaming(self._model, resident_blocks)

    def streaming_stats(self) -> dict:
        """{resident, buffer_bytes, uploads, upload_bytes}: the streaming state and the uploads since load."""
        return _core.dit_streaming(self._model)

    # ---------------- forward ----------------

    def __call__(self, x_B_C_T_H_W, timesteps_B_T, crossattn_emb, frame_cond_crossattn_emb_B_L_D, y_B_C_T_H_W,
                 y_buffer_B_C_T_H_W, *, padding_mask=None, fps=None, return_intermediates: bool = False):
        """Velocity of the generated frames, float32 (1, out_dim, N, H, W) (N = the layout's new frames).

        Inputs exactly as upstream passes them (upstream M:986-994, T2V:1033-1053, WL:973): x (1, 16, T, H, W),
        timesteps (1, 1), crossattn_emb (1, 512, text_dim), CLIP tokens (1, 257, 1280), y (1, 404, T, H, W) = mask |
        conditioning latent | Plücker, y_buffer (1, 1280, T, H, W). ``padding_mask`` and ``fps`` are accepted and
        ignored, as upstream ignores them. With ``return_intermediates=True`` returns ``(out, dict)`` with tokens,
        freqs, camera_tokens, buffer_tokens, time_embedding, time_projection, text_embedding, img_emb, block<i>,
        head."""
        del padding_mask, fps
        return _core.dit_forward(self._model, x_B_C_T_H_W, np.asarray(timesteps_B_T), crossattn_emb,
                                 frame_cond_crossattn_emb_B_L_D, y_B_C_T_H_W, y_buffer_B_C_T_H_W,
                                 bool(return_intermediates))

    def __repr__(self) -> str:
        c = self.config
        return (f"LyraDiT(dim={c['dim']}, heads={c['num_heads']}, layers={c['num_layers']}, ffn={c['ffn_dim']}, "
                f"framepack={self.framepack!r}, lora={len(self.lora_adapters)}, device={self.device!r}, "
                f"precision={self.precision!r})")
