"""The forward-warp backend op (lyra_op_warp_forward, nn/ops.h) through lyra2._testops.warp_forward, CPU suite:
the op on the CPU backend equals lyra2.warp.forward_warp (lyra_warp_forward, itself pinned to the upstream golden in
tests/test_warp.py) bit for bit; the emulated device (LYRA2_EMULATED_CUDA=1) runs tests/test_cuda_warp.py, which
then requires CUDA == CPU bit for bit, and refuses a bf16 image; bad arguments raise exceptions naming the field;
the measuring backend records the CUDA kernel's device temporaries."""
import os
import subprocess
import sys

import numpy as np
import pytest

from lyra2 import _testops as ops
from lyra2.warp import forward_warp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
G = np.load(os.path.join(ROOT, "tests", "data", "forward_warp_ab.npz"))


def look(yaw, pitch, t):
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    R = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = R, t
    return M.astype(np.float32)


def case(seed, C=3, H=22, W=30, N=5):
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, (C, H, W)).astype(np.float32)
    yy, xx = np.mgrid[0:H, 0:W]
    depth = (2.0 + 0.004 * xx + 0.006 * yy + 0.001 * rng.standard_normal((H, W))).astype(np.float32)
    depth[5:11, 7:15] = 1.2
    depth[0, :4], depth[1, 1], depth[2, 2], depth[3, 3] = 0, np.nan, np.inf, -1
    K = np.array([[25.3, 0, W / 2 - 0.37], [0, 24.1, H / 2 + 0.21], [0, 0, 1]], np.float32)
    tgt = np.stack([look(*rng.uniform(-0.15, 0.15, 2), rng.uniform(-0.3, 0.3, 3)) for _ in range(N)])
    tK = np.stack([K * np.float32(rng.uniform(0.9, 1.1)) for _ in range(N)])
    tK[:, 2, 2] = 1
    return image, depth, look(0.05, 0.01, [0.1, 0.0, 0.05]), K, tgt, tK


def assert_same(op_out, ref, name):
    img, mask, dep = op_out
    np.testing.assert_array_equal(img, ref["image"], err_msg=name)
    np.testing.assert_array_equal(mask, ref["mask"][:, 0], err_msg=name)
    np.testing.assert_array_equal(dep, ref["depth"], err_msg=name)


@pytest.mark.parametrize("clean", [1, 0])
def test_golden_scene_equals_geom_reference(clean):
    args = tuple(G[k] for k in ("src_image", "src_depth", "src_w2c", "src_K", "tgt_w2c", "tgt_K"))
    assert_same(ops.warp_forward(*args, clean_points=clean), forward_warp(*args, clean_points=bool(clean)),
                f"golden clean={clean}")


@pytest.mark.parametrize("C, norm_batch", [(3, 0), (1, 2), (4, 0), (3, 3)])
def test_random_scene_equals_geom_reference(C, norm_batch):
    args = case(C + 10 * norm_batch, C=C)
    ref = forward_warp(*args, norm_batch=norm_batch or None)
    assert_same(ops.warp_forward(*args, norm_batch=norm_batch), ref, f"C={C} norm_batch={norm_batch}")
    assert (ref["mask"] == 0).any() and ref["mask"].mean() > 0.3


def test_optional_outputs_leave_the_image_unchanged():
    args = case(2)
    full = ops.warp_forward(*args)
    for kw in ({"with_mask": False}, {"with_depth": False}, {"with_mask": False, "with_depth": False}):
        out = ops.warp_forward(*args, **kw)
        np.testing.assert_array_equal(out[0], full[0])
        assert (out[1] is None) == (not kw.get("with_mask", True)) and (out[2] is None) == (not kw.get("with_depth", True))


def test_bench_repeat_times_the_same_op():
    """benchmarks/kernels.py's timing path: the result is the op's, plus the median ms of the repeated runs."""
    args = case(3, N=2)
    plain = ops.warp_forward(*args)
    timed = ops.warp_forward(*args, bench_repeat=3)
    assert len(plain) == 3 and len(timed) == 4 and timed[3].shape == (1,) and timed[3][0] > 0
    for x, y in zip(plain, timed):
        np.testing.assert_array_equal(x, y)


def test_emulated_device_equals_cpu():
    """tests/test_cuda_warp.py on the emulated device: every case bit-exact against the CPU backend (EXACT there),
    including the refusal of a bf16 image (the op takes f32 only) on a device-resident call."""
    env = dict(os.environ, LYRA2_EMULATED_CUDA="1", LYRA2_NUM_THREADS="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda_warp.py"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout and "skipped" not in r.stdout


def _bad(i, v):
    def f(a):
        a = list(a)
        a[i] = v(a[i]) if callable(v) else v
        return a
    return f


def _with_nan(idx):
    def f(m):
        m = m.copy()
        m[idx] = np.nan
        return m
    return f


@pytest.mark.parametrize("mutate, kw, exc, match", [
    (_bad(2, _with_nan((0, 3))), {}, ValueError, "src_w2c element 3 is nan"),
    (_bad(3, lambda k: np.where(np.eye(3) > 0, np.float32(np.inf), k)), {}, ValueError, "src_K element 0 is inf"),
    (_bad(4, _with_nan((1, 2, 2))), {}, ValueError, "tgt_w2c element 26 is nan"),
    (_bad(5, _with_nan((4, 0, 0))), {}, ValueError, "tgt_K element 36"),
    (_bad(3, np.zeros((3, 3), np.float32)), {}, ValueError, "src_K: the matrix is singular"),
    (_bad(1, lambda d: d[:-1]), {}, ValueError, "depth has shape"),
    (_bad(1, lambda d: d[None]), {}, ValueError, "depth has shape"),
    (_bad(0, lambda x: x[0]), {}, ValueError, "image"),
    (_bad(0, lambda x: x[:, :, :0]), {}, ValueError, "image has shape"),
    (_bad(2, lambda w: w[:3]), {}, ValueError, "src_w2c"),
    (_bad(3, lambda k: k[None]), {}, ValueError, "src_K"),
    (_bad(4, lambda w: w[0]), {}, ValueError, "tgt_w2c"),
    (_bad(5, lambda k: k[:2]), {}, ValueError, "tgt_K"),
    (_bad(5, "not a matrix"), {}, TypeError, "tgt_K"),
    (lambda a: a[:4] + [a[4][:0], a[5][:0]], {}, ValueError, "n_targets 0 must be >= 1"),
    (lambda a: a, {"norm_batch": -1}, ValueError, "norm_batch -1 must be >= 0"),
    (lambda a: a, {"alias": "mask=depth"}, ValueError, "warp_forward: the output overlaps out_mask"),
    (lambda a: a, {"dtype": "bf16"}, ValueError, "dtype"),  # the CPU backend: f32 only
])
def test_argument_errors_name_the_field(mutate, kw, exc, match):
    # mutate gets [image, depth, src_w2c, src_K, tgt_w2c, tgt_K]
    with pytest.raises(exc, match=match):
        ops.warp_forward(*mutate(list(case(5))), **kw)


def test_output_over_an_input_is_refused():
    image, depth, src, K, tgt, tK = case(6, N=1)
    before = depth.copy()
    with pytest.raises(ValueError, match="the output overlaps depth"):
        ops.warp_forward(image, depth, src, K, tgt, tK, alias="depth=input")
    np.testing.assert_array_equal(depth, before)  # refused before anything was written


def test_measuring_backend_records_the_cuda_temporaries():
    """Planned for the GPU the warp takes two pool blocks: the source (sanitized depth, points, flags, two floats
    per target, parts 256-byte aligned) and the canvases of one sub-batch ((H+2)(W+2)(C+2) f32 per target, at most
    256 MiB and 32 targets, sub-batches balanced); both are released. Restated here from the file comment of
    nn/measure/warp_device_temps.h, which the CUDA kernel and the measuring backend share."""
    def expect(C, H, W, N):
        al = lambda n: (n + 255) // 256 * 256
        hw = H * W
        source = al(4 * hw) + al(12 * hw) + al(hw) + al(4 * N) + 4 * N
        per = (H + 2) * (W + 2) * (C + 2) * 4
        fit = min(32, max(1, (256 << 20) // per))
        n_sub = -(-N // fit)
        return source + (-(-N // n_sub)) * per, -(-N // n_sub)

    for C, H, W, N, sub in ((3, 480, 832, 80, 27), (4, 480, 832, 80, 27), (3, 24, 40, 37, 19), (1, 4000, 6000, 3, 1)):
        peak, want_sub = expect(C, H, W, N)
        assert want_sub == sub
        m = ops.warp_forward_measure(C, H, W, N)
        assert m == {"alloc_peak": peak, "alloc_live": 0, "n_ops": 1}, (C, H, W, N)
    # at 480p with 80 targets the canvases stay under the 256 MiB budget
    assert ops.warp_forward_measure(3, 480, 832, 80)["alloc_peak"] < (256 << 20) + (8 << 20)
    # planned for the CPU: the reference's scratch is host memory, nothing is recorded
    assert ops.warp_forward_measure(3, 480, 832, 80, device="cpu") == {"alloc_peak": 0, "alloc_live": 0, "n_ops": 1}
