"""Depth Anything 3 nested (DA3NESTED-GIANT-LARGE, Lyra's fine-tune) on the lyra2 runtime.

``DepthAnything3(weights)`` loads the nested network (any-view ViT-g + DualDPT + camera encoder/decoder, metric
ViT-L + DPT with sky; upstream Z:211, DU:119-146, DU:162) from a safetensors path or a dict ``name -> array`` with the
upstream ``NestedDepthAnything3Net`` names (``da3.*``, ``da3_metric.*``; the HF / Lyra ``model.`` prefix is accepted).
Calling it reproduces ``DepthAnything3.inference`` as Lyra calls it: preprocessing (upper-bound resize, nearest multiple
of 14 with OpenCV INTER_AREA / INTER_CUBIC, ImageNet normalisation), extrinsics normalisation, the C forward and nested
merge, then (with poses) the Umeyama Sim(3) alignment to the input poses and depth / s.

Lyra's two call sites are ``first_frame_depth`` (zoom script, one view, no poses) and ``depth_window`` (AR
depth-cache update, several views with poses).

Differences from upstream, by design:

* The nested merge's median confidence and 0.99 sky quantile use every qualifying pixel. Upstream draws a random
  subset of 100 000 (torch RNG) when more qualify, which every 480p/720p call does (upstream DA3net:499-567, DA3aln,
  pipeline upstream DA3net:67-81, MOGE:182-198); the result differs by that sampling noise only (about 1e-4 relative on
  the scale).
* float32 throughout (upstream runs the backbones under bf16 autocast on CUDA; docs/REFERENCES.md#parity-budgets
expects ~1e-2
  relative per-pixel differences from that).
* Several views without poses (S >= 3) would need upstream's reference-view selection, which Lyra never uses:
  refused with an error.

Cost at the real sizes (``da3_cost``, the C cost model on REAL_SIZES: ViT-g 1536 wide x 40 blocks / 24 heads
any-view with SwiGLU 4096, ViT-L 1024 x 24 / 16 heads metric, DualDPT/DPT with 256 features; 1 639 642 349
parameters used = docs/REFERENCES.md#weight-names's "needed by Lyra", 6.6 GB in float32, 3.3 GB in bf16; FLOPs 2 per
MAC; arena =
activations in float32 besides the weights and the backend's attention scratch):

* 480p (476x826, 34x59 patches): 1 view 8.05 TFLOP, arena 0.90 GB; 10 views with poses 111.7 TFLOP (global
  attention over 20 070 tokens in 14 blocks), arena 2.66 GB.
* 720p (714x1274, 51x91 patches): 1 view 22.8 TFLOP, arena 2.08 GB; 10 views with poses 395 TFLOP, arena 6.1 GB.
  Each arena holds the heads' four maps (S x h x w f32 each: depth and confidence logits, metric depth logits, sky)
  to the end of the call, where the nested merge runs (on the device for the depth window, op da3_merge).
"""
import numpy as np

from .. import _core

__all__ = ["DepthAnything3", "DepthWindow", "da3_cost", "REAL_SIZES", "umeyama_alignment", "align_poses_umeyama",
           "normalize_extrinsics"]

#: The released DA3NESTED-GIANT-LARGE sizes (upstream DA3dino:22-64, DA3vit:454-466, DA3cfg/da3-giant:6-17, DA3net:484;
# docs/REFERENCES.md#weight-names): any-view ViT-g, metric ViT-L, heads.
REAL_SIZES = {
    "dim": 1536, "depth": 40, "heads": 24, "ffn_hidden": 4096, "pos_grid": 37, "alt_start": 13,
    "metric_dim": 1024, "metric_depth": 24, "metric_heads": 16, "metric_ffn_hidden": 4096,
    "features": 256, "oc0": 256, "oc1": 512, "oc2": 1024, "oc3": 1024,
    "cam_enc_depth": 4, "cam_enc_heads": 16, "tap3": 39, "metric_tap3": 23,
}


def da3_cost(views, height, width, poses=True, sizes=None, precision="f32"):
    """Parameters, FLOPs (2 per MAC) and activation-arena bytes of one DA3 call on ``views`` processed images of
    height x width (multiples of 14), from the C cost model without loading weights, for a model placed as
    ``precision`` ("f32", or "bf16": the backbones' autocast on a device). ``sizes`` defaults to REAL_SIZES.
    Weights take 4 bytes per parameter in float32 (2 in bf16)."""
    return _core.da3_cost(dict(REAL_SIZES if sizes is None else sizes), int(views), int(height), int(width),
                          bool(poses), precision)


class DepthAnything3:
    """Depth Anything 3 nested. ``weights``: safetensors path or dict of arrays (upstream names).

    The head counts of the metric ViT and of the camera encoder and the tap blocks are not stored in the weights;
    the defaults are the released model's (metric width / 64 heads, camera encoder width / 96 heads, taps
    [19, 27, 33, 39] and [4, 11, 17, 23]). The any-view head count comes from the q/k-norm width. A safetensors
    file may carry other values as the JSON metadata entry ``"lyra2_config"`` (keys ``heads``, ``metric_heads``,
    ``cam_enc_heads``, ``taps``, ``metric_taps``; ``lyra2.testing.make_tiny_checkpoint`` writes one); the
    keyword arguments override it.

    ``device="cuda"``: the weights are uploaded once and the activation arena lives in device memory; a call
    uploads the processed pixels once and downloads the heads' maps and the pose for the host-side resize and
    metric merge. A device out-of-memory raises Lyra2Error naming the stage and the bytes.

    ``precision`` on "cuda": "bf16" (the default there: upstream runs the two backbones under
    ``torch.autocast(bfloat16)``, DA3api:143-145, so their GEMM weights and outputs and the attention inputs are
    bf16 while the residual stream, LayerNorms and RoPE stay f32; the camera encoder and the heads run with
    autocast disabled, DA3net:139-140, DA3net:155, in f32; docs/PRECISION.md) or "f32" (a parity mode); the CPU
    computes "f32" only."""

    def __init__(self, weights, device="cpu", *, heads=None, metric_heads=None, cam_enc_heads=None, taps=None,
                 metric_taps=None, precision=None):
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        from .umt5 import check_precision
        self.precision = check_precision(device, precision)
        cfg = lyra2_config(weights, ("heads", "metric_heads", "cam_enc_heads", "taps", "metric_taps"))
        heads = cfg.get("heads") if heads is None else heads
        metric_heads = cfg.get("metric_heads") if metric_heads is None else metric_heads
        cam_enc_heads = cfg.get("cam_enc_heads") if cam_enc_heads is None else cam_enc_heads
        taps = cfg.get("taps") if taps is None else taps
        metric_taps = cfg.get("metric_taps") if metric_taps is None else metric_taps
        self.device = device
        self._net = _core.da3_load(weights, int(heads or 0), int(metric_heads or 0), int(cam_enc_heads or 0),
                                   None if taps is None else tuple(int(t) for t in taps),
                                   None if metric_taps is None else tuple(int(t) for t in metric_taps), device,
                                   self.precision)
        self.config = _core.da3_config(self._net)

    def sizes(self):
        """This model's sizes in the form da3_cost takes."""
        c = self.config
        a, m = c["anyview"], c["metric"]
        oc = c["out_channels"]
        return {"dim": a["dim"], "depth": a["depth"], "heads": a["heads"], "ffn_hidden": a["ffn_hidden"],
                "pos_grid": a["pos_grid"], "alt_start": a["alt_start"], "metric_dim": m["dim"],
                "metric_depth": m["depth"], "metric_heads": m["heads"], "metric_ffn_hidden": m["ffn_hidden"],
                "features": c["features"], "oc0": oc[0], "oc1": oc[1], "oc2": oc[2], "oc3": oc[3],
                "cam_enc_depth": c["cam_enc_depth"], "cam_enc_heads": c["cam_enc_heads"], "tap3": c["taps"][3],
                "metric_tap3": c["metric_taps"][3]}

    def plan(self, views, height, width, poses=True, precision=None):
        """``{"params", "flops", "arena_bytes", "weight_bytes"}`` for one call on ``views`` images of height x width
        (processed size, multiples of 14). With ``precision`` (a device placement's: "f32", "bf16", "f16"),
        ``weight_bytes`` are the bytes that placement gives this model's loaded tensors."""
        if precision is None:
            return _core.da3_plan(self._net, int(views), int(height), int(width), bool(poses))
        return _core.da3_plan(self._net, int(views), int(height), int(width), bool(poses), str(precision))

    def preprocess(self, images, intrinsics=None, process_res=None):
        """(pixels (V,3,h,w) float32, K (V,3,3) at h x w or None) as DA3's InputProcessor makes them."""
        images = _images(images)
        V, H, W, _ = images.shape
        res = int(process_res) if process_res is not None else max(H, W)
        pixels, (h1, w1, h, w) = _core.da3_preprocess(images, res)
        K = None if intrinsics is None else _resize_intrinsics(intrinsics, V, (H, W), (h1, w1), (h, w))
        return pixels, K

    def __call__(self, images, extrinsics=None, intrinsics=None, *, process_res=None, align_to_input=True,
                 trace=False):
        """images uint8 (V,H,W,3); extrinsics w2c (V,4,4) and intrinsics (V,3,3) at H x W, both or neither.

        Returns ``depth`` (V,h,w), ``conf``, ``sky`` (uint8, sky >= 0.5), ``extrinsics`` (V,3,4), ``intrinsics``
        (V,3,3), ``scale_factor`` (the nested σ), ``sky_prob`` (the metric sky map) and, with poses,
        ``umeyama`` = (R, t, s) (float64). With poses and ``align_to_input`` (Lyra's setting) the depth is divided
        by s and the cameras are the inputs (K rescaled to h x w)."""
        images = _images(images)
        V = images.shape[0]
        if (extrinsics is None) != (intrinsics is None):
            raise ValueError("pass extrinsics and intrinsics together, or neither")
        pixels, K = self.preprocess(images, intrinsics, process_res)
        ext = ext_norm = None
        if extrinsics is not None:
            ext = np.asarray(extrinsics, dtype=np.float32)
            if ext.shape != (V, 4, 4):
                raise ValueError(f"extrinsics must be ({V}, 4, 4) world-to-camera matrices, got {ext.shape}")
            ext_norm = normalize_extrinsics(ext)
        elif V >= 3:
            raise ValueError(f"{V} views without poses would need DA3's reference-view selection, which Lyra never "
                             "uses and this port does not implement; pass extrinsics and intrinsics")
        out = _core.da3_forward(self._net, pixels, ext_norm, K, bool(trace))
        pred = {
            "depth": out["depth"], "conf": out["conf"], "sky": (out["sky"] >= 0.5).astype(np.uint8),
            "sky_prob": out["sky"], "extrinsics": out["extrinsics"], "intrinsics": out["intrinsics"],
            "scale_factor": out["scale_factor"], "ext_norm": ext_norm, "pixels": pixels,
        }
        if trace:
            pred["trace"] = out["trace"]
        if ext is not None and align_to_input:
            r, t, s = align_poses_umeyama(out["extrinsics"], ext, ransac=V >= 10, random_state=42)
            pred["umeyama"] = (r, t, s)
            pred["depth"] = (out["depth"].astype(np.float64) / s).astype(np.float32)
            pred["extrinsics"] = ext[:, :3, :].copy()
            pred["intrinsics"] = K
        return pred

    # ---- Lyra's call sites ----

    def first_frame_depth(self, orig_rgb, target_hw):
        """Zoom script ``_da3_infer_depth_intrinsics_single`` (pipeline upstream MOGE:214-242, DU:46, MCFG:25-35):
        orig_rgb uint8 (H0,W0,3) ->
        (depth (H,W) float32, mask (H,W) float32 = depth < 999.9, K (3,3) at H x W)."""
        Ht, Wt = (int(v) for v in target_hw)
        img = np.ascontiguousarray(orig_rgb, dtype=np.uint8)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"orig_rgb must be uint8 (H, W, 3), got {img.shape}")
        resized = _core.image_resize(img, Ht, Wt)          # cv2.resize INTER_LINEAR, bit-exact
        pred = self(resized[None])
        depth = pred["depth"][0]
        Hd, Wd = depth.shape
        if (Hd, Wd) != (Ht, Wt):
            depth = _bilinear(depth, Ht, Wt)
        depth = np.clip(np.nan_to_num(depth, nan=1e4, posinf=np.float32(3.4028235e38),
                                      neginf=np.float32(-3.4028235e38)), 0, 1e4).astype(np.float32)
        mask = (depth < 999.9).astype(np.float32)
        K = pred["intrinsics"][0].astype(np.float32).copy()
        sx, sy = np.float32(float(Wt) / float(Wd)), np.float32(float(Ht) / float(Hd))
        K[0, 0] *= sx
        K[1, 1] *= sy
        K[0, 2] *= sx
        K[1, 2] *= sy
        return depth, mask, K

    def depth_window(self, history_frames, cam_w2c, intrinsics, frame_interval, max_history_frames, *,
                     start_index=0, abs_last_idx=None, add_pose_alignment_offsets=True):
        """AR ``_predict_da3_depth_window`` (pipeline upstream AR:1059-1060, AR:1071-1393, AR:261-366): history_frames
        (1,3,T,H,W) in [-1,1], cam_w2c
        (1,T',4,4), intrinsics (1,T',3,3) -> ``{"frame_indices": [...], "prediction": dict | None}``.
        Frames last, last - interval, ... (at most max_history_frames, >= 0), sorted ascending."""
        hist = np.asarray(history_frames, dtype=np.float32)
        if hist.ndim != 5 or hist.shape[0] != 1 or hist.shape[1] != 3:
            raise ValueError(f"history_frames must be (1, 3, T, H, W), got {hist.shape}")
        T = hist.shape[2]
        last = T - 1 if abs_last_idx is None else int(abs_last_idx)
        if last < 0:
            return {"frame_indices": [], "prediction": None}
        step = max(int(frame_interval), 1)
        frames = sorted({last - k * step for k in range(int(max_history_frames)) if last - k * step >= 0})
        w2c = np.asarray(cam_w2c, dtype=np.float32)
        Ks = np.asarray(intrinsics, dtype=np.float32)
        images, exts, ixts = [], [], []
        for f in frames:
            t = start_index + f
            if t < 0 or t >= T:
                continue
            x = np.clip(hist[0, :, t] * np.float32(0.5) + np.float32(0.5), 0.0, 1.0).transpose(1, 2, 0)
            images.append(np.clip(x * np.float32(255.0) + np.float32(0.5), 0, 255).astype(np.uint8))
            exts.append(w2c[0, f])
            ixts.append(Ks[0, f])
        if not images:
            return {"frame_indices": [], "prediction": None}
        ext = np.stack(exts).astype(np.float32)
        if add_pose_alignment_offsets:
            ext = _add_tiny_offsets(ext)
        pred = self(np.stack(images), ext, np.stack(ixts).astype(np.float32))
        pred["api_in_images"] = np.stack(images)
        pred["api_in_extrinsics"] = ext
        return {"frame_indices": frames, "prediction": pred}


class DepthWindow:
    """DA3 for the AR driver's depth-window update where the frames are (``_core.ar_generate``'s device form;
    csrc/pipeline/depth_window.c): the driver builds DA3's input pixels from the window's uint8 frames in their own
    memory and runs the forward on them; this object lends the network and does the host steps on camera matrices
    that ``DepthAnything3.__call__`` does around it (the intrinsics resized to the processed size, the extrinsics
    normalised, the Umeyama alignment to the input poses). The depth / s and the bilinear resize to the frame size
    follow in C with the same arithmetic.

    ``da3``: a ``DepthAnything3``, or an object whose ``load()`` returns one for each call (the memory plan's
    per-call schedule; the model is dropped in ``release``). ``record``: None, or ``record(images uint8 (n, H, W, 3),
    depth (n, H, W), w2c (n, 4, 4), K (n, 3, 3))`` called with every window's views (the frames then come down)."""

    def __init__(self, da3, record=None):
        self.da3 = da3
        self.record = record
        self._model = None

    def acquire(self, n, H, W, h, w, w2c, K):
        model = self.da3.load() if hasattr(self.da3, "load") else self.da3
        ext = np.asarray(w2c, dtype=np.float32)
        if ext.shape != (n, 4, 4):
            raise ValueError(f"extrinsics must be ({n}, 4, 4) world-to-camera matrices, got {ext.shape}")
        K_proc = _resize_intrinsics(K, n, (H, W), (H, W), (h, w))   # process_res = the longest side: one resize
        self._model = model
        return model._net, normalize_extrinsics(ext), K_proc

    def release(self):
        self._model = None   # a model loaded for the call gives its memory back here

    @staticmethod
    def align(est, w2c):
        """The Umeyama scale s of DA3's extrinsics est (n, 3, 4) onto w2c (n, 4, 4), as ``__call__`` aligns."""
        est = np.asarray(est, dtype=np.float32)
        return float(align_poses_umeyama(est, np.asarray(w2c, dtype=np.float32), ransac=len(est) >= 10,
                                         random_state=42)[2])


def _resize_intrinsics(intrinsics, V, size0, size1, size2):
    """K (V, 3, 3) at size0 rescaled to size2 through size1 as InputProcessor._resize_ixt does, per step, in float32."""
    K = np.array(intrinsics, dtype=np.float32, copy=True)
    if K.shape != (V, 3, 3):
        raise ValueError(f"intrinsics must be ({V}, 3, 3), got {K.shape}")
    for (a, b), (c, d) in ((size0, size1), (size1, size2)):
        K[:, :1] *= np.float32(d / float(b))
        K[:, 1:2] *= np.float32(c / float(a))
    return K


def lyra2_config(weights, allowed):
    """The ``"lyra2_config"`` JSON object of a safetensors file's metadata ({} for dicts and files without one):
    constructor options the weights do not determine. Keys outside ``allowed`` are an error naming the file."""
    import json
    import os

    if not isinstance(weights, (str, bytes, os.PathLike)):
        return {}
    from .. import Lyra2Error
    from ..io import safetensors_info

    raw = safetensors_info(weights)["metadata"].get("lyra2_config")
    if not raw:
        return {}
    try:
        cfg = json.loads(raw)
    except ValueError as e:
        raise Lyra2Error(f"{os.fspath(weights)!r}: metadata 'lyra2_config' is not JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise Lyra2Error(f"{os.fspath(weights)!r}: metadata 'lyra2_config' must be a JSON object")
    extra = sorted(set(cfg) - set(allowed))
    if extra:
        raise Lyra2Error(f"{os.fspath(weights)!r}: metadata 'lyra2_config' has unknown keys {extra}; "
                         f"allowed: {list(allowed)}")
    return cfg


def _images(images):
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {a.dtype}")
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[3] != 3 or min(a.shape[:3]) < 1:
        raise ValueError(f"images must be uint8 (V, H, W, 3), got shape {a.shape}")
    return np.ascontiguousarray(a)


def _affine_inverse(A):
    """[Rᵀ | −Rᵀt; last row kept] (utils/geometry.py affine_inverse), in A's dtype."""
    R, T = A[..., :3, :3], A[..., :3, 3:]
    Rt = np.swapaxes(R, -1, -2)
    top = np.concatenate([Rt, -(Rt @ T)], axis=-1)
    return np.concatenate([top, A[..., 3:, :]], axis=-2)


def normalize_extrinsics(ext):
    """DA3api._normalize_extrinsics (upstream DA3out:42-148, DA3api:397-436): E·E₀⁻¹, translations ÷ max(lower median
    |C|, 0.1)."""
    ext = np.asarray(ext, dtype=np.float32)
    norm = (ext @ _affine_inverse(ext[:1])).astype(np.float32)
    dists = np.linalg.norm(_affine_inverse(norm)[:, :3, 3], axis=-1).astype(np.float32)
    median = np.sort(dists)[(len(dists) - 1) // 2]         # torch.median: the lower middle element
    median = max(median, np.float32(0.1))
    norm[:, :3, 3] = norm[:, :3, 3] / np.float32(median)
    return norm


def _add_tiny_offsets(ext, variance_threshold=1e-10, scale=1e-6, fx=0.00001, fy=0.000013, fz=0.000007):
    """Lyra AR _add_tiny_offsets_to_extrinsics_for_pose_alignment: t -= R·δ_i when the cameras barely move."""
    centres = np.stack([-e[:3, :3].T @ e[:3, 3] for e in ext])
    if np.var(centres, axis=0).sum() >= variance_threshold:
        return ext
    out = ext.copy()
    for i, e in enumerate(out):
        d = np.array([scale * np.sin(2 * np.pi * i * fx), scale * np.cos(2 * np.pi * i * fy),
                      scale * np.sin(2 * np.pi * i * fz)])
        out[i, :3, 3] = e[:3, 3] - e[:3, :3] @ d
    return out


class _Degenerate(Exception):
    pass


def umeyama_alignment(x, y, with_scale=True):
    """evo geometry.umeyama_alignment: (r, t, c) minimising ‖y − (c·r·x + t)‖ for x, y (3, n)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m, n = x.shape
    mean_x, mean_y = x.mean(axis=1), y.mean(axis=1)
    sigma_x = 1.0 / n * (np.linalg.norm(x - mean_x[:, None]) ** 2)
    outer = np.zeros((m, m))
    for i in range(n):
        outer += np.outer(y[:, i] - mean_y, x[:, i] - mean_x)
    cov = np.multiply(1.0 / n, outer)
    u, d, v = np.linalg.svd(cov)
    if np.count_nonzero(d > np.finfo(d.dtype).eps) < m - 1:
        raise _Degenerate("degenerate covariance rank, Umeyama alignment is not possible")
    s = np.eye(m)
    if np.linalg.det(u) * np.linalg.det(v) < 0.0:
        s[m - 1, m - 1] = -1
    r = u.dot(s).dot(v)
    c = 1 / sigma_x * np.trace(np.diag(d).dot(s)) if with_scale else 1.0
    t = mean_y - np.multiply(c, r.dot(mean_x))
    return r, t, c


def _to44(ext):
    if ext.shape[1] == 3:
        out = np.eye(4)[None].repeat(len(ext), 0)
        out[:, :3, :4] = ext
        return out
    return ext


def _apply_sim3(poses, r, t, s):
    out = poses.copy()
    out[:, :3, :3] = r @ poses[:, :3, :3]
    out[:, :3, 3] = (r @ (s * poses[:, :3, 3].T)).T + t
    return out


def _sim3(pose_ref, pose_est):
    r, t, s = umeyama_alignment(pose_est[:, :3, 3].T, pose_ref[:, :3, 3].T, True)
    return r, t, s, _apply_sim3(pose_est, r, t, s)


def _sim3_robust(pose_ref, pose_est):
    """pose_align._umeyama_sim3_from_paths_robust: retry a degenerate fit with 1e-6 sinusoidal offsets."""
    try:
        return _sim3(pose_ref, pose_est)
    except (_Degenerate, np.linalg.LinAlgError):
        def off(p):
            p = p.copy()
            for i in range(len(p)):
                p[i, :3, 3] += np.array([1e-6 * np.sin(2 * np.pi * i * 0.07), 1e-6 * np.cos(2 * np.pi * i * 0.11),
                                         1e-6 * np.sin(2 * np.pi * i * 0.13)])
            return p
        r, t, s, _ = _sim3(off(pose_ref), off(pose_est))
        return r, t, s, _apply_sim3(pose_est, r, t, s)


def align_poses_umeyama(ext_ref, ext_est, ransac=False, random_state=None, max_iters=10):
    """pose_align.align_poses_umeyama (upstream DA3out:42-148, DA3api:397-436): Sim(3) with s·R·C_est + t ≈ C_ref
    between the camera
    centres of two w2c sets; RANSAC (numpy default_rng(random_state), max_iters subsets of max(3, ⌈N/2⌉),
    inlier threshold = median nearest-neighbour distance after a full pre-fit) when ``ransac``."""
    pose_ref = _affine_inverse(_to44(np.asarray(ext_ref)))
    pose_est = _affine_inverse(_to44(np.asarray(ext_est)))
    if not ransac:
        r, t, s, _ = _sim3_robust(pose_ref, pose_est)
        return r, t, s
    rng = np.random.default_rng(random_state)
    N = pose_ref.shape[0]
    idx_all = np.arange(N)
    sub_n = max(3, (N + 1) // 2)
    r0, t0, s0, est0 = _sim3_robust(pose_ref, pose_est)
    P_ref = pose_ref[:, :3, 3]
    dists = [np.linalg.norm(P_ref - p[None, :], axis=1).min() for p in est0[:, :3, 3]]
    thresh = float(np.median(dists)) if dists else 0.0
    best_model, best_inliers, best_score = (r0, t0, s0), None, (-1, np.inf)
    for _ in range(max_iters):
        sample = rng.choice(idx_all, size=sub_n, replace=False)
        try:
            r, t, s, _ = _sim3_robust(pose_ref[sample], pose_est[sample])
        except Exception:  # noqa: BLE001 - upstream skips any failing subset
            continue
        errs = np.linalg.norm(_apply_sim3(pose_est, r, t, s)[:, :3, 3] - P_ref, axis=1)
        inliers = errs <= thresh
        k = int(inliers.sum())
        mean_err = float(errs[inliers].mean()) if k > 0 else np.inf
        if k > best_score[0] or (k == best_score[0] and mean_err < best_score[1]):
            best_score, best_model, best_inliers = (k, mean_err), (r, t, s), inliers
    if best_inliers is not None and best_inliers.sum() >= 3:
        r, t, s, _ = _sim3_robust(pose_ref[best_inliers], pose_est[best_inliers])
    else:
        r, t, s = best_model
    return r, t, s


def _bilinear(x, Ho, Wo):
    """F.interpolate(bilinear, align_corners=False) of a float32 (H, W) map, PyTorch's CPU arithmetic."""
    x = np.asarray(x, dtype=np.float32)
    H, W = x.shape

    def axis(n_in, n_out):
        scale = np.float32(n_in) / np.float32(n_out)
        src = np.maximum(scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5),
                         np.float32(0))
        i0 = src.astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        lam = (src - i0.astype(np.float32)).astype(np.float32)
        return i0, i1, lam, (np.float32(1) - lam).astype(np.float32)

    h0, h1, lh, lh0 = axis(H, Ho)
    w0, w1, lw, lw0 = axis(W, Wo)
    top = lw0[None, :] * x[h0][:, w0] + lw[None, :] * x[h0][:, w1]
    bot = lw0[None, :] * x[h1][:, w0] + lw[None, :] * x[h1][:, w1]
    return (lh0[:, None] * top + lh[:, None] * bot).astype(np.float32)
