"""GPU memory plan of a zoom / generate run at the released sizes, without weights and without a GPU.

``memory_plan(resolution="480p", num_frames=81, dit_dtype="bf16", max_gpu_memory=None)`` says what is resident
on the device in each stage of the job, what streams, and the expected peak. Its numbers come from the code:

* the DiT: one forward of the 17B-parameter network over the real token count is *run* on the measuring
  backend (``csrc/nn/measure``: ops validate shapes and record, allocations are reserved address space), so
  its activation peak is the very arena the forward allocates, and its parameter bytes are what the loader
  carves; the same measured forward sizes the arena of every real DiT forward, so the plan cannot disagree
  with the run;
* the Wan VAE: the dry push of its C layer list (``lyra2.models.vae.memory_plan``), streaming as Lyra does;
* umT5-XXL, CLIP ViT-H, DA3 and MoGe: the C cost models of their loaders (``umt5_cost``, ``clip_cost``,
  ``da3_cost``, ``moge_cost``: parameters from the real shapes, activation arenas as the forwards reserve them).

Every network is counted in the precision it runs in on the device (docs/PRECISION.md, upstream's GPU policy): the
DiT's measured forward with bf16 activations; the VAE's dry walk and umT5's cost model with bf16 activations
and caches; CLIP's cost model with f16 activations; DA3's (bf16 backbone GEMMs, f32 residual stream and heads) and
MoGe's (f16 backbone GEMMs and head) cost models. Weights are counted as they are placed: the DiT as its loader
carves them (bf16 matrices, f32 vectors; ``dit_dtype="fp8"`` stores the attention blocks' Linear weights as e4m3
with one f32 scale per output channel), umT5, CLIP and the VAE at 2 bytes per parameter, DA3 and MoGe from their
cost models' ``weight_bytes`` (GEMM and head-conv weights 2 bytes, the rest f32).

The schedule (stages in run order), each counting what the code holds on the device while it runs:

``text``         umT5-XXL with its activations and the caption's embedding; it runs before the other networks are
                 placed and is freed (a DA3 kept resident is placed before it, with its first-frame arena).
``depth``        DA3 + MoGe on the input frame (when the run estimates the first frame's depth).
``prep``         the chunk-input assembly, on the device in the VAE's memory: its scratch, the forward warps'
                 temporaries and the fresh VAE encodes of the warped chunk and the spatial images, each through a
                 new encoder stream (_prep_stage).
``clip``         CLIP ViT-H on the chunk's last frame.
``dit``          one DiT forward: its measured activation arena (and, for fp8, the activation codes).
``vae_decode``   the chunk's latents through the streaming decoder (and the decoder's priming before chunk 1), the
                 chunk's decoded frames gathered in the VAE's bf16 for the re-encode.
``vae_encode``   the re-encode of those frames through the streaming encoder (and its priming).
``depth_update`` DA3 on the depth window (up to 10 views with poses) and its pixels (built on the device from the
                 window's uint8 frames in the run buffers' staging, csrc/pipeline/depth_window.c).

Through the chunk loop the device holds the placed networks (the DiT with the run's LoRAs folded in, CLIP and its
arena, the negative prompt, the VAE), the driver's buffers (the captions, CLIP tokens and frame, the latent x and the
sampler's state beside it: the velocity, UniPC's x0 history and CFG's second velocity), the decoded frames, and the
chunk-input prep's run buffers in the VAE's memory (the history latents, the canonical coordinates, the buffer
depth, the uint8 staging, and the decoded frames and spatial-memory depths a later step reads, as many as the driver
keeps in that stage: _kept), and the two VAE streams' causal caches unless the run parks them (``vae_parked``: then
each stream's caches wait in host memory outside its own phase). The chunk's condition y and correspondence buffer
(bf16) live from its prep to the end of its sampling; the DiT's and the VAE streams' activation arenas are given
back between the phases (ar_driver.c release_scratch, vae_phase), so each lives in its own stage only. DA3 stays
resident (weights and its largest arena, the depth window's) unless a budget's plan loads it per call (MoGe is only
needed for the first frame). When the budget is below what a resident DiT needs, its attention blocks stream from
pinned host memory: ``resident_blocks`` stay on the device, the others pass through two block-sized buffers (double
buffering: block i+1 is uploaded on a copy stream while block i runs).

What the plan gives up, cheapest first, when the run would not fit (the budget ``max_gpu_memory``, or without one
the device's memory when it is known, ``device_memory``; without a budget nothing else is given up):
1. ``vae_parked``: each VAE stream's causal caches wait in pinned host memory outside its own phase
   (lyra_vae_session_park; at 480p 1.1 + 1.9 GB, crossing twice per chunk: about 0.25 s per chunk at 25 GB/s);
   the caches then live in their stream's stage only. The frames are bit-identical either way.
2. DA3 loaded for each depth call instead of kept resident (budget only).
3. DiT attention blocks streamed from pinned host memory: ``resident_blocks`` stay on the device, the others pass
   through two block-sized buffers (double buffering: block i+1 is uploaded on a copy stream while block i runs)
   (budget only).

A later run in the same process with a caption not embedded before loads umT5 beside the networks an earlier run
placed: ``later_text_bytes`` counts that (the placed networks, DA3 if resident, umT5 and its activations); when it
exceeds the budget or the device's memory, ``new_caption_releases_placed`` is True and lyra2.generate gives the
placed networks back before the text and places them again after it (their files are read again), so that run
stays within this plan. LoRA adapters take no device memory: a device run folds its LoRAs (the style ones, and the
DMD one with use_dmd) into the DiT's weights as it places them, on the device (csrc/models/dit_lora_fold.c, one
Linear at a time: a transient of the largest Linear's f32 delta, smaller than the CLIP and VAE weights placed right
after it, which the CLIP stage counts), so the DiT's weight bytes are the loader's, whatever the files' ranks.
"""
from __future__ import annotations

import math
import numbers

from . import _core
from .fields import NUM_FRAMES, RESOLUTIONS

__all__ = ["memory_plan", "format_memory_plan", "log_run_plan", "check_max_gpu_memory", "check_dit_dtype", "apply_dit_streaming",
           "device_memory_bytes", "DIT_14B", "DIT_LAYOUT"]

#: The released Lyra-2 DiT (a Wan 2.1 14B I2V with Lyra's inputs; upstream EXP:21-62, NETCFG:30), as detection reads it from
#: the weights' names and shapes.
DIT_14B = {"dim": 5120, "ffn_dim": 13824, "num_heads": 40, "num_layers": 40, "in_dim": 36, "out_dim": 16,
           "text_dim": 4096, "freq_dim": 256, "clip_dim": 1280, "cam_dim": 1536, "buffer_embed_dim": 20480,
           "buffer_squeeze": 256}
DIT_LAYOUT = "f1k1f4s2f1s1f16k4f2k2f1k1_g20"
CLIP_TOKENS = 257            # ViT-H/14 at 224 px: 16·16 patches + the class token
TEXT_TOKENS = 512
DEPTH_WINDOW = 10            # DA3 views per depth update (csrc/pipeline/ar_driver.h LYRA_AR_DEPTH_WINDOW)
WARP_CHUNK = 16              # forward-warp targets per batch in the chunk-input prep (LYRA_AR_WARP_CHUNK)
DIT_DTYPES = ("bf16", "fp8")
#: What the byte terms leave out: each device block is rounded up by the allocator (256 B in the emulated pool, 512 B
#: by cudaMalloc) and each weight tensor starts on a 64-byte boundary inside its network's block. A run holds about
#: a hundred blocks and a few thousand weight tensors at once; this allowance covers both (the whole-run test on
#: the emulated device measures the rest of the plan to the byte).
ALLOC_ROUNDING = 128 << 10
BF16 = 2
GB = 1e9


def _frame_size(resolution):
    """(H, W) of "480p" / "720p" or of an (H, W) pair of multiples of 16 (the DiT's 2x2 patches of 8x latents)."""
    if isinstance(resolution, str):
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution: {resolution!r} is not allowed; expected one of {list(RESOLUTIONS)} or "
                             "an (H, W) pair")
        return RESOLUTIONS[resolution]
    if (not isinstance(resolution, (tuple, list)) or len(resolution) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in resolution)):
        raise TypeError(f"resolution: expected one of {list(RESOLUTIONS)} or an (H, W) pair of ints; "
                        f"got {resolution!r}")
    H, W = int(resolution[0]), int(resolution[1])
    if H < 16 or W < 16 or H % 16 or W % 16:
        raise ValueError(f"resolution: {H}x{W} must be positive multiples of 16")
    return H, W


def check_max_gpu_memory(max_gpu_memory):
    """None or a positive number of GB (1e9 bytes); TypeError / ValueError naming the field otherwise."""
    if max_gpu_memory is None:
        return None
    if isinstance(max_gpu_memory, bool) or not isinstance(max_gpu_memory, numbers.Real):
        raise TypeError(f"max_gpu_memory: expected a number of GB or None; got {max_gpu_memory!r}")
    if not max_gpu_memory > 0 or max_gpu_memory != max_gpu_memory or max_gpu_memory == float("inf"):
        raise ValueError(f"max_gpu_memory: {max_gpu_memory!r} GB is not allowed; expected a positive number")
    return float(max_gpu_memory)


def check_dit_dtype(dit_dtype):
    """"bf16" or "fp8" (the DiT's attention-block Linear weights); ValueError naming the field otherwise."""
    if not isinstance(dit_dtype, str) or dit_dtype not in DIT_DTYPES:
        raise ValueError(f"dit_dtype: {dit_dtype!r} is not allowed; expected one of {list(DIT_DTYPES)}")
    return dit_dtype


def _check_args(resolution, num_frames, dit_dtype, max_gpu_memory):
    _frame_size(resolution)
    if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral):
        raise TypeError(f"num_frames: expected an int, one of {list(NUM_FRAMES)}; got {num_frames!r}")
    if int(num_frames) not in NUM_FRAMES:
        raise ValueError(f"num_frames: {num_frames!r} is not allowed; expected one of {list(NUM_FRAMES)}")
    check_dit_dtype(dit_dtype)
    check_max_gpu_memory(max_gpu_memory)


def _dit_weights(m, dtype, layers):
    """(non-block bytes, one block's bytes) of the DiT weights in `dtype`, from the measured parameter table."""
    block = m["block_bytes"]
    if dtype == "fp8":
        # e4m3 matrices (1 byte) + one f32 scale per output channel; the block's vectors stay f32.
        block = m["block_matrix_elems"] + 4 * m["block_matrix_rows"] + 4 * m["block_vector_elems"]
    return m["weight_bytes"] - layers * m["block_bytes"], block


def _numel(shape):
    n = 1
    for v in shape:
        n *= int(v)
    return n


def _released_networks(H, W):
    """The per-network byte terms of the released checkpoint at H x W (see _plan for the keys): the C cost models
    of umT5-XXL, CLIP ViT-H, DA3-giant and MoGe ViT-L in their device precision, the Wan VAE's dry walk. The
    DMD and style LoRAs are folded into the DiT's weights at placement: no bytes of their own."""
    from .models.clip import clip_cost
    from .models.depth import da3_cost
    from .models.moge import moge_cost
    from .models.umt5 import UMT5_XXL, umt5_cost
    from .testing import vae_tensor_shapes

    t5 = umt5_cost(UMT5_XXL, tokens=TEXT_TOKENS, precision="bf16")
    clip = clip_cost(precision="f16")
    moge = moge_cost(H, W, precision="f16")
    return {
        "dit": (DIT_14B, DIT_LAYOUT), "clip_tokens": CLIP_TOKENS, "text_dim": DIT_14B["text_dim"],
        "umt5": (t5["params"] * BF16, t5["arena_bytes"]),
        "clip": (clip["params"] * BF16, clip["arena_bytes"]),
        "da3": lambda views, h, w, poses: _pair(da3_cost(views, h, w, poses, precision="bf16")),
        "moge": (moge["weight_bytes"], moge["arena_bytes"]),
        "vae": (96, 16, sum(_numel(shape) for _, shape in vae_tensor_shapes(96, 16)) * BF16),
    }


def _pair(cost):
    return cost["weight_bytes"], cost["arena_bytes"]


def _da3_size(H, W):
    """DA3's processed size of an H x W frame, as DepthAnything3.preprocess makes it (longest side kept, both sides
    to multiples of its 14-pixel patch)."""
    import numpy as np

    return tuple(_core.da3_preprocess(np.zeros((1, H, W, 3), np.uint8), max(H, W))[1][2:])


def _costs(net, H, W, num_frames, dit_dtype, use_dmd=True):
    """Every byte term of the run at H x W, from the code: the DiT's measured forward, the networks' cost models,
    the VAE's dry walk and the sizes of the driver's own device buffers (csrc/pipeline/ar_driver.c dev_buffers), the
    sampler's for use_dmd (DMD) or not (UniPC + CFG)."""
    from .models.vae import memory_plan as vae_plan

    cfg, layout = net["dit"]
    h, w = H // 8, W // 8
    dit = _core.dit_measure(cfg, layout, h, w, net["clip_tokens"], "bf16", "cuda")
    fixed, block = _dit_weights(dit, dit_dtype, cfg["num_layers"])
    G = _core.dit_framepack(layout)["new_frames"]
    per_chunk = 4 * G
    if (int(num_frames) - 1) % per_chunk:
        raise ValueError(f"num_frames: {num_frames} is not 1 + {per_chunk}k for this layout")
    n_chunks = (int(num_frames) - 1) // per_chunk
    text = TEXT_TOKENS * net["text_dim"] * 4
    # The chunk's condition y and correspondence buffer (bf16, as the driver keeps them on a device: cond_buffers,
    # from the chunk's prep to the end of its sampling), and the run's buffers (dev_buffers): the captions (one per
    # chunk), the CLIP tokens, the CLIP frame, x and the sampler's state beside it (ar_driver.c
    # lyra_ar_sampler_work_numel: the velocity, and for UniPC its x0 history, the corrected sample and CFG's
    # unconditional velocity, 4·C·T·h·w + C·G·h·w f32 more than DMD's, 80 MB at 480p). The measured forward's inputs
    # are x, one caption, the CLIP tokens, y, the buffer and the velocity (part of the sampler's state).
    fp = _core.dit_framepack(layout)
    T, hw = fp["total_frames"], h * w
    cond = BF16 * (cfg["in_dim"] - cfg["out_dim"] + cfg["cam_dim"] // 4 + cfg["buffer_embed_dim"] // 16) * T * hw
    velocity = 4 * cfg["out_dim"] * G * hw
    sampler = _core.sampler_work_bytes(cfg["out_dim"], fp["history_frames"], G, h, w, bool(use_dmd))
    driver = dit["io_bytes"] - cond + (n_chunks - 1) * text + 3 * H * W * 4 + sampler - velocity
    vz, zc, vae_w = net["vae"]
    vae = vae_plan(dim=vz, z_dim=zc, height=H, width=W, frames=1 + per_chunk, precision="bf16")
    enc, dec = vae["encode_stream"], vae["decode_stream"]
    # a session reserves its arena with 1/8 headroom over the push's measured need (vae_session.c push)
    enc_arena = enc["arena_peak"] + enc["arena_peak"] // 8
    dec_arena = dec["arena_peak"] + dec["arena_peak"] // 8
    dh, dw = _da3_size(H, W)
    da3_w, da3_a1 = net["da3"](1, dh, dw, False)
    _, da3_aw = net["da3"](DEPTH_WINDOW, dh, dw, True)
    # fp8: the e4m3 codes of a block Linear's input (one byte per element of the widest input, the FFN's second
    # layer) with one f32 scale per token (lyra_op_quantize_fp8_rows, in the DiT's arena), and the f32 sums tile
    # of the CUDA FP8 GEMM (64 MiB at most, csrc/nn/cuda/cuda_fp8.cu); the activations themselves are the
    # measured (unquantized) forward's.
    fp8_copy = dit["tokens"] * (cfg["ffn_dim"] + 4) + (64 << 20) if dit_dtype == "fp8" else 0
    # The chunk inputs are built in the VAE's memory (ar_driver.c prep_buffers, csrc/pipeline/prep.c): for the run,
    # the history latents (f32, every chunk's appended), the canonical coordinate images of the S spatial slots, the
    # buffer depth, the uint8 staging of the output / DA3 frames, one encoder latent and the latent constants; per
    # stage the kept frames and the spatial memory's depths (_kept); during the prep its scratch
    # (lyra_prep_scratch_bytes) and, on CUDA, the forward warp's temporaries; from the decode to the end of the
    # re-encode the chunk's decoded frames in the VAE's bf16 (the re-encode reads them there).
    HW = H * W
    prep_run = _prep_run(layout, H, W, n_chunks, zc)
    prep_scratch = _core.prep_scratch_bytes(layout, H, W, zc, WARP_CHUNK)
    return {
        "n_chunks": n_chunks, "dit": dit, "dit_fixed": fixed, "dit_block": block, "layers": cfg["num_layers"],
        "fp8_copy": fp8_copy, "driver": driver, "cond": cond, "negative": text, "text_out": text,
        "umt5": net["umt5"], "clip": net["clip"], "moge": net["moge"],
        "vae_w": vae_w, "enc_cache": enc["cache_bytes"], "dec_cache": dec["cache_bytes"], "enc_arena": enc_arena,
        "dec_arena": dec_arena, "pix": 3 * 4 * H * W * 4,
        "da3_w": da3_w, "da3_a1": da3_a1, "da3_aw": da3_aw,
        "da3_pix1": 3 * dh * dw * 4, "da3_pixw": DEPTH_WINDOW * 3 * dh * dw * 4,
        "prep_run": prep_run, "prep_scratch": prep_scratch,
        "warp_temps": _core.warp_device_temps_bytes(3, H, W, min(WARP_CHUNK, per_chunk)),
        "kept": _kept(n_chunks, per_chunk), "frame": 3 * HW * 4, "depth_map": HW * 4,
        "chunk_frames": per_chunk * 3 * HW * BF16,
    }


def _prep_run(layout, H, W, n_chunks, C):
    """The device buffers of the chunk-input prep that live through the chunk loop (ar_driver.c prep_buffers; the
    kept frames and spatial-memory depths are per stage, _kept): the history latents (f32, n_history + G per chunk),
    the canonical coordinate images of the S spatial slots, the buffer depth, the uint8 staging of the output / DA3
    frames, one encoder latent (the decoder's denormalised input too) and the latent normalisation's constants (−mean
    and inv_std for the encoder, +mean for the decoder)."""
    fp = _core.dit_framepack(layout)
    HW, hw = H * W, (H // 8) * (W // 8)
    return {"history latents": (fp["history_frames"] + fp["new_frames"] * n_chunks) * C * hw * 4,
            "canonical coordinates": fp["spatial_frames"] * 3 * HW * 4, "buffer depth": HW * 4,
            "uint8 frames": 4 * ((max(4, DEPTH_WINDOW) * 3 * HW + 3) // 4),
            "encoder latent": C * hw * 4 + 3 * C * 4}


def _kept(n_chunks, F):
    """The frames (3, H, W) and spatial-memory depths (H, W) the driver holds in the VAE's memory in each stage, the
    largest over the run's chunks: the driver's own bookkeeping replayed (ar_driver.c frame_needed, prune_frames,
    update_depth: frame 0 and every spatial-memory frame, the next chunk's buffer frame, the frames of the depth
    windows not run yet; every 8th window frame joins the spatial memory). The depth update has two moments: DA3's
    call (its pixels on the device, the depths of before) and after it (the new depths added)."""
    interval = 8   # LYRA_AR_DEPTH_INTERVAL
    cache, kept, out = {0}, {0}, {}

    def needed(f, nxt, pending):
        if f == 0 or f in cache or (nxt < n_chunks and f == F * nxt):
            return True
        return any(F * b - f >= 0 and (F * b - f) % interval == 0 and (F * b - f) // interval < DEPTH_WINDOW
                   for b in range(pending, n_chunks))

    def note(stage, value):
        out[stage] = tuple(max(x, y) for x, y in zip(out.get(stage, value), value))

    for a in range(n_chunks):
        for stage in ("prep", "clip", "dit"):
            note(stage, (len(kept), len(cache)))
        kept |= {f for f in range(F * a + 1, F * (a + 1) + 1) if needed(f, a + 1, a + 1)}
        note("vae_decode", (len(kept), len(cache)))
        note("vae_encode", (len(kept), len(cache)))
        if a + 1 < n_chunks:
            L = F * (a + 1)
            note("depth_update_call", (len(kept), len(cache)))
            cache |= {f for f in (L - interval * k for k in range(DEPTH_WINDOW)) if f >= 0 and f % interval == 0}
            note("depth_update_after", (len(kept), len(cache)))
        kept = {f for f in kept if needed(f, a + 1, a + 2)}
    return out


def _prep_stage(c):
    """The device memory of the chunk-input assembly beyond what stays through the loop: the chunk's y and buffer it
    fills (bf16, ar_driver.c cond_buffers), its scratch (lyra_prep_scratch_bytes: one batch of warped images and
    depths, the kept frames' warped depths, the camera and spatial latents, the depth range), the CUDA forward
    warp's temporaries, and the fresh encodes of the warped chunk and the spatial images (a new encoder stream each:
    its caches and its arena, ar_driver.c fresh_begin)."""
    return {"chunk condition": c["cond"], "prep scratch": c["prep_scratch"], "warp temporaries": c["warp_temps"],
            "fresh vae encode caches": c["enc_cache"], "fresh vae encode activations": c["enc_arena"]}


def _kept_terms(c, stage):
    frames, depths = c["kept"].get(stage, (1, 1))
    return {"kept frames": frames * c["frame"], "spatial-memory depths": depths * c["depth_map"]}


def _placed(c, resident, keep_da3, first_frame_depth):
    """{what: bytes} of what a run leaves placed on the device for the next one: the networks (the DiT with
    `resident` attention blocks, the rest streamed through two block buffers; CLIP and its arena; the negative
    prompt; the VAE) and a resident DA3 (its weights and the largest arena it reserved)."""
    streamed = c["layers"] - resident
    dit_w = c["dit_fixed"] + resident * c["dit_block"] + (2 * c["dit_block"] if streamed else 0)
    # the depth window runs after every chunk but the last; a resident DA3 keeps the largest arena it reserved
    updates = c["n_chunks"] > 1
    da3_arena = c["da3_aw"] if updates else (c["da3_a1"] if first_frame_depth else 0)
    da3 = {"da3 weights": c["da3_w"], "da3 activations": da3_arena} if keep_da3 else {}
    return dict({"dit weights": dit_w, "clip weights": c["clip"][0], "clip activations": c["clip"][1],
                 "negative prompt": c["negative"], "vae weights": c["vae_w"]}, **da3)


def _later_text(c, resident, keep_da3, first_frame_depth):
    """{what: bytes} while a later run in the process embeds a caption not embedded before with the networks an
    earlier run placed still there: umT5 with its activations and the caption's embedding beside them
    (csrc/pipeline/ar_text.c encode_on_device)."""
    st = dict(_placed(c, resident, keep_da3, first_frame_depth), **{
        "umt5 weights": c["umt5"][0], "umt5 activations": c["umt5"][1], "caption embedding": c["text_out"]})
    st["allocation rounding"] = ALLOC_ROUNDING
    return st


def _stages(c, resident, keep_da3, first_frame_depth, vae_parked=True):
    """{stage: {what: bytes}} for a DiT with `resident` attention blocks on the device (the rest streamed through
    two block buffers), DA3 kept resident (its weights and its largest arena, the depth window's) or loaded per
    call, the VAE streams' causal caches parked in host memory outside their own phase or kept on the device for
    the run. Each stage lists what is allocated on the device while it runs, as the code allocates and frees it."""
    updates = c["n_chunks"] > 1
    # through the chunk loop (placed once; the driver's buffers, and the VAE streams' caches when not parked, for
    # the run: ar_driver.c release_scratch and vae_phase park them only when the run's park_vae_caches says so)
    vae_caches = {"vae encoder caches": c["enc_cache"], "vae decoder caches": c["dec_cache"]}
    loop = dict(_placed(c, resident, keep_da3, first_frame_depth), **{"run buffers": c["driver"],
                "decoded frames": c["pix"]}, **c["prep_run"], **({} if vae_parked else vae_caches))
    kept = lambda stage: dict(loop, **_kept_terms(c, stage))
    da3 = {k: v for k, v in loop.items() if k.startswith("da3 ")}   # a resident DA3 (_placed)
    before = {"da3 weights": c["da3_w"], "da3 activations": c["da3_a1"]} if keep_da3 and first_frame_depth else {}
    st = {
        # umT5 runs before the other networks are placed (a resident DA3 is placed first, with its
        # first-frame arena)
        "text": dict({"umt5 weights": c["umt5"][0], "umt5 activations": c["umt5"][1],
                      "caption embedding": c["text_out"]}, **before),
        "prep": dict(kept("prep"), **_prep_stage(c)),
        "clip": kept("clip"),
        "dit": dict(kept("dit"), **{"chunk condition": c["cond"], "dit activations": c["dit"]["arena_peak"]},
                    **({"fp8 activation copy": c["fp8_copy"]} if c["fp8_copy"] else {})),
        # the chunk's decode, then its re-encode (and the priming before chunk 1: encode, then decode), each stream
        # with its arena alone on the device (and its caches when parked: vae_phase parks the other's),
        # beside the chunk's decoded frames in the VAE's bf16, which the re-encode reads
        "vae_decode": dict(kept("vae_decode"), **{"vae decoder caches": c["dec_cache"],
                                                  "vae decode activations": c["dec_arena"],
                                                  "chunk frames": c["chunk_frames"]}),
        "vae_encode": dict(kept("vae_encode"), **{"vae encoder caches": c["enc_cache"],
                                                  "vae encode activations": c["enc_arena"],
                                                  "chunk frames": c["chunk_frames"]}),
    }
    if updates:
        # DA3's call (its pixels on the device) or just after it (the window's new spatial-memory depths added,
        # DA3's pixels given back; a DA3 loaded per call is gone too), whichever holds more. The new depths are copied
        # from DA3's arena while DA3 is still held, after its pixels are given back: that moment is within the call's,
        # since the new depths (at most n x H x W f32, and one H/4 x W/4 staging) are smaller than the pixels
        # (n x 3 x h x w f32, h and w within 7 of H and W)
        call = dict(kept("depth_update_call"), **{"da3 weights": c["da3_w"], "da3 activations": c["da3_aw"],
                                                  "da3 pixels": c["da3_pixw"]})
        after = dict(kept("depth_update_after"), **da3)
        st["depth_update"] = max(call, after, key=lambda v: sum(v.values()))
    if first_frame_depth:
        st["depth"] = {"da3 weights": c["da3_w"], "moge weights": c["moge"][0], "da3 activations": c["da3_a1"],
                       "moge activations": c["moge"][1], "da3 pixels": c["da3_pix1"]}
    order = ("text", "depth", "prep", "clip", "dit", "vae_decode", "vae_encode", "depth_update")
    for k in st:
        st[k]["allocation rounding"] = ALLOC_ROUNDING
    return {k: (sum(st[k].values()), st[k]) for k in order if k in st}


def _plan(net, H, W, num_frames, dit_dtype, max_gpu_memory, label, first_frame_depth=True, device_memory=None,
          vae_parked=None, use_dmd=True):
    """The plan of a run of the networks `net` at H x W: a dict with "dit" (configuration, FramePack layout; its
    forward is measured), "clip_tokens", "text_dim", "umt5",
    "clip", "moge" ((weight bytes, arena bytes) each), "da3" (a function (views, h, w, poses) -> (weight bytes,
    arena bytes)) and "vae" ((dim, z_dim, weight bytes)). _released_networks gives the released checkpoint's,
    lyra2.testing.run_networks any folder's. first_frame_depth: the first frame's depth is estimated (DA3 + MoGe)
    rather than given. device_memory: the device's bytes when known (without a budget it decides the parking).
    vae_parked: None = the plan decides, True / False = as given (tests). use_dmd: the run's sampler (DMD, or UniPC
    + CFG, whose state on the device is larger)."""
    c = _costs(net, H, W, num_frames, dit_dtype, use_dmd)
    layers, block = c["layers"], c["dit_block"]

    # Preference: as many DiT blocks resident as fit (they run 4 to 56 times per chunk), then DA3 resident (it
    # runs once per chunk and is read from its file when loaded per call), then the VAE caches on the device (parked,
    # they cross twice per chunk: the cheapest concession, tried first). Without a budget the run keeps every block
    # and DA3 resident (lyra2.generate._da3_for_run) and parks only when the device's memory is known and the
    # unparked plan exceeds it.
    budget = None if max_gpu_memory is None else int(float(max_gpu_memory) * GB)
    parks = (False, True) if vae_parked is None else (bool(vae_parked),)
    choice = None
    for resident in range(layers, -1, -1):
        for keep_da3 in (True, False) if budget is not None else (True,):
            for parked in parks:
                stages = _stages(c, resident, keep_da3, first_frame_depth, parked)
                peak = max(v[0] for v in stages.values())
                if (peak <= budget if budget is not None
                        else parked == parks[-1] or device_memory is None or peak <= device_memory):
                    choice = (resident, keep_da3, parked, stages, peak)
                    break
            if choice:
                break
        if choice:
            break
    if choice is None:
        stages = _stages(c, 0, False, first_frame_depth, True)
        minimum = max(v[0] for v in stages.values())
        worst = max(stages, key=lambda k: stages[k][0])
        minimum_gb = math.ceil(minimum / GB * 100) / 100   # rounded up: the printed minimum is a valid budget
        raise ValueError(f"max_gpu_memory: {max_gpu_memory!r} GB is below the minimum of {minimum_gb:.2f} GB for "
                         f"{label} with dit_dtype={dit_dtype!r} (every DiT block streamed, DA3 loaded per call; "
                         f"the largest stage is {worst!r})")
    resident, keep_da3, parked, stages, peak = choice
    streamed = layers - resident
    dit = c["dit"]
    # a later run with a new caption: umT5 beside what this run leaves placed, against the same limit
    later = _later_text(c, resident, keep_da3, first_frame_depth)
    limit = budget if budget is not None else device_memory
    return {
        "num_frames": int(num_frames), "dit_dtype": dit_dtype, "max_gpu_memory": max_gpu_memory,
        "use_dmd": bool(use_dmd), "peak_bytes": int(peak),
        "stage_peaks": {k: int(v[0]) for k, v in stages.items()},
        "stages": {k: {n: int(b) for n, b in v[1].items()} for k, v in stages.items()},
        "resident_blocks": resident, "streamed_blocks": streamed,
        "stream_buffer_bytes": int(2 * block if streamed else 0), "pinned_host_bytes": int(streamed * block),
        "da3_resident": keep_da3,
        "vae_parked": bool(parked), "vae_cache_bytes": int(c["enc_cache"] + c["dec_cache"]),
        "device_memory": None if device_memory is None else int(device_memory),
        "later_text_bytes": int(sum(later.values())),
        "new_caption_releases_placed": bool(limit is not None and sum(later.values()) > limit),
        "dit": {"tokens": dit["tokens"], "arena_bytes": dit["arena_peak"], "input_bytes": dit["io_bytes"],
                "weight_bytes": int(c["dit_fixed"] + layers * block), "block_bytes": int(block), "flops": dit["flops"],
                "params": dit["matrix_elems"] + dit["vector_elems"]},
        "weights": {"dit": int(c["dit_fixed"] + layers * block), "umt5": c["umt5"][0], "clip": c["clip"][0],
                    "vae": c["vae_w"], "da3": c["da3_w"], "moge": c["moge"][0]},
    }


def check_device_memory(device_memory):
    """None or a positive int of bytes; TypeError / ValueError naming the field otherwise."""
    if device_memory is None:
        return None
    if isinstance(device_memory, bool) or not isinstance(device_memory, numbers.Integral):
        raise TypeError(f"device_memory: expected an int of bytes or None; got {device_memory!r}")
    if device_memory <= 0:
        raise ValueError(f"device_memory: {device_memory!r} bytes is not allowed; expected a positive number")
    return int(device_memory)


#: Device memory a real GPU does not give to lyra2's pool: the CUDA context, the cuBLAS / cuBLASLt handles and their
#: workspaces, the driver's reserve (about 0.5 GB on an H100 with lazy module loading). An allowance, not a
#: measurement: the first device run (benchmarks/device_check.sh) reports the real figure. The emulated device has
#: none (its pool is the whole LYRA2_EMULATED_CUDA_MEMORY).
CUDA_CONTEXT_RESERVE = 1 << 30


def device_memory_bytes():
    """The CUDA device's memory in bytes that lyra2 can plan with: the first device's total as lyra2.backends()
    reports it, less CUDA_CONTEXT_RESERVE on a real GPU (on the emulated device LYRA2_EMULATED_CUDA_MEMORY when set,
    else the host's memory, as is), or None when no device answers."""
    from . import backends

    b = backends()
    if not (b["cuda"] and b["devices"]):
        return None
    total = int(b["devices"][0]["memory_bytes"])
    return total if b["emulated"] else max(total - CUDA_CONTEXT_RESERVE, 1)


def memory_plan(resolution="480p", num_frames=81, dit_dtype="bf16", max_gpu_memory=None, device_memory=None,
                use_dmd=True) -> dict:
    """The device memory plan of a run (see the module docstring) at "480p" / "720p" (or an (H, W) pair of
    multiples of 16). Returns a dict:

    ``peak_bytes`` (the largest stage), ``stage_peaks`` {stage: bytes}, ``stages`` {stage: {what: bytes}},
    ``resident_blocks`` / ``streamed_blocks`` (DiT attention blocks kept on the device / streamed),
    ``stream_buffer_bytes`` (the two block buffers, 0 without streaming), ``pinned_host_bytes`` (streamed
    blocks in host memory), ``da3_resident`` (kept through the chunk loop), ``dit`` (the measured forward:
    tokens, arena, weights, FLOPs), ``weights`` {network: bytes}, ``vae_parked`` (the VAE streams' caches wait
    in host memory outside their phase), ``vae_cache_bytes`` (both streams' caches: what crosses each way per
    chunk when parked), ``later_text_bytes`` / ``new_caption_releases_placed`` (a later run with a new caption, see
    the module docstring), ``max_gpu_memory``, ``device_memory`` and the arguments.

    With ``max_gpu_memory`` (GB, 1e9 bytes) the plan parks the VAE caches, loads DA3 per call and streams DiT
    blocks, in that order, until the run fits; a budget below the smallest plan (every block streamed, DA3 loaded
    per call, caches parked) raises ValueError naming the minimum. Without a budget, ``device_memory`` (bytes, e.g.
    ``lyra2.memory.device_memory_bytes()``; None = unknown) decides the parking alone. ``use_dmd``: the run's sampler,
    DMD (the default, as generate's) or UniPC + CFG, whose state beside the latent is larger (4·C·T·h·w + C·G·h·w f32
    more, 80 MB at 480p)."""
    _check_args(resolution, num_frames, dit_dtype, max_gpu_memory)
    check_device_memory(device_memory)
    H, W = _frame_size(resolution)
    label = resolution if isinstance(resolution, str) else f"{H}x{W}"
    plan = _plan(_released_networks(H, W), H, W, num_frames, dit_dtype, max_gpu_memory, label,
                 device_memory=device_memory, use_dmd=use_dmd)
    plan["resolution"] = resolution if isinstance(resolution, str) else (H, W)
    return plan


def format_memory_plan(plan) -> str:
    """A few log lines: what is resident, what streams, the expected peak and each stage's peak (GB)."""
    g = lambda b: f"{b / GB:.2f} GB"  # noqa: E731
    res = plan["resolution"]
    lines = [f"memory plan {res if isinstance(res, str) else f'{res[0]}x{res[1]}'}, {plan['num_frames']} frames, DiT {plan['dit_dtype']}"
             + (f", budget {plan['max_gpu_memory']} GB" if plan["max_gpu_memory"] is not None else "")
             + f": peak {g(plan['peak_bytes'])}",
             f"  DiT: {plan['resident_blocks']} blocks resident, {plan['streamed_blocks']} streamed from pinned host "
             f"memory ({g(plan['pinned_host_bytes'])}, two buffers {g(plan['stream_buffer_bytes'])}); "
             f"{plan['dit']['tokens']} tokens, activations {g(plan['dit']['arena_bytes'])}",
             f"  umT5 runs first and is freed; DA3 {'stays resident' if plan['da3_resident'] else 'loads per depth call'}",
             f"  VAE caches ({g(plan['vae_cache_bytes'])}): " +
             (f"parked in pinned host memory outside their stream's phase ({g(plan['vae_cache_bytes'])} each way per "
              "chunk)" if plan["vae_parked"] else "kept on the device for the run"),
             f"  a later run with a new caption: umT5 beside the placed networks {g(plan['later_text_bytes'])}" +
             ("; over the limit: the placed networks are given back first and placed again after the text"
              if plan["new_caption_releases_placed"] else "")]
    lines += [f"  {k:13s} {g(v)}" for k, v in plan["stage_peaks"].items()]
    return "\n".join(lines)


def log_run_plan(resolution, num_frames, max_gpu_memory, device, log, dit_dtype="bf16", use_dmd=True):
    """The plan of a generate run, written to `log` line by line, when the run asked for a budget or for the
    GPU (the plan is of the released network sizes at the run's frame size, with the run's dit_dtype, and on the
    GPU of its memory, lyra2.backends()). Raises
    ValueError when the budget is below the minimum. Returns the plan or None."""
    if max_gpu_memory is None and device != "cuda":
        return None
    plan = memory_plan(resolution, num_frames, dit_dtype, max_gpu_memory,
                       device_memory_bytes() if device == "cuda" else None, use_dmd)
    for line in format_memory_plan(plan).splitlines():
        log(line)
    return plan


def apply_dit_streaming(models, info, plan, log):
    """Makes the loaded pipeline's DiT follow `plan` (None: every block resident): its blocks past
    plan["resident_blocks"] stream through two block buffers. The plan is of the released 40-block DiT; a
    checkpoint with another block count keeps every block resident (and the log says so)."""
    layers = info["dit_config"]["num_layers"]
    resident = layers
    if plan is not None and plan["streamed_blocks"]:
        if layers == DIT_14B["num_layers"]:
            resident = plan["resident_blocks"]
        else:
            log(f"memory plan: this checkpoint's DiT has {layers} blocks, not the released "
                f"{DIT_14B['num_layers']}: every block stays resident")
    _core.ar_models_dit_streaming(models, resident)
    return resident
