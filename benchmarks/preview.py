"""Preview-mode benchmark: 81 frames at 480p (480x832) and 720p (720x1280).

Times, in one process: the heuristic depth prior, the trajectory (lyra2.geometry when it is importable,
else a synthetic dolly-in with a pan), warp + fill (lyra2.preview.render_frames), and the video encode
when a media writer exists (hook: `encode_hook`). The C splat alone (lyra2.warp.forward_warp, no fill)
is compared with a straightforward NumPy implementation of the same splat, run here on a few frames and
scaled per frame.

    python benchmarks/preview.py [--frames 81] [--numpy-frames 2] [--sizes 480x832,720x1280] [--image PATH]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lyra2.preview import HEURISTIC_DEPTH_NAME, heuristic_depth, render_frames  # noqa: E402
from lyra2.warp import forward_warp  # noqa: E402


def synthetic_image(H, W, seed=0):
    """A sky/ground picture with texture and a few upright boxes (no image files needed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.zeros((H, W, 3), np.float32)
    h0 = int(0.4 * H)
    img[:h0] = np.stack([110 + 40 * yy[:h0] / h0, 150 + 30 * yy[:h0] / h0, 230 + 0 * yy[:h0]], -1)
    g = 100 + 40 * np.sin(xx[h0:] * 0.07) * np.cos(yy[h0:] * 0.11) + rng.normal(0, 12, (H - h0, W))
    img[h0:] = np.stack([g, 0.8 * g + 20, 0.5 * g], -1)
    for k in range(5):
        x0 = int(W * (0.1 + 0.17 * k)); w = W // 14; top = int(H * (0.15 + 0.08 * k)); bot = int(H * (0.55 + 0.07 * k))
        img[top:bot, x0:x0 + w] = (60 + 35 * k, 50 + 20 * k, 45) + rng.normal(0, 6, (bot - top, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def load_image(path, H, W):
    from PIL import Image  # only for --image
    return np.asarray(Image.open(path).convert("RGB").resize((W, H), Image.BICUBIC))


def make_trajectory(T, H, W, depth, mask, preset="orbit_horizontal", strength=0.5):
    """The fal default zoom-in camera path (lyra2.geometry, the C trajectory builder)."""
    from lyra2.geometry import trajectory

    w2c, K = trajectory(preset, T, strength, depth, role="in", mask=mask)
    return np.asarray(w2c, np.float32), np.asarray(K, np.float32), f"lyra2.geometry {preset} s={strength}"


def encode_hook(frames, fps=16):
    """H.264 encode of the rendered frames (lyra2.write_video), seconds."""
    import lyra2

    t = time.perf_counter()
    lyra2.write_video(frames, "/tmp/lyra2_preview_bench.mp4", fps=fps)
    return time.perf_counter() - t


def numpy_splat(image, depth, src_w2c, src_K, tgt_w2c, tgt_K):
    """The same splat in plain NumPy (float32, no continuity mask), one target at a time."""
    C, H, W = image.shape
    d = np.clip(np.nan_to_num(depth, nan=1e4), 0, 1e4).astype(np.float32)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    cam = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.linalg.inv(src_K).T.astype(np.float32) * d[..., None]
    X = (np.concatenate([cam, np.ones_like(d)[..., None]], -1) @ np.linalg.inv(src_w2c).T.astype(np.float32))[..., :3]
    valid = d > 0
    Xh = np.concatenate([X, np.ones_like(d)[..., None]], -1)
    zs = [(Xh @ w.T)[..., :3] @ k.T for w, k in zip(tgt_w2c, tgt_K)]
    Lmax = max(np.log1p(np.maximum(q[..., 2], 0)).max() for q in zs)
    out = []
    for q in zs:
        z = q[..., 2]
        m = valid & (z > 0)
        ox = q[..., 0] / (z + 1e-7) + 1
        oy = q[..., 1] / (z + 1e-7) + 1
        fx, cx = np.clip(np.floor(ox), 0, W + 1), np.clip(np.ceil(ox), 0, W + 1)
        fy, cy = np.clip(np.floor(oy), 0, H + 1), np.clip(np.ceil(oy), 0, H + 1)
        ox, oy = np.clip(ox, 0, W + 1), np.clip(oy, 0, H + 1)
        dw = np.exp(np.minimum(np.log1p(np.maximum(z, 0)) / (Lmax + 1e-7) * 50, 80)) + 1e-7
        vals = np.concatenate([image, z[None], np.ones((1, H, W), np.float32)])[:, m]
        acc = np.zeros((C + 2, (H + 2) * (W + 2)), np.float32)
        for wy, wx, iy, ix in ((1 - (oy - fy), 1 - (ox - fx), fy, fx), (1 - (cy - oy), 1 - (ox - fx), cy, fx),
                               (1 - (oy - fy), 1 - (cx - ox), fy, cx), (1 - (cy - oy), 1 - (cx - ox), cy, cx)):
            w = (wy * wx / dw)[m]
            idx = (iy[m] * (W + 2) + ix[m]).astype(np.int64)
            for c in range(C + 2):
                acc[c] += np.bincount(idx, vals[c] * w, minlength=(H + 2) * (W + 2)).astype(np.float32)
        acc = acc.reshape(C + 2, H + 2, W + 2)[:, 1:-1, 1:-1]
        hit = acc[-1] > 0
        out.append(np.where(hit, np.clip(acc[:C] / np.where(hit, acc[-1], 1), -1, 1), -1))
    return out


def best_of(fn, repeats):
    """(best wall seconds, CPU seconds of that run summed over threads, result)."""
    best, cpu, result = float("inf"), 0.0, None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        wall = time.perf_counter() - t
        if wall < best:
            best, cpu = wall, time.process_time() - c
    return best, cpu, result


def run(H, W, T, numpy_frames, image_path, repeats):
    img = load_image(image_path, H, W) if image_path else synthetic_image(H, W)
    t_depth, _, (depth, mask) = best_of(lambda: heuristic_depth(img), repeats)
    t_traj, _, (w2c, K, traj_name) = best_of(lambda: make_trajectory(T, H, W, depth, mask), 1)
    t_render, c_render, frames = best_of(lambda: render_frames(img, depth, w2c, K), repeats)
    t_encode = encode_hook(frames)
    src = img.transpose(2, 0, 1).astype(np.float32) / np.float32(127.5) - 1
    n = T - 1
    t_c, c_c, _ = best_of(lambda: forward_warp(src, depth, w2c[0], K[0], w2c[1:], K[1:], clean_points=False),
                          repeats)
    t_np, c_np, _ = best_of(lambda: numpy_splat(src, depth, w2c[0], K[0], w2c[1:1 + numpy_frames],
                                                K[1:1 + numpy_frames]), 1)
    total = t_depth + t_traj + t_render + (t_encode or 0.0)
    print(f"{H}x{W}, {T} frames, {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(f"  depth prior ({HEURISTIC_DEPTH_NAME}): {t_depth * 1e3:8.1f} ms")
    print(f"  trajectory ({traj_name}):{' ' * max(1, 28 - len(traj_name))}{t_traj * 1e3:8.1f} ms")
    print(f"  warp + fill, {T - 1} frames (render_frames): {t_render * 1e3:8.1f} ms wall "
          f"({t_render / (T - 1) * 1e3:.1f} ms/frame), {c_render:.2f} s CPU over all threads")
    print(f"  encode: {'%.1f ms' % (t_encode * 1e3) if t_encode is not None else 'n/a (no lyra2 video writer in this checkout)'}")
    print(f"  total: {total:.2f} s")
    print(f"  splat only (forward_warp, {n} frames, threaded; NumPy {numpy_frames} frames, one thread), per frame:")
    print(f"    wall: C {t_c / n * 1e3:.1f} ms, NumPy {t_np / numpy_frames * 1e3:.1f} ms -> "
          f"C {t_np / numpy_frames / (t_c / n):.1f}x faster")
    print(f"    CPU:  C {c_c / n * 1e3:.1f} ms, NumPy {c_np / numpy_frames * 1e3:.1f} ms -> "
          f"C {c_np / numpy_frames / (c_c / n):.1f}x less CPU")
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--numpy-frames", type=int, default=2)
    ap.add_argument("--sizes", default="480x832,720x1280")
    ap.add_argument("--image", default=None)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    for size in a.sizes.split(","):
        H, W = (int(v) for v in size.split("x"))
        run(H, W, a.frames, a.numpy_frames, a.image, a.repeats)


if __name__ == "__main__":
    main()
