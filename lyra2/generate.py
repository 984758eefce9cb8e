"""Generate mode: the Lyra-2 autoregressive pipeline with a converted checkpoint (upstream Z:157, EXP:105-110, EXP:39,
Z:767-777; docs/REFERENCES.md#the-fal-endpoint-and-the-upstream-script).

Two entry points:

* ``run_generate(image_u8, args, *, checkpoint_folder, device, report, depth=None)``: the zoom job for validated
  endpoint fields (``lyra2.fields.validate``); ``lyra2.zoom(..., mode="generate")`` calls it.
* ``generate(image, w2c, intrinsics, captions, ...)``: upstream's custom-trajectory mode (one camera path, one
  caption per chunk), at any size that is a multiple of 16.

The autoregressive loop runs in C (``csrc/pipeline/ar_driver.c``): text encoding once, then per chunk of 80
frames CLIP of the last frame, spatial-memory retrieval, the buffer and correspondence warps, the camera latent,
rays, the sampler (UniPC + CFG against the negative prompt, or DMD in 4 steps with its LoRA), streaming VAE
decode and re-encode, and the depth-window update. Ctrl-C between network evaluations stops the run with a
KeyboardInterrupt; no output file is written for an unfinished run.

LoRAs (upstream ML:74-92, Z:464-486, CTI:181-199, T2V:353-432, Z:525-530): the style LoRAs
``lora/realism_boost.safetensors`` and ``lora/detail_enhancer.safetensors`` at weight 0.4 each when the folder has them
(upstream's zoom-GS script default; fal's choice is unknown,
docs/REFERENCES.md#the-fal-endpoint-and-the-upstream-script), in both samplers, plus the DMD LoRA at 1.0 with
``use_dmd``. The active ones are logged. The CPU evaluates them as adapters (unfolded, as upstream); a device run
with the bf16 policy folds them into the DiT's weights once, at placement (docs/PRECISION.md: the drift, and no
adapter bytes on the device), so placed models serve one ``use_dmd`` and are cached per ``use_dmd``.

Depth of the input (upstream Z:210-212, Z:556-563, DU:149-217, ``lyra2.depth.first_frame_depth``): the caller's
``depth``, else Depth Anything 3 aligned to MoGe as upstream when ``da3.safetensors`` and ``moge.safetensors`` are in
the folder (DA3 alone without MoGe), else the preview's heuristic prior, with a warning. The per-chunk depth-window
updates (upstream AR:1059-1060, AR:1071-1393, AR:261-366) use DA3 when available; without it every chunk warps with
frame 0's depth re-rendered into its buffer camera and the spatial memory keeps frame 0 only (logged).

Device: "cuda" runs every network on the GPU (or the emulated device under ``LYRA2_EMULATED_CUDA=1``) in upstream's
precision (docs/PRECISION.md): the captions first, through umT5 loaded onto the device for them and freed (cached
per caption), then the DiT, CLIP, the Wan VAE, DA3 and MoGe, placed once per folder. The run follows the memory
plan (lyra2.memory_plan of the GPU's memory or the budget): the VAE caches wait in host memory between their
phases only when it says so, and a later run with a new caption gives the placed networks back before umT5 when
umT5 beside them would not fit (``_room_for_text``). The caption and
negative-prompt embeddings, the CLIP tokens, each chunk's conditioning and correspondence buffer stay in device
memory; per network call only the sampler's latent goes up and the velocity comes back. The chunk inputs (warps,
VAE encodes, rays, slot assembly), the history latents and the frames later chunks read are built and kept on the
device (only the spatial retrieval runs on the host); DA3 reads each depth window there (its pixels built from the
frames' uint8 on the device, lyra2.models.depth.DepthWindow), and only uint8 frames come down
(docs/PRECISION.md#generate-on-the-device lists the transfers). "auto" is "cuda" when a real GPU answers, else
"cpu". Threads: ``$LYRA2_NUM_THREADS`` (default 0 = every core).
"""
from __future__ import annotations

import numbers
import os
import time

import numpy as np

from . import _core
from ._core import Lyra2Error
from .fields import check_options
from .depth import first_frame_depth
from .scene3d import DepthViews, recording_depth_window

__all__ = ["run_generate", "generate", "DEFAULT_LAYOUT", "STYLE_LORAS"]

DEFAULT_LAYOUT = "f1k1f4s2f1s1f16k4f2k2f1k1_g20"
SHIFT = 5.0            # FlowUniPC shift (Z:162)
# Style LoRAs applied in every run when their files are in the folder: (component, adapter name, weight). 0.4 each
# is upstream's zoom-GS script default (upstream Z:173-176, ML:74-92, Z:464-486, CTI:181-199, M:693-853); whether fal's
# endpoint keeps them is unknown (docs/REFERENCES.md#the-fal-endpoint-and-the-upstream-script), so a folder without the
# files runs without them.
STYLE_LORAS = (("lora_realism", "realism_boost", 0.4), ("lora_detail", "detail_enhancer", 0.4))
_MODEL_FILES = ("dit", "vae", "umt5", "tokenizer", "clip", "negative_prompt", "lora_dmd") + \
    tuple(c for c, _, _ in STYLE_LORAS)
_cache = {}            # (folder, file stamps, threads, layout, device, ...) -> models capsule (one entry: the last used)
_da3_cache = {}        # (file, stamps, device) -> DepthAnything3 of the depth-window updates
RANDOM_WEIGHTS = {}    # folder (absolute) -> {"dit"/"umt5": lyra2.testing.RandomWeights} used instead of those files
                       # (lyra2.testing.use_random_weights)
# The networks' precision on a device: "bf16" is upstream's inference policy for each (docs/PRECISION.md: DiT, VAE and
# umT5 bf16, CLIP f16); tests set "f32" to check the placement and the transfers apart from the precision.
DIT_DEVICE_PRECISION = "bf16"


def _threads():
    v = os.environ.get("LYRA2_NUM_THREADS", "0").strip() or "0"
    if not v.isdigit():
        raise ValueError(f"LYRA2_NUM_THREADS: {v!r} is not a non-negative integer")
    return int(v)


def _check_device(device):
    """The device every network of the run uses: "cpu", "cuda" (a Lyra2Error saying why when no GPU, real or
    emulated, answers) or, for "auto", "cuda" when a real GPU answers, else "cpu"."""
    if not isinstance(device, str) or device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: {device!r} is not allowed; expected one of ['auto', 'cpu', 'cuda']")
    if device == "cpu":
        return "cpu"
    from . import backends

    b = backends()
    if device == "auto":
        return "cuda" if b["cuda"] and not b["emulated"] else "cpu"
    if not b["cuda"]:
        raise Lyra2Error(f"device='cuda': no usable CUDA GPU here (lyra2.backends() = {b}); use device='cpu' "
                         "or 'auto'")
    return "cuda"


def load_models(folder, device="cpu", plan=None, log=print, dit_dtype="bf16", use_dmd=True):
    """The C networks of a converted folder for runs on `device`, with the DiT's block streaming of `plan` (None:
    every block resident): set for every CPU run, and on a device once, before the first run places the models
    (the streamed blocks stay in host memory). dit_dtype="fp8": the LoRAs merged (the DMD LoRA at 1 for use_dmd
    runs, left out otherwise) and the attention blocks quantized to e4m3 before placement, on the CPU too (the CPU
    reference of the device's fp8 path, docs/PRECISION.md). On a device with the bf16 policy the first run folds the
    same set into the DiT's weights as it places them (lyra_ar_models_place: no adapter on the device), so those
    models too serve one use_dmd. Cached: the same folder, device, (on a device) streaming and (fp8 or a device)
    use_dmd are loaded once; a run of the other use_dmd loads them again. The first device run embeds its captions
    with umT5 alone on the device, then places the rest."""
    from . import checkpoint, io
    from .memory import apply_dit_streaming

    have = checkpoint.components(folder)
    random = RANDOM_WEIGHTS.get(os.path.abspath(folder), {})  # random weights, filled where the network lives
    for c in random:
        have.pop(c, None)
    missing = [checkpoint.FILES[c] for c in checkpoint.GENERATE_NEEDS if c not in have and c not in random]
    if missing:
        raise Lyra2Error(f"generate: the checkpoint folder {folder!r} lacks {missing}; convert the upstream weights "
                         "with `lyra2 convert SRC DST`")
    paths = {c: have[c] for c in _MODEL_FILES if c in have}
    layout = random["dit"].config["layout"] if "dit" in random else \
        io.safetensors_info(paths["dit"])["metadata"].get("framepack_type", DEFAULT_LAYOUT)
    streamed = plan["resident_blocks"] if device != "cpu" and plan is not None and plan["streamed_blocks"] else None
    key = (os.path.abspath(folder), tuple((c, os.path.getmtime(p), os.path.getsize(p)) for c, p in sorted(paths.items())),
           tuple((c, id(w)) for c, w in sorted(random.items())),
           _threads(), layout, device, streamed, DIT_DEVICE_PRECISION if device != "cpu" else None,
           dit_dtype, bool(use_dmd) if dit_dtype == "fp8" or device != "cpu" else None)  # the LoRAs folded for it
    if key not in _cache:
        if any(k[:-1] == key[:-1] for k in _cache):  # the same models with the other use_dmd's LoRAs folded in
            log(f"LoRAs: the cached models have the LoRAs of use_dmd={not use_dmd} folded into the DiT's weights; "
                f"loading them again for use_dmd={bool(use_dmd)}")
        _cache.clear()  # one set of models at a time: a placed set holds the device memory
        styles = [(name, paths[c], w) for c, name, w in STYLE_LORAS if c in paths]
        paths.update(random)
        # defer: on a device random weights are filled there at placement, their host blocks never written
        models = _core.ar_models_load(paths, layout, _threads(), styles, bool(random) and device != "cpu")
        if dit_dtype == "fp8":
            _core.ar_models_dit_fp8(models, bool(use_dmd))  # an fp8 DiT is specific to use_dmd (its LoRAs merged)
        _cache[key] = models
    models = _cache[key]
    info = _core.ar_models_info(models)
    if info["device"] == "cpu":  # not placed yet
        apply_dit_streaming(models, info, plan, log)
    return models, info


# ---------------------------------------------------------------- depth

def _bilinear(x, h, w):
    """Bilinear resize (align_corners=False, as F.interpolate) of (n, H, W) float32 to (n, h, w)."""
    def axis(n_in, n_out):
        s = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        s = np.clip(s, 0, None)
        i0 = np.minimum(np.floor(s).astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (s - i0).astype(np.float32)

    y0, y1, fy = axis(x.shape[1], h)
    x0, x1, fx = axis(x.shape[2], w)
    top = x[:, y0][:, :, x0] * (1 - fx) + x[:, y0][:, :, x1] * fx
    bot = x[:, y1][:, :, x0] * (1 - fx) + x[:, y1][:, :, x1] * fx
    return (top * (1 - fy)[:, None] + bot * fy[:, None]).astype(np.float32)


def _da3(folder, device="cpu"):
    """The folder's Depth Anything 3 on `device`, or None. Cached like the generate models (one at a time): a
    placed DA3 keeps its device weights between runs instead of uploading them again."""
    from . import checkpoint

    path = checkpoint.components(folder).get("da3")
    if path is None:
        return None
    try:
        from .models.depth import DepthAnything3
    except ImportError:
        return None
    key = (os.path.abspath(path), os.path.getmtime(path), os.path.getsize(path), device)
    if key not in _da3_cache:
        _da3_cache.clear()
        _da3_cache[key] = DepthAnything3(path, device=device)
    return _da3_cache[key]


def release_models():
    """Frees the cached generate models and DA3 (their host or device memory); the next run loads them again."""
    _cache.clear()
    _da3_cache.clear()


class _DA3PerCall:
    """DA3 loaded for each depth-window call and freed after it: the memory plan's schedule when the budget does not
    keep DA3 resident through the chunk loop (lyra2.memory_plan(...)["da3_resident"] False)."""

    def __init__(self, path, device):
        self.path, self.device = path, device

    def load(self):
        """A fresh DepthAnything3 for one depth call; DepthWindow drops it after the call, which frees its memory
        before the next chunk."""
        from .models.depth import DepthAnything3

        return DepthAnything3(self.path, device=self.device)


def _da3_for_run(folder, device, plan, log):
    """(DA3 for the first-frame depth or None to load it there, DA3 for the depth window or None): resident (cached)
    unless the run gave a max_gpu_memory whose plan loads it per depth call (without a budget the device's memory
    is the limit, and a resident DA3 saves a reload per chunk)."""
    if device == "cpu" or plan is None or plan["max_gpu_memory"] is None or plan["da3_resident"]:
        da3 = _da3(folder, device)
        return da3, da3
    from . import checkpoint

    path = checkpoint.components(folder).get("da3")
    released = bool(_da3_cache)
    _da3_cache.clear()  # a resident DA3 from an earlier run would hold the memory the plan gives the chunks
    if path is None:
        return None, None
    log("memory plan: DA3 is loaded for each depth call and freed after it" +
        (" (the resident one released)" if released else ""))
    return None, _DA3PerCall(path, device)


def _depth_window_fn(da3):
    """The driver's depth-window model over DepthAnything3 (upstream AR:1059-1060, AR:1071-1393, AR:261-366): DA3 with
    poses on the window where the frames are, aligned to the poses, depth resized bilinearly to the frames' size
    (lyra2.models.depth.DepthWindow; the same arithmetic as DA3's __call__ followed by _bilinear)."""
    if da3 is None:
        return None
    from .models.depth import DepthWindow

    return DepthWindow(da3)


# ---------------------------------------------------------------- the run

def _log_loras(info, use_dmd, report):
    """Names the LoRAs this run applies (the style ones always, DMD with use_dmd)."""
    active = [f"{name} {w:g}" for name, w in info["style_loras"]] + (["dmd_distillation 1"] if use_dmd else [])
    report.log("LoRAs: " + (", ".join(active) if active else "none") +
               ("" if info["style_loras"] else " (no style LoRAs in the folder: lora/realism_boost.safetensors and "
                "lora/detail_enhancer.safetensors are applied at 0.4 each when present, as upstream's zoom script)"))


def _run_direction(models, img, depth, w2c, K, captions, *, seed, use_dmd, guidance, steps, label, report,
                   depth_window, device="cpu", plan=None):
    x = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0) * np.float32(2.0) \
        - np.float32(1.0)

    def progress(stage, done, total):
        report.update(f"{label} {stage}" if stage == "denoise" else stage, done, total)

    try:
        frames, warp, t = _core.ar_generate(
            models, x, np.ascontiguousarray(depth, np.float32), np.ascontiguousarray(w2c, np.float32),
            np.ascontiguousarray(K, np.float32), list(captions), bool(use_dmd), float(guidance), int(steps), SHIFT,
            int(seed), label, depth_window, progress, report.log, False, device, DIT_DEVICE_PRECISION,
            bool(device != "cpu" and plan is not None and plan["vae_parked"]))
    except BaseException:  # noqa: B036 - any failure, an interrupt included, before the models are trusted again
        if device != "cpu":
            # a failed placement or LoRA fold may have left the models half on the device or half folded: load
            # them again rather than run on them
            release_models()
        raise
    frames[0] = img  # the anchor frame is the input itself (the float round trip can lose 1 in the last bit)
    return frames, warp, t


def _room_for_text(models, info, captions, folder, device, plan, log, dit_dtype, use_dmd):
    """The models for a run whose captions are `captions`. A caption not embedded before loads umT5 onto the device
    beside the networks an earlier run placed (lyra_ar_encode_texts); when the plan says that exceeds the budget or
    the device's memory (plan["new_caption_releases_placed"]) the placed networks and a resident DA3 are given back
    first and the models loaded again, so the run embeds its captions with umT5 alone, as a first run does, and
    places the networks after the text. The cost: their files are read and uploaded again (logged)."""
    if device == "cpu" or plan is None or info["device"] == "cpu" or not plan["new_caption_releases_placed"]:
        return models, info
    missing = _core.ar_texts_missing(models, list(captions), device, DIT_DEVICE_PRECISION)
    if not missing:
        return models, info
    w = plan["weights"]
    again = w["dit"] + w["clip"] + w["vae"] + (w["da3"] if _da3_cache else 0)
    limit = plan["max_gpu_memory"] * 1e9 if plan["max_gpu_memory"] is not None else plan["device_memory"]
    log(f"memory plan: {missing} new caption(s): umT5 beside the placed networks would hold "
        f"{plan['later_text_bytes'] / 1e9:.2f} GB, over the {'budget' if plan['max_gpu_memory'] is not None else 'device'}"
        f"'s {limit / 1e9:.2f} GB; the placed networks{' and DA3' if _da3_cache else ''} are given back, umT5 runs "
        f"alone, and they are loaded and placed again after the text (about {again / 1e9:.2f} GB read and uploaded "
        "again, at the released sizes)")
    release_models()
    return load_models(folder, device, plan, log, dit_dtype, use_dmd)


def _chunk_captions(captions, n_chunks, frames_per_chunk):
    """One caption per chunk from a str, a list (one per chunk) or a dict {first frame index: caption}; a chunk
    takes the caption with the largest key <= its first frame's index (upstream CTI / AR:1489-1520)."""
    if isinstance(captions, str):
        out = [captions] * n_chunks
    elif isinstance(captions, dict):
        if not captions:
            raise ValueError("captions: the dict is empty")
        keys = []
        for k in captions:
            try:
                keys.append((int(k), k))
            except (TypeError, ValueError):
                raise ValueError(f"captions: key {k!r} is not a frame index") from None
        keys.sort()
        out = []
        for a in range(n_chunks):
            first = a * frames_per_chunk + 1
            sel = keys[0][1]
            for ik, k in keys:
                if ik <= first:
                    sel = k
            out.append(captions[sel])
    elif isinstance(captions, (list, tuple)):
        out = list(captions)
        if len(out) != n_chunks:
            raise ValueError(f"captions: {len(out)} given for {n_chunks} chunk(s); give one per chunk "
                             f"({frames_per_chunk} frames each), a single str, or a dict {{frame: caption}}")
    else:
        raise TypeError(f"captions: expected a str, a list of str or a dict; got {type(captions).__name__}")
    for i, c in enumerate(out):
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"captions[{i}]: expected a non-empty str, got {c!r}")
    return out


def run_generate(image_u8, args, *, checkpoint_folder, device, report, depth=None, max_gpu_memory=None,
                 dit_dtype="bf16"):
    """The zoom job in generate mode (fields validated by lyra2.fields.validate) -> lyra2.Video."""
    from .fields import output_size
    from .geometry import direction_cameras
    from .media import read_image
    from .memory import log_run_plan
    from .video import Video

    h, w = output_size(args["resolution"])  # tests pass a tiny (H, W)
    device = _check_device(device)
    plan = log_run_plan((h, w), args["num_frames"], max_gpu_memory, device, report.log, dit_dtype, args["use_dmd"])
    t0 = time.perf_counter()
    raw = read_image(image_u8)
    img = read_image(raw, resolution=(h, w))
    models, info = load_models(checkpoint_folder, device, plan, report.log, dit_dtype, args["use_dmd"])
    n = args["num_frames"]
    if (n - 1) % info["frames_per_chunk"]:
        raise ValueError(f"num_frames: {n} is not 1 + {info['frames_per_chunk']}k for this checkpoint")
    models, info = _room_for_text(models, info, [args["prompt"]], checkpoint_folder, device, plan, report.log,
                                  dit_dtype, args["use_dmd"])
    da3, da3_window = _da3_for_run(checkpoint_folder, device, plan, report.log)
    d, mask, K0, depth_source = first_frame_depth(raw, img, depth, checkpoint_folder, report, da3=da3, device=device)
    cams = direction_cameras(args["zoom_direction"], n, d, K0, zoom_in_trajectory=args["zoom_in_trajectory"],
                             zoom_in_strength=args["zoom_in_strength"], zoom_out_trajectory=args["zoom_out_trajectory"],
                             zoom_out_strength=args["zoom_out_strength"], mask=mask)
    timings = {"encode_s": time.perf_counter() - t0}
    stages = {}
    rendered = {}
    n_chunks = (n - 1) // info["frames_per_chunk"]
    views = DepthViews()  # the depth-window estimates, for Video.point_cloud
    _log_loras(info, args["use_dmd"], report)
    for direction in ("in", "out"):
        if direction not in cams:
            continue
        w2c, K = cams[direction]
        label = f"zoom-{direction}"
        report.log(f"{label}: generating {n} frames at {w}x{h} ({n_chunks} chunk(s), "
                   f"{'DMD 4 steps' if args['use_dmd'] else str(args['num_inference_steps']) + ' UniPC steps + CFG'})")
        t = time.perf_counter()
        frames, _, st = _run_direction(models, img, d, w2c, K, [args["prompt"]] * n_chunks, seed=args["seed"],
                                       use_dmd=args["use_dmd"], guidance=args["guidance_scale"],
                                       steps=args["num_inference_steps"], label=label, report=report,
                                       depth_window=recording_depth_window(_depth_window_fn(da3_window), views),
                                       device=device, plan=plan)
        rendered[direction] = frames
        timings["encode_s"] += st["text_s"]
        timings[f"zoom_{direction}_s"] = time.perf_counter() - t - st["text_s"]
        stages[direction] = st
    if args["zoom_direction"] == "both":
        frames = np.concatenate([rendered["out"][::-1], rendered["in"][1:]])
    else:
        frames = rendered[args["zoom_direction"]]
    video = Video(frames=frames, fps=args["frames_per_second"], seed=args["seed"], timings=timings,
                  w2c=np.ascontiguousarray(cams["w2c"], np.float32), intrinsics=np.ascontiguousarray(cams["K"], np.float32),
                  depth=d, mode="generate", depth_source=depth_source, depth_views=views)
    video.stage_timings = stages
    return video


def _as_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {value!r}")
    return int(value)


def generate(image, w2c, intrinsics, captions, *, checkpoint_dir=None, seed=0, use_dmd=True, guidance_scale=5.0,
             num_inference_steps=28, device="auto", progress=True, depth=None, resolution=None, fps=16,
             output_path=None, max_gpu_memory=None, dit_dtype="bf16"):
    """Upstream's custom-trajectory mode: one image, a camera path and captions -> lyra2.Video (mode "generate").

    image: what ``lyra2.read_image`` accepts; used at its own size, or resized to ``resolution`` ((H, W) or
        "480p" / "720p"). H and W must be multiples of 16.
    w2c: (N, 4, 4) world-to-camera matrices (OpenCV axes, frame 0 = the image's camera, translations in the depth's
        units); intrinsics: (N, 3, 3) or one (3, 3) for every frame, in pixels of the image size.
        N = 1 + 80k (k chunks of 80 frames; the checkpoint's chunk size).
    captions: one str for every chunk, a list with one str per chunk, or a dict {frame index: str} (a chunk uses
        the caption with the largest key <= its first frame, as upstream's captions.json).
    depth: (H, W) depth of the image in the trajectory's units; default: DA3 from the folder, else a heuristic.
    seed: chunk a draws its initial noise with numpy RandomState(seed + a).
    use_dmd: DMD 4-step sampling with the DMD LoRA (guidance and steps ignored), else UniPC + CFG.
    output_path: also write the MP4 there (only after the whole run finished).
    max_gpu_memory: GPU memory budget in GB; the memory plan (lyra2.memory_plan at the image size) goes to the
        logs, and a budget below its minimum is a ValueError.
    dit_dtype: "bf16" (the checkpoint's weights) or "fp8": the DiT's attention-block Linears as e4m3 codes with
        per-channel and per-token scales (docs/PRECISION.md), the LoRAs merged for this use_dmd.
    """
    from . import checkpoint
    from .media import read_image
    from .memory import check_dit_dtype, check_max_gpu_memory, log_run_plan
    from .progress import Progress
    from .video import Video

    check_max_gpu_memory(max_gpu_memory)
    check_dit_dtype(dit_dtype)
    device = _check_device(device)
    check_options(device, "generate", output_path, progress)
    seed = _as_int(seed, "seed")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed: {seed} is out of range [0, 2**32)")
    if not isinstance(use_dmd, bool):
        raise TypeError(f"use_dmd: expected a bool, got {use_dmd!r}")
    steps = _as_int(num_inference_steps, "num_inference_steps")
    if not 1 <= steps <= 1000:
        raise ValueError(f"num_inference_steps: {steps} is out of range [1, 1000]")
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, numbers.Real) or \
            not np.isfinite(guidance_scale):
        raise TypeError(f"guidance_scale: expected a finite number, got {guidance_scale!r}")
    fps = _as_int(fps, "fps")
    folder = checkpoint.resolve_dir(checkpoint_dir)
    if folder is None:
        raise Lyra2Error("generate: no checkpoint folder (pass checkpoint_dir= or set LYRA2_CHECKPOINT_DIR); "
                         "convert the upstream weights with `lyra2 convert SRC DST`")
    raw = read_image(image)
    img = read_image(raw, resolution=resolution)
    h, w = img.shape[:2]
    if h % 16 or w % 16:
        raise ValueError(f"image: size {w}x{h} is not a multiple of 16 in both sides; pass resolution=(H, W)")
    w2c = np.asarray(w2c)
    if w2c.dtype.kind not in "fiu" or w2c.ndim != 3 or w2c.shape[1:] != (4, 4):
        raise ValueError(f"w2c: expected a real (N, 4, 4) array, got {w2c.dtype} {w2c.shape}")
    N = w2c.shape[0]
    K = np.asarray(intrinsics)
    if K.dtype.kind not in "fiu" or K.shape not in ((3, 3), (N, 3, 3)):
        raise ValueError(f"intrinsics: expected (3, 3) or ({N}, 3, 3), got {K.dtype} {K.shape}")
    if K.shape == (3, 3):
        K = np.broadcast_to(K, (N, 3, 3))
    if not (np.isfinite(w2c).all() and np.isfinite(K).all()):
        raise ValueError("w2c, intrinsics: must be finite")
    report = Progress(bar=progress)
    plan = log_run_plan((h, w), N, max_gpu_memory, device, report.log, dit_dtype, use_dmd)
    t0 = time.perf_counter()
    models, info = load_models(folder, device, plan, report.log, dit_dtype, use_dmd)
    F = info["frames_per_chunk"]
    if N < 1 + F or (N - 1) % F:
        raise ValueError(f"w2c: {N} cameras; expected 1 + {F}k (k >= 1 chunks of {F} frames)")
    n_chunks = (N - 1) // F
    caps = _chunk_captions(captions, n_chunks, F)
    models, info = _room_for_text(models, info, caps, folder, device, plan, report.log, dit_dtype, use_dmd)
    da3, da3_window = _da3_for_run(folder, device, plan, report.log)
    d, _, _, depth_source = first_frame_depth(raw, img, depth, folder, report, da3=da3, device=device)
    timings = {"encode_s": time.perf_counter() - t0}
    _log_loras(info, use_dmd, report)
    t = time.perf_counter()
    views = DepthViews()  # the depth-window estimates, for Video.point_cloud
    frames, _, st = _run_direction(models, img, d, w2c, K, caps, seed=seed, use_dmd=use_dmd,
                                   guidance=float(guidance_scale), steps=steps, label="generate", report=report,
                                   depth_window=recording_depth_window(_depth_window_fn(da3_window), views),
                                   device=device, plan=plan)
    timings["encode_s"] += st["text_s"]
    timings["generate_s"] = time.perf_counter() - t - st["text_s"]
    video = Video(frames=frames, fps=fps, seed=seed, timings=timings, w2c=np.ascontiguousarray(w2c, np.float32),
                  intrinsics=np.ascontiguousarray(K, np.float32), depth=d, mode="generate", depth_source=depth_source,
                  depth_views=views)
    video.stage_timings = {"generate": st}
    if output_path is not None:
        video.save(output_path)
    return video
