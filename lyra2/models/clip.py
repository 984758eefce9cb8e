"""CLIP ViT-H/14 vision tower as Lyra-2 uses it (open-clip xlm-roberta-large-vit-huge-14 via Wan's clip.py;
upstream CONDC:68-72, CLIP:453-478, CLIP:277-279), in C.

``CLIPVision(weights)(image)``: image float32 (B, 3, H, W) in [−1, 1] (any size: it is squeezed to the model's
square input) -> float32 (B, 1 + patches, width) = (B, 257, 1280) for ViT-H/14: bicubic resize without
antialias (align_corners False), x·0.5 + 0.5, CLIP mean/std, patch embedding, class token, position
embedding, pre-LayerNorm, every block except the last, no final norm, no head.

Weights are the checkpoint's ``visual.*`` names (spec Appendix C), as a safetensors path or a mapping
name -> array; the text tower (``textual.*``), ``log_scale``, the last block, ``visual.post_norm`` and
``visual.head`` may be present and are ignored. The head count is not stored in the weights: by default it is
width / 80 (ViT-H/14: 16 heads of 80); pass ``num_heads`` for other towers.

Cost of ViT-H/14 as Lyra runs it (``clip_cost()``; width 1280, 31 of 32 blocks, 224 px, 257 tokens): 611,086,080
parameters used = 1.22 GB fp16/bf16 (2.44 GB float32); one frame = 0.324 TFLOP and a 7.9 MB activation arena.
"""
from __future__ import annotations

import numpy as np

from .. import _core
from .umt5 import check_device, check_precision

__all__ = ["CLIPVision", "clip_cost", "CLIP_VIT_H14", "CLIP_MEAN", "CLIP_STD"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# open-clip ViT-H/14 as Wan builds it (upstream CLIP:453-478), for cost estimates without weights.
CLIP_VIT_H14 = {"width": 1280, "heads": 16, "layers": 32, "mlp": 5120, "patch": 14, "image_size": 224}


def clip_cost(config=None, batch=1, precision="f32") -> dict:
    """Parameters of the used part, weight bytes (fp16/bf16 and float32), activation arena bytes (a model placed
    as ``precision``: "f32" as on the CPU, "f16" as on a device) and FLOPs (2 per multiply-add: patch conv,
    linears, QKᵀ, PV) of one forward over ``batch`` frames (default ViT-H/14)."""
    cfg = dict(CLIP_VIT_H14 if config is None else config)
    plan = _core.clip_plan(cfg, int(batch), precision)
    return {"params": plan["params"], "weight_bytes_bf16": 2 * plan["params"],
            "weight_bytes_f32": 4 * plan["params"], "arena_bytes": plan["arena_bytes"], "flops": plan["flops"]}


def _image(image) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype.kind != "f":
        raise TypeError(f"image must be a float array in [-1, 1], got dtype {a.dtype}")
    if a.ndim != 4 or a.shape[1] != 3 or min(a.shape) < 1:
        raise ValueError(f"image must be (B, 3, H, W) with B, H, W >= 1, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


class CLIPVision:
    """The CLIP vision tower on the lyra2 runtime (see the module docstring).

    ``precision`` on "cuda": "f16" (the default there: upstream builds the tower in fp16 and runs it under fp16
    autocast, CLIP:496, CLIP:526; LayerNorm statistics f32, q/k/v cast to bf16 for the attention, ATT:101-112;
    docs/PRECISION.md) or "f32" (a parity mode); the CPU computes "f32" only. The output is float32 either way."""

    def __init__(self, weights, device="cpu", num_heads=None, precision=None):
        check_device(device, placed=True)
        if num_heads is not None and (not isinstance(num_heads, (int, np.integer)) or num_heads < 1):
            raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
        self.device = device
        self.precision = check_precision(device, precision, ("f16", "f32"))
        self._net = _core.clip_load(weights, 0 if num_heads is None else int(num_heads), device, self.precision)
        self.config = _core.clip_config(self._net)

    def preprocess(self, image) -> np.ndarray:
        """The tower's input: float32 (B, 3, S, S) = Normalize(bicubic_resize(image)·0.5 + 0.5)."""
        return _core.clip_run(self._net, _image(image), True)

    def __call__(self, image) -> np.ndarray:
        return _core.clip_run(self._net, _image(image), False)

    def cost(self, batch=1) -> dict:
        """clip_cost() for this tower's configuration."""
        return clip_cost(self.config, batch)

    def __repr__(self):
        c = self.config
        return (f"CLIPVision(width={c['width']}, layers={c['used_layers']}/{c['layers']}, heads={c['heads']}, "
                f"image_size={c['image_size']}, patch={c['patch']}, device={self.device!r})")
