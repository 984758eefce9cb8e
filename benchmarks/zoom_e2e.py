"""End-to-end generate-mode timing: one chunk (81 frames) with DMD and one with UniPC + CFG, per-stage times.

    python benchmarks/zoom_e2e.py --checkpoint DIR [--resolution 480p] [--steps 28]     # the GPU session
    python benchmarks/zoom_e2e.py --tiny                                                 # CPU, tiny random weights

Prints, per run: text (umT5), VAE priming, CLIP, chunk inputs (retrieval, warps, camera-latent and spatial VAE
encodes, rays), DiT (calls, seconds, estimated TFLOP/s), VAE decode, re-encode, depth update, MP4 write, total,
and the process's peak resident memory. The DiT FLOP count is an estimate from the layout's token count
(Linears 2·in·out per token, attention 4·L·L_k·D), see dit_flops()."""
import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lyra2  # noqa: E402
from lyra2 import fields, generate as gen, testing  # noqa: E402
from lyra2.models.dit import framepack_layout  # noqa: E402
from lyra2.progress import Progress  # noqa: E402


def dit_flops(cfg, layout, h, w, text_len=512, clip_len=257):
    """Estimated FLOPs of one DiT forward on an h×w latent grid."""
    L = framepack_layout(layout, (h, w))["tokens"]
    D, F = cfg["dim"], cfg["ffn"]
    lin = 2 * L * (4 * D * D + 2 * D * D + 2 * D * F + cfg["cam_dim"] * D + cfg["buffer_in"] * 16 * cfg["squeeze"]
                   + cfg["squeeze"] * D)
    lin += 2 * (text_len + clip_len) * 2 * D * D
    att = 4 * L * L * D + 4 * L * (text_len + clip_len) * D
    return cfg["layers"] * (lin + att)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint")
    ap.add_argument("--tiny", action="store_true", help="tiny random checkpoint at 32x48 on the CPU")
    ap.add_argument("--resolution", default=None, help="480p, 720p or HxW (tiny default 32x48)")
    ap.add_argument("--steps", type=int, default=28)
    ap.add_argument("--skip-cfg", action="store_true")
    a = ap.parse_args()
    if a.tiny:
        folder = testing.make_tiny_checkpoint(tempfile.mkdtemp(prefix="lyra2-tiny-"))
        cfg = testing.TINY["dit"]
        res = a.resolution or "32x48"
    else:
        if not a.checkpoint:
            ap.error("--checkpoint DIR or --tiny")
        folder = a.checkpoint
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from make_random_checkpoint import REAL
        cfg = REAL["dit"]
        res = a.resolution or "480p"
    H, W = fields.RESOLUTIONS[res] if res in fields.RESOLUTIONS else tuple(int(v) for v in res.split("x"))
    print(f"lyra2 {lyra2.__version__}  backends {lyra2.backends()}  size {W}x{H}  threads "
          f"{os.environ.get('LYRA2_NUM_THREADS', 'all')}")
    y, x = np.mgrid[0:H, 0:W]
    img = (np.stack([x * 255 // W, y * 255 // H, (x + y) * 127 // (H + W)], -1)).astype(np.uint8)
    depth = (2.0 + 3.0 * y / H).astype(np.float32)
    t = time.perf_counter()
    gen.load_models(folder)
    print(f"load models: {time.perf_counter() - t:.2f} s")
    flops = dit_flops(cfg, gen.DEFAULT_LAYOUT, H // 8, W // 8)
    runs = [("DMD", dict(use_dmd=True))] + ([] if a.skip_cfg else
                                             [(f"UniPC {a.steps} + CFG", dict(use_dmd=False, num_inference_steps=a.steps))])
    for name, kw in runs:
        args = fields.validate({"prompt": "a quiet street at dusk", "seed": 0, **kw}, require_image=False)
        args["resolution"] = (H, W)
        t = time.perf_counter()
        v = gen.run_generate(img, args, checkpoint_folder=folder, device="auto", report=Progress(bar=False), depth=depth)
        total = time.perf_counter() - t
        t = time.perf_counter()
        v.save(os.path.join(tempfile.mkdtemp(), "out.mp4"))
        mp4 = time.perf_counter() - t
        st = v.stage_timings["in"]
        print(f"\n== {name}: {v.frames.shape[0]} frames, total {total:.2f} s (+ MP4 {mp4:.2f} s)")
        for k in ("text_s", "prime_s", "clip_s", "prep_s", "dit_s", "decode_s", "reencode_s", "depth_s"):
            print(f"  {k[:-2]:10s} {st[k]:9.3f} s")
        n = st["dit_calls"]
        if n:
            print(f"  DiT: {n} calls, {st['dit_s'] / n:.3f} s/call, ~{flops / 1e12:.2f} TFLOP/call, "
                  f"{flops * n / max(st['dit_s'], 1e-9) / 1e12:.3f} TFLOP/s")
    print(f"\npeak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
