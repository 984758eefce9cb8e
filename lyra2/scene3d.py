"""Point clouds from a run's depth, and binary PLY files.

* ``DepthViews``: the depth a run has, as (frame colours, depth, w2c, K) per view: frame 0's depth in preview,
  plus every view of the DA3 depth-window updates in generate mode (recorded by ``recording_depth_window``).
* ``fuse_point_cloud(views, stride, max_points, voxel_size)``: unprojects every ``stride``-th pixel of every view
  into the world frame (the input camera, OpenCV axes), keeps the first point that falls in each voxel, and bounds
  the count. Memory stays bounded by one view plus the kept points: views are fused one at a time.
* ``write_point_ply(path, xyz, rgb)`` and ``write_vertex_ply(path, table, names)``: binary little-endian PLY (the
  layout of `Lyra-2/lyra_2/_src/inference/vipe_da3_gs_recon.py`'s outputs and of Depth Anything 3's
  ``save_gaussian_ply``), written to a temp file and renamed.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["DepthViews", "fuse_point_cloud", "write_point_ply", "write_vertex_ply", "recording_depth_window"]

# Depth at or beyond this is "no depth" (the pipeline's sky / invalid value is 1e4 and its mask is d < 999.9).
FAR_DEPTH = 999.9


class DepthViews:
    """Views with depth in the world frame of the run: (rgb uint8 (h, w, 3), depth float32 (h, w), w2c (4, 4),
    K (3, 3), sub) with the view kept at every `sub`-th pixel (K rescaled to match). A later view with the same
    camera replaces the earlier one (a depth-window update re-estimates frames that an earlier window saw).

    Memory: views larger than `max_pixels` are kept at every sub-th pixel, sub = ceil(sqrt(H·W / max_pixels)) (the
    default 480·832 keeps 480p whole and 720p at every 2nd pixel: 1.6 MB a view instead of 6.4 MB; a 481-frame
    720p run records about a hundred window views). Depth stays float32, so fused points lie on their surfaces."""

    def __init__(self, max_pixels=480 * 832):
        self._views = {}
        self.max_pixels = max_pixels

    def add(self, rgb, depth, w2c, K, sub=1):
        rgb = np.asarray(rgb)
        depth = np.asarray(depth)
        w2c = np.ascontiguousarray(w2c, np.float64)
        K = np.array(K, np.float64)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or depth.shape != rgb.shape[:2]:
            raise ValueError(f"DepthViews.add: expected rgb (H, W, 3) and depth (H, W); got {rgb.shape} and {depth.shape}")
        if w2c.shape != (4, 4) or K.shape != (3, 3):
            raise ValueError(f"DepthViews.add: expected w2c (4, 4) and K (3, 3); got {w2c.shape} and {K.shape}")
        key = np.asarray(w2c, np.float32).tobytes() + np.asarray(K, np.float32).tobytes()
        h, w = depth.shape
        k = 1
        if self.max_pixels and h * w > self.max_pixels:
            k = int(np.ceil(np.sqrt(h * w / self.max_pixels)))
            rgb, depth = rgb[::k, ::k], depth[::k, ::k]
            K[:2] /= k  # pixel (k·u', k·v') of the frame is pixel (u', v') of the kept view
        self._views.pop(key, None)
        self._views[key] = (np.ascontiguousarray(rgb, np.uint8), np.ascontiguousarray(depth, np.float32), w2c, K,
                            int(sub) * k)

    def __len__(self):
        return len(self._views)

    def __iter__(self):
        return iter(list(self._views.values()))


def recording_depth_window(depth_window, views):
    """Every view the driver's depth window estimates is also kept in `views`: a DA3 model of the device form
    (lyra2.models.depth.DepthWindow) gets `views` as its record hook; a host depth_window function is wrapped."""
    if depth_window is None:
        return None
    if hasattr(depth_window, "acquire"):
        before = depth_window.record   # a record hook already set runs first

        def add(images, depth, w2c, K):
            if before is not None:
                before(images, depth, w2c, K)
            for i in range(len(images)):
                views.add(images[i], depth[i], w2c[i], K[i])

        depth_window.record = add
        return depth_window

    def record(images, w2c, K):
        d = depth_window(images, w2c, K)
        for i in range(len(images)):
            views.add(images[i], d[i], w2c[i], K[i])
        return d

    return record


def _check_positive_int(value, what, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what}: expected a positive int{' or None' if allow_none else ''}; got {value!r}")
    return int(value)


def _unproject(depth, w2c, K, stride):
    """World points (n, 3) float64 and the flat pixel indices (n,) of the valid strided pixels of one view."""
    h, w = depth.shape
    ys, xs = np.mgrid[0:h:stride, 0:w:stride]
    d = depth[ys, xs].astype(np.float64)
    ok = np.isfinite(d) & (d > 0) & (d < FAR_DEPTH)
    xs, ys, d = xs[ok], ys[ok], d[ok]
    # Pixel centres at integer coordinates (upstream's warp and depth conventions: x = K [X/Z], no +0.5).
    x = (xs - K[0, 2] - K[0, 1] * (ys - K[1, 2]) / K[1, 1]) / K[0, 0]
    y = (ys - K[1, 2]) / K[1, 1]
    cam = np.stack([x * d, y * d, d], axis=1)
    c2w = np.linalg.inv(w2c)
    world = cam @ c2w[:3, :3].T + c2w[:3, 3]
    return world, ys * w + xs


def _auto_voxel(views, stride):
    """About one strided pixel footprint at the first view's median depth."""
    for rgb, depth, w2c, K, *sub in views:
        d = depth[::stride, ::stride]
        d = d[np.isfinite(d) & (d > 0) & (d < FAR_DEPTH)]
        if d.size:  # K of a view kept at every sub-th pixel is the frame's K / sub
            return float(np.median(d)) * stride / (float(max(K[0, 0], K[1, 1])) * (sub[0] if sub else 1)) * 0.5
    return 0.0


def fuse_point_cloud(views, *, stride=4, max_points=2_000_000, voxel_size=None):
    """Fused colored points of `views` (a DepthViews or an iterable of (rgb, depth, w2c, K[, sub]); a view kept at
    every sub-th pixel is unprojected at every max(1, round(stride / sub))-th of its pixels).

    Returns (xyz float32 (N, 3), rgb uint8 (N, 3)) in the world frame. Points in one voxel of `voxel_size` (default:
    half a strided pixel's footprint at the median depth of the first view) are deduplicated: the first view's point
    wins. Beyond `max_points`, every k-th point is kept (deterministic)."""
    stride = _check_positive_int(stride, "stride")
    max_points = _check_positive_int(max_points, "max_points")
    views = list(views)
    if voxel_size is None:
        voxel_size = _auto_voxel(views, stride)
    elif isinstance(voxel_size, bool) or not isinstance(voxel_size, (int, float)) or not voxel_size >= 0:
        raise ValueError(f"voxel_size: expected a number >= 0 or None; got {voxel_size!r}")
    xyz_parts, rgb_parts = [], []
    seen = np.zeros(0, np.int64)  # sorted voxel keys already taken
    batch = []                    # (keys, world, colours) of views not yet deduplicated

    def flush():
        nonlocal seen
        keys = np.concatenate([b[0] for b in batch])
        world = np.concatenate([b[1] for b in batch])
        colours = np.concatenate([b[2] for b in batch])
        batch.clear()
        key, first = np.unique(keys, return_index=True)  # first occurrence: the earliest view wins
        pos = np.searchsorted(seen, key)
        taken = (pos < len(seen)) & (seen[np.minimum(pos, max(len(seen) - 1, 0))] == key) if len(seen) else \
            np.zeros(len(key), bool)
        keep = np.sort(first[~taken])
        seen = np.sort(np.concatenate([seen, key[~taken]]))
        xyz_parts.append(world[keep].astype(np.float32))
        rgb_parts.append(colours[keep])

    pending = 0
    for rgb, depth, w2c, K, *sub in views:
        step = max(1, int(round(stride / sub[0]))) if sub else stride
        world, flat = _unproject(np.asarray(depth), np.asarray(w2c, np.float64), np.asarray(K, np.float64), step)
        colours = np.asarray(rgb).reshape(-1, 3)[flat]
        if voxel_size > 0:
            cell = np.floor(world / voxel_size).astype(np.int64)
            # 21 bits per axis around the origin: +-1M voxels; points beyond are clipped into the border voxels.
            cell = np.clip(cell, -(1 << 20), (1 << 20) - 1) + (1 << 20)
            key = (cell[:, 0] << 42) | (cell[:, 1] << 21) | cell[:, 2]
            # one view's points first (cheap, keeps the batch small), then the batch against earlier batches
            key, first = np.unique(key, return_index=True)
            first.sort()
            batch.append(((cell[first, 0] << 42) | (cell[first, 1] << 21) | cell[first, 2], world[first],
                          colours[first]))
            pending += len(first)
            if pending >= 2_000_000:  # dedup in batches: O(N log N) overall, memory bounded by the batch
                flush()
                pending = 0
        else:
            xyz_parts.append(world.astype(np.float32))
            rgb_parts.append(colours)
    if batch:
        flush()
    if not xyz_parts:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
    xyz = np.concatenate(xyz_parts)
    rgb = np.concatenate(rgb_parts)
    if len(xyz) > max_points:
        pick = np.linspace(0, len(xyz) - 1, max_points).round().astype(np.int64)
        xyz, rgb = xyz[pick], rgb[pick]
    return np.ascontiguousarray(xyz), np.ascontiguousarray(rgb, np.uint8)


def _check_path(path, what="path"):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what}: expected a path; got {path!r}")
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"{what}: the folder {parent!r} does not exist")
    return path


def write_vertex_ply(path, columns):
    """Writes one binary little-endian PLY vertex element. `columns`: list of (name, array (N,)) with dtype float32
    or uint8, in file order. Atomic: temp file + rename."""
    path = _check_path(path)
    n = len(columns[0][1]) if columns else 0
    types = {np.dtype(np.float32): ("<f4", "float"), np.dtype(np.uint8): ("u1", "uchar")}
    dtype = []
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    for name, col in columns:
        col = np.asarray(col)
        if col.dtype not in types or col.shape != (n,):
            raise ValueError(f"PLY column {name!r}: expected float32 or uint8 ({n},); got {col.dtype} {col.shape}")
        dtype.append((name, types[col.dtype][0]))
        header.append(f"property {types[col.dtype][1]} {name}")
    header.append("end_header")
    table = np.empty(n, dtype=dtype)
    for name, col in columns:
        table[name] = col
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(("\n".join(header) + "\n").encode("ascii"))
            f.write(table.tobytes())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return os.path.abspath(path)


def write_point_ply(path, xyz, rgb):
    """Coloured points as a binary little-endian PLY (x, y, z float; red, green, blue uchar)."""
    xyz = np.asarray(xyz, np.float32)
    rgb = np.asarray(rgb)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or rgb.shape != xyz.shape or rgb.dtype != np.uint8:
        raise ValueError(f"points: expected xyz float (N, 3) and rgb uint8 (N, 3); got {xyz.shape} and "
                         f"{rgb.dtype} {rgb.shape}")
    return write_vertex_ply(path, [("x", xyz[:, 0]), ("y", xyz[:, 1]), ("z", xyz[:, 2]),
                                   ("red", rgb[:, 0]), ("green", rgb[:, 1]), ("blue", rgb[:, 2])])
