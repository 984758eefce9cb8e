"""Rendering of Gaussian splats (lyra2.Gaussians) with the backends' rasterizer (op gs_rasterize).

``render_gaussians(g, w2c, K, size, device=...)`` -> uint8 frames; ``render_float(...)`` -> (rgb, alpha, depth)
float32. The model is 3DGS's forward pass as gsplat runs it for Depth Anything 3 (csrc/nn/splat_math.h);
upstream renders its ``gs_trajectory.mp4`` that way along the video's cameras. device="cpu" runs the C reference
(csrc/nn/cpu/cpu_splat.c), "cuda" the tile-binned CUDA kernels (csrc/nn/cuda/cuda_splat.cu), "auto" the GPU when
one is usable. Both composite every pixel's splats in the same (depth, index) order, so they agree to float
rounding (tests/test_cuda_splat.py states the tolerance)."""
from __future__ import annotations

import os

import numpy as np

from . import _core

__all__ = ["render_gaussians", "render_float", "resolve_device"]

NEAR = 0.01  # gsplat rasterization() near_plane default


def _threads():
    v = os.environ.get("LYRA2_NUM_THREADS", "0").strip() or "0"
    if not v.isdigit():
        raise ValueError(f"LYRA2_NUM_THREADS: {v!r} is not a non-negative integer")
    return int(v)


def _cameras(w2c, K):
    w2c = np.asarray(w2c, np.float32)
    K = np.asarray(K, np.float32)
    single = w2c.ndim == 2
    if single:
        w2c = w2c[None]
    if w2c.ndim != 3 or w2c.shape[1:] != (4, 4) or len(w2c) < 1:
        raise ValueError(f"w2c: expected (4, 4) or (T, 4, 4) world-to-camera matrices; got {w2c.shape}")
    if K.shape == (3, 3):
        K = np.broadcast_to(K, (len(w2c), 3, 3))
    if K.shape != (len(w2c), 3, 3):
        raise ValueError(f"K: expected (3, 3) or ({len(w2c)}, 3, 3) pixel intrinsics; got {K.shape}")
    if not (np.isfinite(w2c).all() and np.isfinite(K).all()):
        raise ValueError("w2c, K: must be finite")
    return np.ascontiguousarray(w2c), np.ascontiguousarray(K), single


def _size(size):
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size: expected (height, width); got {size!r}") from None
    if h < 1 or w < 1 or h > 16384 or w > 16384:
        raise ValueError(f"size: {size!r} is not allowed; height and width from 1 to 16384")
    return h, w


def resolve_device(device):
    """"auto" -> "cuda" when lyra2.backends() has a usable CUDA device, else "cpu"; "cuda" without one is a
    Lyra2Error saying why; anything else a ValueError."""
    if not isinstance(device, str) or device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: {device!r} is not allowed; expected one of ['auto', 'cpu', 'cuda']")
    if device == "cpu":
        return "cpu"
    from . import backends

    b = backends()
    if b["cuda"]:
        return "cuda"
    if device == "cuda":
        raise _core.Lyra2Error(f"device='cuda': no usable CUDA device here ({b['cuda_error']}); use device='cpu' "
                               "or 'auto'")
    return "cpu"


def render_float(g, w2c, K, size, background=(0.0, 0.0, 0.0), device="cpu"):
    """(rgb (T, H, W, 3), alpha (T, H, W), depth (T, H, W)) float32 of Gaussians `g` seen from w2c / K."""
    device = resolve_device(device)
    w2c, K, _ = _cameras(w2c, K)
    h, w = _size(size)
    bg = tuple(float(v) for v in background)
    if len(bg) != 3:
        raise ValueError(f"background: expected 3 numbers (RGB in [0, 1]); got {background!r}")
    return _core.gs_render(g.means, g.scales, g.rotations, g.harmonics, g.opacities, w2c, K, h, w, bg, NEAR,
                           _threads(), device)


def render_gaussians(g, w2c, K, size, background=(0.0, 0.0, 0.0), device="cpu"):
    """uint8 (H, W, 3) for one camera, (T, H, W, 3) for several (colours clamped to [0, 1], rounded)."""
    single = np.asarray(w2c).ndim == 2
    rgb, _, _ = render_float(g, w2c, K, size, background, device)
    out = (np.clip(rgb, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
    return out[0] if single else out
