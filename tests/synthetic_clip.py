"""A small synthetic clip for the 3D-reconstruction tests: T frames of H×W RGB patterns and a camera turning and
moving a little per frame, with one pinhole K (the frame size is the tests': K's centre is fixed)."""
import numpy as np


def synthetic_clip(H, W, T):
    """(frames (T, H, W, 3) uint8, w2c (T, 4, 4) f32, K (T, 3, 3) f32)."""
    y, x = np.mgrid[0:H, 0:W]
    frames = np.stack([np.stack([(x * 3 + 7 * i) % 256, (y * 4) % 256, ((x + y) * 2 + i) % 256], -1)
                       for i in range(T)]).astype(np.uint8)
    w2c = np.repeat(np.eye(4, dtype=np.float32)[None], T, 0)
    for i in range(T):
        a = 0.02 * i
        w2c[i, :3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        w2c[i, :3, 3] = [0.05 * i, 0.0, -0.1 * i]
    K = np.repeat(np.array([[60.0, 0, 42.0], [0, 60.0, 28.0], [0, 0, 1]], np.float32)[None], T, 0)
    return frames, w2c, K
