"""3D Gaussian splats from a video with known cameras: ``lyra2.reconstruct(video_or_frames, ...) -> Gaussians``.

Lyra-2 lifts its zoom video to a 3DGS scene with Depth Anything 3's Gaussian head
(`Lyra-2/lyra_2/_src/inference/vipe_da3_gs_recon.py`: VIPE poses, then ``DepthAnything3.inference(...,
infer_gs=True, use_aligned_pred_cam=True, gs_down_ratio=2, gs_ds_feature_mode=True)`` and ``save_gaussian_ply``).
lyra2 knows every frame's camera, so the cameras go in directly (no VIPE). Per chunk of views:

1. DA3 nested forward with the cameras (lyra2.models.DepthAnything3, the any-view taps kept);
2. the GS head (GSDPT, C on the runtime ops, csrc/models/da3_gs_head.c) on the taps and the normalised pixels;
3. DA3's predicted cameras aligned to the input cameras by a Sim(3) (R, t, s) (upstream DA3net:257-366,
   ``_process_gs_head``):
   depth and the head's depth offset are divided by s, the predicted cameras mapped into the input frame;
4. the GaussianAdapter (C, csrc/models/da3_gs_adapter.c): means, scales, rotations, SH (rotated to the world),
   opacities in the input cameras' world frame.

Long videos: at most ``max_views`` frames are used (uniformly, as the recon script's ``--da3_max_frames 128``,
`vipe_da3_gs_recon.py:656`), in chunks of ``chunk_size`` views that share ``chunk_overlap`` views with the previous
chunk; the overlapping views' Gaussians are kept from the earlier chunk only (``_chunk_gs_keep_indices``,
`Lyra-2/lyra_2/_src/inference/vipe_da3_chunked_gs_recon.py:370`). Every chunk is
aligned to the same known cameras, so the chunks share one frame without the chunked script's point-based
chunk-to-chunk refinement and frustum-ownership pruning (not implemented: with exact cameras there is no drift
for them to correct).

Difference from upstream, by design: upstream fits the Sim(3) by Umeyama on the camera centres alone. When the
input centres are (nearly) collinear, as on every straight dolly/zoom path, the rotation about that line is not
determined by the centres and upstream's result there is set by float32 rounding noise (the tiny golden shows it:
its Umeyama rotation cannot be reproduced from the same inputs). lyra2 uses upstream's Umeyama fit when the
centres span a plane; on a line it keeps upstream's scale (which does not depend on that rotation) and the line's
direction, and takes the remaining turn about the line from the cameras' orientations (the rotation nearest the
polar factor of sum_i R_pred,i R_in,iᵀ); with coincident centres, the orientations alone and scale 1.
"""
from __future__ import annotations

import os

import numpy as np

from . import _core
from ._core import Lyra2Error

__all__ = ["reconstruct", "Gaussians", "load_gs_head"]

SCALE_MIN, SCALE_MAX = 1e-5, 30.0  # DA3-giant gs_adapter gaussian_scale_min / max (configs/da3-giant.yaml)


class Gaussians:
    """3D Gaussian splats in the world frame of the input cameras (OpenCV axes).

    Attributes (NumPy, float32):
      means       (N, 3)
      scales      (N, 3) standard deviations along the Gaussian's axes
      rotations   (N, 4) unit quaternions, (w, x, y, z) as 3DGS viewers and gsplat read them (upstream's stored
                  order: DA3's transform.mat_to_quat output, written unchanged to rot_0..3)
      harmonics   (N, 3, d_sh) real SH per colour channel (3DGS basis; DC colour = 0.5 + 0.28209479 * dc)
      opacities   (N,) in (0, 1)
      grid        (views, h, w): the pixel grid the Gaussians come from (one per pixel, view-major), or None
    """

    def __init__(self, means, scales, rotations, harmonics, opacities, grid=None):
        self.means = np.ascontiguousarray(means, np.float32)
        self.scales = np.ascontiguousarray(scales, np.float32)
        self.rotations = np.ascontiguousarray(rotations, np.float32)
        self.harmonics = np.ascontiguousarray(harmonics, np.float32)
        self.opacities = np.ascontiguousarray(opacities, np.float32)
        n = len(self.means)
        if (self.means.shape != (n, 3) or self.scales.shape != (n, 3) or self.rotations.shape != (n, 4)
                or self.harmonics.ndim != 3 or self.harmonics.shape[:2] != (n, 3) or self.opacities.shape != (n,)):
            raise ValueError("Gaussians: expected means (N, 3), scales (N, 3), rotations (N, 4), harmonics (N, 3, K) "
                             f"and opacities (N,); got {self.means.shape}, {self.scales.shape}, "
                             f"{self.rotations.shape}, {self.harmonics.shape}, {self.opacities.shape}")
        d_sh = self.harmonics.shape[2]
        if int(round(d_sh ** 0.5)) ** 2 != d_sh or d_sh > 9:
            raise ValueError(f"Gaussians: harmonics has {d_sh} coefficients per channel; expected 1, 4 or 9")
        if grid is not None:
            grid = tuple(int(g) for g in grid)
            if len(grid) != 3 or grid[0] * grid[1] * grid[2] != n:
                raise ValueError(f"Gaussians: grid {grid} does not hold {n} Gaussians")
        self.grid = grid

    def __len__(self):
        return int(self.means.shape[0])

    def __repr__(self):
        deg = int(round(self.harmonics.shape[2] ** 0.5)) - 1
        return f"lyra2.Gaussians({len(self)} splats, SH degree {deg}, grid={self.grid})"

    @property
    def sh_degree(self):
        return int(round(self.harmonics.shape[2] ** 0.5)) - 1

    def ply_rows(self, prune_border=True, opacity_percentile=None, sh_dc_only=True):
        """(names, table float32 (M, len(names))): the rows save_ply writes (DA3 utils/gsply_helpers.py:109
        save_gaussian_ply, border trim at :155, opacity k-th value at :186, export_ply at :39, as the recon script
        calls them)."""
        keep = self._ply_mask(prune_border, opacity_percentile)
        op = self.opacities[keep].astype(np.float32)
        names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        cols = [self.means[keep], np.zeros((int(keep.sum()), 3), np.float32), self.harmonics[keep][:, :, 0]]
        if not sh_dc_only and self.harmonics.shape[2] > 1:
            rest = self.harmonics[keep][:, :, 1:].reshape(int(keep.sum()), -1)
            names += [f"f_rest_{i}" for i in range(rest.shape[1])]
            cols.append(rest)
        names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
        with np.errstate(divide="ignore"):
            cols += [np.log(op / (np.float32(1) - op))[:, None], np.log(self.scales[keep]), self.rotations[keep]]
        return names, np.concatenate(cols, axis=1).astype(np.float32)

    def _ply_mask(self, prune_border, opacity_percentile):
        n = len(self)
        mask = np.ones(n, bool)
        if prune_border:
            if self.grid is None:
                raise ValueError("prune_border: these Gaussians have no pixel grid (grid=None); pass "
                                 "prune_border=False")
            v, h, w = self.grid
            th, tw = int(8 / 256 * h), int(8 / 256 * w)
            # upstream slices [t:-t], which keeps nothing when t = 0 (grids under 32 rows or columns): lyra2 keeps
            # the whole axis then instead of writing an empty file.
            m = np.zeros((v, h, w), bool)
            m[:, th:h - th, tw:w - tw] = True
            mask = m.reshape(-1)
        if opacity_percentile is not None:
            p = opacity_percentile
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
                raise ValueError(f"opacity_percentile: expected a number in [0, 1) or None; got {p!r}")
            if 0.0 < p and mask.any():
                flat = self.opacities[mask]
                k = max(1, min(len(flat), int(len(flat) * p)))
                thr = np.partition(flat, k - 1)[k - 1]  # torch.kthvalue: the k-th smallest
                mask &= self.opacities >= thr
        return mask

    def save_ply(self, path, prune_border=True, opacity_percentile=None, sh_dc_only=True):
        """Writes the standard 3DGS PLY (binary little-endian float32: x y z nx ny nz f_dc_0..2 [f_rest_*]
        opacity scale_0..2 rot_0..3, opacity as a logit and scales as logs), as upstream's save_gaussian_ply with
        the recon script's options: `prune_border` drops the outer 8/256 of every view's grid,
        `opacity_percentile` (e.g. 0.1) the least opaque fraction; `sh_dc_only=False` adds f_rest_* (SH degree
        >= 1). Atomic (temp + rename); returns the absolute path."""
        from .scene3d import write_vertex_ply

        names, table = self.ply_rows(prune_border, opacity_percentile, sh_dc_only)
        return write_vertex_ply(path, [(n, table[:, i]) for i, n in enumerate(names)])

    def render(self, w2c, K, size, background=(0.0, 0.0, 0.0), device="auto"):
        """Renders the splats from camera(s) w2c (4, 4) or (T, 4, 4) with pixel intrinsics K (3, 3) or (T, 3, 3)
        at size = (height, width): uint8 (H, W, 3), or (T, H, W, 3) for several cameras. Tile-binned, depth-sorted,
        front-to-back alpha compositing as 3DGS/gsplat (lyra2/render.py); device "auto" (the GPU when one is
        usable), "cpu" (the C reference) or "cuda"."""
        from .render import render_gaussians

        return render_gaussians(self, w2c, K, size, background=background, device=device)

    def render_video(self, path, w2c, K, size, fps=16, background=(0.0, 0.0, 0.0), device="auto"):
        """A flythrough MP4 along the cameras (T, 4, 4) / (T, 3, 3), as upstream's gs_trajectory.mp4."""
        from .media import write_video

        frames = self.render(np.asarray(w2c).reshape(-1, 4, 4), np.asarray(K).reshape(-1, 3, 3), size, background,
                             device)
        path = os.fspath(path)
        write_video(frames, path, fps=fps)
        return os.path.abspath(path)


# ---------------------------------------------------------------- weights

def load_gs_head(weights):
    """The GS head (GSDPT) from a safetensors path or a dict of arrays with the NestedDepthAnything3Net names
    ("da3.gs_head.*"; a "model." prefix is accepted)."""
    return _core.gs_load(weights)


class _Networks:
    """DA3 nested + its GS head on one device ("cpu" or "cuda"), loaded once per weights file and device."""
    _cache = {}

    def __init__(self, weights, device="cpu", precision=None, **da3_options):
        from .models.depth import DepthAnything3

        # first: a file without the GS head fails here, before DA3 loads
        self.gs = _core.gs_load(weights, device)
        self.gs_config = _core.gs_config(self.gs)
        self.da3 = DepthAnything3(weights, device=device, precision=precision, **da3_options)
        self.device = device

    @classmethod
    def get(cls, weights, device="cpu", precision=None):
        if isinstance(weights, (str, os.PathLike)):
            key = (os.path.abspath(os.fspath(weights)), device, precision)
            if key not in cls._cache:
                cls._cache.clear()  # one model at a time: DA3-giant is several GB
                cls._cache[key] = cls(key[0], device, precision)
            return cls._cache[key]
        return cls(weights, device, precision)


def _weights_from_folder(checkpoint_dir):
    from . import checkpoint

    folder = checkpoint.resolve_dir(checkpoint_dir)
    path = checkpoint.components(folder).get("da3") if folder else None
    if path is None:
        raise Lyra2Error("reconstruct needs Depth Anything 3 with its Gaussian head: "
                         + (f"{folder!r} has no {checkpoint.FILES['da3']}" if folder else
                            "no checkpoint folder was given (checkpoint_dir= or $LYRA2_CHECKPOINT_DIR)")
                         + ". Convert Lyra-2's checkpoints/recon/model.pt (or the released DA3 nested weights) "
                         "with `lyra2 convert SRC DST`.")
    return path


# ---------------------------------------------------------------- cameras

def _affine_inverse(A):
    R, T = A[..., :3, :3], A[..., :3, 3:]
    Rt = np.swapaxes(R, -1, -2)
    top = np.concatenate([Rt, -(Rt @ T)], axis=-1)
    bottom = np.broadcast_to(np.array([0, 0, 0, 1], A.dtype), A.shape[:-2] + (1, 4))
    return np.concatenate([top, bottom], axis=-2)


def _polar(M):
    u, _, vt = np.linalg.svd(M)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return u @ np.diag([1.0, 1.0, d]) @ vt


def align_cameras(pred_w2c, input_w2c):
    """Sim(3) (r (3, 3), t (3,), s) with s·r·C_in + t ≈ C_pred between the camera centres of DA3's predicted cameras
    (V, 3|4, 4) and the input cameras (V, 4, 4); see the module docstring for the degenerate (collinear) case."""
    from .models.depth import align_poses_umeyama

    pred = _affine_inverse(_to44(np.asarray(pred_w2c, np.float64)))
    inp = _affine_inverse(_to44(np.asarray(input_w2c, np.float64)))
    ci, cp = inp[:, :3, 3], pred[:, :3, 3]
    sv = np.linalg.svd(ci - ci.mean(0), compute_uv=False) if len(ci) > 1 else np.zeros(3)
    if len(ci) >= 3 and sv[1] > 1e-6 * max(sv[0], 1e-30):
        r, t, s = align_poses_umeyama(np.asarray(pred_w2c, np.float32), np.asarray(input_w2c, np.float32))
        return np.asarray(r, np.float64), np.asarray(t, np.float64), float(s)
    r = _polar(np.einsum("vij,vkj->ik", pred[:, :3, :3], inp[:, :3, :3]))
    di, dp = ci - ci.mean(0), cp - cp.mean(0)
    denom = float((di ** 2).sum())
    s = 1.0  # coincident centres do not fix a scale: keep DA3's own
    if denom > 1e-20:
        # centres on a line u: upstream's Umeyama has rank 1 and its scale |sum_i a_i dp_i| / sum_i a_i^2 (a_i the
        # input positions along u) does not depend on the undetermined rotation; the rotation must take u to the
        # direction of sum_i a_i dp_i, and of those rotations the one nearest the orientation fit is used.
        u = np.linalg.svd(di)[2][0]
        a = di @ u
        m = a @ dp
        if np.linalg.norm(m) > 1e-12 * np.sqrt(denom):
            s = float(np.linalg.norm(m) / (a @ a))
            r = _rotate_onto(r @ u, m / np.linalg.norm(m)) @ r
    t = cp.mean(0) - s * r @ ci.mean(0)
    return r, t, s


def _rotate_onto(a, b):
    """The smallest rotation taking unit vector a to unit vector b (Rodrigues)."""
    v, c = np.cross(a, b), float(a @ b)
    if c < -1 + 1e-12:  # opposite: half a turn about any axis orthogonal to a
        axis = np.linalg.svd(a[None])[2][-1]
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def _to44(e):
    if e.shape[-2] == 3:
        out = np.zeros(e.shape[:-2] + (4, 4), e.dtype)
        out[..., :3, :] = e
        out[..., 3, 3] = 1
        return out
    return e


def _aligned_c2w(pred_w2c34, r, t, s):
    """da3.py _process_gs_head use_aligned_pred_cam: c2w = [rᵀ R_pred | rᵀ (C_pred − t) / s], float32."""
    pred_c2w = _affine_inverse(_to44(np.asarray(pred_w2c34, np.float32)))
    rinv = r.T.astype(np.float32)
    out = np.zeros_like(pred_c2w)
    out[:, :3, :3] = rinv @ pred_c2w[:, :3, :3]
    out[:, :3, 3] = (rinv @ (pred_c2w[:, :3, 3:] - t.astype(np.float32)[:, None]))[..., 0] / np.float32(s)
    out[:, 3, 3] = 1
    return out


# ---------------------------------------------------------------- the reconstruction

def _views_of_chunk(n, chunk_size, overlap):
    """[(indices into the selected views, first kept local index)]: chunks of chunk_size views, each sharing at
    least `overlap` views with the previous one (the last chunk ends at the last view), Gaussians kept once."""
    if chunk_size is None or n <= chunk_size:
        return [(list(range(n)), 0)]
    stride = chunk_size - overlap
    starts = list(range(0, n - chunk_size + 1, stride))
    if starts[-1] + chunk_size < n:
        starts.append(n - chunk_size)
    out, prev_end = [], -1
    for st in starts:
        out.append((list(range(st, st + chunk_size)), prev_end + 1 - st if st else 0))
        prev_end = st + chunk_size - 1
    return out


def reconstruct_chunk(nets, frames, w2c, K, *, down_ratio=2, scale_multiplier=1.0, process_res=None):
    """One DA3 + GS call on views uint8 (V, H, W, 3) with w2c (V, 4, 4), K (V, 3, 3) at H x W -> dict of per-view
    arrays (raw head output, Gaussians and the alignment), the steps of the module docstring."""
    da3 = nets.da3
    _, Kp = da3.preprocess(frames, K, process_res)
    pred = da3(frames, w2c, K, process_res=process_res, align_to_input=False, trace=True)
    tr = pred["trace"]
    pixels = pred["pixels"]
    V, _, h, w = pixels.shape
    raw = _core.gs_head(nets.gs, [tr[f"av_tap{k}_feat"] for k in range(4)], pixels, int(down_ratio))
    hg, wg = raw.shape[2], raw.shape[3]
    # DA3's own cameras before the nested metric scaling (the GS branch runs inside the any-view model)
    ctx = pred["extrinsics"].copy()
    ctx[:, :, 3] = ctx[:, :, 3] / np.float32(pred["scale_factor"])
    r, t, s = align_cameras(ctx, w2c)
    s = max(s, 1e-6)
    c2w = _aligned_c2w(ctx, r, t, s)
    depth = (tr["av_head_depth"] / np.float32(s))[:, :: h // hg, :: w // wg]
    Kg = Kp.copy()
    Kg[:, 0] *= np.float32(wg / w)
    Kg[:, 1] *= np.float32(hg / h)
    deg = int(nets.gs_config["sh_degree"])
    smax = SCALE_MAX * float(scale_multiplier) if scale_multiplier != 1.0 else SCALE_MAX
    means, scales, rots, harm, op = _core.gs_adapt(raw, np.ascontiguousarray(depth), np.ascontiguousarray(c2w),
                                                   np.ascontiguousarray(Kg), deg, SCALE_MIN, smax,
                                                   float(np.float32(1.0) / np.float32(s)))
    return {"raw": raw, "means": means, "scales": scales, "rotations": rots, "harmonics": harm, "opacities": op,
            "grid": (V, hg, wg), "sim3": (r, t, s), "c2w": c2w, "K_gs": Kg, "pred": pred}


def _check_inputs(video_or_frames, w2c, intrinsics):
    from .video import Video

    if isinstance(video_or_frames, Video):
        v = video_or_frames
        frames = v.frames
        w2c = v.w2c if w2c is None else w2c
        intrinsics = v.intrinsics if intrinsics is None else intrinsics
    else:
        frames = video_or_frames
        if w2c is None or intrinsics is None:
            raise ValueError("w2c, intrinsics: required with a frame array (they come from the Video when one is "
                             "given)")
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3 or len(frames) < 1:
        raise ValueError(f"frames: expected uint8 (T, H, W, 3); got {frames.dtype} {frames.shape}")
    T = len(frames)
    w2c = np.asarray(w2c, np.float32)
    K = np.asarray(intrinsics, np.float32)
    if w2c.shape != (T, 4, 4):
        raise ValueError(f"w2c: expected ({T}, 4, 4) world-to-camera matrices; got {w2c.shape}")
    if K.shape != (T, 3, 3):
        raise ValueError(f"intrinsics: expected ({T}, 3, 3) pixel intrinsics; got {K.shape}")
    if not (np.isfinite(w2c).all() and np.isfinite(K).all()):
        raise ValueError("w2c, intrinsics: must be finite")
    return frames, w2c, K


def _int_option(v, what, lo, allow_none=False):
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{what}: expected an int >= {lo}{' or None' if allow_none else ''}; got {v!r}")
    return int(v)


def reconstruct(video_or_frames, w2c=None, intrinsics=None, checkpoint_dir=None, *, weights=None, max_views=128,
                chunk_size=32, chunk_overlap=4, down_ratio=2, scale_multiplier=1.0, process_res=None, progress=None,
                device="auto", precision=None):
    """3D Gaussian splats of a video with known cameras (see the module docstring) -> Gaussians.

    video_or_frames  a lyra2.Video (cameras taken from it) or uint8 frames (T, H, W, 3) with w2c (T, 4, 4) and
                     intrinsics (T, 3, 3) at H x W
    checkpoint_dir   converted folder whose da3.safetensors carries the GS head (default $LYRA2_CHECKPOINT_DIR);
                     or weights= a safetensors path / dict of arrays
    max_views        frames used, uniformly spaced (upstream --da3_max_frames 128)
    chunk_size, chunk_overlap   views per DA3 call and views shared with the previous call (None: one call)
    down_ratio       the GS grid is the processed image / down_ratio (upstream --gs_down_ratio 2); 1, 2, 7 or 14
    scale_multiplier upstream --gs_scale_extra_multiplier
    process_res      DA3's processing size (default: the frames' longest side, as the recon script)
    progress         callable(done_views, total_views) or None
    device           "auto" (the GPU when lyra2.backends() has one), "cpu" or "cuda": where DA3 and the GS head
                     run (weights uploaded once, activations in device memory, as lyra2.models.DepthAnything3 with
                     device="cuda"); the adapter (per-pixel arithmetic on the head's maps) and the camera alignment
                     run on the host
    precision        DA3's backbones on "cuda": None / "bf16" (upstream's torch.autocast(bfloat16) of the recon
                     script's DA3 inference, lyra2.models.DepthAnything3) or "f32" (parity with the CPU); the GS
                     head computes in f32 on either device, as upstream runs it with autocast disabled
                     (upstream DA3net:155)"""
    from .render import resolve_device

    frames, w2c, K = _check_inputs(video_or_frames, w2c, intrinsics)
    device = resolve_device(device)
    max_views = _int_option(max_views, "max_views", 1)
    chunk_size = _int_option(chunk_size, "chunk_size", 2, allow_none=True)
    chunk_overlap = _int_option(chunk_overlap, "chunk_overlap", 0)
    if chunk_size is not None and chunk_overlap >= chunk_size:
        raise ValueError(f"chunk_overlap: {chunk_overlap} must be smaller than chunk_size {chunk_size}")
    down_ratio = _int_option(down_ratio, "down_ratio", 1)
    if 14 % down_ratio:
        raise ValueError(f"down_ratio: {down_ratio} is not allowed; expected 1, 2, 7 or 14 (a divisor of the "
                         "patch size, so that the GS grid is whole)")
    if isinstance(scale_multiplier, bool) or not isinstance(scale_multiplier, (int, float)) or not scale_multiplier > 0:
        raise ValueError(f"scale_multiplier: expected a number > 0; got {scale_multiplier!r}")
    process_res = _int_option(process_res, "process_res", 14, allow_none=True)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress: expected a callable(done, total) or None; got {progress!r}")
    if weights is None:
        weights = _weights_from_folder(checkpoint_dir)
    from .models.umt5 import check_precision

    precision = check_precision(device, precision)
    nets = _Networks.get(weights, device, precision)
    T = len(frames)
    sel = list(range(T)) if T <= max_views else \
        np.floor(np.linspace(0, T - 1, num=max_views)).astype(np.int64).tolist()
    parts, grid = [], None
    chunks = _views_of_chunk(len(sel), chunk_size, chunk_overlap)
    done = 0
    for idx, keep_from in chunks:
        views = [sel[i] for i in idx]
        out = reconstruct_chunk(nets, frames[views], w2c[views], K[views], down_ratio=down_ratio,
                                scale_multiplier=scale_multiplier, process_res=process_res)
        V, hg, wg = out["grid"]
        n = hg * wg
        keep = slice(keep_from * n, V * n)
        parts.append({k: out[k][keep] for k in ("means", "scales", "rotations", "harmonics", "opacities")})
        grid = (hg, wg)
        done += V - keep_from
        if progress is not None:
            progress(done, len(sel))
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return Gaussians(cat["means"], cat["scales"], cat["rotations"], cat["harmonics"], cat["opacities"],
                     grid=(len(cat["opacities"]) // (grid[0] * grid[1]), grid[0], grid[1]))
