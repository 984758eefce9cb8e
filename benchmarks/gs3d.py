"""3D export throughput: point-cloud fusion, the DA3 GS head + adapter, the Gaussian rasterizer; CPU, and CUDA
when this build has a usable device.

    python benchmarks/gs3d.py [--quick] [--parts pointcloud,gaussians,render]

Prints, in one run:
  * point cloud: views fused per second and points per second (Video.point_cloud on 480p / 720p views of a
    synthetic scene; stride 4 and 1) and the peak extra memory of fusing 60 views at 720p;
  * Gaussians: lyra2.reconstruct on the tiny random checkpoint (lyra2.testing; the real DA3-giant costs ~1000x
    more FLOPs per view) at 476x826 (480p processed), Gaussians per second per device, and the adapter alone (C,
    host) on a real-size raw map (Gaussians per second);
  * render: ms per 480x832 frame and splats per second for 100k and 1M splats per device (op gs_rasterize: the
    CPU reference csrc/nn/cpu/cpu_splat.c, the CUDA kernels csrc/nn/cuda/cuda_splat.cu), measured as the
    difference between rendering 9 cameras and 1 camera in one call (so the backend start and the scene upload,
    printed separately, are not in the per-frame number), and the CUDA / CPU speed ratio of the same run.
"""
import argparse
import os
import sys
import tempfile
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lyra2  # noqa: E402
from lyra2 import _core, testing  # noqa: E402
from lyra2.reconstruct import Gaussians  # noqa: E402
from lyra2.scene3d import fuse_point_cloud  # noqa: E402


def best(fn, repeat):
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        t.append(time.perf_counter() - t0)
    return min(t), out


def views(n, h, w):
    K = np.array([[0.8 * w, 0, w / 2], [0, 0.8 * w, h / 2], [0, 0, 1]])
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    out = []
    for i in range(n):
        w2c = np.eye(4)
        w2c[:3, 3] = [0.02 * i, 0, -0.05 * i]
        depth = (3.0 + 0.5 * np.sin(x / 50.0) + 0.01 * i).astype(np.float32)
        out.append((rgb, depth, w2c, K))
    return out


def bench_point_cloud(quick):
    print("point cloud (Video.point_cloud fusion, CPU)")
    for (h, w), n, strides in (((480, 832), 20, (4, 1)), ((720, 1280), 20 if quick else 60, (4,))):
        vs = views(n, h, w)
        for stride in strides:
            t, (xyz, _) = best(lambda: fuse_point_cloud(vs, stride=stride, max_points=50_000_000), 1)
            raw = n * (h // stride) * (w // stride)
            print(f"  {h}p x {n} views, stride {stride}: {t * 1e3:8.1f} ms, {n / t:7.1f} views/s, "
                  f"{raw / t / 1e6:6.2f} M input points/s, {len(xyz):9d} points kept")
    vs = views(20 if quick else 60, 720, 1280)
    tracemalloc.start()
    fuse_point_cloud(vs, stride=4)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"  peak extra memory fusing {len(vs)} views at 720p, stride 4: {peak / 2**20:.0f} MiB "
          f"(the views themselves: {len(vs) * 720 * 1280 * 7 / 2**20:.0f} MiB)")


def bench_gaussians(quick, devices):
    with tempfile.TemporaryDirectory() as d:
        ckpt = testing.make_tiny_checkpoint(d)
        h, w = 476, 826
        n = 4 if quick else 8
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8)
        w2c = np.repeat(np.eye(4, dtype=np.float32)[None], n, 0)
        w2c[:, 0, 3] = np.linspace(0, 0.3, n)
        w2c[:, 1, 3] = np.linspace(0, 0.05, n) ** 2
        K = np.repeat(np.array([[400.0, 0, w / 2], [0, 400.0, h / 2], [0, 0, 1]], np.float32)[None], n, 0)
        for dev in devices:
            print(f"Gaussians (lyra2.reconstruct, tiny random DA3 + GS head, device={dev})")
            lyra2.reconstruct(frames[:2], w2c[:2], K[:2], ckpt, chunk_size=None, device=dev)  # load + warm up
            t, g = best(lambda: lyra2.reconstruct(frames, w2c, K, ckpt, chunk_size=None, device=dev), 1)
            print(f"  {n} views at {h}x{w} (GS grid {h // 2}x{w // 2}): {t:.2f} s, {len(g) / t / 1e3:.1f} k "
                  "Gaussians/s (DA3 forward + GS head + adapter; tiny widths)")
    hg, wg, v = 238, 413, 4
    raw = (0.1 * np.random.default_rng(1).standard_normal((v, 38, hg, wg))).astype(np.float32)
    depth = np.full((v, hg, wg), 2.0, np.float32)
    c2w = np.repeat(np.eye(4, dtype=np.float32)[None], v, 0)
    Kg = np.repeat(np.array([[200.0, 0, wg / 2], [0, 200.0, hg / 2], [0, 0, 1]], np.float32)[None], v, 0)
    t, _ = best(lambda: _core.gs_adapt(raw, depth, c2w, Kg, 2, 1e-5, 30.0, 1.0), 3)
    print(f"  adapter alone (C, one thread): {v} x {hg}x{wg} = {v * hg * wg} Gaussians in {t * 1e3:.1f} ms, "
          f"{v * hg * wg / t / 1e6:.2f} M Gaussians/s")


def scene(n, seed=0):
    rng = np.random.default_rng(seed)
    means = np.c_[rng.uniform(-2, 2, n), rng.uniform(-1.2, 1.2, n), rng.uniform(2, 6, n)].astype(np.float32)
    q = rng.standard_normal((n, 4)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    scales = rng.uniform(0.005, 0.03, (n, 3)).astype(np.float32)
    harm = (0.5 * rng.standard_normal((n, 3, 9))).astype(np.float32)
    return Gaussians(means, scales, q, harm, rng.uniform(0.3, 1.0, n).astype(np.float32))


def bench_render(quick, devices):
    from lyra2.render import render_float

    print("render (op gs_rasterize, 480x832, SH degree 2; per frame = (9 cameras - 1 camera) / 8, one call each)")
    K = np.array([[500.0, 0, 416], [0, 500.0, 240], [0, 0, 1]], np.float32)
    w2c = np.repeat(np.eye(4, dtype=np.float32)[None], 9, 0)
    w2c[:, 0, 3] = np.linspace(0, 0.2, 9)  # a short dolly: every frame renders a slightly different view
    for n in ((100_000,) if quick else (100_000, 1_000_000)):
        g = scene(n)
        per = {}
        for dev in devices:
            render_float(g, w2c[:1], K, (480, 832), device=dev)  # warm up (the device's first context)
            t1, _ = best(lambda: render_float(g, w2c[:1], K, (480, 832), device=dev), 3)
            t9, _ = best(lambda: render_float(g, w2c, K, (480, 832), device=dev), 3)
            per[dev] = max(t9 - t1, 1e-9) / 8
            threads = f", LYRA2_NUM_THREADS={os.environ.get('LYRA2_NUM_THREADS', 'default')}" if dev == "cpu" else ""
            print(f"  {dev:4s} {n:9d} splats: {per[dev] * 1e3:8.2f} ms / frame, {n / per[dev] / 1e6:8.1f} M splats/s; "
                  f"one-frame call {t1 * 1e3:8.1f} ms (backend start + scene upload + frame){threads}")
        if len(per) == 2:
            print(f"  cuda / cpu speed ratio at {n} splats: {per['cpu'] / per['cuda']:.1f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke run)")
    ap.add_argument("--parts", default="pointcloud,gaussians,render",
                    help="comma-separated subset of pointcloud, gaussians, render")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    if not parts <= {"pointcloud", "gaussians", "render"}:
        ap.error(f"--parts: {a.parts!r}; expected a subset of pointcloud,gaussians,render")
    b = lyra2.backends()
    devices = ["cpu", "cuda"] if b["cuda"] else ["cpu"]
    gpu = b["devices"][0]["name"] if b["cuda"] and b["devices"] else "none"
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (a shared machine slows every "
          f"number by about that load / CPUs); GPU: {gpu}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    if "pointcloud" in parts:
        bench_point_cloud(a.quick)
    if "gaussians" in parts:
        bench_gaussians(a.quick, devices)
    if "render" in parts:
        bench_render(a.quick, devices)


if __name__ == "__main__":
    main()
