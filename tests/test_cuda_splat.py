"""The Gaussian-splat rasterizer op (gs_rasterize, csrc/nn/splat_math.h) on the CUDA backend against the CPU
reference: the hand-made scenes of tests/test_render.py (one Gaussian, two overlapping ones, depth order, an
opaque front splat), random scenes (SH degrees 0-2, splats behind the camera and off screen, a rotated and moved
camera, odd image sizes), a tile crowded past the shared-memory sort (its list sorted in global memory), no splats.

Both backends composite each pixel's splats in the same total order (depth, index) with the same arithmetic
(splat_math.h), so they differ only by float rounding. Tolerance: |cuda - cpu| <= 1e-4 · max(1, |cpu|) on every
channel (r, g, b, alpha, depth) for all but 0.1% of the pixels, and <= 0.02 on every pixel: on a GPU, nvcc's FMA
contraction and libdevice's expf/logf (2 ulp) can move a splat across one of the model's hard thresholds (alpha
1/255, the transmittance stop at 1e-4, a tile's radius edge) at isolated pixels, each worth at most
0.999·exp(-4.5) ≈ 0.011 of a colour. The kernel-emulation build (LYRA2_CUDA_EMU=1, the .cu kernels run by the
host compiler without FMA contraction) must agree bit for bit. Runs on a GPU, in the emulation build
(`pytest -m cuda`) and on the emulated device (LYRA2_EMULATED_CUDA=1, where "cuda" runs the CPU op)."""
import numpy as np
import pytest

import lyra2
from lyra2 import _testops as ops

pytestmark = pytest.mark.cuda  # skipped without a GPU, a failure under -m cuda (tests/conftest.py)

EXACT = lyra2.backends()["cuda_emulation_build"] or lyra2.backends()["emulated"]
C0 = 0.28209479177387814
K = np.array([[100.0, 0, 32.0], [0, 100.0, 24.0], [0, 0, 1]], np.float32)
EYE = np.eye(4, dtype=np.float32)


def both(scene, w2c, K, h, w, **kw):
    a = ops.gs_rasterize(*scene, w2c, K, h, w, **kw)
    b = ops.gs_rasterize(*scene, w2c, K, h, w, backend="cuda", **kw)
    assert a.shape == b.shape == (h, w, 5)
    return a, b


def check(a, b, name):
    if EXACT:
        np.testing.assert_array_equal(b, a, err_msg=name)
        return
    err = np.abs(b.astype(np.float64) - a) / np.maximum(1.0, np.abs(a))
    off = (err > 1e-4).any(axis=2)
    assert off.mean() <= 1e-3, f"{name}: {off.sum()} of {off.size} pixels beyond 1e-4 (max {err.max():.3g})"
    assert err.max() <= 0.02, f"{name}: max difference {err.max():.3g}"


def hand_scene(means, sigmas, colors, opacities):
    n = len(means)
    scales = np.asarray(sigmas, np.float32).reshape(n, -1) * np.ones((n, 3), np.float32)
    quats = np.tile(np.float32([1, 0, 0, 0]), (n, 1))
    harm = ((np.asarray(colors, np.float64) - 0.5) / C0).reshape(n, 3, 1).astype(np.float32)
    return (np.asarray(means, np.float32), scales, quats, harm, np.asarray(opacities, np.float32))


def random_scene(rng, n, d_sh, spread=1.0, depth=(-0.5, 4.0)):
    means = np.c_[rng.uniform(-spread, spread, (n, 2)), rng.uniform(*depth, n)].astype(np.float32)
    scales = rng.uniform(0.01, 0.3, (n, 3)).astype(np.float32)
    quats = rng.standard_normal((n, 4)).astype(np.float32)
    harm = (rng.standard_normal((n, 3, d_sh)) * 0.5).astype(np.float32)
    opac = rng.uniform(0, 1, n).astype(np.float32)
    return means, scales, quats, harm, opac


def test_one_gaussian_matches_the_closed_form_on_both():
    """An isotropic splat on the axis at depth 2: alpha = o·exp(-d²/2var), var = (f·sigma/z)² + 0.3."""
    a, b = both(hand_scene([[0, 0, 2.0]], [0.05], [[1.0, 0.5, 0.25]], [0.8]), EYE, K, 48, 64)
    var = (100 * 0.05 / 2.0) ** 2 + 0.3
    for px, py in ((31, 23), (32, 24), (35, 24), (32, 30)):
        al = 0.8 * np.exp(-0.5 * ((32 - (px + 0.5)) ** 2 + (24 - (py + 0.5)) ** 2) / var)
        np.testing.assert_allclose(b[py, px, 3], al, rtol=1e-5)
        np.testing.assert_allclose(b[py, px, :3], np.array([1.0, 0.5, 0.25]) * al, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(b[py, px, 4], 2.0 * al, rtol=1e-5)
    check(a, b, "one gaussian")


def test_two_overlapping_and_depth_order():
    front, back = [0, 0, 2.0], [0, 0, 3.0]
    scene = hand_scene([back, front], [0.05, 0.075], [[0, 0, 1.0], [1.0, 0, 0]], [0.6, 0.5])
    a, b = both(scene, EYE, K, 48, 64, background=(0.0, 1.0, 0.0))
    var_f, var_b = (100 * 0.075 / 2.0) ** 2 + 0.3, (100 * 0.05 / 3.0) ** 2 + 0.3
    af, ab = 0.5 * np.exp(-0.25 / var_f), 0.6 * np.exp(-0.25 / var_b)  # pixel (31, 23): d² = 0.5
    want = af * np.array([1, 0, 0]) + (1 - af) * ab * np.array([0, 0, 1]) + (1 - af) * (1 - ab) * np.array([0, 1, 0])
    np.testing.assert_allclose(b[23, 31, :3], want, rtol=1e-5)
    check(a, b, "two overlapping")
    red, blue = [1.0, 0, 0], [0, 0, 1.0]
    near_red = both(hand_scene([[0, 0, 2.0], [0, 0, 2.5]], [0.05, 0.05], [red, blue], [0.99, 0.99]), EYE, K, 48, 64)[1]
    swapped = both(hand_scene([[0, 0, 2.5], [0, 0, 2.0]], [0.05, 0.05], [blue, red], [0.99, 0.99]), EYE, K, 48, 64)[1]
    np.testing.assert_array_equal(near_red, swapped)  # the input order does not matter, only depth
    assert near_red[24, 32, 0] > 0.9 and near_red[24, 32, 2] < 0.1


def test_opaque_front_stops_the_ray():
    scene = hand_scene([[0.01, 0.01, 2.0], [0.015, 0.015, 3.0]], [0.2, 0.2], [[1, 1, 1], [1, 0, 0]], [1.0, 1.0])
    a, b = both(scene, EYE, K, 48, 64)
    np.testing.assert_allclose(b[24, 32, 3], 0.999, rtol=1e-6)
    np.testing.assert_allclose(b[24, 32, :3], [0.999] * 3, rtol=1e-6)
    check(a, b, "opaque front")


@pytest.mark.parametrize("d_sh", [1, 4, 9])
def test_random_scene(d_sh):
    """2000 splats, a part behind the camera (culled at near 0.01), some off screen, on a 61 x 83 image (partial
    edge tiles), seen from a rotated and moved camera with a background."""
    rng = np.random.default_rng(10 + d_sh)
    scene = random_scene(rng, 2000, d_sh)
    a_ = 0.1
    w2c = EYE.copy()
    w2c[:3, :3] = [[np.cos(a_), 0, np.sin(a_)], [0, 1, 0], [-np.sin(a_), 0, np.cos(a_)]]
    w2c[:3, 3] = [0.05, -0.02, 0.3]
    Kr = np.array([[60.0, 0, 40.0], [0, 55.0, 30.0], [0, 0, 1]], np.float32)
    a, b = both(scene, w2c, Kr, 61, 83, background=(0.1, 0.2, 0.3))
    assert 0.2 < a[..., 3].mean() < 1.0  # a scene that covers the image partly, with overlaps
    check(a, b, f"random scene d_sh={d_sh}")


def test_crowded_tile_sorts_in_global_memory():
    """6000 translucent splats over a 32 x 32 image: each tile's list (> 4096 keys) is sorted outside shared
    memory; opacities <= 0.05 keep the rays going through thousands of them, so the order matters everywhere."""
    rng = np.random.default_rng(3)
    m, s, q, h, o = random_scene(rng, 6000, 1, spread=0.05, depth=(1.0, 4.0))
    o = (o * 0.05).astype(np.float32)
    a, b = both((m, s, q, h, o), EYE, np.array([[60.0, 0, 16], [0, 60.0, 16], [0, 0, 1]], np.float32), 32, 32)
    assert a[..., 3].min() > 0.5
    check(a, b, "crowded tile")


def test_no_splats_and_nothing_visible():
    empty = tuple(np.zeros(shape, np.float32) for shape in ((0, 3), (0, 3), (0, 4), (0, 3, 1), (0,)))
    a, b = both(empty, EYE, K, 17, 33, background=(0.25, 0.5, 0.75))
    np.testing.assert_array_equal(b[..., :3], np.broadcast_to(np.float32([0.25, 0.5, 0.75]), (17, 33, 3)))
    np.testing.assert_array_equal(b[..., 3:], 0)
    check(a, b, "empty")
    behind = hand_scene([[0, 0, -2.0], [0, 0, 0.001]], [0.1, 0.1], [[1, 0, 0], [0, 1, 0]], [0.9, 0.9])
    a, b = both(behind, EYE, K, 17, 33)
    np.testing.assert_array_equal(b, 0)


def test_bad_arguments_name_the_field():
    scene = hand_scene([[0, 0, 2.0]], [0.05], [[1.0, 0.5, 0.25]], [0.8])
    with pytest.raises(ValueError, match="harmonics has 2 coefficients"):
        ops.gs_rasterize(*scene[:3], np.zeros((1, 3, 2), np.float32), scene[4], EYE, K, 8, 8, backend="cuda")
    with pytest.raises(ValueError, match="opacities has shape"):
        ops.gs_rasterize(*scene[:4], np.zeros(2, np.float32), EYE, K, 8, 8, backend="cuda")
    with pytest.raises(ValueError, match="focal lengths must be positive"):
        ops.gs_rasterize(*scene, EYE, np.zeros((3, 3), np.float32), 8, 8, backend="cuda")
    with pytest.raises(ValueError, match="near_plane"):
        ops.gs_rasterize(*scene, EYE, K, 8, 8, near=0.0, backend="cuda")
