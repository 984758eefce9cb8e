"""Preview rendering: a camera-controlled video without network weights.

Frame 0 is the input image; every other frame is the input forward-warped into that frame's camera
(the same C warp as `lyra2.warp.forward_warp`, spec §4.5), with the holes filled by a depth-aware
push-pull pyramid (classical inpainting, in C). Without a depth map or depth model,
`heuristic_depth` supplies a ground-plane prior; it is a heuristic, not a model, and is named by
`HEURISTIC_DEPTH_NAME` so logs and `Video.timings` can say which depth was used.
"""
import numpy as np

from . import _core

__all__ = ["render_frames", "heuristic_depth", "fill_holes", "HEURISTIC_DEPTH_NAME"]

#: Name of the heuristic depth prior, for logs and timings (so nobody mistakes it for a depth model).
HEURISTIC_DEPTH_NAME = "heuristic:ground-plane-popup-v1"


def render_frames(image_u8, depth, w2c, K, *, clean_points=False, edge_ratio=0.15, norm_batch=None):
    """Renders the preview frames of a trajectory.

    Args:
        image_u8: uint8 (H, W, 3) input RGB, the view of camera 0.
        depth: float32 (H, W) z-depth of the input in camera 0 (from `depth=`, the depth model, or
            `heuristic_depth`). NaN becomes 1e4, values are clamped to [0, 1e4], and pixels at depth 0
            are not drawn (their area is filled like any hole).
        w2c: float32 (T, 4, 4) world-to-camera per frame; K: float32 (T, 3, 3) intrinsics per frame.
            Camera 0 is the input's camera (normally w2c[0] = I, as `lyra2.trajectory` returns).
        clean_points: drop source pixels at depth discontinuities before warping (upstream's
            continuity test). Off by default: the test is strict (5×5 range/mean < 5 %) and drops
            most of a steep ground plane, which the fill would then have to invent.
        edge_ratio: drop source pixels whose 3×3 depth max/min exceeds 1 + edge_ratio: they sit on a
            depth edge, mix foreground and background colours, and would otherwise fly apart into
            streaks between the two surfaces; their area is filled from the background. 0 = off.
        norm_batch: frames per soft z-buffer normaliser batch (see `lyra2.warp.forward_warp`);
            None = all frames together, which keeps the weighting identical across the video.

    Returns:
        uint8 (T, H, W, 3). Frame 0 is `image_u8` exactly; frames 1..T-1 are warped and filled.
    """
    if norm_batch is None:
        norm_batch = 0
    elif isinstance(norm_batch, (bool, np.bool_)) or not isinstance(norm_batch, (int, np.integer)) \
            or norm_batch < 1:
        raise ValueError(f"norm_batch: expected None or a positive int, got {norm_batch!r}")
    image_u8 = _as_u8_image(image_u8)
    return _core.render_preview(image_u8, depth, w2c, K, bool(clean_points), int(norm_batch), float(edge_ratio))


def heuristic_depth(image_u8):
    """A heuristic depth prior for an RGB image ("heuristic:ground-plane-popup-v1"), computed in C.

    The recipe (units are arbitrary: the bottom row is at depth 1, the far backdrop at 25; the
    trajectories rescale by the subject depth, so only ratios matter):
      1. sky: pixels connected to the top row through blue-ish or bright grey pixels, in steps of
         small colour difference (the sky is smooth);
      2. horizon: just below the lowest row that is at least 30 % sky, within [0.25 H, 0.85 H]
         (without sky, a virtual horizon 0.6 H above the top row: the camera looks down at the ground);
      3. ground: below the horizon a level camera over a plane sees depth (H − h0) / (y − h0 + 1),
         capped at the backdrop;
      4. pop-up: below the horizon, going up each column, log depth continues from the pixel below
         through similar colours (weight 0.9 · exp(−colour difference / 10)), so things standing on
         the ground keep the depth of their contact row; above the horizon every non-sky pixel keeps
         the depth below it (upright); an edge-aware horizontal pass removes streaks.

    Args:
        image_u8: uint8 (H, W, 3) RGB, H, W >= 2.

    Returns:
        (depth float32 (H, W) > 0, mask uint8 (H, W)): mask is 1 everywhere except sky-like pixels
        (0), which get the backdrop depth; pass the mask to the trajectory's subject-depth estimate.
    """
    return _core.heuristic_depth(_as_u8_image(image_u8))


def fill_holes(image, mask, depth=None):
    """Fills the pixels where mask == 0 with the depth-aware push-pull pyramid used by the preview.

    Args:
        image: float32 (C, H, W). Values at holes are ignored.
        mask: (H, W), > 0.5 = known pixel (kept bit for bit).
        depth: optional float32 (H, W) depth of the known pixels; where a hole borders a near and a
            far surface, the far one (the disoccluded background) supplies the fill.

    Returns:
        float32 (C, H, W), a filled copy. An image without any known pixel becomes 0.
    """
    return _core.fill_holes(image, mask, depth)


def _as_u8_image(image_u8):
    arr = np.asarray(image_u8)
    if arr.dtype != np.uint8:
        raise TypeError(f"image_u8: expected a uint8 array (H, W, 3), got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image_u8: expected shape (H, W, 3), got {arr.shape}")
    return arr
