"""The Gaussian-splat rasterizer (csrc/render/gs_raster.c) on hand-made scenes with known answers, and against an
independent brute-force NumPy renderer of the same model (3DGS / gsplat forward, gs_raster.h) without tiles.
Tolerance: 1e-5 absolute on colours in [0, 1] (float32 summation order), exact closed forms where stated."""
import numpy as np
import pytest

from lyra2.reconstruct import Gaussians
from lyra2.render import render_float

C0 = 0.28209479177387814
K = np.array([[100.0, 0, 32.0], [0, 100.0, 24.0], [0, 0, 1]], np.float32)
H, W = 48, 64
EYE = np.eye(4, dtype=np.float32)


def dc_for(rgb):
    """SH DC coefficients whose colour (0.5 + C0 * dc) is rgb."""
    return (np.asarray(rgb, np.float64) - 0.5) / C0


def scene(means, sigmas, colors, opacities, quats=None):
    n = len(means)
    scales = np.asarray(sigmas, np.float32).reshape(n, -1) * np.ones((n, 3), np.float32)
    quats = np.tile([1.0, 0, 0, 0], (n, 1)) if quats is None else quats
    harm = dc_for(colors).reshape(n, 3, 1)
    return Gaussians(means, scales, quats, harm, np.asarray(opacities, np.float32))


def reference(g, w2c, K, h, w, bg=(0, 0, 0), near=0.01):
    """Brute force over every splat for every pixel (no tiles), float64, the model of gs_raster.h."""
    R, t = w2c[:3, :3].astype(np.float64), w2c[:3, 3].astype(np.float64)
    fx, fy, cx, cy = (float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))
    campos = -R.T @ t
    sp = []
    for i in range(len(g)):
        m = g.means[i].astype(np.float64)
        pc = R @ m + t
        if pc[2] < near:
            continue
        q = g.rotations[i].astype(np.float64)
        q /= np.linalg.norm(q)
        qw, qx, qy, qz = q
        Rq = np.array([[1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy)],
                       [2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx)],
                       [2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy)]])
        S = np.diag(g.scales[i].astype(np.float64))
        cov = R @ Rq @ S @ S @ Rq.T @ R.T
        limx, limy = 1.3 * 0.5 * w / fx, 1.3 * 0.5 * h / fy
        z = pc[2]
        tx, ty = z * np.clip(pc[0] / z, -limx, limx), z * np.clip(pc[1] / z, -limy, limy)
        J = np.array([[fx / z, 0, -fx * tx / z ** 2], [0, fy / z, -fy * ty / z ** 2]])
        c2 = J @ cov @ J.T + 0.3 * np.eye(2)
        if np.linalg.det(c2) <= 0:
            continue
        mid = 0.5 * (c2[0, 0] + c2[1, 1])
        lam = mid + np.sqrt(max(0.1, mid * mid - np.linalg.det(c2)))
        radius = np.ceil(3 * np.sqrt(lam))
        mean2 = np.array([fx * pc[0] / z + cx, fy * pc[1] / z + cy])
        d = m - campos
        d /= np.linalg.norm(d)
        x, y, zz = d
        basis = [C0, -0.4886025119029199 * y, 0.4886025119029199 * zz, -0.4886025119029199 * x,
                 1.0925484305920792 * x * y, -1.0925484305920792 * y * zz,
                 0.31539156525252005 * (2 * zz * zz - x * x - y * y), -1.0925484305920792 * x * zz,
                 0.5462742152960396 * (x * x - y * y)]
        k = g.harmonics.shape[2]
        col = np.maximum(g.harmonics[i].astype(np.float64) @ np.array(basis[:k]) + 0.5, 0)
        sp.append((z, i, mean2, np.linalg.inv(c2), radius, col, float(g.opacities[i])))
    sp.sort(key=lambda s: (s[0], s[1]))
    out = np.zeros((h, w, 3))
    alpha = np.zeros((h, w))
    for py in range(h):
        for px in range(w):
            T, c = 1.0, np.zeros(3)
            tile = (px // 16, py // 16)
            for z, i, m2, con, rad, col, op in sp:
                # the splat is in this pixel's tile list when its radius square touches the tile
                x0 = int(min(np.ceil(w / 16), max(0, np.floor((m2[0] - rad) / 16))))
                x1 = int(min(np.ceil(w / 16), max(0, np.ceil((m2[0] + rad) / 16))))
                y0 = int(min(np.ceil(h / 16), max(0, np.floor((m2[1] - rad) / 16))))
                y1 = int(min(np.ceil(h / 16), max(0, np.ceil((m2[1] + rad) / 16))))
                if not (x0 <= tile[0] < x1 and y0 <= tile[1] < y1):
                    continue
                dx, dy = m2[0] - (px + 0.5), m2[1] - (py + 0.5)
                sig = 0.5 * (con[0, 0] * dx * dx + con[1, 1] * dy * dy) + con[0, 1] * dx * dy
                if sig < 0:
                    continue
                a = min(0.999, op * np.exp(-sig))
                if a < 1 / 255:
                    continue
                if T * (1 - a) <= 1e-4:
                    break
                c += col * a * T
                T *= 1 - a
            out[py, px] = c + T * np.asarray(bg)
            alpha[py, px] = 1 - T
    return out, alpha


def test_one_gaussian_closed_form():
    """An isotropic splat on the optical axis at depth 2 (sigma 0.05): centred between pixels (31, 23) and
    (32, 24); its 2D variance is (f sigma / z)^2 + 0.3 and alpha = o exp(-d^2 / 2 var)."""
    g = scene([[0, 0, 2.0]], [0.05], [[1.0, 0.5, 0.25]], [0.8])
    rgb, alpha, depth = render_float(g, EYE, K, (H, W))
    var = (100 * 0.05 / 2.0) ** 2 + 0.3
    for px, py in ((31, 23), (32, 24), (35, 24), (32, 30)):
        d2 = (32 - (px + 0.5)) ** 2 + (24 - (py + 0.5)) ** 2
        a = 0.8 * np.exp(-0.5 * d2 / var)
        np.testing.assert_allclose(alpha[0, py, px], a, rtol=1e-5)
        np.testing.assert_allclose(rgb[0, py, px], np.array([1.0, 0.5, 0.25]) * a, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(depth[0, py, px], 2.0 * a, rtol=1e-5)
    # symmetric about the projected centre; nothing far away
    np.testing.assert_allclose(rgb[0, 23, 31], rgb[0, 24, 32], rtol=1e-6)
    assert alpha[0, 0, 0] == 0 and alpha[0, 47, 63] == 0


def test_two_overlapping_gaussians_composite_front_to_back():
    front = [0, 0, 2.0]
    back = [0, 0, 3.0]
    g = scene([back, front], [0.05, 0.075], [[0, 0, 1.0], [1.0, 0, 0]], [0.6, 0.5])
    rgb, alpha, _ = render_float(g, EYE, K, (H, W), background=(0.0, 1.0, 0.0))
    var_f = (100 * 0.075 / 2.0) ** 2 + 0.3
    var_b = (100 * 0.05 / 3.0) ** 2 + 0.3
    d2 = 0.5  # pixel (31, 23): centre (31.5, 23.5), splats at (32, 24)
    af, ab = 0.5 * np.exp(-0.5 * d2 / var_f), 0.6 * np.exp(-0.5 * d2 / var_b)
    want = af * np.array([1, 0, 0]) + (1 - af) * ab * np.array([0, 0, 1]) + (1 - af) * (1 - ab) * np.array([0, 1, 0])
    np.testing.assert_allclose(rgb[0, 23, 31], want, rtol=1e-5)
    np.testing.assert_allclose(alpha[0, 23, 31], 1 - (1 - af) * (1 - ab), rtol=1e-5)


def test_depth_order_decides_not_the_list_order():
    """Swapping which splat is nearer swaps who covers whom; the input order does not matter."""
    red, blue = [1.0, 0, 0], [0, 0, 1.0]
    near_red = scene([[0, 0, 2.0], [0, 0, 2.5]], [0.05, 0.05], [red, blue], [0.99, 0.99])
    near_red_swapped = scene([[0, 0, 2.5], [0, 0, 2.0]], [0.05, 0.05], [blue, red], [0.99, 0.99])
    near_blue = scene([[0, 0, 2.5], [0, 0, 2.0]], [0.05, 0.05], [red, blue], [0.99, 0.99])
    a = render_float(near_red, EYE, K, (H, W))[0][0, 24, 32]
    b = render_float(near_red_swapped, EYE, K, (H, W))[0][0, 24, 32]
    c = render_float(near_blue, EYE, K, (H, W))[0][0, 24, 32]
    np.testing.assert_array_equal(a, b)
    assert a[0] > 0.9 and a[2] < 0.1 and c[2] > 0.9 and c[0] < 0.1


def test_opaque_front_stops_the_ray():
    """A splat at 0.999 opacity leaves T = 1e-3; the one behind (T would drop under 1e-4 after it) is cut."""
    # both centred on pixel (32, 24)'s centre (32.5, 24.5)
    g = scene([[0.01, 0.01, 2.0], [0.015, 0.015, 3.0]], [0.2, 0.2], [[1, 1, 1], [1, 0, 0]], [1.0, 1.0])
    rgb, alpha, _ = render_float(g, EYE, K, (H, W))
    np.testing.assert_allclose(alpha[0, 24, 32], 0.999, rtol=1e-6)
    np.testing.assert_allclose(rgb[0, 24, 32], [0.999, 0.999, 0.999], rtol=1e-6)


def test_behind_the_camera_and_background():
    g = scene([[0, 0, -2.0], [0, 0, 0.005]], [0.5, 0.5], [[1, 1, 1]] * 2, [1.0, 1.0])
    rgb, alpha, _ = render_float(g, EYE, K, (H, W), background=(0.2, 0.4, 0.6))
    assert np.all(alpha == 0)
    np.testing.assert_allclose(rgb[0], np.broadcast_to([0.2, 0.4, 0.6], (H, W, 3)), rtol=1e-6)


def test_random_scene_matches_brute_force_reference():
    rng = np.random.default_rng(0)
    n = 60
    means = np.c_[rng.uniform(-0.8, 0.8, (n, 2)), rng.uniform(1.5, 4.0, n)]
    q = rng.standard_normal((n, 4))
    g = Gaussians(means, rng.uniform(0.01, 0.15, (n, 3)), q / np.linalg.norm(q, axis=1, keepdims=True),
                  0.5 * rng.standard_normal((n, 3, 9)), rng.uniform(0.2, 1.0, n))
    w2c = np.eye(4, dtype=np.float32)
    a, b = np.deg2rad(5), np.deg2rad(-3)
    w2c[:3, :3] = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]) @ \
        np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    w2c[:3, 3] = [0.05, -0.02, 0.1]
    rgb, alpha, _ = render_float(g, w2c, K, (H, W), background=(0.1, 0.2, 0.3))
    ref, ref_alpha = reference(g, w2c, K, H, W, bg=(0.1, 0.2, 0.3))
    np.testing.assert_allclose(rgb[0], ref, atol=1e-5)
    np.testing.assert_allclose(alpha[0], ref_alpha, atol=1e-5)
    assert (ref_alpha > 0.5).mean() > 0.2  # the scene covers a good part of the frame


def test_uint8_frames_video_and_errors(tmp_path):
    g = scene([[0, 0, 2.0]], [0.1], [[1.0, 0.5, 0.25]], [0.9])
    one = g.render(EYE, K, (H, W))
    assert one.dtype == np.uint8 and one.shape == (H, W, 3)
    w2c = np.repeat(EYE[None], 3, 0)
    w2c[:, 0, 3] = [0.0, 0.1, 0.2]
    many = g.render(w2c, K, (H, W))
    assert many.shape == (3, H, W, 3)
    np.testing.assert_array_equal(many[0], one)
    assert not np.array_equal(many[0], many[2])  # the camera moved
    path = g.render_video(tmp_path / "fly.mp4", w2c, np.repeat(K[None], 3, 0), (H, W), fps=8)
    assert (tmp_path / "fly.mp4").stat().st_size > 0 and path.endswith("fly.mp4")
    with pytest.raises(ValueError, match="size"):
        g.render(EYE, K, (0, 10))
    with pytest.raises(ValueError, match="K"):
        g.render(w2c, np.zeros((2, 3, 3)), (H, W))
    with pytest.raises(ValueError, match="w2c"):
        g.render(np.eye(3), K, (H, W))
    with pytest.raises(ValueError, match="focal"):
        g.render(EYE, np.diag([0.0, 1.0, 1.0]).astype(np.float32), (H, W))


def test_device_argument():
    """device= of render/render_float/reconstruct: "auto" | "cpu" | "cuda"; "cuda" without a usable device says
    why (the CPU/CUDA agreement itself: tests/test_cuda_splat.py, tests/device_checks/check_gs.py)."""
    import lyra2

    g = scene([[0, 0, 2.0]], [0.05], [[1.0, 0.5, 0.25]], [0.8])
    with pytest.raises(ValueError, match="device: 'gpu' is not allowed"):
        render_float(g, EYE, K, (H, W), device="gpu")
    with pytest.raises(ValueError, match="device"):
        lyra2.reconstruct(np.zeros((1, 28, 28, 3), np.uint8), EYE[None], K[None], weights={}, device=None)
    np.testing.assert_array_equal(g.render(EYE, K, (H, W), device="auto"), g.render(EYE, K, (H, W), device="cpu"))
    if not lyra2.backends()["cuda"]:
        with pytest.raises(lyra2.Lyra2Error, match="no usable CUDA device"):
            g.render(EYE, K, (H, W), device="cuda")
