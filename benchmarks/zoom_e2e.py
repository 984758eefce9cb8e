"""End-to-end generate-mode timing: one chunk (81 frames) with DMD and one with UniPC + CFG, per-stage times.

    python benchmarks/zoom_e2e.py --random-weights real [--resolution 480p]              # the GPU session
    python benchmarks/zoom_e2e.py --checkpoint DIR [--resolution 480p] [--steps 28]     # a converted folder
    python benchmarks/zoom_e2e.py --tiny [--device cuda]                                 # CPU / emulated device
    python benchmarks/zoom_e2e.py --random-weights tiny --device cuda                    # its dry run, emulated
    python benchmarks/zoom_e2e.py --plan-only                                            # the memory plans only

--random-weights SIZE (tiny, or real: the released sizes of lyra2.testing.REAL): the DiT (33 GB) and umT5 (11 GB)
have random weights of those shapes created where they run (lyra2.testing.random_weights + use_random_weights): on
a device they are filled there when placed — no file, no host copy, nothing uploaded. The small networks load from
random files written first into --work (real: benchmarks/make_random_checkpoint.py without the DiT and umT5,
~1.6 GB: CLIP, VAE, negative prompt, DMD LoRA; tiny: lyra2.testing.make_tiny_checkpoint without them). With
streaming (stream24) the streamed blocks are filled in host memory; the run's LoRAs are folded where the weights
lie (models/dit_lora_fold.c; the fp8 runs fill each block Linear in bf16, fold, then quantize it there).

Prints, per run: text (umT5), VAE priming, CLIP, chunk inputs (retrieval, warps, camera-latent and spatial VAE
encodes, rays), DiT (calls, seconds, TFLOP/s and % of the card's dense bf16 peak), VAE decode, re-encode, depth
update, MP4 write, total, the process's peak resident memory and (on a device) the device's peak memory. Every
run is repeated with the variants asked for: ``--variants bf16,fp8,stream24`` (fp8 DiT blocks; DiT block
streaming at a 24 GB budget); an fp8 run after a bf16 one also prints its drift against it (max and mean
levels of 255 over the frames). The DiT FLOPs are measured: one forward of the loaded configuration on the
measuring backend (csrc/nn/measure), the same count lyra2.memory_plan reports.

The memory plans of the released sizes (480p/720p, bf16 resident, bf16 and fp8 streamed at 24 GB) are printed
first; they need no GPU. With ``--out DIR`` everything also goes to DIR/zoom_e2e.json."""
import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lyra2  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402

from lyra2 import _core, fields, testing  # noqa: E402
from lyra2.memory import format_memory_plan, memory_plan  # noqa: E402
from lyra2.progress import Progress  # noqa: E402

gen = importlib.import_module("lyra2.generate")  # the module (lyra2.generate is the generate() function)


#: Dense bf16 tensor-core peaks (datasheets, SXM parts), TFLOP/s, by a substring of the device name.
PEAKS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1, "4090": 165.2}


def dit_flops(cfg, layout, h, w, clip_len=257):
    """FLOPs of one DiT forward of configuration cfg (dit_config's keys) on an h x w latent grid, measured."""
    keys = ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim", "text_dim", "freq_dim", "clip_dim",
            "cam_dim", "buffer_embed_dim", "buffer_squeeze")
    return _core.dit_measure({k: cfg[k] for k in keys}, layout, h, w, clip_len, "bf16", "cpu")["flops"]


def peak_tflops(device_name):
    return next((v for k, v in PEAKS.items() if k in (device_name or "")), None)


def plans():
    """The memory plans of the released sizes (no GPU needed)."""
    out = {}
    for res in ("480p", "720p"):
        for dtype, budget in (("bf16", None), ("bf16", 24), ("fp8", 24)):
            key = f"{res} {dtype}" + (f" {budget} GB" if budget else " resident")
            try:
                p = memory_plan(res, 81, dtype, budget)
                out[key] = {k: p[k] for k in ("peak_bytes", "resident_blocks", "streamed_blocks", "stage_peaks")}
                print(format_memory_plan(p))
            except ValueError as e:
                out[key] = {"error": str(e)}
                print(f"memory plan {key}: {e}")
    return out


def device_peak():
    """(name, peak bytes) of the device the run used, when lyra2 can tell."""
    b = lyra2.backends()
    if b.get("emulated"):
        return b["devices"][0]["name"], testing.emulated_cuda_stats()["peak_bytes"]
    if b["cuda"] and b["devices"]:
        return b["devices"][0]["name"], None
    return None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint")
    ap.add_argument("--tiny", action="store_true", help="tiny random checkpoint at 32x48")
    ap.add_argument("--random-weights", choices=("tiny", "real"), default=None,
                    help="the DiT's random weights created on the device (no DiT file); see above")
    ap.add_argument("--work", default=None, help="folder for --random-weights' other networks (default: a temp dir)")
    ap.add_argument("--seed", type=int, default=0, help="the random weights' seed")
    ap.add_argument("--plan-only", action="store_true", help="print the memory plans and stop")
    ap.add_argument("--resolution", default=None, help="480p, 720p or HxW (tiny default 32x48)")
    ap.add_argument("--steps", type=int, default=28)
    ap.add_argument("--cfg-steps", type=int, default=None,
                    help="UniPC + CFG steps to time (default --steps; 1 times one step)")
    ap.add_argument("--skip-cfg", action="store_true")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--variants", default="bf16", help="comma list of bf16, fp8, stream24")
    ap.add_argument("--out", default=None, help="folder for zoom_e2e.json")
    a = ap.parse_args()
    report = {"plans": plans()}
    if a.plan_only:
        return _write(a.out, report)
    if a.random_weights:
        folder = random_folder(a.random_weights, a.work, a.seed)
        res = a.resolution or ("32x48" if a.random_weights == "tiny" else "480p")
    elif a.tiny:
        folder = testing.make_tiny_checkpoint(tempfile.mkdtemp(prefix="lyra2-tiny-"))
        res = a.resolution or "32x48"
    else:
        if not a.checkpoint:
            ap.error("--checkpoint DIR, --random-weights SIZE, --tiny or --plan-only")
        folder = a.checkpoint
        res = a.resolution or "480p"
    H, W = fields.RESOLUTIONS[res] if res in fields.RESOLUTIONS else tuple(int(v) for v in res.split("x"))
    print(f"lyra2 {lyra2.__version__}  backends {lyra2.backends()}  size {W}x{H}  threads "
          f"{os.environ.get('LYRA2_NUM_THREADS', 'all')}")
    y, x = np.mgrid[0:H, 0:W]
    img = (np.stack([x * 255 // W, y * 255 // H, (x + y) * 127 // (H + W)], -1)).astype(np.uint8)
    depth = (2.0 + 3.0 * y / H).astype(np.float32)
    t = time.perf_counter()
    # the configuration: a host load (each run loads for its device); random weights load for the device, deferred
    # (their values are written at placement, not here)
    # (only the info is kept: the cache holds the models, so a run of another key frees them when it clears the cache;
    # a reference here would keep the first device run's placed networks, 35 GB at 480p, through every later run)
    where = gen._check_device(a.device) if a.random_weights else "cpu"
    info = gen.load_models(folder, where, None, lambda m: None)[1]
    print(f"load models ({where}{', random DiT deferred' if where != 'cpu' else ''}): {time.perf_counter() - t:.2f} s")
    cfg = info["dit_config"]
    flops = dit_flops(cfg, gen.DEFAULT_LAYOUT, H // 8, W // 8)
    name, _ = device_peak()
    peak = peak_tflops(name)
    runs = [("DMD", dict(use_dmd=True))] + ([] if a.skip_cfg else [(
        f"UniPC {a.cfg_steps or a.steps} + CFG", dict(use_dmd=False, num_inference_steps=a.cfg_steps or a.steps))])
    report["runs"] = []
    seen = {}   # (variant, run) -> frames, for the fp8 drift against bf16
    for variant in a.variants.split(","):
        if variant not in ("bf16", "fp8", "stream24"):
            ap.error(f"--variants: {variant!r} is not one of bf16, fp8, stream24")
        for rname, kw in runs:
            rec = {"variant": variant, "run": rname}
            try:
                rec.update(_one_run(folder, img, depth, H, W, kw, variant, a.device, flops, peak))
            except (lyra2.Lyra2Error, ValueError, NotImplementedError) as e:
                # a variant this build cannot run yet is reported, not hidden: the message says what is missing
                rec["error"] = f"{type(e).__name__}: {e}"
                print(f"\n== {variant} {rname}: not run: {rec['error']}")
            frames = rec.pop("frames_array", None)
            if frames is not None:
                seen[(variant, rname)] = frames
            base = seen.get(("bf16", rname))
            if variant == "fp8" and frames is not None and base is not None:
                # the drift the fp8 DiT costs: the same run with the checkpoint's weights (levels of 255)
                d = np.abs(frames.astype(np.int16) - base.astype(np.int16))
                rec["drift_vs_bf16"] = {"max_levels": int(d.max()), "mean_levels": float(d.mean())}
                print(f"  fp8 vs bf16 ({rname}): max {int(d.max())}, mean {float(d.mean()):.3f} levels of 255")
            report["runs"].append(rec)
    report["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak resident memory: {report['peak_rss_gib']:.2f} GiB")
    return _write(a.out, report)


def random_folder(size, work, seed):
    """A checkpoint folder for --random-weights: the small networks as random files, the DiT's and umT5's random
    weights of `size` (lyra2.testing.random_weights) registered for the folder (lyra2.testing.use_random_weights)."""
    folder = work or tempfile.mkdtemp(prefix=f"lyra2-random-{size}-")
    os.makedirs(folder, exist_ok=True)
    from lyra2.checkpoint import FILES

    t = time.perf_counter()
    have = {c for c in FILES if os.path.isfile(os.path.join(folder, FILES[c]))}
    if size == "tiny":
        testing.make_tiny_checkpoint(folder, seed=seed)
        for c in ("dit", "umt5"):
            os.remove(os.path.join(folder, FILES[c]))
    elif not {"vae", "clip", "tokenizer", "negative_prompt", "lora_dmd"} <= have:  # reused when there
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from make_random_checkpoint import make_real

        make_real(folder, seed=seed, skip=("dit", "umt5"))
    random = {c: testing.random_weights(c, size, seed=seed) for c in ("dit", "umt5")}
    testing.use_random_weights(folder, **random)
    print(f"random weights: {random['dit']} and {random['umt5']} created on the device when placed; the other "
          f"networks' files in {folder} ({time.perf_counter() - t:.1f} s)")
    return folder


def _one_run(folder, img, depth, H, W, kw, variant, device, flops, peak):
    args = fields.validate({"prompt": "a quiet street at dusk", "seed": 0, **kw}, require_image=False)
    args["resolution"] = (H, W)
    budget = 24 if variant == "stream24" else None
    # load the models as the run will use them (device, streaming) outside the timed run; the first device run
    # then places them (part of its "text"/total time, printed as place_s below)
    from lyra2.memory import log_run_plan

    dev = gen._check_device(device)
    t = time.perf_counter()
    dtype = "fp8" if variant == "fp8" else "bf16"
    gen.load_models(folder, dev, log_run_plan((H, W), 81, budget, dev, lambda m: None, dtype, kw["use_dmd"]),
                    lambda m: None, dtype, kw["use_dmd"])
    load_s = time.perf_counter() - t
    if lyra2.backends().get("emulated"):
        testing.emulated_cuda_reset()
    t = time.perf_counter()
    logs = []
    v = gen.run_generate(img, args, checkpoint_folder=folder, device=device, report=Progress(bar=False,
                         on_log=logs.append), depth=depth, max_gpu_memory=budget,
                         dit_dtype=dtype)
    total = time.perf_counter() - t
    t = time.perf_counter()
    v.save(os.path.join(tempfile.mkdtemp(), "out.mp4"))
    mp4 = time.perf_counter() - t
    st = v.stage_timings["in"]
    name, dev_peak = device_peak()
    print(f"\n== {variant} {kw}: {v.frames.shape[0]} frames, total {total:.2f} s (+ MP4 {mp4:.2f} s)")
    print(f"  load       {load_s:9.3f} s (host, before the run)")
    rec = {"frames": int(v.frames.shape[0]), "total_s": total, "mp4_s": mp4, "load_s": load_s, "device": name,
           "device_peak_bytes": dev_peak, "plan": [e["message"] for e in logs if "memory plan" in e["message"] or "DiT:" in e["message"]]}
    for k in ("text_s", "prime_s", "clip_s", "prep_s", "dit_s", "decode_s", "reencode_s", "depth_s"):
        print(f"  {k[:-2]:10s} {st[k]:9.3f} s")
        rec[k] = st[k]
    n = st["dit_calls"]
    if n:
        rate = flops * n / max(st["dit_s"], 1e-9) / 1e12
        pct = f", {100 * rate / peak:.1f} % of the {peak:.0f} TFLOP/s bf16 peak" if peak else ""
        print(f"  DiT: {n} calls, {st['dit_s'] / n:.3f} s/call, {flops / 1e12:.2f} TFLOP/call, {rate:.3f} TFLOP/s{pct}")
        rec.update(dit_calls=n, dit_s_per_call=st["dit_s"] / n, dit_tflop_per_call=flops / 1e12, dit_tflops=rate,
                   dit_pct_peak=100 * rate / peak if peak else None)
    if dev_peak is not None:
        print(f"  device peak memory: {dev_peak / 1e9:.3f} GB")
    rec["frames_array"] = v.frames
    return rec


def _write(out, report):
    if out:
        os.makedirs(out, exist_ok=True)
        tmp = os.path.join(out, ".zoom_e2e.json.tmp")
        with open(tmp, "w") as f:
            json.dump(report, f, indent=2, default=str)
        os.replace(tmp, os.path.join(out, "zoom_e2e.json"))
    return 0 if all("error" not in r for r in report.get("runs", [])) else 1


if __name__ == "__main__":
    sys.exit(main())
