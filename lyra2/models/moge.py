"""MoGe v1 ("Ruicheng/moge-vitl", microsoft/MoGe @ 0744441) as Lyra-2 uses it, in C (upstream MOGE:214-242, DU:46,
MCFG:25-35).

``MoGe(weights)(image)``: image float32 (3, H, W) in [0, 1] -> ``{"depth", "mask", "intrinsics", "points"}``,
upstream ``MoGeModel.infer(image)`` with its defaults (resolution level 9, free focal, mask applied, forced
projection): depth (H, W) float32 = z + shift with +inf where masked, mask (H, W) bool, intrinsics (3, 3)
float32 normalised (fx, fy relative to W, H; principal point 0.5), points (H, W, 3) float32. Lyra reads only
depth and mask (``lyra_depth`` gives its post-processed depth).

Weights: ``MoGeModel.state_dict()`` names (``backbone.*``, ``head.*``, optional ``image_mean``/``image_std``)
as a safetensors path or a mapping name -> array. The architecture comes from the names and shapes; what they
do not hold comes from the checkpoint's ``model_config``, which a converted ``moge.safetensors`` carries as the
JSON metadata entry ``"model_config"`` (``num_tokens_range``, ``mask_threshold``, ``remap_output``; legacy
``trained_area_range``), else from the keyword arguments, else the released v1 values ([1200, 2500], 0.5).
The backbone's heads are width / 64 (every DINOv2 size); pass ``num_heads`` for other backbones, or store it in
the file's JSON metadata entry ``"lyra2_config"`` (``{"num_heads": n}``, as ``lyra2.testing`` does).

Focal/shift recovery (upstream MGT:40-52, MGN:79-112) is MINPACK's lmdif for one unknown, step for step, so the shift
matches ``scipy.optimize.least_squares(method='lm', ftol=1e-3)`` (scipy <= 1.14 bit for bit): ``solve_focal_shift`` and
``recover_focal_shift`` expose it.

Cost at Lyra's sizes with the released ViT-L: ``COST_NOTE`` below (computed by ``moge_cost()``).
"""
from __future__ import annotations

import json
import os

import numpy as np

from .. import _core
from .._core import Lyra2Error
from .depth import lyra2_config
from .umt5 import check_device, check_precision

__all__ = ["MoGe", "moge_cost", "solve_focal_shift", "recover_focal_shift", "lyra_depth", "MOGE_V1_VITL"]

# The released "Ruicheng/moge-vitl" (upstream MOGE:214-242, DU:46, MCFG:25-35, MCFG v1): DINOv2 ViT-L/14 + the v1 head.
MOGE_V1_VITL = {"dim": 1024, "depth": 24, "heads": 16, "mlp": 4096, "patch": 14, "pos_grid": 37, "n_features": 4,
                "dim_proj": 512, "dim_up": [256, 128, 64], "hidden": [512, 256, 128], "n_res": 2, "last_ch": 32,
                "last_res": 0, "last_hidden": 32, "last_k": 1, "tokens_min": 1200, "tokens_max": 2500}

COST_NOTE = """
MoGe v1 ViT-L, computed by moge_cost() (314,172,996 parameters used: all but the unused mask_token):
  weights 628 MB bf16 (1.26 GB float32)
  480x832  -> 531x921 bicubic, 518x910 backbone input (37x65 = 2405 patches):
              2.39 TFLOP (ViT-L 2.03, head 0.36); float32 activation arena 350 MB
  720x1280 -> 525x933 bicubic, 518x924 backbone input (37x66 = 2442 patches):
              2.43 TFLOP (ViT-L 2.07, head 0.37); float32 activation arena 361 MB
  The token budget (2500) fixes the backbone size, so 720p costs about as much as 480p; the arena peak is the
  head at the bicubic size (66 channels plus one output block's 32 at 531x921).
  Measured once with random ViT-L weights at 480p on the CPU backend: arena peak 349.5 MB = the plan; 126 s on
  2 shared cores (19 GFLOP/s).
"""


def moge_cost(height=480, width=832, config=None, precision="f32") -> dict:
    """Parameters, weight bytes, activation-arena bytes and FLOPs (2 per multiply-add: backbone, head convs and
    transposed convs) of one MoGe forward on a height x width image, for the released ViT-L unless ``config``
    (a dict like ``MOGE_V1_VITL`` or ``MoGe.config``) is given, with the model placed as ``precision`` ("f32", or
    "f16": upstream's autocast on a device; ``weight_bytes`` is that placement's). Also the resize chain's sizes."""
    cfg = dict(MOGE_V1_VITL if config is None else config)
    plan = _core.moge_plan(cfg, int(height), int(width), precision)
    plan["weight_bytes_bf16"] = 2 * plan["params"]
    plan["weight_bytes_f32"] = 4 * plan["params"]
    return plan


def solve_focal_shift(uv, xyz, trace=False) -> dict:
    """MoGe's ``solve_optimal_focal_shift`` (geometry_numpy): uv float32 (N, 2), xyz float32 (N, 3) ->
    ``{"shift", "focal", "cost", "nfev", "status"}`` (shift and cost float64 as MINPACK returns them, focal
    recomputed in float32 at the float32 shift; status is MINPACK's info: 1 ftol, 2 xtol, 3 both, 4 gtol,
    5 maxfev, 6-8 tolerances at machine precision). ``trace=True`` adds ``"trace"`` (nfev, 2): (shift, ‖r‖) for
    every residual evaluation."""
    uv = np.ascontiguousarray(uv, dtype=np.float32)
    xyz = np.ascontiguousarray(xyz, dtype=np.float32)
    r = _core.moge_lm_solve(uv, xyz, 256 if trace else 0)
    if not trace:
        del r["trace"]
    return r


def recover_focal_shift(points, mask=None):
    """MoGe's ``recover_focal_shift`` for one point map: points float32 (H, W, 3), mask (H, W) (nonzero =
    valid) or None -> (focal, shift) as float32 numbers; focal is relative to half the image diagonal."""
    pts = np.ascontiguousarray(points, dtype=np.float32)
    focal, shift, _, _, _ = _core.moge_recover_focal_shift(pts, mask)
    return np.float32(focal), np.float32(shift)


def lyra_depth(depth, mask) -> np.ndarray:
    """Lyra's post-processing of the MoGe depth (depth_utils, upstream DU:75-80, Z:634-652): NaN -> 1e4, clamp to
    [0, 1e4], 1000 where the mask is 0."""
    return _core.moge_lyra_depth(np.ascontiguousarray(depth, dtype=np.float32), mask)


def _model_config(weights) -> dict:
    if isinstance(weights, (str, bytes, os.PathLike)):
        from ..io import safetensors_info
        raw = safetensors_info(weights)["metadata"].get("model_config")
        if raw:
            try:
                cfg = json.loads(raw)
            except ValueError as e:
                raise Lyra2Error(f"{os.fspath(weights)!r}: metadata 'model_config' is not JSON ({e})") from None
            if not isinstance(cfg, dict):
                raise Lyra2Error(f"{os.fspath(weights)!r}: metadata 'model_config' must be a JSON object")
            return cfg
    return {}


def _image(image) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype.kind != "f":
        raise TypeError(f"image must be a float array (3, H, W) in [0, 1], got dtype {a.dtype}")
    if a.ndim != 3 or a.shape[0] != 3 or min(a.shape) < 1:
        raise ValueError(f"image must be (3, H, W) with H, W >= 1, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


class MoGe:
    """MoGe v1 on the lyra2 runtime (see the module docstring).

    ``device="cuda"``: the weights are uploaded once and the activation arena lives in device memory; a call
    uploads the image once and downloads the head's output once for the host-side focal/shift solve. A device
    out-of-memory raises Lyra2Error naming the stage and the bytes.

    ``precision`` on "cuda": "f16" (the default there: upstream's ``infer(use_fp16=True)`` runs the forward under
    fp16 autocast, MOGE:348; the backbone's GEMMs and the whole head in f16, its residual stream, norms and the
    input resizes f32; docs/PRECISION.md) or "f32" (a parity mode); the CPU computes "f32" only."""

    def __init__(self, weights, device="cpu", *, num_heads=None, num_tokens_range=None, mask_threshold=None,
                 precision=None):
        check_device(device, placed=True)
        self.precision = check_precision(device, precision, ("f16", "f32"))
        cfg = _model_config(weights)
        if num_heads is None:
            num_heads = lyra2_config(weights, ("num_heads",)).get("num_heads")
        remap = cfg.get("remap_output", "exp")
        if remap != "exp":
            raise Lyra2Error(f"MoGe: remap_output {remap!r} is not supported (MoGe v1 releases use 'exp')")
        if num_tokens_range is None:
            if "num_tokens_range" in cfg:
                num_tokens_range = cfg["num_tokens_range"]
            elif "trained_area_range" in cfg:  # legacy key (MOGE:167-172): areas in pixels -> tokens
                num_tokens_range = [int(a) // 14 ** 2 for a in cfg["trained_area_range"]]
            else:
                num_tokens_range = (1200, 2500)
        lo, hi = (int(v) for v in num_tokens_range)
        if not 1 <= lo <= hi:
            raise ValueError(f"num_tokens_range must be (min, max) with 1 <= min <= max, got {num_tokens_range!r}")
        thr = float(cfg.get("mask_threshold", 0.5) if mask_threshold is None else mask_threshold)
        if num_heads is not None and (not isinstance(num_heads, (int, np.integer)) or num_heads < 1):
            raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
        self.device = device
        self._net = _core.moge_load(weights, 0 if num_heads is None else int(num_heads), lo, hi, thr, device,
                                    self.precision)
        self.config = _core.moge_config(self._net)

    def __call__(self, image) -> dict:
        r = _core.moge_run(self._net, _image(image), False)
        return {k: r[k] for k in ("depth", "mask", "intrinsics", "points")}

    def run(self, image, debug=False) -> dict:
        """Everything one call computes: the ``__call__`` outputs plus ``fwd_points`` (H, W, 3) and ``fwd_mask``
        (H, W) (forward() after the exp remap / the mask logits), ``focal``, ``shift``, ``num_tokens`` and the
        arena use; with ``debug`` also the intermediates ``image_resized``, ``image_14``, ``taps``, ``stages``
        and ``head`` (4, h1, w1) = (x', y', log z, mask logit) before the final resize."""
        return _core.moge_run(self._net, _image(image), bool(debug))

    def cost(self, height=480, width=832) -> dict:
        """moge_cost() for this network's configuration."""
        return moge_cost(height, width, self.config)

    def __repr__(self):
        c = self.config
        return (f"MoGe(dim={c['dim']}, depth={c['depth']}, heads={c['heads']}, head={c['dim_proj']}->"
                f"{c['dim_up']}, tokens={c['tokens_min']}..{c['tokens_max']}, device={self.device!r})")
