"""First-frame depth as Lyra-2's zoom script computes it (upstream Z:210-212, Z:556-563, DU:149-217, DU:33-89): Depth
Anything 3 depth and
intrinsics, rescaled so that its inverse depth matches MoGe v1's in the least-squares sense, and the subject
depth that scales every trajectory.

``estimate_depth(image, weights_dir)`` runs both networks from a converted checkpoint folder
(``da3.safetensors``, ``moge.safetensors``); ``align_to_moge`` is the alignment alone, for depths computed
elsewhere. ``heuristic_depth`` is the ground-plane prior used without a depth model, and ``first_frame_depth``
picks the job's depth (the caller's array, the models, or the prior) for both the generate and the preview
drivers."""
from __future__ import annotations

import numpy as np

from . import _core
from ._core import Lyra2Error

__all__ = ["estimate_depth", "align_to_moge", "moge_input", "heuristic_depth", "HEURISTIC_DEPTH_NAME"]

#: Name of the heuristic depth prior, for logs and timings (so nobody mistakes it for a depth model).
HEURISTIC_DEPTH_NAME = "heuristic:ground-plane-popup-v1"


def align_to_moge(da3_depth, da3_mask, moge_depth, moge_mask):
    """Lyra's DA3 -> MoGe scale alignment (upstream Z:634-652, DU:33-89, MOGE:302-395, Z:624-626).

    da3_depth, da3_mask: (H, W) DA3 depth and its float mask (``depth < 999.9``) as ``first_frame_depth`` gives
    them. moge_depth, moge_mask: MoGe's depth (raw ``infer()`` depth or Lyra's post-processed one: the
    post-processing NaN -> 1e4, clamp to [0, 1e4], 1000 where masked is applied here and is idempotent) and
    its mask. valid = (da3_mask > 0.5) & moge_mask; with more than 10 valid pixels, a = 1/(d_DA3 + 1e-6),
    b = 1/(d_MoGe + 1e-6), s = Σab / Σa², and the depth becomes d_DA3 / s when Σa² > 1e-8 and s > 1e-6.

    Returns (depth float32 (H, W), info) with info = {"n_valid", "numerator", "denominator", "scale",
    "applied"}; when not applied the depth is returned unchanged and scale is 1."""
    d = np.ascontiguousarray(da3_depth, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"da3_depth must be (H, W), got shape {d.shape}")
    m = np.asarray(moge_mask)
    if m.shape != d.shape:
        raise ValueError(f"moge_mask must have the depth's shape {d.shape}, got {m.shape}")
    md = np.ascontiguousarray(moge_depth, dtype=np.float32)
    if md.shape != d.shape:
        raise ValueError(f"moge_depth must have the depth's shape {d.shape}, got {md.shape}")
    md = _core.moge_lyra_depth(md, m)
    return _core.moge_align(d, np.ascontiguousarray(da3_mask, dtype=np.float32), md, m)


def moge_input(rgb_u8, size=None) -> np.ndarray:
    """MoGe's input as Lyra's depth_utils builds it: cv2.resize(INTER_LINEAR) of the uint8 RGB image to
    size = (H, W) (default: unchanged), / 255.0 in float64, then float32 (3, H, W)."""
    img = np.ascontiguousarray(rgb_u8, dtype=np.uint8)
    if size is not None and tuple(size) != img.shape[:2]:
        img = _core.image_resize(img, int(size[0]), int(size[1]))
    return np.ascontiguousarray((img / 255.0).astype(np.float32).transpose(2, 0, 1))


def _rgb_u8(image) -> np.ndarray:
    from .media import read_image
    img = read_image(image) if not isinstance(image, np.ndarray) else image
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
        raise ValueError(f"image must be uint8 RGB (H, W, 3) (or a path/URL/bytes read_image accepts), "
                         f"got {img.dtype} {img.shape}")
    return img


def _depth_anything_3():
    try:
        from .models.depth import DepthAnything3
    except (ImportError, AttributeError) as e:
        raise Lyra2Error("estimate_depth: Depth Anything 3 (lyra2.models.depth.DepthAnything3) is not available "
                         f"in this build ({e})") from None
    if not hasattr(DepthAnything3, "first_frame_depth"):
        raise Lyra2Error("estimate_depth: this build's DepthAnything3 has no first_frame_depth")
    return DepthAnything3


def estimate_depth(image, weights_dir=None, *, size=None, use_moge_scale=True, device="cpu", da3=None, moge=None,
                   da3_options=None, moge_options=None) -> dict:
    """Depth of one image as Lyra's zoom script computes it for frame 0 (upstream Z:210-212, Z:556-563, DU:149-217,
    DU:33-89).

    image: uint8 RGB (H0, W0, 3), or anything ``lyra2.read_image`` accepts. size: the working (H, W) (e.g.
    (480, 832)); default the image's size. Both networks see the image resized to it with cv2 INTER_LINEAR.
    weights_dir: converted checkpoint folder with ``da3.safetensors`` and ``moge.safetensors`` (default
    $LYRA2_CHECKPOINT_DIR). da3, moge: already loaded ``DepthAnything3`` / ``MoGe`` to use instead of loading
    from the folder. da3_options, moge_options: keyword arguments for their constructors (for checkpoints
    whose head counts differ from the released models'). use_moge_scale=False skips MoGe (upstream's
    ``--no-use_moge_scale``): the DA3 depth keeps its own scale.

    Returns {"depth" float32 (H, W): the aligned DA3 depth (Lyra's first-frame depth), "mask" float32 (H, W):
    DA3's valid mask (depth < 999.9, not recomputed after scaling, as upstream), "intrinsics" float32 (3, 3):
    DA3's K in pixels at H x W, "subject_depth": the 25th percentile of depth over the mask (the trajectory
    scale), "scale": the alignment's s (1 when not applied), "align": the alignment info, "moge_depth",
    "moge_mask": MoGe's post-processed depth and mask (None without MoGe)}."""
    from . import checkpoint
    from .geometry import subject_depth

    rgb = _rgb_u8(image)
    H, W = (rgb.shape[0], rgb.shape[1]) if size is None else (int(size[0]), int(size[1]))
    if H < 1 or W < 1:
        raise ValueError(f"size must be a positive (H, W), got {size!r}")
    need = ([] if da3 is not None else ["da3"]) + ([] if moge is not None or not use_moge_scale else ["moge"])
    files = {}
    if need:
        folder = checkpoint.resolve_dir(weights_dir)
        if folder is None:
            raise Lyra2Error("estimate_depth: no converted checkpoint folder (pass weights_dir= or set "
                             "LYRA2_CHECKPOINT_DIR to the output of `lyra2 convert`)")
        files = checkpoint.components(folder)
        missing = [checkpoint.FILES[c] for c in need if c not in files]
        if missing:
            raise Lyra2Error(f"estimate_depth: {folder!r} lacks {', '.join(missing)} (convert the DA3 and MoGe "
                             "checkpoints with `lyra2 convert`)")
    if da3 is None:
        da3 = _depth_anything_3()(files["da3"], device=device, **(da3_options or {}))
    depth, mask, K = da3.first_frame_depth(rgb, (H, W))
    out = {"depth": depth, "mask": mask, "intrinsics": K, "scale": 1.0, "align": None, "moge_depth": None,
           "moge_mask": None}
    if use_moge_scale:
        if moge is None:
            from .models.moge import MoGe
            moge = MoGe(files["moge"], device=device, **(moge_options or {}))
        m = moge(moge_input(rgb, (H, W)))
        out["moge_mask"] = m["mask"]
        out["moge_depth"] = _core.moge_lyra_depth(m["depth"], m["mask"])
        out["depth"], out["align"] = align_to_moge(depth, mask, out["moge_depth"], m["mask"])
        out["scale"] = out["align"]["scale"]
    out["subject_depth"] = float(subject_depth(out["depth"], out["mask"]))
    return out


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
    return _core.heuristic_depth(check_rgb_u8(image_u8))


def check_rgb_u8(image_u8):
    """image_u8 as a uint8 (H, W, 3) array; TypeError/ValueError naming it otherwise."""
    arr = np.asarray(image_u8)
    if arr.dtype != np.uint8:
        raise TypeError(f"image_u8: expected a uint8 array (H, W, 3), got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image_u8: expected shape (H, W, 3), got {arr.shape}")
    return arr


def check_user_depth(depth, height, width):
    """The caller's `depth=` array as float32 (H, W) at the output size, or None when not given."""
    if depth is None:
        return None
    d = np.asarray(depth)
    if d.dtype.kind not in "fiu" or d.ndim != 2:
        raise ValueError(f"depth: expected a float array (H, W); got {d.dtype} {d.shape}")
    if d.shape != (height, width):
        raise ValueError(f"depth: expected shape {(height, width)} (the output resolution); got {d.shape}")
    d = d.astype(np.float32)
    if not np.isfinite(d).any() or not (d[np.isfinite(d)] > 0).any():
        raise ValueError("depth: needs at least one finite, positive value")
    return d


def first_frame_depth(raw, img, depth, checkpoint_folder, report, *, da3=None, device="cpu"):
    """Depth of the input frame as the job uses it: (depth (H, W) float32, valid mask (H, W) float32,
    K (3, 3) or None, source label).

    In order: the user's `depth=` array; Depth Anything 3 aligned to MoGe as upstream (upstream Z:210-212, Z:556-563,
    DU:149-217) when the converted folder has their weights (DA3 alone when only DA3 is there); else the heuristic
    prior, named in the log so nobody mistakes it for a model. `raw` is the decoded input at its own size (what upstream
    gives the depth networks), `img` the input at the output size."""
    from . import checkpoint

    h, w = img.shape[:2]
    d = check_user_depth(depth, h, w)
    if d is not None:
        # Upstream's valid mask (depth < 999.9: DA3 marks sky with 1e4), applied to the user's depth too.
        mask = (np.isfinite(d) & (d > 0) & (d < 999.9)).astype(np.float32)
        if not mask.any():
            raise ValueError("depth: no value is finite, positive and below 999.9; lyra2 (like upstream) treats "
                             "depth >= 999.9 as sky/invalid, so pass depth in metres")
        return d, mask, None, "user"
    have = checkpoint.components(checkpoint_folder)
    if da3 is not None or "da3" in have:
        use_moge = "moge" in have
        est = estimate_depth(raw, checkpoint_folder, size=(h, w), use_moge_scale=use_moge, da3=da3, device=device)
        source = "model:da3+moge" if use_moge else "model:da3"
        report.log(f"depth: Depth Anything 3{' aligned to MoGe' if use_moge else ' (no MoGe weights: no scale alignment)'}")
        return (np.asarray(est["depth"], np.float32), np.asarray(est["mask"], np.float32),
                np.asarray(est["intrinsics"], np.float32), source)
    d, mask = heuristic_depth(img)
    report.log(f"depth: {HEURISTIC_DEPTH_NAME} prior (not a depth model; pass depth= or provide "
               "converted DA3/MoGe weights for real depth)", level="WARNING")
    return d, np.asarray(mask, np.float32), None, HEURISTIC_DEPTH_NAME
