"""Preview mode: a camera-controlled video without network weights, and its driver (`run_preview`, what
`lyra2.zoom(..., mode="preview")` runs: input -> first-frame depth -> cameras -> frames per direction -> Video).

Frame 0 is the input image; every other frame is the input forward-warped into that frame's camera
(the same C warp as `lyra2.warp.forward_warp`, upstream M:1601-1822, FW), with the holes filled by a depth-aware
push-pull pyramid (classical inpainting, in C). Without a depth map or depth model,
`heuristic_depth` supplies a ground-plane prior; it is a heuristic, not a model, and is named by
`HEURISTIC_DEPTH_NAME` so logs and `Video.timings` can say which depth was used.
"""
import time

import numpy as np

from . import _core
from .depth import HEURISTIC_DEPTH_NAME, check_rgb_u8, first_frame_depth, heuristic_depth
from .fields import output_size
from .video import Video

__all__ = ["render_frames", "heuristic_depth", "fill_holes", "HEURISTIC_DEPTH_NAME", "run_preview"]


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
    image_u8 = check_rgb_u8(image_u8)
    return _core.render_preview(image_u8, depth, w2c, K, bool(clean_points), int(norm_batch), float(edge_ratio))


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


def run_preview(image, args, *, report, depth=None, checkpoint_folder=None):
    """The zoom job in preview mode for validated endpoint fields (`lyra2.fields.validate`): every frame is the
    input forward-warped into that frame's camera (the same C warp the generative loop conditions on), holes
    filled by the classical inpainting in C. Returns a lyra2.Video with mode "preview"."""
    from .geometry import direction_cameras
    from .media import read_image

    t0 = time.perf_counter()
    h, w = output_size(args["resolution"])
    raw = read_image(image)
    img = read_image(raw, resolution=(h, w))
    d, mask, K0, depth_source = first_frame_depth(raw, img, depth, checkpoint_folder, report)
    cams = direction_cameras(args["zoom_direction"], args["num_frames"], d, K0,
                             zoom_in_trajectory=args["zoom_in_trajectory"],
                             zoom_in_strength=args["zoom_in_strength"],
                             zoom_out_trajectory=args["zoom_out_trajectory"],
                             zoom_out_strength=args["zoom_out_strength"], mask=mask)
    timings = {"encode_s": time.perf_counter() - t0}

    rendered = {}
    for direction in ("in", "out"):
        if direction not in cams:
            continue
        w2c, K = cams[direction]
        t = time.perf_counter()
        report.log(f"zoom-{direction}: rendering {len(w2c)} preview frames at {w}x{h}")
        rendered[direction] = render_frames(img, d, w2c, K)
        report.update(f"zoom-{direction}", len(w2c), len(w2c))
        timings[f"zoom_{direction}_s"] = time.perf_counter() - t

    direction = args["zoom_direction"]
    if direction == "both":
        # reverse(out) then in, with the shared anchor (input) frame once: 2N - 1 frames.
        frames = np.concatenate([rendered["out"][::-1], rendered["in"][1:]])
    else:
        frames = rendered[direction]
    w2c, K = cams["w2c"], cams["K"]
    return Video(frames=frames, fps=args["frames_per_second"], seed=args["seed"], timings=timings,
                 w2c=np.ascontiguousarray(w2c, np.float32), intrinsics=np.ascontiguousarray(K, np.float32),
                 depth=d, mode="preview", depth_source=depth_source)
