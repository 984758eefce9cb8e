"""The chunk-input ops (nn/ops.h "chunk inputs": rays, to_u8, minmax, range_norm) that let the driver build each
chunk's network inputs and its uint8 frames where the frames are. Each op's formula rounds every step in f32, so the
references below (NumPy float32, or the host ray code lyra2.rays) must match bit for bit on the CPU backend; the
cuda-marked cases run the same checks on the CUDA kernels (nn/cuda/cuda_prep.cu: in the kernel-emulation build, on
the emulated device, or on a GPU), also bit for bit: the kernels round with __fmul_rn / __fadd_rn, so nvcc cannot
contract a product and a sum into an FMA."""
import numpy as np
import pytest

import lyra2
from lyra2 import _testops as _ops

RNG = np.random.default_rng(77)
BACKENDS = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def op(name, backend, *a, **k):
    return getattr(_ops, name)(*a, backend=backend, **k)


def camera():
    K = np.array([40.5, 38.25, 23.7, 16.2], np.float32)
    a = 0.3
    c2w = np.eye(4, dtype=np.float32)
    c2w[:3, :3] = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]], np.float32)
    c2w[:3, 3] = [0.25, -0.5, 1.75]
    return K, c2w


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("moment", [False, True])
def test_rays_planes_are_the_host_rays(backend, moment):
    K, c2w = camera()
    ref = lyra2.rays(K[None], c2w[None], 32, 48, moment=moment)[0]          # (H, W, 6), geom/rays.c
    got = op("ray_image", backend, K, c2w, 32, 48, unshuffle=1, moment=moment)   # (6, H, W)
    np.testing.assert_array_equal(got, ref.transpose(2, 0, 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_rays_unshuffled_8x8(backend):
    # channel c·64 + r·8 + q at (i, j) = component c of pixel (8i + r, 8j + q): the DiT's condition layout
    K, c2w = camera()
    planes = lyra2.rays(K[None], c2w[None], 32, 48)[0].transpose(2, 0, 1)  # (6, 32, 48)
    ref = planes.reshape(6, 4, 8, 6, 8).transpose(0, 2, 4, 1, 3).reshape(384, 4, 6)
    np.testing.assert_array_equal(op("ray_image", backend, K, c2w, 32, 48, unshuffle=8), ref)


def test_rays_bad_inputs_name_the_field():
    K, c2w = camera()
    with pytest.raises(ValueError, match="multiple of unshuffle"):
        _ops.ray_image(K, c2w, 30, 48, unshuffle=8)
    with pytest.raises(ValueError, match="fx and fy"):
        _ops.ray_image(np.array([0, 1, 2, 3], np.float32), c2w, 32, 48)
    bad = c2w.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="c2w element 6"):
        _ops.ray_image(K, bad, 32, 48)


def u8_ref(x, mode):
    """The two uint8 conversions in float32, one rounding per step, truncated: x (N, C, H, W) -> (N, H, W, C)."""
    x = np.asarray(x, np.float32)
    one, two, half, s = np.float32(1), np.float32(2), np.float32(0.5), np.float32(255)
    if mode == "video":
        v = np.clip(x, -one, one)
        u = ((v + one) / two) * s
    else:
        v = np.clip(x * half + half, np.float32(0), one)
        u = v * s + half
    return u.astype(np.uint8).transpose(0, 2, 3, 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["video", "round"])
def test_to_u8_exact(backend, mode):
    x = (RNG.standard_normal((3, 3, 8, 16)) * 0.8).astype(np.float32)
    x[0, 0, 0, :6] = [-1, 1, -1.5, 1.5, 0, np.float32(1 / 255)]
    # a strided input: the decoder's (3, T, H, W) block read as (T, 3, H, W)
    xs = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    got = op("to_u8", backend, xs, mode=mode)
    assert got.dtype == np.uint8 and got.shape == (3, 8, 16, 3)
    np.testing.assert_array_equal(got, u8_ref(x, mode))


def test_to_u8_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        _ops.to_u8(np.zeros((1, 3, 2, 2), np.float32), mode="nearest")


@pytest.mark.parametrize("backend", BACKENDS)
def test_minmax_running(backend):
    x = RNG.standard_normal((5, 7, 9)).astype(np.float32)
    x[1, 2, 3] = np.nan  # skipped, as the host loop's comparisons skip it
    xs = x.transpose(2, 0, 1)  # strided
    got = op("minmax", backend, xs)
    np.testing.assert_array_equal(got, [np.nanmin(x), np.nanmax(x)])
    prev = np.array([-10.0, 0.5], np.float32)
    np.testing.assert_array_equal(op("minmax", backend, xs, prev=prev), [-10.0, np.nanmax(x)])
    big = RNG.standard_normal(70001).astype(np.float32)  # more elements than one block has threads, many times
    np.testing.assert_array_equal(op("minmax", backend, big), [big.min(), big.max()])


def range_ref(x, lo, hi, eps):
    lo, hi, eps = np.float32(lo), np.float32(hi), np.float32(eps)
    r = hi - lo if hi - lo > eps else eps
    return np.float32(2) * (x - lo) / r - np.float32(1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_range_norm_exact(backend):
    x = (RNG.random((4, 64, 6)) * 3 + 0.5).astype(np.float32)
    mm = np.array([x.min(), x.max()], np.float32)
    xs = x.transpose(1, 0, 2)
    np.testing.assert_array_equal(op("range_norm", backend, xs, mm), range_ref(xs, *mm, 1e-6))
    flat = np.full((3, 5), 2.0, np.float32)  # a degenerate range divides by eps
    np.testing.assert_array_equal(op("range_norm", backend, flat, np.array([2.0, 2.0], np.float32)),
                                  range_ref(flat, 2.0, 2.0, 1e-6))
    with pytest.raises(ValueError, match="eps"):
        op("range_norm", backend, flat, mm, eps=0.0)


def bf16(x):
    """float32 -> nearest-even bf16 -> float32, written independently of the C helpers."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)


@pytest.mark.cuda
def test_16bit_outputs_are_the_f32_results_rounded_once():
    # the DiT's condition (y, the correspondence buffer) may be bf16 on a device: rays and range_norm compute in f32
    # and round once when they store
    K, c2w = camera()
    ref = op("ray_image", "cpu", K, c2w, 32, 48, unshuffle=8)
    np.testing.assert_array_equal(op("ray_image", "cuda", K, c2w, 32, 48, unshuffle=8, dtype="bf16"), bf16(ref))
    x = (RNG.random((4, 8, 6)) * 3 + 0.5).astype(np.float32)
    mm = np.array([x.min(), x.max()], np.float32)
    np.testing.assert_array_equal(op("range_norm", "cuda", x, mm, dtype="bf16"), bf16(range_ref(x, *mm, 1e-6)))
