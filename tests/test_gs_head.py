"""Depth Anything 3's Gaussian-splat branch (GS head + adapter + 3DGS PLY) against upstream at tiny size.

tests/data/gs_tiny.npz / gs_tiny_weights.npz: the Lyra fork of DA3 (frankshen07/Depth-Anything-3 @ 1ed6cb8) run as
Lyra-2's recon script calls it (infer_gs=True, use_aligned_pred_cam=True, gs_down_ratio=2, gs_ds_feature_mode)
on 4 views of 70x126 with known cameras, then save_gaussian_ply (border pruned; and 10 % opacity pruned), torch
CPU fp32. Tolerance: rel 1e-4 (max |ours - golden| / max |golden| per field).

The golden's input cameras are collinear, which leaves upstream's camera-centre Umeyama rotation about that line to
float32 noise (lyra2/reconstruct.py docstring): the fields that do not depend on that rotation (scales, opacities,
SH DC, the depth along each ray) are compared from our own run; the rotation-dependent ones (means, rotations, SH
bands 1-2, PLY rows) from the adapter given upstream's aligned cameras, recovered per view by a rigid fit of the
golden means to our camera-frame points (whose residual and cross-view consistency are asserted)."""
import os

import numpy as np
import pytest

from lyra2 import _core
from lyra2.reconstruct import Gaussians, _Networks, align_cameras, reconstruct_chunk

plyfile = pytest.importorskip("plyfile")

DATA = os.path.join(os.path.dirname(__file__), "data")
TOL = 1e-4
OPTIONS = dict(heads=2, metric_heads=3, cam_enc_heads=2, taps=[3, 5, 7, 9], metric_taps=[1, 2, 4, 5])


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(os.path.join(DATA, "gs_tiny.npz")))


@pytest.fixture(scope="module")
def run(golden):
    weights = dict(np.load(os.path.join(DATA, "gs_tiny_weights.npz")))
    nets = _Networks(weights, **OPTIONS)
    return reconstruct_chunk(nets, golden["frames"], golden["w2c"], golden["K"], down_ratio=2)


def _rigid(a, b):
    """R, t with b ~ R a + t (Kabsch)."""
    ma, mb = a.mean(0), b.mean(0)
    u, _, vt = np.linalg.svd((a - ma).T @ (b - mb))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(vt.T @ u.T))])
    r = vt.T @ d @ u.T
    return r, mb - r @ ma


@pytest.fixture(scope="module")
def upstream_cameras(golden, run):
    """Upstream's aligned camera-to-world per view, from its Gaussians and our camera-frame points."""
    V, hg, wg = run["grid"]
    gm = golden["gs_means"][0].reshape(V, -1, 3).astype(np.float64)
    ours = run["means"].reshape(V, -1, 3).astype(np.float64)
    c2w = np.zeros((V, 4, 4), np.float32)
    resid = []
    for v in range(V):
        cam = (ours[v] - run["c2w"][v, :3, 3]) @ run["c2w"][v, :3, :3].astype(np.float64)
        r, t = _rigid(cam, gm[v])
        resid.append(np.abs(cam @ r.T + t - gm[v]).max() / np.abs(gm[v]).max())
        c2w[v, :3, :3], c2w[v, :3, 3], c2w[v, 3, 3] = r, t, 1
    return c2w, max(resid)


def test_da3_outputs_under_the_gs_call(golden, run):
    pred = run["pred"]
    assert rel(pred["depth"], golden["pred_depth"]) < 3e-5
    np.testing.assert_allclose(pred["extrinsics"], golden["pred_extrinsics"], atol=1e-5)
    np.testing.assert_allclose(pred["intrinsics"], golden["pred_intrinsics"], rtol=1e-5)


def test_camera_independent_fields_match(golden, run):
    assert run["raw"].shape == (4, 38, 35, 63) and run["grid"] == (4, 35, 63)
    assert len(run["means"]) == golden["gs_means"].shape[1] == 8820
    assert rel(run["scales"], golden["gs_scales"][0]) < TOL
    assert rel(run["opacities"], golden["gs_opacities"][0]) < TOL
    assert rel(run["harmonics"][:, :, 0], golden["gs_harmonics"][0][:, :, 0]) < TOL



def test_adapter_with_upstream_cameras_matches_every_field(golden, run, upstream_cameras):
    c2w, resid = upstream_cameras
    assert resid < 1e-5  # the golden means are our camera-frame points moved rigidly, view by view
    # one Sim(3) for all views: R_fit,v · R_ours,vᵀ is the same rotation for every view
    common = [c2w[v, :3, :3].astype(np.float64) @ run["c2w"][v, :3, :3].T.astype(np.float64) for v in range(4)]
    for m in common[1:]:
        np.testing.assert_allclose(m, common[0], atol=1e-5)
    r, t, s = run["sim3"]
    depth = (run["pred"]["trace"]["av_head_depth"] / np.float32(s))[:, ::2, ::2]
    means, scales, rots, harm, op = _core.gs_adapt(run["raw"], np.ascontiguousarray(depth), c2w, run["K_gs"], 2,
                                                   1e-5, 30.0, float(np.float32(1) / np.float32(s)))
    assert rel(means, golden["gs_means"][0]) < TOL
    assert rel(scales, golden["gs_scales"][0]) < TOL
    assert rel(rots, golden["gs_rotations"][0]) < TOL
    assert rel(harm, golden["gs_harmonics"][0]) < TOL
    assert rel(op, golden["gs_opacities"][0]) < TOL


@pytest.fixture(scope="module")
def upstream_gaussians(golden, run, upstream_cameras):
    c2w, _ = upstream_cameras
    _, _, s = run["sim3"]
    depth = (run["pred"]["trace"]["av_head_depth"] / np.float32(s))[:, ::2, ::2]
    out = _core.gs_adapt(run["raw"], np.ascontiguousarray(depth), c2w, run["K_gs"], 2, 1e-5, 30.0,
                         float(np.float32(1) / np.float32(s)))
    return Gaussians(*out, grid=(4, 35, 63))


def test_ply_rows_match_upstream(golden, upstream_gaussians):
    g = upstream_gaussians
    names, table = g.ply_rows()  # the recon script's defaults: border pruned, DC only
    assert names == [str(n) for n in golden["ply_fields"]]
    assert table.shape == golden["ply_table"].shape == (8052, 17)  # 4 views x 33 x 61
    for i, n in enumerate(names):
        ref = golden["ply_table"][:, i]
        if np.abs(ref).max() == 0:
            assert np.all(table[:, i] == 0), n  # the normals are zeros
        else:
            assert rel(table[:, i], ref) < TOL, n
    names, p10 = g.ply_rows(prune_border=False, opacity_percentile=0.1)
    assert p10.shape == golden["ply_p10_table"].shape == (7939, 17)
    assert rel(p10, golden["ply_p10_table"]) < TOL


def test_ply_file_reads_back(tmp_path, upstream_gaussians, golden):
    g = upstream_gaussians
    path = g.save_ply(tmp_path / "scene.ply")
    ply = plyfile.PlyData.read(path)
    el = ply["vertex"]
    assert ply.byte_order == "<" and el.count == 8052
    assert [p.name for p in el.properties] == [str(n) for n in golden["ply_fields"]]
    assert all(el.data.dtype[p.name] == np.dtype("<f4") for p in el.properties)
    np.testing.assert_array_equal(np.stack([el[n] for n in golden["ply_fields"]], 1), g.ply_rows()[1])
    full = plyfile.PlyData.read(g.save_ply(tmp_path / "full.ply", prune_border=False, sh_dc_only=False))["vertex"]
    names = [p.name for p in full.properties]
    assert full.count == 8820 and names[9:33] == [f"f_rest_{i}" for i in range(24)] and names[33] == "opacity"
    # f_rest is channel-major (3DGS layout): f_rest_0..7 are the red channel's bands 1-2
    np.testing.assert_array_equal(full["f_rest_0"], g.harmonics[:, 0, 1])
    np.testing.assert_array_equal(full["f_rest_8"], g.harmonics[:, 1, 1])


def test_tiny_checkpoint_gs_head_has_the_upstream_layout():
    """lyra2.testing's GS head tensors are named and shaped as upstream's GSDPT at the golden's tiny size."""
    from lyra2 import testing

    z = np.load(os.path.join(DATA, "gs_tiny_weights.npz"))
    gs = {k: tuple(z[k].shape) for k in z.files if k.startswith("da3.gs_head.")}
    assert dict(testing.da3_gs_tensor_shapes(testing.TINY["da3"])) == gs


def test_sh_rotation_is_a_representation():
    """D(R1 R2) = D(R1) D(R2), D(I) = I, D orthogonal; band 1 is the 3DGS (-y, z, -x) basis rotated by R."""
    rng = np.random.default_rng(0)

    def rot():
        q = rng.standard_normal(4)
        q /= np.linalg.norm(q)
        w, x, y, z = q
        return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])

    a, b = rot(), rot()
    da, db, dab = _core.sh_rotation(a), _core.sh_rotation(b), _core.sh_rotation(a @ b)
    for k in range(2):
        np.testing.assert_allclose(dab[k], da[k] @ db[k], atol=1e-12)
        np.testing.assert_allclose(da[k] @ da[k].T, np.eye(len(da[k])), atol=1e-12)
    np.testing.assert_allclose(_core.sh_rotation(np.eye(3))[1], np.eye(5), atol=1e-12)
    p = np.array([[0, -1, 0], [0, 0, 1], [-1, 0, 0]], float)  # band-1 coefficients = p @ (x, y, z) up to C1
    np.testing.assert_allclose(da[0], p @ a @ p.T, atol=1e-12)


def test_alignment_uses_umeyama_off_a_line_and_orientations_on_it():
    rng = np.random.default_rng(1)

    def w2c_of(R, C):
        e = np.eye(4)
        e[:3, :3] = R.T
        e[:3, 3] = -R.T @ C
        return e

    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.linalg.det(q))
    s_true, t_true = 2.5, np.array([0.3, -0.1, 0.7])
    Rs = [np.linalg.qr(np.eye(3) + 0.1 * rng.standard_normal((3, 3)))[0] for _ in range(5)]
    Rs = [r * np.sign(np.linalg.det(r)) for r in Rs]
    for centres in (rng.standard_normal((5, 3)), np.outer(np.arange(5), [0.1, 0.02, 0.3])):
        inp = np.stack([w2c_of(R, C) for R, C in zip(Rs, centres)])
        pred = np.stack([w2c_of(q @ R, s_true * q @ C + t_true) for R, C in zip(Rs, centres)])
        r, t, s = align_cameras(pred[:, :3], inp)
        np.testing.assert_allclose(r, q, atol=1e-5)
        np.testing.assert_allclose(s, s_true, rtol=1e-5)
        np.testing.assert_allclose(t, t_true, atol=1e-5)
