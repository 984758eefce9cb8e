"""Camera trajectories of the Lyra-2 zoom script, built in C (``csrc/geom``) exactly as upstream builds them.

Conventions (upstream FW:188-215, Z:377, CU:21-27): ``w2c`` are world-to-camera matrices, float32 (N, 4, 4), OpenCV
camera axes (+x right, +y down, +z forward), translation in column 3; the world is the camera of frame 0,
so ``w2c[0]`` is the identity (up to float32 rounding for ``orbit_*``). ``K`` are per-frame intrinsics,
float32 (N, 3, 3), in pixels of the depth map's size.

Every preset scales with the *subject depth* c: the 25th percentile (linear interpolation, as
``torch.quantile``) of the depth over its valid pixels (upstream Z:378). Upstream's caller sanitises the depth
first (NaN -> 1e4, clamp to [0, 1e4]) and passes ``mask = depth < 999.9``; do the same when your depth has
sky or invalid pixels. A NaN inside the mask is rejected (torch would return NaN).

Roles: ``role="in"`` is the zoom script's zoom-in (direction "right", no tilt); ``role="out"`` is its
zoom-out (direction "left" plus the upward tilt ``zoom_out_upward_ratio = 0.15``, upstream Z:206-209, Z:760, Z:371: a
camera that moves backward also rises by 0.15 x the backward distance).

Upstream quirks kept on purpose (upstream CT:224-234, CU:291-330, CT:248-258;
docs/REFERENCES.md#upstream-quirks-kept-on-purpose), so the cameras match the released model's:

* ``horizontal_zoom`` / ``horizontal_zoom_bend`` step by i/N, not i/(N-1): the last frame travels
  (N-1)/N of ``strength * c``. Their look-at target is (0, 0, c (strength + 1)).
* ``horizontal_zoom_bend`` drifts along y by 4 % (zoom-in) or 12 % (zoom-out) of the travel, on a straight
  diagonal line (not an arc); the look-at pitches the camera toward the target.
* ``spiral`` has no z motion: two circles (radii 0.15 s c, 0.10 s c) in the image plane, looking at (0,0,c).
* ``dolly_zoom`` ignores strength and direction; it moves the camera 3 units forward (not depth-scaled)
  toward (0, 0, 0.185 c) with fx, fy scaled by c'/(c' + z). Once the camera passes that point the look-at
  flips it 180 degrees (R = diag(-1, 1, -1)); if a frame lands on it exactly, upstream's matrix is NaN:
  here that raises ValueError (as does any non-finite camera, e.g. from an extreme strength or depth).
* ``orbit_horizontal`` takes ``strength`` in radians; zoom-in orbits toward +x, zoom-out toward -x; both
  move forward, never backward, so the zoom-out tilt does nothing.
* ``back`` ignores strength and returns 2N-1 matrices: N identities, then N-1 back-spiral poses whose
  translation is the camera position itself (not -R pos). The autoregressive loop reads only the first N,
  so the video's camera never moves.

Other upstream presets (not offered by fal) are available too: original, spiral_center, horizontal,
horizontal_lift, horizontal_zoom_still, horizontal_still, horizontal_simple, vertical_simple,
horizontal_outward, back_simple (2N-1 matrices), horizontal_spiral, orbit_vertical, rotate_zoom_in,
rotate_zoom_out (whose translation uses -R^T pos, an upstream quirk), rotate_spot (strength in degrees) and
rotate_spot_noise (deterministic). The ``*_noise`` presets draw from PyTorch's global RNG and
``spiral_outwards`` crashes upstream, so asking for them raises ValueError saying so.
"""
from __future__ import annotations

import numbers
import os

import numpy as np

from . import _core

FAL_PRESETS = ("horizontal_zoom", "horizontal_zoom_bend", "spiral", "dolly_zoom", "orbit_horizontal", "back")
ZOOM_OUT_UPWARD_RATIO = 0.15
CUSTOM_POSE_SCALE = 1.1  # lyra2_custom_traj_inference --pose_scale default
_ROLE_DIRECTION = {"in": "right", "out": "left"}
_ZOOM_DIRECTIONS = ("in", "out", "both")


def _depth_array(depth, what="depth"):
    arr = np.asarray(depth)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{what}: expected a real-valued array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{what}: expected a non-empty (H, W) array, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _mask_array(mask, shape):
    if mask is None:
        return None
    arr = np.asarray(mask)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"mask: expected a boolean or numeric array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"mask: expected shape {shape} (the depth's), got {arr.shape}")
    # Upstream selects mask > 0.5 on a float 0/1 mask; booleans map to 0/1.
    return np.ascontiguousarray(arr, dtype=np.float32)


def _int_arg(value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what}: expected an int, got {type(value).__name__}")
    return int(value)


def _real_arg(value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what}: expected a real number, got {type(value).__name__}")
    return float(value)


def _str_arg(value, what):
    if not isinstance(value, str):
        raise TypeError(f"{what}: expected a str, got {type(value).__name__}")
    return value


def default_intrinsics(height, width):
    """Upstream's fallback K when the depth model returns none (Z:117-120): fx = fy = 1.5 max(H, W),
    cx = W / 2, cy = H / 2. float32 (3, 3)."""
    height, width = _int_arg(height, "height"), _int_arg(width, "width")
    if height < 1 or width < 1:
        raise ValueError(f"height, width: got {height} x {width}; must be positive")
    f = max(height, width) * 1.5
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=np.float32)


def _intrinsics_array(intrinsics, shape):
    if intrinsics is None:
        return default_intrinsics(*shape)
    arr = np.asarray(intrinsics)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"intrinsics: expected a real (3, 3) array, got dtype {arr.dtype}")
    if arr.shape != (3, 3):
        raise ValueError(f"intrinsics: expected shape (3, 3) (K of frame 0), got {arr.shape}")
    K = np.ascontiguousarray(arr, dtype=np.float32)
    _check_intrinsics(K[None], "intrinsics")
    return K


def _check_intrinsics(K, what):
    """K (N, 3, 3) must be finite and invertible with positive focal lengths: a zero or negative fx, fy
    projects every point to the principal point or mirrors the image, and the warp divides by them."""
    finite = np.isfinite(K).all(axis=(1, 2))
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValueError(f"{what}: K[{i}] is not finite (NaN or inf entries)")
    fx, fy = K[:, 0, 0], K[:, 1, 1]
    det = np.linalg.det(K.astype(np.float64))
    bad = ~((fx > 0) & (fy > 0) & (det != 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{what}: K[{i}] must be invertible with fx, fy > 0; got fx = {float(fx[i]):g}, "
                         f"fy = {float(fy[i]):g}, det = {float(det[i]):g}")


def _check_cameras(preset, w2c, K, strength, c):
    """Raises when a built camera is not finite: the presets multiply strength by the subject depth c and
    normalise look-at vectors of length ~c, so extreme values overflow (strength 1e300) or underflow
    (c = 1e-30) to inf / NaN in float32, which no later stage could use."""
    finite = np.isfinite(w2c).all(axis=(1, 2)) & np.isfinite(K).all(axis=(1, 2))
    if finite.all():
        return
    i = int(np.argmin(finite))
    if preset == "dolly_zoom" and finite.sum() == len(finite) - 1:
        # Upstream quirk (upstream CT:224-234, CU:291-330, CT:248-258): a frame exactly at the look-at point (0, 0,
        # 0.185 c) has no direction.
        raise ValueError(f"trajectory 'dolly_zoom': camera {i} lands exactly on the look-at point (0, 0, 0.185 c) "
                         f"for this depth (subject depth c = {c:g}), where upstream's camera is NaN; perturb the "
                         "depth slightly or use another preset")
    raise ValueError(f"trajectory {preset!r}: camera {i} is not finite for strength = {strength:g} and subject depth "
                     f"c = {c:g} (from depth); strength x c must stay well inside float32 range and depth must "
                     "not be vanishingly small")


def subject_depth(depth, mask=None):
    """The trajectory scale: ``torch.quantile(depth[mask > 0.5], 0.25)`` (upstream Z:378), in float32.

    depth: (H, W) real array. mask: (H, W) valid-depth mask (bool or 0/1), default all pixels valid;
    upstream uses ``depth < 999.9`` on the sanitised depth. Raises ValueError when the mask selects nothing
    or a selected pixel is NaN."""
    d = _depth_array(depth)
    return _core.traj_subject_depth(d, _mask_array(mask, d.shape))


def trajectory(preset, num_frames, strength, depth, *, role="in", intrinsics=None, mask=None, direction=None):
    """Cameras of one zoom direction, as the Lyra-2 zoom script builds them (upstream FW:188-215, Z:377, CU:21-27).

    preset: one of FAL_PRESETS or another reproducible upstream preset (see the module docstring).
    num_frames: N = 1 + 80k (81, 161, 241, ...): the anchor frame plus 80 frames per autoregressive chunk.
    strength: finite, >= 0; displacement relative to the subject depth (radians for ``orbit_*``, degrees
    for ``rotate_spot*``; ignored by ``dolly_zoom`` and ``back``).
    depth: (H, W) depth of frame 0; mask: its valid pixels (see ``subject_depth``).
    role: "in" (direction "right", no tilt) or "out" (direction "left", upward tilt 0.15).
    intrinsics: K (3, 3) of frame 0; default ``default_intrinsics(H, W)``.
    direction: overrides the role's direction ("right", "left", "up", "down"); only ``vertical_simple``
    and ``orbit_vertical`` distinguish "up" from the others.

    Returns (w2c float32 (M, 4, 4), K float32 (M, 3, 3)); M = N, except 2N-1 for ``back``/``back_simple``.
    """
    preset = _str_arg(preset, "preset")
    num_frames = _int_arg(num_frames, "num_frames")
    strength = _real_arg(strength, "strength")
    role = _str_arg(role, "role")
    if role not in _ROLE_DIRECTION:
        raise ValueError(f"role: got {role!r}; allowed: 'in', 'out'")
    direction = _ROLE_DIRECTION[role] if direction is None else _str_arg(direction, "direction")
    d = _depth_array(depth)
    K0 = _intrinsics_array(intrinsics, d.shape)
    c = _core.traj_subject_depth(d, _mask_array(mask, d.shape))
    ratio = ZOOM_OUT_UPWARD_RATIO if role == "out" else 0.0
    w2c, K = _core.traj_build(preset, num_frames, strength, c, K0, direction, ratio)
    _check_cameras(preset, w2c, K, strength, c)
    return w2c, K


def load_custom_trajectory(path_or_npz, height, width, *, num_frames=None, pose_scale=CUSTOM_POSE_SCALE):
    """Upstream's custom-trajectory format (lyra2_custom_traj_inference.load_trajectory, CTI:61-96).

    path_or_npz: path of a ``trajectory.npz``, or a mapping (e.g. an open ``np.load`` result) with
    ``w2c`` (N, 4, 4), ``intrinsics`` (N, 3, 3) and optionally ``image_height``, ``image_width`` (the size
    the intrinsics refer to). height, width: the target (video) size.
    num_frames: keep the first num_frames poses (default: all).
    pose_scale: multiplies every translation (upstream script default 1.1).

    As upstream: the poses are NOT rescaled by the depth; they are read in the units of the first frame's
    (aligned) depth, so only ``pose_scale`` changes their size. When both image sizes are present and differ
    from (height, width), fx and cx scale by width / image_width and fy and cy by height / image_height.
    Returns (w2c float32 (n, 4, 4), K float32 (n, 3, 3)).
    """
    height, width = _int_arg(height, "height"), _int_arg(width, "width")
    pose_scale = _real_arg(pose_scale, "pose_scale")
    if isinstance(path_or_npz, (str, bytes, os.PathLike)):
        try:
            data = np.load(path_or_npz, allow_pickle=False)
        except OSError:
            raise  # missing / unreadable file: keep FileNotFoundError etc. as they are
        except Exception as e:  # not a zip / bad member: a user file problem
            raise ValueError(f"trajectory: cannot read {os.fsdecode(path_or_npz)!r} as .npz: {e}") from e
        if not hasattr(data, "files"):
            raise ValueError(f"trajectory: {os.fsdecode(path_or_npz)!r} is a single array, not an .npz archive "
                             "with w2c and intrinsics")
    elif hasattr(path_or_npz, "keys") and hasattr(path_or_npz, "__getitem__"):
        data = path_or_npz
    else:
        raise TypeError(f"path_or_npz: expected a path or an npz mapping, got {type(path_or_npz).__name__}")
    keys = set(data.keys())
    for key in ("w2c", "intrinsics"):
        if key not in keys:
            raise ValueError(f"trajectory: missing key {key!r}; found {sorted(keys)}")
    w2c = np.asarray(data["w2c"])
    K = np.asarray(data["intrinsics"])
    for name, arr, shape in (("w2c", w2c, (4, 4)), ("intrinsics", K, (3, 3))):
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{name}: expected a real array, got dtype {arr.dtype}")
        if arr.ndim != 3 or arr.shape[1:] != shape:
            raise ValueError(f"{name}: expected shape (N, {shape[0]}, {shape[1]}), got {arr.shape}")
    if num_frames is not None:
        num_frames = _int_arg(num_frames, "num_frames")
        available = min(len(w2c), len(K))
        if not 1 <= num_frames <= available:
            raise ValueError(f"num_frames: got {num_frames}; the file holds {available} poses")
        w2c, K = w2c[:num_frames], K[:num_frames]
    src_h = src_w = 0  # no size in the file: intrinsics kept as they are (upstream)
    if "image_height" in keys and "image_width" in keys:
        src_h = _int_arg(np.asarray(data["image_height"]).item(), "image_height")
        src_w = _int_arg(np.asarray(data["image_width"]).item(), "image_width")
        if src_h < 1 or src_w < 1:
            raise ValueError(f"image_height, image_width: got {src_h} x {src_w}; must be positive")
    # Upstream casts to float32 before scaling (.astype(np.float32)).
    w2c, K = _core.traj_custom(np.ascontiguousarray(w2c, dtype=np.float32), np.ascontiguousarray(K, dtype=np.float32),
                               pose_scale, src_h, src_w, height, width)
    if not np.isfinite(w2c).all():
        raise ValueError(f"trajectory: w2c x pose_scale ({pose_scale:g}) is not finite in float32")
    _check_intrinsics(K, "intrinsics")
    return w2c, K


def direction_cameras(zoom_direction, num_frames, depth, K=None, *, zoom_in_trajectory="orbit_horizontal",
                      zoom_in_strength=0.5, zoom_out_trajectory="horizontal_zoom", zoom_out_strength=1.5,
                      mask=None):
    """Cameras of the fal endpoint's ``zoom_direction`` (upstream Z:767-777, AR:441-463, Z:779-794;
    docs/REFERENCES.md#the-fal-endpoint-and-the-upstream-script); defaults are fal's.

    Each direction is generated separately from the same depth and K (the zoom script's two
    ``_generate_one_direction`` calls): zoom-in with role "in", zoom-out with role "out". Its video has
    ``num_frames`` frames whose cameras are the first ``num_frames`` matrices of the preset (``back``
    builds 2N-1, of which the autoregressive loop reads only the first N).

    Returns a dict with
      * "in" and/or "out": (w2c (N, 4, 4), K (N, 3, 3)) of each generated direction;
      * "w2c", "K": the cameras of the delivered video, frame by frame;
      * "anchor": the index of the input-image frame in that video.
    "in": the zoom-in video (anchor 0). "out": the zoom-out video as generated, moving away from the input
    view (anchor 0). "both": reverse(out) then in, the shared anchor frame once: 2N-1 frames, anchor N-1
    (its camera is zoom-out's frame 0; zoom-in's frame 0 is the same identity up to float32 rounding).
    (The zoom script's combined video keeps the anchor twice, 2N frames, Z:779-794; fal documents "both"
    only as "combined out-then-in", docs/REFERENCES.md#the-fal-endpoint-and-the-upstream-script.)
    """
    zoom_direction = _str_arg(zoom_direction, "zoom_direction")
    if zoom_direction not in _ZOOM_DIRECTIONS:
        raise ValueError(f"zoom_direction: got {zoom_direction!r}; allowed: 'in', 'out', 'both'")
    num_frames = _int_arg(num_frames, "num_frames")
    out = {}
    if zoom_direction in ("in", "both"):
        w, k = trajectory(zoom_in_trajectory, num_frames, zoom_in_strength, depth, role="in", intrinsics=K,
                          mask=mask)
        out["in"] = (w[:num_frames], k[:num_frames])
    if zoom_direction in ("out", "both"):
        w, k = trajectory(zoom_out_trajectory, num_frames, zoom_out_strength, depth, role="out", intrinsics=K,
                          mask=mask)
        out["out"] = (w[:num_frames], k[:num_frames])
    if zoom_direction == "both":
        (w_in, k_in), (w_out, k_out) = out["in"], out["out"]
        out["w2c"] = np.concatenate([w_out[::-1], w_in[1:]])
        out["K"] = np.concatenate([k_out[::-1], k_in[1:]])
        out["anchor"] = num_frames - 1
    else:
        out["w2c"], out["K"] = (np.array(a) for a in out[zoom_direction])
        out["anchor"] = 0
    return out


__all__ = ["FAL_PRESETS", "ZOOM_OUT_UPWARD_RATIO", "CUSTOM_POSE_SCALE", "default_intrinsics", "subject_depth",
           "trajectory", "load_custom_trajectory", "direction_cameras"]
