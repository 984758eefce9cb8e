"""lyra2.reconstruct end to end on the tiny random checkpoint (lyra2.testing writes a tiny DA3 GS head): chunking,
the Gaussians object, the 3DGS PLY read back with plyfile, rendering, zoom(reconstruct=True), the CLI
(`lyra2 reconstruct VIDEO`, `lyra2 zoom --cameras/--splats`) and argument errors. The networks are random: these
check the plumbing; the numbers are checked against upstream in test_gs_head.py."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import lyra2
from lyra2 import fields, testing
from lyra2.checkpoint import FILES
from lyra2.progress import Progress
from lyra2.reconstruct import _Networks, reconstruct_chunk
from lyra2.video import Video
from synthetic_clip import synthetic_clip

plyfile = pytest.importorskip("plyfile")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W, T = 56, 84, 6   # DA3 processes 56x84 as is (multiples of 14): GS grid 28 x 42 with down_ratio 2
N_VIEW = 28 * 42


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    old = os.environ.get("LYRA2_NUM_THREADS")
    os.environ["LYRA2_NUM_THREADS"] = "1"
    path = testing.make_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny_gs")), seed=0)
    yield path
    if old is None:
        os.environ.pop("LYRA2_NUM_THREADS", None)
    else:
        os.environ["LYRA2_NUM_THREADS"] = old


@pytest.fixture(scope="module")
def clip():
    return synthetic_clip(H, W, T)


@pytest.fixture(scope="module")
def gaussians(ckpt, clip):
    frames, w2c, K = clip
    return lyra2.reconstruct(frames, w2c, K, ckpt, chunk_size=4, chunk_overlap=2)


def test_gaussians_shapes_and_values(gaussians, clip):
    g = gaussians
    # chunks [0..3] and [2..5]: every view once
    assert len(g) == T * N_VIEW and g.grid == (T, 28, 42) and g.sh_degree == 2
    assert g.means.shape == (len(g), 3) and g.harmonics.shape == (len(g), 3, 9) and g.rotations.shape == (len(g), 4)
    for a in (g.means, g.scales, g.rotations, g.harmonics, g.opacities):
        assert a.dtype == np.float32 and np.isfinite(a).all()
    assert np.all(g.scales > 0) and np.all((g.opacities > 0) & (g.opacities < 1))
    np.testing.assert_allclose(np.linalg.norm(g.rotations, axis=1), 1, atol=1e-5)
    assert np.all(g.rotations[:, 3] >= 0)  # upstream's mat_to_quat standardises its last component
    assert "Gaussians" in repr(g)


def test_means_reproject_onto_their_pixels(ckpt, clip):
    """Each splat lies on the ray of its GS-grid pixel centre moved by the head's xy offset, seen from the aligned
    camera the adapter used (projection with K at the GS grid), at distance depth/s + offset/s along it."""
    frames, w2c, K = clip
    out = reconstruct_chunk(_Networks.get(os.path.join(ckpt, FILES["da3"])), frames[:3], w2c[:3], K[:3])
    raw, c2w, Kg = out["raw"], out["c2w"].astype(np.float64), out["K_gs"].astype(np.float64)
    _, _, s = out["sim3"]
    jj, ii = np.meshgrid(np.arange(42), np.arange(28))
    depth = out["pred"]["trace"]["av_head_depth"][:, ::2, ::2] / s
    for v in range(3):
        m = out["means"][v * N_VIEW:(v + 1) * N_VIEW].astype(np.float64)
        cam = (m - c2w[v, :3, 3]) @ c2w[v, :3, :3]
        p = cam @ Kg[v].T
        np.testing.assert_allclose(p[:, 0] / p[:, 2], (jj + 0.5 + raw[v, 0]).ravel(), atol=2e-3)
        np.testing.assert_allclose(p[:, 1] / p[:, 2], (ii + 0.5 + raw[v, 1]).ravel(), atol=2e-3)
        dist = np.linalg.norm(cam, axis=1)
        np.testing.assert_allclose(dist, (depth[v] + raw[v, 36] / s).ravel(), rtol=1e-4)


def test_chunks_are_independent_calls(ckpt, clip, gaussians):
    """The first chunk's views are exactly one DA3 + GS call on views 0..3; the second chunk keeps views 4, 5."""
    frames, w2c, K = clip
    nets = _Networks.get(os.path.join(ckpt, FILES["da3"]))
    first = reconstruct_chunk(nets, frames[:4], w2c[:4], K[:4])
    np.testing.assert_array_equal(gaussians.means[:4 * N_VIEW], first["means"])
    second = reconstruct_chunk(nets, frames[2:], w2c[2:], K[2:])
    np.testing.assert_array_equal(gaussians.opacities[4 * N_VIEW:], second["opacities"][2 * N_VIEW:])
    # one call over all views differs (cross-view attention sees other views)
    whole = lyra2.reconstruct(frames, w2c, K, ckpt, chunk_size=None)
    assert len(whole) == len(gaussians) and not np.array_equal(whole.means, gaussians.means)
    # max_views subsamples uniformly (floor(linspace)): 3 of 6 -> views 0, 2, 5
    sub = lyra2.reconstruct(frames, w2c, K, ckpt, max_views=3, chunk_size=None)
    three = reconstruct_chunk(nets, frames[[0, 2, 5]], w2c[[0, 2, 5]], K[[0, 2, 5]])
    np.testing.assert_array_equal(sub.scales, three["scales"])


def test_video_input_takes_its_cameras(ckpt, clip, gaussians):
    frames, w2c, K = clip
    v = Video(frames, 16, 0, {}, w2c, K, np.ones((H, W), np.float32), "generate")
    g = lyra2.reconstruct(v, checkpoint_dir=ckpt, chunk_size=4, chunk_overlap=2)
    np.testing.assert_array_equal(g.means, gaussians.means)


def test_ply_reads_back(gaussians, tmp_path):
    g = gaussians
    path = g.save_ply(tmp_path / "s.ply")
    el = plyfile.PlyData.read(path)["vertex"]
    names = [p.name for p in el.properties]
    assert names == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
                     "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    # border prune on the 28 x 42 grid: int(8/256 * 42) = 1 column each side; int(8/256 * 28) = 0 rows, where
    # upstream's [0:-0] slice would keep nothing and lyra2 keeps every row
    assert el.count == T * 28 * 40
    keep = np.zeros((T, 28, 42), bool)
    keep[:, :, 1:41] = True
    keep = keep.ravel()
    np.testing.assert_array_equal(el["x"], g.means[keep, 0])
    np.testing.assert_allclose(el["opacity"], np.log(g.opacities[keep] / (1 - g.opacities[keep])), rtol=1e-6)
    np.testing.assert_allclose(el["scale_2"], np.log(g.scales[keep, 2]), rtol=1e-6)
    np.testing.assert_array_equal(el["rot_0"], g.rotations[keep, 0])
    p10 = plyfile.PlyData.read(g.save_ply(tmp_path / "p10.ply", opacity_percentile=0.1,
                                          prune_border=False))["vertex"]
    assert abs(p10.count - 0.9 * len(g)) <= 2
    assert np.asarray(p10["opacity"]).min() >= np.quantile(np.log(g.opacities / (1 - g.opacities)), 0.09)
    rest = plyfile.PlyData.read(g.save_ply(tmp_path / "rest.ply", sh_dc_only=False))["vertex"]
    assert [p.name for p in rest.properties][9:33] == [f"f_rest_{i}" for i in range(24)]
    with pytest.raises(ValueError, match="opacity_percentile"):
        g.save_ply(tmp_path / "x.ply", opacity_percentile=1.5)


def test_render_from_the_aligned_source_camera(ckpt, clip, gaussians):
    """Seen from the camera the adapter placed view 0's splats with (DA3's prediction aligned to the inputs; the
    random tiny DA3 predicts other poses than the inputs), view 0's splats cover its frame."""
    frames, w2c, K = clip
    out = reconstruct_chunk(_Networks.get(os.path.join(ckpt, FILES["da3"])), frames[:4], w2c[:4], K[:4])
    c2w = out["c2w"][0].astype(np.float64)
    view_w2c = np.linalg.inv(c2w).astype(np.float32)
    from lyra2.reconstruct import Gaussians
    from lyra2.render import render_float

    g0 = Gaussians(*(out[k][:N_VIEW] for k in ("means", "scales", "rotations", "harmonics", "opacities")))
    img = g0.render(view_w2c, K[0], (H, W))
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    _, alpha, _ = render_float(g0, view_w2c, K[0], (H, W))
    assert alpha.mean() > 0.5
    many = gaussians.render(np.repeat(view_w2c[None], 2, 0), K[:2], (H, W))
    assert many.shape == (2, H, W, 3)


def test_argument_errors(ckpt, clip, tmp_path):
    frames, w2c, K = clip
    with pytest.raises(ValueError, match="w2c, intrinsics: required"):
        lyra2.reconstruct(frames)
    with pytest.raises(ValueError, match="frames"):
        lyra2.reconstruct(frames.astype(np.float32), w2c, K, ckpt)
    with pytest.raises(ValueError, match="w2c"):
        lyra2.reconstruct(frames, w2c[:3], K, ckpt)
    with pytest.raises(ValueError, match="down_ratio"):
        lyra2.reconstruct(frames, w2c, K, ckpt, down_ratio=3)
    with pytest.raises(ValueError, match="chunk_overlap"):
        lyra2.reconstruct(frames, w2c, K, ckpt, chunk_size=4, chunk_overlap=4)
    with pytest.raises(lyra2.Lyra2Error, match="Gaussian head"):
        lyra2.reconstruct(frames, w2c, K, str(tmp_path))
    no_gs = {k: v for k, v in lyra2.io.load_safetensors(os.path.join(ckpt, FILES["da3"])).items()
             if not k.startswith("da3.gs_head.")}
    with pytest.raises(lyra2.Lyra2Error, match="gs_head"):
        lyra2.reconstruct(frames, w2c, K, weights=no_gs)


def test_zoom_reconstruct_true(ckpt, monkeypatch):
    """zoom(..., reconstruct=True) (here the preview run at a tiny size with the folder's DA3 depth) lifts the
    result with its own cameras."""
    from lyra2.api import _zoom_validated

    monkeypatch.delenv("LYRA2_CHECKPOINT_DIR", raising=False)
    args = fields.validate({"prompt": "a street", "seed": 0, "num_frames": 81}, require_image=False)
    args["resolution"] = (28, 42)
    img = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    v = _zoom_validated(img, args, checkpoint_dir=ckpt, mode="preview", progress=False, reconstruct=True)
    assert isinstance(v.gaussians, lyra2.Gaussians) and "reconstruct_s" in v.timings
    assert len(v.gaussians) == 81 * 14 * 21
    with pytest.raises(lyra2.Lyra2Error, match="Gaussian head"):
        _zoom_validated(img, args, mode="preview", progress=False, reconstruct=True)
    with pytest.raises(TypeError, match="reconstruct"):
        lyra2.zoom(img, "x", reconstruct="yes")


def test_cli_reconstruct_from_an_mp4(ckpt, clip, tmp_path):
    frames, w2c, K = clip
    mp4 = tmp_path / "clip.mp4"
    lyra2.write_video(frames, str(mp4), fps=8)
    v = Video(frames, 8, 0, {}, w2c, K, np.ones((H, W), np.float32), "generate")
    v.save_cameras(tmp_path / "clip.cameras.npz")
    env = {**os.environ, "PYTHONPATH": ROOT, "LYRA2_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "lyra2", "reconstruct", str(mp4), "-o", str(tmp_path / "s.ply"),
                        "--checkpoint-dir", ckpt, "--render", str(tmp_path / "fly.mp4"), "--chunk-size", "4",
                        "--chunk-overlap", "2", "--device", "cpu", "--json"], capture_output=True, text=True, env=env,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["frames"] == T and out["gaussians"] == T * N_VIEW
    assert plyfile.PlyData.read(out["ply"])["vertex"].count == out["ply_rows"] == T * 28 * 40  # border pruned
    got, fps = lyra2._core.video_read(out["render"])
    assert got.shape == (T, H, W, 3) and fps == 8
    bad = subprocess.run([sys.executable, "-m", "lyra2", "reconstruct", str(mp4), "-o", str(tmp_path / "s.txt")],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert bad.returncode == 2 and "must end in .ply" in bad.stderr
