"""The zoom job's driver in Python: inputs -> depth -> cameras -> frames per direction -> assembled Video.

Preview mode renders every frame by forward-warping the input into that frame's camera (the same C warp the
generative loop conditions on) and filling the holes with a classical inpainting in C."""
import time

import numpy as np

from .fields import output_size
from .video import Video


def first_frame_depth(raw, img, depth, checkpoint_folder, report, *, da3=None, device="cpu"):
    """Depth of the input frame as the job uses it: (depth (H, W) float32, valid mask (H, W) float32,
    K (3, 3) or None, source label).

    In order: the user's `depth=` array; Depth Anything 3 aligned to MoGe as upstream (pipeline.md §2) when the
    converted folder has their weights (DA3 alone when only DA3 is there); else the heuristic prior, named in the
    log so nobody mistakes it for a model. `raw` is the decoded input at its own size (what upstream gives the
    depth networks), `img` the input at the output size."""
    from .api import _check_depth
    from . import checkpoint

    h, w = img.shape[:2]
    d = _check_depth(depth, h, w)
    if d is not None:
        # Upstream's valid mask (depth < 999.9: DA3 marks sky with 1e4), applied to the user's depth too.
        mask = (np.isfinite(d) & (d > 0) & (d < 999.9)).astype(np.float32)
        if not mask.any():
            raise ValueError("depth: no value is finite, positive and below 999.9; lyra2 (like upstream) treats "
                             "depth >= 999.9 as sky/invalid, so pass depth in metres")
        return d, mask, None, "user"
    have = checkpoint.components(checkpoint_folder)
    if da3 is not None or "da3" in have:
        from .depth import estimate_depth

        use_moge = "moge" in have
        est = estimate_depth(raw, checkpoint_folder, size=(h, w), use_moge_scale=use_moge, da3=da3, device=device)
        source = "model:da3+moge" if use_moge else "model:da3"
        report.log(f"depth: Depth Anything 3{' aligned to MoGe' if use_moge else ' (no MoGe weights: no scale alignment)'}")
        return (np.asarray(est["depth"], np.float32), np.asarray(est["mask"], np.float32),
                np.asarray(est["intrinsics"], np.float32), source)
    from .preview import HEURISTIC_DEPTH_NAME, heuristic_depth

    d, mask = heuristic_depth(img)
    report.log(f"depth: {HEURISTIC_DEPTH_NAME} prior (not a depth model; pass depth= or provide "
               "converted DA3/MoGe weights for real depth)", level="WARNING")
    return d, np.asarray(mask, np.float32), None, HEURISTIC_DEPTH_NAME


def run_preview(image, args, *, report, depth=None, checkpoint_folder=None):
    from .geometry import direction_cameras
    from .media import read_image
    from .preview import render_frames

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
