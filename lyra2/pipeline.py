"""The zoom job's driver in Python: inputs -> depth -> cameras -> frames per direction -> assembled Video.

Preview mode renders every frame by forward-warping the input into that frame's camera (the same C warp the
generative loop conditions on) and filling the holes with a classical inpainting in C."""
import time

import numpy as np

from .fields import RESOLUTIONS
from .video import Video


def _depth_for_preview(img, depth, checkpoint_folder, report):
    """Returns (depth (H, W) float32, valid mask (H, W) float32, source label)."""
    from .api import _check_depth
    from . import checkpoint

    h, w = img.shape[:2]
    d = _check_depth(depth, h, w)
    if d is not None:
        mask = (np.isfinite(d) & (d > 0) & (d < 999.9)).astype(np.float32)
        return d, mask, "user"
    have = checkpoint.components(checkpoint_folder)
    if all(c in have for c in checkpoint.DEPTH_NEEDS):
        report.log("depth weights found, but the DA3/MoGe depth networks are not built into this version yet; "
                   "using the heuristic depth prior", level="WARNING")
    from .preview import HEURISTIC_DEPTH_NAME, heuristic_depth

    d, mask = heuristic_depth(img)
    report.log(f"depth: {HEURISTIC_DEPTH_NAME} prior (not a depth model; pass depth= or provide "
               "converted DA3/MoGe weights for real depth)")
    return d, mask, HEURISTIC_DEPTH_NAME


def run_preview(image, args, *, report, depth=None, checkpoint_folder=None):
    from .geometry import direction_cameras
    from .media import read_image
    from .preview import render_frames

    t0 = time.perf_counter()
    h, w = RESOLUTIONS[args["resolution"]]
    img = read_image(image, resolution=(h, w))
    d, mask, depth_source = _depth_for_preview(img, depth, checkpoint_folder, report)
    cams = direction_cameras(args["zoom_direction"], args["num_frames"], d, None,
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
