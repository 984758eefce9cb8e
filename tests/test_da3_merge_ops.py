"""Ops da3_merge and depth_resize (nn/ops.h): the end of the depth-window update where DA3's maps are.

da3_merge: DA3's head activations (exp, exp + 1), the metric scaling, the median confidence and the 0.99 depth quantile
over the non-sky pixels, the least-squares σ and the sky fill (upstream DA3net:499-567, DA3aln). Reference: the numpy
statement below (np.sort + torch.quantile's f32 rank and lerp, the f64 sums in index order); the CPU kernel equals it
bit for bit, and the models' host merge (models/da3_merge.c) is the same code. CUDA (nn/cuda/cuda_da3_merge.cu, the
cuda-marked cases, run in the kernel-emulation build, on the emulated device or on a GPU): the selections are exact
(radix select over the float bits), the f64 sums run in another order, so σ and what it scales are within 1 f32 ulp
(relative 1.2e-7) plus, on a GPU, CUDA's expf (2 ulp): tolerance rtol 1e-6; the non-sky count exact.

depth_resize: lyra2.generate._bilinear of x / s (f64 source coordinates, f32 blends), which lyra_op_resize (f32
source coordinates) does not reproduce bit for bit. Tolerance: none, on every backend (nn/depth_resize_math.h)."""
import ctypes
import ctypes.util

import numpy as np
import pytest

from lyra2 import _testops as _ops
from lyra2.generate import _bilinear

BACKENDS = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
RNG = np.random.default_rng(1414)
f32 = np.float32


_libm = ctypes.CDLL(ctypes.util.find_library("m"))
_libm.expf.restype, _libm.expf.argtypes = ctypes.c_float, [ctypes.c_float]


def expf(x):
    """The C library's expf, which the CPU kernel calls (numpy's float32 exp rounds differently in the last bit)."""
    return np.array([_libm.expf(float(v)) for v in x.ravel()], np.float32).reshape(x.shape)


def quantile_ref(v, q):
    """torch.quantile(v, q) as PyTorch's CPU kernel computes it in float32 (models/da3_merge.c)."""
    v = np.sort(v.astype(np.float32))
    rank = f32(q) * f32(len(v) - 1)
    lo, hi = int(rank), min(int(np.ceil(rank)), len(v) - 1)
    wgt, a, b = f32(rank - f32(lo)), v[lo], v[hi]
    return f32(a + wgt * (b - a)) if wgt < f32(0.5) else f32(b - (b - a) * (f32(1) - wgt))


def merge_ref(maps, factor):
    dl, cl, ml, sky = (m.astype(np.float32) for m in maps)
    depth = expf(dl)
    conf = expf(cl) + f32(1)
    metric = expf(ml) * np.asarray(factor, np.float32)[:, None, None]
    ns = sky < f32(0.3)
    median = quantile_ref(conf[ns], 0.5)
    sel = (conf >= median) & ns & (metric > f32(0.01)) & (depth > f32(0.001))
    num = den = 0.0
    for m, d in zip(metric[sel].ravel(), depth[sel].ravel()):   # f64 sums in index order, as the host loop
        num += float(m) * float(d)
        den += float(d) * float(d)
    sigma = f32(f32(num) / max(f32(den), f32(1e-12)))
    depth = depth * sigma
    q = min(quantile_ref(depth[ns], 0.99), f32(200))
    depth[~ns], conf[~ns] = q, f32(1)
    return depth, conf, metric, np.array([median, sigma, q, ns.sum()], np.float32)


def random_maps(S, h, w, sky_frac=0.3, ties=False):
    dl = RNG.normal(0.5, 0.8, (S, h, w))
    cl = RNG.normal(0.0, 1.0, (S, h, w))
    if ties:   # many equal confidences and depths: the selections must land on the right duplicate run
        cl = np.round(cl * 2) / 2
        dl = np.round(dl * 4) / 4
    ml = dl + RNG.normal(1.0, 0.1, (S, h, w))
    sky = np.where(RNG.random((S, h, w)) < sky_frac, RNG.uniform(0.3, 2.0, (S, h, w)), RNG.uniform(0, 0.29, (S, h, w)))
    return np.stack([dl, cl, ml, sky]).astype(np.float32)


def run_merge(backend, maps, factor):
    y = _ops.da3_merge(maps, list(factor), backend=backend)
    n = maps[0].size
    S, h, w = maps.shape[1:]
    return [y[i * n:(i + 1) * n].reshape(S, h, w) for i in range(4)], y[4 * n:]


CASES = {"one-view": (1, 14, 28, 0.3, False), "window": (3, 14, 21, 0.4, False), "ties": (2, 28, 14, 0.2, True),
         "odd-count": (2, 7, 9, 0.5, False)}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_da3_merge_cpu_is_the_reference_bit_for_bit(case):
    S, h, w, frac, ties = CASES[case]
    maps = random_maps(S, h, w, frac, ties)
    factor = RNG.uniform(0.5, 3.0, S).astype(np.float32)
    (d, c, m, sky), stats = run_merge("cpu", maps, factor)
    rd, rc, rm, rstats = merge_ref(maps, factor)
    np.testing.assert_array_equal(stats, rstats)
    np.testing.assert_array_equal(d, rd)
    np.testing.assert_array_equal(c, rc)
    np.testing.assert_array_equal(m, rm)
    np.testing.assert_array_equal(sky, maps[3])


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_da3_merge_cuda_matches_the_cpu_kernel(case):
    S, h, w, frac, ties = CASES[case]
    maps = random_maps(S, h, w, frac, ties)
    factor = RNG.uniform(0.5, 3.0, S).astype(np.float32)
    (d, c, m, _), stats = run_merge("cuda", maps, factor)
    (rd, rc, rm, _), rstats = run_merge("cpu", maps, factor)
    assert stats[3] == rstats[3]
    np.testing.assert_allclose(stats[:3], rstats[:3], rtol=1e-6)
    for got, ref in ((d, rd), (c, rc), (m, rm)):
        np.testing.assert_allclose(got, ref, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_da3_merge_with_too_few_non_sky_pixels_reports_the_count(backend):
    maps = random_maps(1, 7, 7, 0.0)
    maps[3] = 1.0                  # all sky but 3 pixels
    maps[3, 0, 0, :3] = 0.0
    (d, c, _, _), stats = run_merge(backend, maps, [1.0])
    assert np.isnan(stats[:3]).all() and stats[3] == 3
    np.testing.assert_allclose(d, np.exp(maps[0]), rtol=1e-6)   # only the activations ran
    np.testing.assert_allclose(c, np.exp(maps[1]) + 1, rtol=1e-6)


def test_da3_merge_bad_inputs_name_the_field():
    maps = random_maps(2, 7, 7)
    with pytest.raises(ValueError, match="one value per view"):
        _ops.da3_merge(maps, [1.0])
    with pytest.raises(ValueError, match=r"metric_factor\[1\] is not finite"):
        _ops.da3_merge(maps, [1.0, float("nan")])
    with pytest.raises(ValueError, match=r"\(4, S, h, w\)"):
        _ops.da3_merge(maps[:3], [1.0, 1.0])


RESIZE = [((28, 42), (32, 48)), ((14, 14), (32, 48)), ((20, 30), (20, 30)), ((48, 64), (20, 30)), ((7, 9), (17, 5))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", RESIZE, ids=lambda c: f"{c[0][0]}x{c[0][1]}-{c[1][0]}x{c[1][1]}")
def test_depth_resize_is_generate_bilinear_of_depth_over_s(backend, case):
    (h, w), (H, W) = case
    x = RNG.uniform(0.1, 50.0, (3, h, w)).astype(np.float32)
    s = 1.7320508075688772
    ref = _bilinear((x.astype(np.float64) / s).astype(np.float32), H, W)
    got = _ops.depth_resize(x, H, W, s, backend=backend)
    np.testing.assert_array_equal(got, ref)


def test_depth_resize_is_not_the_f32_coordinate_resize():
    """Why the op exists: at 480p (DA3's 476x826 to 480x832) lyra_op_resize's f32 source coordinates change the last
    bits of most outputs (measured: 393 274 of 399 360), while generate._bilinear's f64 ones are what the op keeps."""
    x = RNG.uniform(0.1, 50.0, (1, 1, 476, 826)).astype(np.float32)
    got = _ops.depth_resize(x[0], 480, 832, 1.0)
    other = _ops.resize(x, (480, 832), mode="bilinear", align_corners=False)[0]
    # an f32 source coordinate near 826 is good to 6e-5: times a neighbour's jump (< 50 here)
    np.testing.assert_allclose(got, other, rtol=0, atol=50 * 1e-4)
    assert (got != other).mean() > 0.5
    np.testing.assert_array_equal(got, _bilinear(x[0], 480, 832))


def test_depth_resize_bad_inputs_name_the_field():
    x = np.ones((1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="divisor"):
        _ops.depth_resize(x, 8, 8, 0.0)
    with pytest.raises(ValueError, match="divisor"):
        _ops.depth_resize(x, 8, 8, float("inf"))
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        _ops.depth_resize(x[0], 8, 8, 1.0)
