"""First-frame depth as Lyra-2's zoom script computes it (spec pipeline.md §2.1-2.3): Depth Anything 3 depth and
intrinsics, rescaled so that its inverse depth matches MoGe v1's in the least-squares sense, and the subject
depth that scales every trajectory.

``estimate_depth(image, weights_dir)`` runs both networks from a converted checkpoint folder
(``da3.safetensors``, ``moge.safetensors``); ``align_to_moge`` is the alignment alone, for depths computed
elsewhere."""
from __future__ import annotations

import numpy as np

from . import _core
from ._core import Lyra2Error

__all__ = ["estimate_depth", "align_to_moge", "moge_input"]


def align_to_moge(da3_depth, da3_mask, moge_depth, moge_mask):
    """Lyra's DA3 -> MoGe scale alignment (Z:634-652, pipeline.md §2.2).

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
    """Depth of one image as Lyra's zoom script computes it for frame 0 (pipeline.md §2.1-2.3).

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
