"""Preview renderer: warp + push-pull fill in C, the heuristic depth prior, and their argument checks.
References: lyra2.warp.forward_warp (itself checked against the upstream golden in test_warp.py) and
properties that hold exactly (known pixels unchanged, identity cameras reproduce the input)."""
import numpy as np
import pytest

from lyra2.preview import HEURISTIC_DEPTH_NAME, fill_holes, heuristic_depth, render_frames
from lyra2.warp import forward_warp


def scene(seed=0, H=36, W=52, T=5):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    depth = (3.0 + 0.01 * xx + 0.02 * yy).astype(np.float32)
    depth[10:20, 15:30] = 1.5  # a near box: disocclusions to fill
    K = np.array([[40.0, 0, W / 2 - 0.3], [0, 40.0, H / 2 + 0.2], [0, 0, 1]], np.float32)
    w2c = np.tile(np.eye(4, dtype=np.float32), (T, 1, 1))
    w2c[:, 0, 3] = np.linspace(0, 0.4, T)   # truck sideways
    w2c[:, 2, 3] = -np.linspace(0, 0.3, T)  # and back out
    return img, depth, w2c, np.repeat(K[None], T, 0)


def to_u8(v):
    return np.floor(np.clip((v + 1) * 127.5 + 0.5, 0, 255)).astype(np.uint8)


def test_frames_are_warp_plus_fill():
    img, depth, w2c, K = scene()
    frames = render_frames(img, depth, w2c, K, edge_ratio=0)
    assert frames.shape == (5, 36, 52, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[0], img)
    src = img.transpose(2, 0, 1).astype(np.float32) / np.float32(127.5) - 1
    warp = forward_warp(src, depth, w2c[0], K[0], w2c[1:], K[1:], clean_points=False)
    assert warp["mask"].mean() < 0.99  # there are holes to fill
    for t in range(4):
        ref = fill_holes(warp["image"][t], warp["mask"][t, 0], warp["depth"][t])
        # Same C code on the same numbers: equal up to the last-bit rounding of the u8 conversion.
        diff = np.abs(frames[t + 1].astype(int) - to_u8(ref).transpose(1, 2, 0).astype(int))
        assert diff.max() <= 1


@pytest.mark.parametrize("edge_ratio", [0.0, 0.15])
def test_identity_cameras_render_input_exactly(edge_ratio):
    img, depth, _, K = scene(1)
    depth = np.full_like(depth, 2.5)  # smooth: no depth edge is dropped
    w2c = np.tile(np.eye(4, dtype=np.float32), (4, 1, 1))
    frames = render_frames(img, depth, w2c, K[:4], edge_ratio=edge_ratio)
    for t in range(4):
        np.testing.assert_array_equal(frames[t], img)


def test_fill_holes_fills_every_hole_and_keeps_known_pixels():
    rng = np.random.default_rng(2)
    image = rng.uniform(-1, 1, (3, 40, 56)).astype(np.float32)
    mask = (rng.uniform(size=(40, 56)) > 0.6).astype(np.float32)
    mask[5:25, 10:40] = 0  # a large hole
    holes = mask == 0
    image[:, holes] = np.nan  # hole contents must not leak
    out = fill_holes(image, mask)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, ~holes], image[:, ~holes])  # bit for bit
    # A fill is a convex combination of known values: it stays inside their range.
    assert out.min() >= image[:, ~holes].min() - 1e-6 and out.max() <= image[:, ~holes].max() + 1e-6


def test_fill_prefers_the_far_side():
    """A disocclusion borders a near and a far surface: the fill must take the far colour."""
    image = np.zeros((1, 32, 64), np.float32)
    image[0, :, :24] = 1.0    # near surface, value +1
    image[0, :, 40:] = -1.0   # far surface, value -1
    mask = np.ones((32, 64), np.float32)
    mask[:, 24:40] = 0
    depth = np.where(np.arange(64) < 24, 1.0, 4.0).astype(np.float32)[None].repeat(32, 0)
    out = fill_holes(image, mask, depth)
    assert out[0, :, 24:40].mean() < -0.5
    flat = fill_holes(image, mask)  # without depth the hole is a blend of both sides
    assert abs(flat[0, :, 24:40].mean()) < 0.5


def test_empty_frame_fills_with_zero():
    out = fill_holes(np.full((3, 8, 8), 7, np.float32), np.zeros((8, 8), np.float32))
    np.testing.assert_array_equal(out, 0)


def test_heuristic_depth_sky_and_ground():
    H, W = 60, 80
    img = np.zeros((H, W, 3), np.uint8)
    img[:24] = (110, 160, 230)  # smooth blue sky
    yy = np.arange(H - 24)[:, None]
    rng = np.random.default_rng(3)
    img[24:] = np.clip(np.stack([90 + 40 * np.sin(yy * 1.7 + np.arange(W) * 0.9)] * 3, -1)
                       + rng.integers(-20, 20, (H - 24, W, 3)), 0, 255).astype(np.uint8)  # textured ground
    depth, mask = heuristic_depth(img)
    assert depth.shape == (H, W) and depth.dtype == np.float32 and mask.dtype == np.uint8
    assert np.isfinite(depth).all() and (depth > 0).all()
    assert (mask[:24] == 0).all() and (mask[24:] == 1).all()
    rows = depth[24:].mean(axis=1)
    assert np.all(np.diff(rows) <= 1e-3 * rows[:-1])  # the ground gets nearer toward the bottom
    assert rows[-1] < rows[0] / 3 and depth[:24].min() >= depth[24:].max()
    assert isinstance(HEURISTIC_DEPTH_NAME, str) and "heuristic" in HEURISTIC_DEPTH_NAME


def test_heuristic_depth_without_sky_is_all_valid():
    img = np.random.default_rng(4).integers(0, 120, (30, 40, 3), dtype=np.uint8)
    img[..., 2] = img[..., 0]  # no blue dominance; dark: nothing sky-like
    depth, mask = heuristic_depth(img)
    assert (mask == 1).all() and (depth > 0).all()


def test_bad_inputs_raise():
    img, depth, w2c, K = scene()
    with pytest.raises(TypeError, match="image_u8"):
        render_frames(img.astype(np.float32), depth, w2c, K)
    with pytest.raises(ValueError, match="image_u8"):
        render_frames(img[..., :2], depth, w2c, K)
    with pytest.raises(ValueError, match="depth"):
        render_frames(img, depth[1:], w2c, K)
    with pytest.raises(ValueError, match="K"):
        render_frames(img, depth, w2c, K[:2])
    with pytest.raises(ValueError, match="w2c"):
        render_frames(img, depth, w2c[:0], K[:0])
    bad = w2c.copy()
    bad[2, 1, 1] = np.inf
    with pytest.raises(ValueError, match="w2c"):
        render_frames(img, depth, bad, K)
    with pytest.raises(ValueError, match="edge_ratio"):
        render_frames(img, depth, w2c, K, edge_ratio=-1)
    with pytest.raises(ValueError, match="norm_batch"):
        render_frames(img, depth, w2c, K, norm_batch=0)
    with pytest.raises(TypeError, match="image_u8"):
        heuristic_depth(img.astype(np.int16))
    with pytest.raises(ValueError, match="mask"):
        fill_holes(np.zeros((3, 4, 4), np.float32), np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="image"):
        heuristic_depth(np.zeros((1, 1, 3), np.uint8))
