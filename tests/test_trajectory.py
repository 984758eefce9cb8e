"""Trajectories (lyra2.geometry, csrc/geom): golden parity with upstream, subject depth, custom
trajectories, direction assembly, and argument validation."""
import json
import math
import os

import numpy as np
import pytest

from conftest import DATA
from lyra2 import geometry

GOLDEN = np.load(os.path.join(DATA, "trajectories.npz"))
with open(os.path.join(DATA, "trajectories.json")) as f:
    GOLDEN_META = json.load(f)
ENTRIES = GOLDEN_META["entries"]
DEPTH, MASK, K0 = GOLDEN["depth"], GOLDEN["mask"], GOLDEN["K"]

# Tolerances of the golden README §1: abs 1e-5 on the matrices, rel 1e-5 on the intrinsics.
ATOL_W2C = 1e-5
RTOL_K = 1e-5


# ----------------------------------------------------------------------------------------------------------
# Golden parity (upstream lyra2_zoomgs_inference._generate_one_direction, torch 1.13 CPU float32)

def test_golden_subject_depth():
    # Same float32 value as torch.quantile(depth[mask > 0.5], 0.25); rel 1e-6.
    c = geometry.subject_depth(DEPTH, MASK)
    assert c == pytest.approx(float(GOLDEN["center_depth"]), rel=1e-6)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["key"] for e in ENTRIES])
def test_golden_trajectory(entry):
    w2c, K = geometry.trajectory(entry["preset"], entry["num_frames"], entry["strength"], DEPTH,
                                 role=entry["role"], intrinsics=K0, mask=MASK)
    want_w2c = GOLDEN[entry["key"] + "__w2c"]
    want_K = GOLDEN[entry["key"] + "__K"]
    assert w2c.dtype == np.float32 and K.dtype == np.float32
    assert w2c.shape == want_w2c.shape == (entry["n_matrices"], 4, 4)
    assert K.shape == want_K.shape == (entry["n_matrices"], 3, 3)
    np.testing.assert_allclose(w2c, want_w2c, rtol=0, atol=ATOL_W2C)
    np.testing.assert_allclose(K, want_K, rtol=RTOL_K, atol=0)


def test_golden_max_error_report(capsys):
    """Max |error| over every golden entry (printed with -s; the per-entry test enforces the tolerance)."""
    max_w, max_k = 0.0, 0.0
    for e in ENTRIES:
        w2c, K = geometry.trajectory(e["preset"], e["num_frames"], e["strength"], DEPTH, role=e["role"],
                                     intrinsics=K0, mask=MASK)
        max_w = max(max_w, float(np.abs(w2c - GOLDEN[e["key"] + "__w2c"]).max()))
        gk = GOLDEN[e["key"] + "__K"]
        max_k = max(max_k, float((np.abs(K - gk) / np.maximum(np.abs(gk), 1e-30)).max()))
    with capsys.disabled():
        print(f"\n[trajectory goldens] {len(ENTRIES)} entries: max abs w2c error {max_w:.3g}, "
              f"max rel K error {max_k:.3g}")
    assert max_w <= ATOL_W2C and max_k <= RTOL_K


# ----------------------------------------------------------------------------------------------------------
# Subject depth vs numpy.quantile

@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 1000, 4097, 60 * 104])
def test_subject_depth_matches_numpy_quantile(n):
    rng = np.random.default_rng(n)
    depth = rng.uniform(0.1, 50.0, size=(1, n)).astype(np.float32)
    if n > 10:
        depth[0, : n // 5] = 3.0  # ties
    # rel 1e-6: same order statistics, float32 vs float64 interpolation.
    want = np.quantile(depth.astype(np.float64), 0.25, method="linear")
    assert geometry.subject_depth(depth) == pytest.approx(want, rel=1e-6)


def test_subject_depth_uses_mask():
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.5, 20.0, size=(48, 80)).astype(np.float32)
    depth[:8] = 1e4  # "sky"
    mask = depth < 999.9
    want = np.quantile(depth[mask].astype(np.float64), 0.25, method="linear")
    assert geometry.subject_depth(depth, mask) == pytest.approx(want, rel=1e-6)
    # A float 0/1 mask selects mask > 0.5, as upstream.
    assert geometry.subject_depth(depth, mask.astype(np.float32) * 0.9) == pytest.approx(want, rel=1e-6)
    # Without the mask the sky raises the percentile.
    assert geometry.subject_depth(depth) > want


def test_subject_depth_ignores_nan_outside_mask():
    depth = np.full((4, 5), 2.0, np.float32)
    depth[0, 0] = np.nan
    mask = np.isfinite(depth)
    assert geometry.subject_depth(depth, mask) == 2.0


# ----------------------------------------------------------------------------------------------------------
# Other upstream presets vs a float64 NumPy reference of the formulas in upstream FW:188-215, Z:377, CU:21-27 /
# camera_utils

def _look_at(pos, target, invert_pos=True):
    f = np.asarray(target, float) - np.asarray(pos, float)
    f /= np.linalg.norm(f)
    r = np.cross([0.0, 1.0, 0.0], f)
    r /= np.linalg.norm(r)
    u = np.cross(f, r)
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3] = r, u, f
    m[:3, 3] = -m[:3, :3] @ pos if invert_pos else pos
    return m


def _rot_y(a):
    m = np.eye(4)
    m[0, 0], m[0, 2], m[2, 0], m[2, 2] = math.cos(a), math.sin(a), -math.sin(a), math.cos(a)
    return m


def _reference(preset, n, s, c, sign):
    i = np.arange(n)
    if preset == "horizontal":
        return [_look_at([k * s * c / n * sign, 0, 0], [0, 0, c]) for k in i]
    if preset == "horizontal_lift":
        return [_look_at([0, k * s * c / n * sign, 0], [0, 0, c]) for k in i]
    if preset == "horizontal_outward":
        return [_look_at([k * s * c / n * sign, 0, 0], [2 * k * s * c / n * sign, 0, c]) for k in i]
    if preset == "horizontal_zoom_still":
        h = n // 2
        mats = [_look_at([0, 0, k * s * c / h * sign], [0, 0, c * (s + 1)]) for k in range(h)]
        return mats + [mats[-1]] * (n - h)
    if preset == "spiral_center":
        th = 2 * math.pi * i / (n - 1)
        return [_look_at([0.03 * math.cos(t) * c, 0.02 * math.sin(t) * c, 0], [0, 0, c]) for t in th]
    if preset == "horizontal_spiral":
        out = []
        for k in i:
            t = k / (n - 1)
            th = 4 * math.pi * t
            pos = [0.15 * s / 8 * (math.cos(th) - 1) * sign * c, 0.10 * s / 8 * math.sin(th) * c, t * s * c * sign]
            out.append(_look_at(pos, [0, 0, c * (s + 1)]))
        return out
    if preset == "orbit_vertical":  # direction "right"/"left" -> sweep -1 (only "up" sweeps +1)
        th = math.pi - s * i / (n - 1)
        return [_look_at([0, c * math.sin(t), c + c * math.cos(t)], [0, 0, c]) for t in th]
    if preset == "horizontal_simple":
        m = np.repeat(np.eye(4)[None], n, 0)
        m[:, 0, 3] = -sign * np.linspace(0, s, n) * c
        return list(m)
    if preset == "back_simple":
        th = 2 * math.pi * np.arange(n - 1) / (n - 2)
        back = [_look_at([0.15 * (math.cos(t) - 1) * sign, 0.1 * math.sin(t), 0], [0, 0, c]) for t in th]
        return [np.eye(4)] * n + back
    if preset == "rotate_spot":
        return [_rot_y(sign * math.radians(s) * k / (n - 1)) for k in i]
    if preset == "rotate_zoom_in":
        h, a = n // 2, sign * math.radians(20.0)
        out = [_rot_y(a * k / (h - 1)) for k in range(h)]
        R = _rot_y(a)
        for k in range(h, n):
            pos = R[2, :3] * s * c * (k - h) / (n - h - 1)
            m = R.copy()
            m[:3, 3] = -R[:3, :3].T @ pos  # upstream quirk: R^T, not R
            out.append(m)
        return out
    raise KeyError(preset)


@pytest.mark.parametrize("preset", ["horizontal", "horizontal_lift", "horizontal_outward", "horizontal_zoom_still",
                                    "spiral_center", "horizontal_spiral", "orbit_vertical", "horizontal_simple",
                                    "back_simple", "rotate_spot", "rotate_zoom_in"])
@pytest.mark.parametrize("role", ["in", "out"])
def test_other_presets_match_reference(preset, role):
    s, n = 1.25, 81
    c = geometry.subject_depth(DEPTH, MASK)
    w2c, K = geometry.trajectory(preset, n, s, DEPTH, role=role, intrinsics=K0, mask=MASK)
    want = np.stack(_reference(preset, n, s, c, 1 if role == "in" else -1))
    if role == "out":  # the zoom-out upward tilt of upstream Z:206-209, Z:760, Z:371, in float64
        R, t = want[:, :3, :3], want[:, :3, 3]
        C = -np.einsum("nji,nj->ni", R, t)
        C[:, 1] -= 0.15 * np.maximum(-(C[:, 2] - C[0, 2]), 0)
        want[:, :3, 3] = -np.einsum("nij,nj->ni", R, C)
    # abs 1e-5: float32 build vs float64 reference (values of order c = 1.9).
    np.testing.assert_allclose(w2c, want, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(K, np.repeat(K0[None], len(want), 0))


def test_vertical_presets_honour_up_direction():
    n, s = 81, 0.5
    up, _ = geometry.trajectory("vertical_simple", n, s, DEPTH, mask=MASK, direction="up")
    down, _ = geometry.trajectory("vertical_simple", n, s, DEPTH, mask=MASK, direction="down")
    assert up[-1, 1, 3] > 0 and down[-1, 1, 3] < 0
    np.testing.assert_allclose(up[:, 1, 3], -down[:, 1, 3], rtol=0, atol=0)


def test_default_intrinsics_is_upstream_fallback():
    w2c, K = geometry.trajectory("horizontal_zoom", 81, 0.5, DEPTH)
    H, W = DEPTH.shape
    np.testing.assert_array_equal(K[0], [[1.5 * max(H, W), 0, W / 2], [0, 1.5 * max(H, W), H / 2], [0, 0, 1]])
    np.testing.assert_array_equal(geometry.default_intrinsics(480, 832)[:2, :],
                                  [[1248.0, 0, 416.0], [0, 1248.0, 240.0]])


def test_dolly_zoom_raises_when_camera_reaches_the_look_at_point():
    # Quirk (upstream CT:224-234, CU:291-330, CT:248-258): a frame at exactly z == 0.185 c has a NaN look-at upstream;
    # lyra2 refuses to return that NaN camera. Pick c so frame 1 lands there; a 1 % larger c gives finite cameras.
    n = 81
    z = np.float32(3.0 / (n - 1))
    c = np.float32(z / np.float32(0.185))
    while np.float32(c * np.float32(0.185)) != z:
        c = np.nextafter(c, np.float32(np.inf))
    with pytest.raises(ValueError, match=r"'dolly_zoom': camera 1 lands exactly on the look-at point"):
        geometry.trajectory("dolly_zoom", n, 0.0, np.full((2, 2), c, np.float32))
    w2c, K = geometry.trajectory("dolly_zoom", n, 0.0, np.full((2, 2), c * np.float32(1.01)))
    assert np.isfinite(w2c).all() and np.isfinite(K).all()


@pytest.mark.parametrize("preset, strength, depth, words", [
    ("spiral", 1e300, 1.0, ["'spiral'", "strength = 1e+300", "depth"]),
    ("horizontal_zoom", 0.5, 1e-30, ["'horizontal_zoom'", "c = 1e-30", "depth"]),
])
def test_trajectory_non_finite_cameras_raise(preset, strength, depth, words):
    with pytest.raises(ValueError) as info:
        geometry.trajectory(preset, 81, strength, np.full((4, 4), depth))
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("K, words", [
    (np.zeros((3, 3)), ["intrinsics", "fx = 0", "invertible"]),
    (np.diag([-500.0, 500.0, 1.0]), ["intrinsics", "fx = -500"]),
    (np.array([[500.0, 0, 2], [0, 500.0, 2], [0, 0, 0]]), ["intrinsics", "det = 0"]),
])
def test_trajectory_rejects_singular_intrinsics(K, words):
    with pytest.raises(ValueError) as info:
        geometry.trajectory("spiral", 81, 0.5, np.ones((4, 4)), intrinsics=K)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_custom_trajectory_rejects_singular_intrinsics(tmp_path):
    path = tmp_path / "trajectory.npz"
    K = np.tile(np.diag([900.0, 900.0, 1.0]), (3, 1, 1))
    K[2, 1, 1] = 0.0
    np.savez(path, w2c=np.tile(np.eye(4), (3, 1, 1)), intrinsics=K)
    with pytest.raises(ValueError, match=r"intrinsics: K\[2\] must be invertible with fx, fy > 0"):
        geometry.load_custom_trajectory(path, 480, 832)
    np.savez(path, w2c=np.tile(np.eye(4), (3, 1, 1)), intrinsics=np.tile(np.diag([900.0, 900.0, 1.0]), (3, 1, 1)))
    with pytest.raises(ValueError, match="pose_scale"):
        geometry.load_custom_trajectory(path, 480, 832, pose_scale=1e300)


# ----------------------------------------------------------------------------------------------------------
# Custom trajectories (upstream load_trajectory) vs an independent NumPy computation

def _custom_npz(tmp_path, n=5, size=(960, 1664), seed=0):
    rng = np.random.default_rng(seed)
    w2c = np.tile(np.eye(4), (n, 1, 1))
    w2c[:, :3, :3] += rng.normal(0, 0.05, (n, 3, 3))
    w2c[:, :3, 3] = rng.normal(0, 2.0, (n, 3))
    K = np.tile(np.array([[900.0, 0, 830.3], [0, 905.5, 481.7], [0, 0, 1]]), (n, 1, 1))
    items = {"w2c": w2c, "intrinsics": K}
    if size is not None:
        items.update(image_height=np.int64(size[0]), image_width=np.int64(size[1]))
    path = tmp_path / "trajectory.npz"
    np.savez(path, **items)
    return path, w2c, K


def _custom_reference(w2c, K, pose_scale, src, dst):
    w = w2c.astype(np.float32)
    k = K.astype(np.float32)
    if pose_scale != 1.0:
        w[:, :3, 3] *= np.float32(pose_scale)
    if src is not None and src != dst:
        sx, sy = np.float32(dst[1] / src[1]), np.float32(dst[0] / src[0])
        k[:, 0, 0] *= sx
        k[:, 0, 2] *= sx
        k[:, 1, 1] *= sy
        k[:, 1, 2] *= sy
    return w, k


@pytest.mark.parametrize("size,dst,pose_scale", [((960, 1664), (480, 832), 1.1), ((720, 1280), (480, 832), 1.0),
                                                 ((480, 832), (480, 832), 0.7), (None, (720, 1280), 1.1)])
def test_custom_trajectory_matches_numpy(tmp_path, size, dst, pose_scale):
    path, w2c, K = _custom_npz(tmp_path, size=size)
    got_w, got_k = geometry.load_custom_trajectory(str(path), dst[0], dst[1], pose_scale=pose_scale)
    want_w, want_k = _custom_reference(w2c, K, pose_scale, size, dst)
    assert got_w.dtype == np.float32 and got_k.dtype == np.float32
    # rel 1e-6: the same float32 products in the same order.
    np.testing.assert_allclose(got_w, want_w, rtol=1e-6, atol=0)
    np.testing.assert_allclose(got_k, want_k, rtol=1e-6, atol=0)


def test_custom_trajectory_mapping_and_num_frames(tmp_path):
    path, w2c, K = _custom_npz(tmp_path, n=7)
    with np.load(path) as data:
        got_w, got_k = geometry.load_custom_trajectory(data, 480, 832, num_frames=3)
    want_w, want_k = _custom_reference(w2c[:3], K[:3], geometry.CUSTOM_POSE_SCALE, (960, 1664), (480, 832))
    np.testing.assert_allclose(got_w, want_w, rtol=1e-6, atol=0)
    np.testing.assert_allclose(got_k, want_k, rtol=1e-6, atol=0)
    # The caller's arrays are not modified.
    raw = {"w2c": w2c.astype(np.float32), "intrinsics": K.astype(np.float32)}
    before = raw["w2c"].copy()
    geometry.load_custom_trajectory(raw, 480, 832)
    np.testing.assert_array_equal(raw["w2c"], before)


# ----------------------------------------------------------------------------------------------------------
# Direction assembly (upstream Z:767-777, AR:441-463, Z:779-794;
# docs/REFERENCES.md#the-fal-endpoint-and-the-upstream-script)

@pytest.mark.parametrize("zoom_in,zoom_out", [("orbit_horizontal", "horizontal_zoom"), ("back", "back"),
                                              ("dolly_zoom", "spiral")])
def test_direction_both_shares_the_anchor(zoom_in, zoom_out):
    n = 161
    cams = geometry.direction_cameras("both", n, DEPTH, K0, zoom_in_trajectory=zoom_in, zoom_in_strength=0.5,
                                      zoom_out_trajectory=zoom_out, zoom_out_strength=1.5, mask=MASK)
    w_in, k_in = geometry.trajectory(zoom_in, n, 0.5, DEPTH, role="in", intrinsics=K0, mask=MASK)
    w_out, k_out = geometry.trajectory(zoom_out, n, 1.5, DEPTH, role="out", intrinsics=K0, mask=MASK)
    assert cams["w2c"].shape == (2 * n - 1, 4, 4) and cams["K"].shape == (2 * n - 1, 3, 3)
    assert cams["anchor"] == n - 1
    np.testing.assert_array_equal(cams["in"][0], w_in[:n])
    np.testing.assert_array_equal(cams["out"][0], w_out[:n])
    np.testing.assert_array_equal(cams["w2c"][: n], w_out[:n][::-1])
    np.testing.assert_array_equal(cams["w2c"][n:], w_in[1:n])
    np.testing.assert_array_equal(cams["K"][: n], k_out[:n][::-1])
    np.testing.assert_array_equal(cams["K"][n:], k_in[1:n])
    # The anchor is kept once: both directions' frame 0 is the identity (orbit up to 2.3e-16) with K0.
    np.testing.assert_allclose(w_in[0], np.eye(4), rtol=0, atol=1e-6)
    np.testing.assert_allclose(cams["w2c"][n - 1], np.eye(4), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(k_in[0], k_out[0])


@pytest.mark.parametrize("direction", ["in", "out"])
def test_direction_single(direction):
    n = 81
    cams = geometry.direction_cameras(direction, n, DEPTH, K0, mask=MASK)  # fal defaults
    preset, strength = ("orbit_horizontal", 0.5) if direction == "in" else ("horizontal_zoom", 1.5)
    w, k = geometry.trajectory(preset, n, strength, DEPTH, role=direction, intrinsics=K0, mask=MASK)
    assert set(cams) == {direction, "w2c", "K", "anchor"} and cams["anchor"] == 0
    np.testing.assert_array_equal(cams["w2c"], w)
    np.testing.assert_array_equal(cams["K"], k)
    if direction == "out":  # zoom-out retreats (camera centre z < 0) and rises (y < 0)
        R, t = w[-1, :3, :3], w[-1, :3, 3]
        centre = -R.T @ t
        assert centre[2] < 0 and centre[1] < 0


# ----------------------------------------------------------------------------------------------------------
# Bad inputs

def _traj(**kw):
    args = dict(preset="horizontal_zoom", num_frames=81, strength=0.5, depth=DEPTH)
    args.update(kw)
    preset, n, s, d = args.pop("preset"), args.pop("num_frames"), args.pop("strength"), args.pop("depth")
    return geometry.trajectory(preset, n, s, d, **args)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(preset="zoom"), ValueError, ["preset", "horizontal_zoom_bend", "orbit_horizontal"]),
    (dict(preset="horizontal_noise"), ValueError, ["preset", "RNG"]),
    (dict(preset="spiral_outwards"), ValueError, ["preset", "crashes"]),
    (dict(preset=3), TypeError, ["preset"]),
    (dict(num_frames=80), ValueError, ["num_frames", "1 + 80k"]),
    (dict(num_frames=82), ValueError, ["num_frames", "1 + 80k"]),
    (dict(num_frames=1), ValueError, ["num_frames"]),
    (dict(num_frames=81.0), TypeError, ["num_frames"]),
    (dict(num_frames=True), TypeError, ["num_frames"]),
    (dict(strength=-0.1), ValueError, ["strength", ">= 0"]),
    (dict(strength=float("nan")), ValueError, ["strength", "finite"]),
    (dict(strength=float("inf")), ValueError, ["strength", "finite"]),
    (dict(strength="0.5"), TypeError, ["strength"]),
    (dict(role="sideways"), ValueError, ["role", "'in'", "'out'"]),
    (dict(direction="forward"), ValueError, ["direction", "right", "up"]),
    (dict(depth=DEPTH[0]), ValueError, ["depth", "(H, W)"]),
    (dict(depth=np.array([["a"]])), TypeError, ["depth"]),
    (dict(depth=np.zeros((4, 4), np.float32)), ValueError, ["depth", "> 0"]),
    (dict(depth=np.full((4, 4), np.nan, np.float32)), ValueError, ["depth", "NaN"]),
    (dict(mask=np.ones((3, 3))), ValueError, ["mask", "shape"]),
    (dict(mask=np.zeros(DEPTH.shape)), ValueError, ["mask", "no pixel"]),
    (dict(intrinsics=np.eye(4)), ValueError, ["intrinsics", "(3, 3)"]),
    (dict(intrinsics=np.full((3, 3), np.inf)), ValueError, ["intrinsics", "finite"]),
])
def test_trajectory_bad_inputs(kwargs, exc, words):
    with pytest.raises(exc) as info:
        _traj(**kwargs)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_direction_cameras_bad_inputs():
    with pytest.raises(ValueError, match="zoom_direction.*'both'"):
        geometry.direction_cameras("sideways", 81, DEPTH, K0)
    with pytest.raises(ValueError, match="num_frames"):
        geometry.direction_cameras("both", 100, DEPTH, K0)
    with pytest.raises(ValueError, match="preset"):
        geometry.direction_cameras("out", 81, DEPTH, K0, zoom_out_trajectory="nope")


def test_custom_trajectory_bad_inputs(tmp_path):
    path, w2c, K = _custom_npz(tmp_path, n=4)
    with pytest.raises(ValueError, match="missing key 'intrinsics'"):
        geometry.load_custom_trajectory({"w2c": w2c}, 480, 832)
    with pytest.raises(ValueError, match=r"w2c: expected shape \(N, 4, 4\)"):
        geometry.load_custom_trajectory({"w2c": w2c[:, :3], "intrinsics": K}, 480, 832)
    with pytest.raises(ValueError, match="4 poses but 3 intrinsics"):
        geometry.load_custom_trajectory({"w2c": w2c, "intrinsics": K[:3]}, 480, 832)
    with pytest.raises(ValueError, match="num_frames.*holds 4 poses"):
        geometry.load_custom_trajectory(str(path), 480, 832, num_frames=5)
    with pytest.raises(ValueError, match="pose_scale"):
        geometry.load_custom_trajectory(str(path), 480, 832, pose_scale=0.0)
    with pytest.raises(ValueError, match="height, width"):
        geometry.load_custom_trajectory(str(path), 0, 832)
    with pytest.raises(ValueError, match="not finite"):
        bad = w2c.copy()
        bad[1, 0, 3] = np.nan
        geometry.load_custom_trajectory({"w2c": bad, "intrinsics": K}, 480, 832)
    single = tmp_path / "single.npy"
    np.save(single, w2c)
    with pytest.raises(ValueError, match="not an .npz"):
        geometry.load_custom_trajectory(str(single), 480, 832)
    with pytest.raises(FileNotFoundError):
        geometry.load_custom_trajectory(str(tmp_path / "missing.npz"), 480, 832)
    with pytest.raises(TypeError, match="path_or_npz"):
        geometry.load_custom_trajectory(42, 480, 832)
