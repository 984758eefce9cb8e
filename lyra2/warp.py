"""Forward warping and ray conditioning (upstream M:1601-1822, FW and upstream M:1830-1888, PL:28-74), computed in C.

Conventions: OpenCV camera axes (x right, y down, z forward), world-to-camera matrices `w2c` (4, 4)
with the translation in column 3, pixel intrinsics K (3, 3). The warp uses integer pixel coordinates
(pixel (x, y) is column x, row y); the rays use pixel centres (x + 0.5, y + 0.5), as upstream does.
"""
import numpy as np

from . import _core

__all__ = ["forward_warp", "rays", "project_points"]


_NORM_BATCH_MAX = 2**31 - 1  # the C side takes it as int


def forward_warp(image, depth, src_w2c, src_K, tgt_w2c, tgt_K, *, clean_points=True, norm_batch=None,
                 return_intermediates=False):
    """Forward-warps one source view into N target cameras, as upstream `forward_warp_multiframes`
    (one source view, `is_image=True`, `render_depth=True`).

    Back-projects every source pixel with its depth, transforms it into each target camera, and
    splats it bilinearly with a soft z-buffer: a point's weight is its bilinear proximity divided by
    exp(50 · log1p(z) / max log1p(z)), so near points dominate far ones at a pixel.

    Args:
        image: float32 (C, H, W) source values, normally the RGB image in [-1, 1] (C = 3); any C works
            (upstream also warps 3-channel coordinate images). Must be finite.
        depth: float32 (H, W) source z-depth. NaN becomes 1e4 and values are clamped to [0, 1e4];
            pixels with depth 0 are not splatted.
        src_w2c: (4, 4) source world-to-camera.  src_K: (3, 3) source intrinsics.
        tgt_w2c: (N, 4, 4) target world-to-camera.  tgt_K: (N, 3, 3) target intrinsics.
        clean_points: also drop source pixels whose 5×5 depth neighbourhood is not continuous
            ((max − min) / mean ≥ 0.05), as every warp of upstream's AR loop does (upstream sets both
            `clean_points` and `clean_points_continuity`). False keeps every pixel with depth > 0.
        norm_batch: the depth-weight normaliser max(log1p z) is taken over a whole batch of targets,
            every source pixel included (an upstream quirk, docs/REFERENCES.md#upstream-quirks-kept-on-purpose item 6),
            so a target's result depends on which other targets are warped with it. None (default): all N targets of
            this call form one batch, exactly as one upstream call. An integer k: consecutive groups of k targets get
            their own normaliser, as upstream's AR loop warps its 80 targets in chunks of `warp_chunk_size` (16);
            pass k = 16 there, or call once per chunk.
        return_intermediates: also return "depth_sanitized" (H, W), "reliable_mask" (H, W) uint8
            (the continuity test, computed even when clean_points is False) and "world_points" (H, W, 3)
            (0 where not splatted).

    Returns:
        dict with "image" float32 (N, C, H, W) (holes −1, values clamped to [−1, 1]), "mask" float32
        (N, 1, H, W) (1 where anything landed), "depth" float32 (N, H, W) (rendered target z-depth,
        holes 0) and "flow" float32 (N, 2, H, W) (target pixel minus source pixel, x then y, for every
        source pixel).

    Points whose target coordinate is exactly an integer are splatted with floor = ceil and count two
    or four times at that pixel (upstream quirk, docs/REFERENCES.md#upstream-quirks-kept-on-purpose item 13); the
    inverses of K and w2c are rounded as upstream's torch.linalg.inv so the same points land exactly.
    """
    if norm_batch is None:
        norm_batch = 0
    elif isinstance(norm_batch, (bool, np.bool_)) or not isinstance(norm_batch, (int, np.integer)) \
            or not 1 <= norm_batch <= _NORM_BATCH_MAX:
        raise ValueError(f"norm_batch: expected None or an int in [1, {_NORM_BATCH_MAX}], got {norm_batch!r}")
    return _core.forward_warp(image, depth, src_w2c, src_K, tgt_w2c, tgt_K, bool(clean_points), int(norm_batch),
                              bool(return_intermediates))


def rays(K, c2w, height, width, *, moment=False):
    """Per-pixel camera rays for the network's ray conditioning (upstream `ray_condition`).

    Args:
        K: float32 (V, 4) = (fx, fy, cx, cy) per camera, in pixels of a height × width image.
        c2w: float32 (V, 4, 4) camera-to-world (upstream passes each camera's pose relative to the
            reference camera, w2c_ref · inv(w2c)).
        height, width: the ray grid size.
        moment: False (default, upstream's inference setting `use_ray_o=True`): [origin, direction];
            True: the Plücker form [origin × direction, direction].

    Returns:
        float32 (V, height, width, 6). Rays pass through pixel centres (column + 0.5, row + 0.5);
        directions have unit length.
    """
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    return _core.rays(K, c2w, int(height), int(width), bool(moment))


def project_points(points, w2c, K):
    """K · (w2c · [X; 1])[:3] for points float32 (..., 3), before the perspective divide, in the warp's
    float32 op order. Returns float32 (..., 3)."""
    return _core.project_points(points, w2c, K)
