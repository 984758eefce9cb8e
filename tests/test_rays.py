"""Ray conditioning: parity with the upstream golden (forward_warp.npz part B, abs 1e-6) and with a NumPy
reference written here from upstream M:1830-1888, PL:28-74."""
import os

import numpy as np
import pytest

from conftest import DATA
from lyra2.warp import rays

G = np.load(os.path.join(DATA, "forward_warp_ab.npz"))


@pytest.mark.parametrize("moment,key", [(False, "plucker_ray_o"), (True, "plucker_moment")])
def test_golden(moment, key):
    K, c2w = G["ray_K"][0], G["ray_c2w"][0]
    out = rays(K, c2w, 16, 24, moment=moment)
    assert out.shape == (4, 16, 24, 6) and out.dtype == np.float32
    np.testing.assert_allclose(out, G[key][0], rtol=0, atol=1e-6)  # golden README §2: abs 1e-6


def numpy_rays(K, c2w, H, W):
    j, i = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    out = np.empty((len(K), H, W, 6))
    for v, (fx, fy, cx, cy) in enumerate(K.astype(np.float64)):
        d = np.stack([(i - cx) / fx, (j - cy) / fy, np.ones_like(i)], -1)
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        out[v, ..., 3:] = d @ c2w[v, :3, :3].T
        out[v, ..., :3] = c2w[v, :3, 3]
    return out


def test_random_against_numpy():
    rng = np.random.default_rng(0)
    V, H, W = 3, 9, 13
    K = np.column_stack([rng.uniform(5, 20, V), rng.uniform(5, 20, V), rng.uniform(0, W, V),
                         rng.uniform(0, H, V)]).astype(np.float32)
    q, _ = np.linalg.qr(rng.standard_normal((V, 3, 3)))
    c2w = np.tile(np.eye(4), (V, 1, 1))
    c2w[:, :3, :3], c2w[:, :3, 3] = q, rng.standard_normal((V, 3))
    c2w = c2w.astype(np.float32)
    out = rays(K, c2w, H, W)
    ref = numpy_rays(K, c2w, H, W)
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-6)  # float32 vs float64: a few ulp of 1
    np.testing.assert_allclose(np.linalg.norm(out[..., 3:], axis=-1), 1, atol=1e-6)
    mom = rays(K, c2w, H, W, moment=True)
    np.testing.assert_allclose(mom[..., :3], np.cross(ref[..., :3], ref[..., 3:]), atol=1e-5)
    np.testing.assert_array_equal(mom[..., 3:], out[..., 3:])


def test_bad_inputs_raise():
    K = np.array([[10, 10, 4, 4]], np.float32)
    c2w = np.eye(4, dtype=np.float32)[None]
    with pytest.raises(ValueError, match="K"):
        rays(K[:, :3], c2w, 8, 8)
    with pytest.raises(ValueError, match="c2w"):
        rays(K, c2w[:, :3], 8, 8)
    with pytest.raises(ValueError, match="c2w"):
        rays(np.repeat(K, 2, 0), c2w, 8, 8)
    with pytest.raises(ValueError, match="height"):
        rays(K, c2w, 0, 8)
    with pytest.raises(TypeError, match="width"):
        rays(K, c2w, 8, 8.5)
    with pytest.raises(ValueError, match="K"):
        rays(np.array([[0, 10, 4, 4]], np.float32), c2w, 8, 8)
    bad = c2w.copy()
    bad[0, 0, 3] = np.nan
    with pytest.raises(ValueError, match="c2w"):
        rays(K, bad, 8, 8)
