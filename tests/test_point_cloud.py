"""Video.point_cloud / save_ply: fused points of a synthetic scene with known geometry, PLY files read back with an
independent reader (plyfile), the CLI --ply flag and the fal result's point_cloud entry."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lyra2.scene3d import DepthViews, fuse_point_cloud, recording_depth_window, write_point_ply
from lyra2.video import Video

plyfile = pytest.importorskip("plyfile")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 48, 64
K = np.array([[50.0, 0, 31.5], [0, 52.0, 23.5], [0, 0, 1]], np.float32)
# A world plane n . X = c (world = camera 0, OpenCV axes), tilted so that depth varies across the image.
PLANE_N = np.array([0.1, -0.2, 1.0]) / np.linalg.norm([0.1, -0.2, 1.0])
PLANE_C = 3.0


def _pose(yaw, t):
    c, s = np.cos(yaw), np.sin(yaw)
    w2c = np.eye(4)
    w2c[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    w2c[:3, 3] = t
    return w2c


def _plane_depth(w2c, K):
    """z-depth of the plane seen from camera w2c: X = C + z * R^T K^-1 [u, v, 1]."""
    c2w = np.linalg.inv(w2c)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K.astype(np.float64)).T
    rays_w = rays @ c2w[:3, :3].T
    return ((PLANE_C - PLANE_N @ c2w[:3, 3]) / (rays_w @ PLANE_N)).astype(np.float32)


def _frames(n):
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([np.stack([(x * 4 + i) % 256, (y * 5) % 256, np.full_like(x, 40 * i)], -1)
                     for i in range(n)]).astype(np.uint8)


def _video(with_views=True):
    w2c = np.stack([np.eye(4), _pose(0.05, [0.1, 0.0, 0.05]), _pose(-0.08, [-0.2, 0.05, 0.1])]).astype(np.float32)
    Ks = np.repeat(K[None], 3, 0)
    frames = _frames(3)
    views = DepthViews()
    if with_views:
        for i in (1, 2):
            views.add(frames[i], _plane_depth(w2c[i], K), w2c[i], K)
    return Video(frames, 16, 0, {}, w2c, Ks, _plane_depth(w2c[0], K), "generate", depth_views=views)


def test_points_lie_on_the_plane_and_carry_their_pixel_colours():
    v = _video()
    xyz, rgb = v.point_cloud(stride=2, voxel_size=0.0)
    assert xyz.dtype == np.float32 and rgb.dtype == np.uint8 and xyz.shape == rgb.shape
    # every strided pixel of every view (3 views, 24 x 32 pixels), without dedup
    assert len(xyz) == 3 * (H // 2) * (W // 2)
    assert np.abs(xyz.astype(np.float64) @ PLANE_N - PLANE_C).max() < 1e-4
    # frame 0 first, pixel (u, v) -> its colour; the point projects back onto its own pixel
    v0, u0 = np.mgrid[0:H:2, 0:W:2]
    np.testing.assert_array_equal(rgb[: v0.size], v.frames[0][v0.ravel(), u0.ravel()])
    p = xyz[: v0.size].astype(np.float64) @ K.T.astype(np.float64)
    np.testing.assert_allclose(p[:, 0] / p[:, 2], u0.ravel(), atol=1e-3)
    np.testing.assert_allclose(p[:, 1] / p[:, 2], v0.ravel(), atol=1e-3)


def test_voxel_dedup_and_max_points():
    v = _video()
    full = v.point_cloud(stride=1, voxel_size=0.0)[0]
    dedup = v.point_cloud(stride=1)[0]  # the default voxel merges the overlapping views
    assert len(dedup) < len(full)
    # a voxel keeps one point: no two points share a voxel
    vox = 0.05
    pts = v.point_cloud(stride=1, voxel_size=vox)[0]
    cells = np.floor(pts.astype(np.float64) / vox).astype(np.int64)
    assert len(np.unique(cells, axis=0)) == len(pts)
    # the same view twice adds nothing
    twice = fuse_point_cloud([(v.frames[0], v.depth, v.w2c[0], K)] * 2, stride=1, voxel_size=vox)[0]
    once = fuse_point_cloud([(v.frames[0], v.depth, v.w2c[0], K)], stride=1, voxel_size=vox)[0]
    assert len(twice) == len(once)
    few = v.point_cloud(stride=1, max_points=100)[0]
    assert len(few) == 100 and np.abs(few.astype(np.float64) @ PLANE_N - PLANE_C).max() < 1e-4


def test_large_views_are_kept_subsampled():
    """A view over max_pixels is kept at every k-th pixel with K / k: its points stay on the plane with their
    pixels' colours, and point_cloud's stride counts frame pixels."""
    w2c = _pose(0.05, [0.1, 0.0, 0.05])
    depth = _plane_depth(w2c, K)
    rgb = _frames(2)[1]
    views = DepthViews(max_pixels=H * W // 5)  # k = ceil(sqrt(5)) = 3
    views.add(rgb, depth, w2c, K)
    (kept_rgb, kept_depth, _, kept_K, sub), = list(views)
    assert sub == 3 and kept_depth.shape == (16, 22)
    np.testing.assert_array_equal(kept_rgb, rgb[::3, ::3])
    np.testing.assert_allclose(kept_K[:2], K[:2] / 3, rtol=1e-7)
    xyz, col = fuse_point_cloud(views, stride=3, voxel_size=0.0)
    assert len(xyz) == 16 * 22
    assert np.abs(xyz.astype(np.float64) @ PLANE_N - PLANE_C).max() < 1e-4
    np.testing.assert_array_equal(col, rgb[::3, ::3].reshape(-1, 3))
    # the same points as unprojecting the whole view at stride 3
    full, _ = fuse_point_cloud([(rgb, depth, w2c, K)], stride=3, voxel_size=0.0)
    np.testing.assert_allclose(xyz, full, atol=1e-5)


def test_invalid_depth_is_skipped_and_preview_uses_frame_zero():
    v = _video(with_views=False)
    v.depth = v.depth.copy()
    v.depth[:10] = 1e4  # "sky" / no depth
    v.depth[10, :5] = np.nan
    v.depth[11, :5] = 0
    xyz, _ = v.point_cloud(stride=1, voxel_size=0.0)
    assert len(xyz) == H * W - 10 * W - 10


def test_save_ply_reads_back_with_plyfile(tmp_path):
    v = _video()
    xyz, rgb = v.point_cloud()
    path = v.save_ply(tmp_path / "scene.ply")
    assert path == str((tmp_path / "scene.ply").resolve()) and not list(tmp_path.glob("*.tmp-*"))
    ply = plyfile.PlyData.read(path)
    assert ply.text is False and ply.byte_order == "<"
    el = ply["vertex"]
    assert [p.name for p in el.properties] == ["x", "y", "z", "red", "green", "blue"]
    assert el.count == len(xyz) > 0
    assert el.data.dtype["x"] == np.dtype("<f4") and el.data.dtype["red"] == np.dtype("u1")
    np.testing.assert_array_equal(np.stack([el["x"], el["y"], el["z"]], 1), xyz)
    np.testing.assert_array_equal(np.stack([el["red"], el["green"], el["blue"]], 1), rgb)


def test_empty_cloud_and_bad_arguments(tmp_path):
    v = _video(with_views=False)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="stride"):
            v.point_cloud(stride=bad)
    with pytest.raises(ValueError, match="max_points"):
        v.point_cloud(max_points=0)
    with pytest.raises(ValueError, match="voxel_size"):
        v.point_cloud(voxel_size=-1.0)
    with pytest.raises(ValueError, match="does not exist"):
        v.save_ply(tmp_path / "missing" / "x.ply")
    with pytest.raises(ValueError, match="xyz"):
        write_point_ply(tmp_path / "x.ply", np.zeros((3, 2)), np.zeros((3, 3), np.uint8))
    path = write_point_ply(tmp_path / "empty.ply", np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))
    assert plyfile.PlyData.read(path)["vertex"].count == 0


def test_recording_depth_window_keeps_every_view_and_replaces_repeats():
    views = DepthViews()
    calls = []

    def depth_window(images, w2c, K):
        calls.append(len(images))
        return np.full(images.shape[:3], 2.0 + len(calls), np.float32)

    fn = recording_depth_window(depth_window, views)
    w2c = np.stack([_pose(0.01 * i, [0, 0, 0.1 * i]) for i in range(3)]).astype(np.float32)
    imgs = _frames(3)
    fn(imgs, w2c, np.repeat(K[None], 3, 0))
    assert len(views) == 3
    fn(imgs[1:], w2c[1:], np.repeat(K[None], 2, 0))  # a later window re-estimates frames 1 and 2
    assert len(views) == 3
    depths = sorted(float(d[0, 0]) for _, d, _, _, _ in views)
    assert depths == [3.0, 4.0, 4.0]
    assert recording_depth_window(None, views) is None


def test_recording_depth_window_of_the_device_form_records_through_its_hook():
    """DA3 on the device (lyra2.models.depth.DepthWindow): the driver calls its record hook with each window's views;
    recording_depth_window sets that hook, after any hook already there."""
    from lyra2.models.depth import DepthWindow

    views, seen = DepthViews(), []
    window = DepthWindow(da3=None, record=lambda images, depth, w2c, K: seen.append(len(images)))
    assert recording_depth_window(window, views) is window
    w2c = np.stack([_pose(0.01 * i, [0, 0, 0.1 * i]) for i in range(3)]).astype(np.float32)
    window.record(_frames(3), np.full((3,) + _frames(3).shape[1:3], 2.5, np.float32), w2c, np.repeat(K[None], 3, 0))
    assert seen == [3] and len(views) == 3
    assert all(float(d[0, 0]) == 2.5 for _, d, _, _, _ in views)


@pytest.fixture
def no_checkpoint(monkeypatch, tmp_path):
    monkeypatch.delenv("LYRA2_CHECKPOINT_DIR", raising=False)
    monkeypatch.setenv("LYRA2_OUTPUT_DIR", str(tmp_path / "out"))


def test_cli_ply_and_fal_entry_in_preview(tmp_path, no_checkpoint):
    """Preview mode (no weights): frame 0's depth gives the cloud; --ply writes it and the fal dict names it."""
    out, ply = tmp_path / "v.mp4", tmp_path / "v.ply"
    image = os.path.join(ROOT, "examples", "coffee.png")
    cams = tmp_path / "v.cameras.npz"
    r = subprocess.run([sys.executable, "-m", "lyra2", "zoom", image, "--prompt", "cup", "-o", str(out),
                        "--ply", str(ply), "--cameras", str(cams), "--json", "--no-progress"], capture_output=True,
                       text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    from lyra2.geometry import load_custom_trajectory

    w2c, K = load_custom_trajectory(str(cams), 480, 832, pose_scale=1.0)  # the cameras, for `lyra2 reconstruct`
    assert w2c.shape == (81, 4, 4) and K.shape == (81, 3, 3)
    np.testing.assert_allclose(w2c[0], np.eye(4), atol=1e-6)
    entry = result["point_cloud"]
    assert entry["url"] == ply.resolve().as_uri() and entry["file_size"] == os.path.getsize(ply)
    assert entry["file_name"] == "v.ply"
    el = plyfile.PlyData.read(str(ply))["vertex"]
    # 480x832 at stride 4, deduplicated on a voxel of half a strided pixel: at most one point per strided pixel
    assert 0 < el.count <= 120 * 208
    z = np.asarray(el["z"])
    assert np.all(z > 0) and np.all(np.isfinite(z))
