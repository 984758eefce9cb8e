"""The forward-warp op (warp_forward, csrc/nn/cuda/cuda_warp.cu) on the CUDA backend against the CPU reference
(lyra_warp_forward through the CPU backend): random scenes with depth discontinuities, holes, NaN / +-inf / negative /
zero depths and points behind a target; scenes whose points land exactly on integer pixels (the floor = ceil
double splat); C = 1, 3, 4; several norm batches; N larger than one sub-batch (33 and 37 targets: two sub-batches
of balanced size, a norm batch straddling them); the optional outputs left out.

Tolerance. The kernel-emulation build (LYRA2_CUDA_EMU=1: the .cu kernels run by the host compiler, threads one
at a time in index order, glibc's log1pf / expf) and the emulated device (LYRA2_EMULATED_CUDA=1, where "cuda" runs
the CPU op) must agree bit for bit. On a GPU the splat positions, the source flags and the z > 0 tests use the
same explicitly rounded float operations as the CPU, so the mask is exact; the per-point weights go through
libdevice's log1pf and expf (1 and 2 ulp, CUDA Programming Guide "Mathematical Functions"; glibc's are within
1-2 ulp too), amplified by the soft z-buffer's exponent e = 50·log1p(z)/log1p(z_max) <= 50: |Δe| <= 50 · ~8 ulp
~ 2.4e-5, a relative weight error <= ~2.5e-5; and each pixel's atomicAdd sums run in an arbitrary order
(upstream's index_put_(accumulate=True) on CUDA is atomic too: <= n ulp for n contributions, ~2e-7 measured with
the corners reversed in the emulation build). A weighted mean of values in [-1, 1] then moves by <= 2·2.5e-5·2 =
1e-4 in the worst case (weight errors fully correlated with the values): |image| <= 2e-4 absolute on every pixel,
|depth| <= 2e-4 relative (the depths mixed at one pixel are within a factor ~2: a far point among near ones
weighs exp(-50·Δlog1p z) and adds nothing), masks equal (weights are > 0, no underflow at e <= 50). Runs on a GPU, in the emulation build (`pytest -m cuda`) and on the emulated
device (tests/test_warp_op.py runs this file with LYRA2_EMULATED_CUDA=1)."""
import os

import numpy as np
import pytest

import lyra2
from lyra2 import _testops as ops

pytestmark = pytest.mark.cuda  # skipped without a GPU, a failure under -m cuda (tests/conftest.py)

EXACT = lyra2.backends()["cuda_emulation_build"] or lyra2.backends()["emulated"]
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def both(*args, **kw):
    a = ops.warp_forward(*args, **kw)
    b = ops.warp_forward(*args, backend="cuda", **kw)
    return a, b


def check(a, b, name):
    img_a, mask_a, dep_a = a
    img_b, mask_b, dep_b = b
    assert img_a.shape == img_b.shape
    if EXACT:
        np.testing.assert_array_equal(img_b, img_a, err_msg=name + " image")
        for x, y, what in ((mask_a, mask_b, "mask"), (dep_a, dep_b, "depth")):
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_array_equal(y, x, err_msg=f"{name} {what}")
        return
    if mask_a is not None:
        np.testing.assert_array_equal(mask_b, mask_a, err_msg=name + " mask")
    err = np.abs(img_b.astype(np.float64) - img_a).max()
    assert err <= 2e-4, f"{name}: image max difference {err:.3g}"
    if dep_a is not None:
        rel = (np.abs(dep_b.astype(np.float64) - dep_a) / np.maximum(np.abs(dep_a), 1e-30))[dep_a != 0]
        assert (dep_b[dep_a == 0] == 0).all(), f"{name}: depth in a hole"
        assert rel.size == 0 or rel.max() <= 2e-4, f"{name}: depth max relative difference {rel.max():.3g}"


def look(yaw, pitch, t):
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    R = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = R, t
    return M.astype(np.float32)


def scene(seed, C=3, H=30, W=44, N=4, spread=0.15, bad_depths=True):
    """A tilted plane with a near box (a discontinuity), noise, and (bad_depths) NaN / +-inf / negative / zero
    depths; targets moved and turned by up to `spread` (rad) with K scaled by 0.9-1.1."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, (C, H, W)).astype(np.float32)
    yy, xx = np.mgrid[0:H, 0:W]
    depth = (2.0 + 0.004 * xx + 0.006 * yy + 0.001 * rng.standard_normal((H, W))).astype(np.float32)
    depth[H // 4:H // 2, W // 4:W // 2] = 1.2
    if bad_depths:
        depth[0, :5] = 0
        depth[1, 1] = np.nan
        depth[2, 3] = np.inf
        depth[H - 2, 2] = -np.inf
        depth[H - 3, W - 4:W - 1] = -0.5
        depth[rng.integers(0, H, 6), rng.integers(0, W, 6)] = np.nan
    K = np.array([[35.3, 0, W / 2 - 0.37], [0, 34.1, H / 2 + 0.21], [0, 0, 1]], np.float32)
    src = look(0.05, 0.01, [0.1, 0.0, 0.05])
    tgt = np.stack([look(*rng.uniform(-spread, spread, 2), rng.uniform(-0.3, 0.3, 3)) for _ in range(N)])
    tK = np.stack([K * np.float32(rng.uniform(0.9, 1.1)) for _ in range(N)])
    tK[:, 2, 2] = 1
    return image, depth, src, K, tgt, tK


@pytest.mark.parametrize("C", [1, 3, 4])
@pytest.mark.parametrize("clean", [1, 0])
def test_random_scene(C, clean):
    args = scene(10 + C, C=C)
    a, b = both(*args, clean_points=clean)
    assert 0.3 < a[1].mean() < 1.0 and (a[1] == 0).any()  # mostly covered, with holes
    check(a, b, f"C={C} clean={clean}")


def test_holes_and_points_behind_targets():
    """Targets turned by up to 2 rad: some look away (every point behind: all holes), some see part of the
    scene; plus a hole-riddled depth (a third of the pixels NaN, -inf or 0)."""
    image, depth, src, K, _, _ = scene(3)
    rng = np.random.default_rng(4)
    holes = rng.uniform(size=depth.shape)
    depth[holes < 0.1] = np.nan
    depth[(holes >= 0.1) & (holes < 0.2)] = -np.inf
    depth[(holes >= 0.2) & (holes < 0.3)] = 0
    tgt = np.stack([look(y, 0.0, [0, 0, 0]) for y in (0.0, 0.6, 1.6, 2.0, 3.1)])
    tK = np.stack([K] * 5)
    a, b = both(image, depth, src, K, tgt, tK, clean_points=0)
    assert a[1][0].mean() > 0.3 and (a[1][4] == 0).all() and (a[0][4] == -1).all() and (a[2][4] == 0).all()
    check(a, b, "holes and behind")


def test_integer_landings():
    """Exactly representable cameras: f = 16, integer principal point, depths that are powers of two, targets
    shifted by whole pixels (t_x · f / d integer): every point lands exactly on an integer pixel, so floor = ceil
    and it counts two or four times there. The two backends must pick the same landings (positions rounded
    identically); the targets are also checked against the plain pixel shift."""
    H, W = 12, 20
    rng = np.random.default_rng(7)
    image = rng.uniform(-1, 1, (3, H, W)).astype(np.float32)
    depth = np.full((H, W), 2.0, np.float32)
    depth[:, W // 2:] = 4.0
    K = np.array([[16.0, 0, 8.0], [0, 16.0, 6.0], [0, 0, 1]], np.float32)
    eye = np.eye(4, dtype=np.float32)
    tgt = np.stack([eye.copy() for _ in range(3)])
    tgt[1, 0, 3] = 0.25  # +2 px at depth 2, +1 px at depth 4
    tgt[2, 1, 3] = -0.5  # -4 px at depth 2, -2 px at depth 4
    a, b = both(image, depth, eye, K, tgt, np.stack([K] * 3), clean_points=0)
    check(a, b, "integer landings")
    # the identity: every pixel its own value (four equal contributions: up to the rounding of their sums)
    np.testing.assert_allclose(a[0][0], image, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a[0][1][:, :, 2:W // 2], image[:, :, :W // 2 - 2], rtol=0, atol=1e-6)  # near: +2 px
    assert (a[1][1][:, :2] == 0).all()  # uncovered columns: holes


def test_golden_scene_with_exact_landings():
    """The golden warp scene (tests/data/forward_warp_ab.npz, target 0 lands its principal row and column exactly
    on integer pixels) with both clean settings."""
    G = np.load(os.path.join(DATA, "forward_warp_ab.npz"))
    args = (G["src_image"], G["src_depth"], G["src_w2c"], G["src_K"], G["tgt_w2c"], G["tgt_K"])
    for clean in (1, 0):
        a, b = both(*args, clean_points=clean)
        check(a, b, f"golden clean={clean}")


@pytest.mark.parametrize("N, norm_batch", [(7, 3), (33, 0), (37, 5)])
def test_norm_batches_and_sub_batches(N, norm_batch):
    """Norm batches of 3 (7 targets: 3 + 3 + 1), one batch of 33, and batches of 5 over 37 targets; 33 and 37
    targets take two sub-batches of the splat (at most 32 cameras per launch), 17 + 16 and 19 + 18."""
    args = scene(20 + N, H=14, W=18, N=N, spread=0.1, bad_depths=False)
    a, b = both(*args, norm_batch=norm_batch)
    check(a, b, f"N={N} norm_batch={norm_batch}")
    if norm_batch:  # a target's result depends on its batch only: the last batch alone gives the same
        last = (N - 1) // norm_batch * norm_batch
        alone = ops.warp_forward(args[0], args[1], args[2], args[3], args[4][last:], args[5][last:], backend="cuda")
        check(tuple(x[last:] for x in a), alone, f"N={N} last norm batch alone")


def test_optional_outputs():
    """Leaving out the mask and / or the depth changes nothing else (on a GPU two runs may differ by the atomics'
    order: the stated tolerance; the mask never does)."""
    args = scene(30, N=3)
    full = ops.warp_forward(*args, backend="cuda")
    img_only = ops.warp_forward(*args, with_mask=False, with_depth=False, backend="cuda")
    assert img_only[1] is None and img_only[2] is None
    check((full[0], None, None), img_only, "image only")
    no_depth = ops.warp_forward(*args, with_depth=False, backend="cuda")
    np.testing.assert_array_equal(no_depth[1], full[1])
    check((full[0], full[1], None), no_depth, "no depth")
    check(ops.warp_forward(*args, with_mask=False), ops.warp_forward(*args, with_mask=False, backend="cuda"),
          "no mask")


def test_refuses_bf16_and_singular_source():
    args = scene(31, N=2)
    with pytest.raises(TypeError, match="image has dtype bf16"):
        ops.warp_forward(*args, backend="cuda", dtype="bf16")
    with pytest.raises(ValueError, match="src_K"):
        ops.warp_forward(args[0], args[1], args[2], np.zeros((3, 3), np.float32), args[4], args[5], backend="cuda")
    bad = args[4].copy()
    bad[1, 2, 2] = np.inf
    with pytest.raises(ValueError, match="tgt_w2c"):
        ops.warp_forward(*args[:4], bad, args[5], backend="cuda")
