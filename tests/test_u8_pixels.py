"""Op u8_pixels (nn/ops.h): DA3's input pixels built from uint8 frames where the frames are (the depth-window update
on the device). Reference: DA3's host preprocessing, models/da3_preproc.c (the OpenCV INTER_AREA / INTER_CUBIC uint8
resamplers, then ToTensor and the ImageNet normalisation), exposed as _core.da3_resize / _core.da3_preprocess.
Tolerance: none, bit for bit, on the CPU kernel and on the CUDA kernel (nn/cuda/cuda_prep.cu; the cuda-marked cases,
run in the kernel-emulation build, on the emulated device or on a GPU): both evaluate nn/u8_pixels_math.h, whose
products and sums are single f32/f64 roundings (__fmul_rn, __fadd_rn, __dmul_rn, ... on the GPU)."""
import numpy as np
import pytest

from lyra2 import _core
from lyra2 import _testops as _ops

BACKENDS = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RNG = np.random.default_rng(14)


def op(backend, x, Ho, Wo, resample, mean=MEAN, std=STD):
    return _ops.u8_pixels(np.ascontiguousarray(x), Ho, Wo, resample, mean, std, backend=backend)


def normalize_ref(u8):
    """lyra_da3_normalize as numpy float32: (v / 255 - mean) / std, (H, W, 3) -> (3, H, W)."""
    v = u8.astype(np.float32) / np.float32(255.0)
    return ((v - np.array(MEAN, np.float32)) / np.array(STD, np.float32)).transpose(2, 0, 1)


def smooth_image(n, H, W):
    """Gradients plus noise: the area/cubic sums see every value range, including saturation at 0 and 255."""
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([x * 255.0 / max(W - 1, 1), y * 255.0 / max(H - 1, 1), (x + y) * 3.0 % 256], -1)
    return np.clip(base[None] + RNG.normal(0, 40, (n, H, W, 3)), 0, 255).astype(np.uint8)


# (H, W) -> (Ho, Wo), method: 1 area (fractional and integer ratios), 2 cubic (up and down), 0 none
CASES = [((48, 80), (42, 70), 1), ((40, 56), (20, 28), 1), ((37, 53), (14, 28), 1), ((30, 40), (42, 56), 2),
         ((50, 36), (28, 42), 2), ((17, 23), (17, 23), 0)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0][0]}x{c[0][1]}-{c[1][0]}x{c[1][1]}-m{c[2]}")
def test_u8_pixels_is_da3_host_preprocessing(backend, case):
    (H, W), (Ho, Wo), method = case
    imgs = smooth_image(2, H, W)
    got = op(backend, imgs, Ho, Wo, method)
    assert got.shape == (2, 3, Ho, Wo) and got.dtype == np.float32
    for i in range(2):
        u8 = imgs[i] if method == 0 else _core.da3_resize(imgs[i], Ho, Wo, method)
        np.testing.assert_array_equal(got[i], normalize_ref(u8))


@pytest.mark.parametrize("backend", BACKENDS)
def test_u8_pixels_equals_da3_preprocess_at_a_frame_size(backend):
    # the driver's call: the longest side kept (process_res = max(H, W)), both sides to the nearest multiple of 14
    imgs = smooth_image(3, 60, 104)
    ref, (h1, w1, h, w) = _core.da3_preprocess(imgs, 104)
    assert (h1, w1) == (60, 104) and (h, w) == (56, 98)
    np.testing.assert_array_equal(op(backend, imgs, h, w, 1), ref)


def test_u8_pixels_bad_inputs_name_the_field():
    imgs = smooth_image(1, 20, 30)
    with pytest.raises(ValueError, match="area only shrinks"):
        op("cpu", imgs, 28, 30, 1)
    with pytest.raises(ValueError, match="resample none"):
        op("cpu", imgs, 14, 28, 0)
    with pytest.raises(ValueError, match="unknown resample"):
        op("cpu", imgs, 14, 28, 7)
    with pytest.raises(ValueError, match="std"):
        op("cpu", imgs, 14, 28, 1, std=(1.0, 0.0, 1.0))
