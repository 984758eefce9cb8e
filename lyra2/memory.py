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

The schedule (stages in run order):

``text``        umT5-XXL alone: it runs once per prompt and is freed before the DiT is made resident.
``depth``       DA3 + MoGe on the input frame (before the DiT is loaded).
``clip``        CLIP ViT-H on the chunk's last frame.
``vae_encode``  the warped chunk through the streaming encoder (and the history re-encode, same size).
``dit``         one DiT forward (the sampler's state and the CFG pair of velocities beside it).
``vae_decode``  the chunk's 21 latents through the streaming decoder.
``depth_update`` DA3 on the depth window (up to 10 views with poses) when the DiT's activations are gone.

The DiT, the VAE and CLIP stay resident through the chunk loop; the DMD LoRA is merged into the DiT once, so
it adds nothing. DA3 stays resident when the budget allows, else it is loaded for each depth call (MoGe is only
needed for the first frame). When the budget is below what a resident DiT needs, its attention blocks stream
from pinned host memory: ``resident_blocks`` stay on the device, the others pass through two block-sized
buffers (double buffering: block i+1 is uploaded on a copy stream while block i runs).
"""
from __future__ import annotations

import math
import numbers

from . import _core
from .fields import NUM_FRAMES, RESOLUTIONS

__all__ = ["memory_plan", "format_memory_plan", "log_run_plan", "check_max_gpu_memory", "check_dit_dtype", "apply_dit_streaming", "DIT_14B", "DIT_LAYOUT"]

#: The released Lyra-2 DiT (a Wan 2.1 14B I2V with Lyra's inputs; upstream EXP:21-62, NETCFG:30), as detection reads it from
#: the weights' names and shapes.
DIT_14B = {"dim": 5120, "ffn_dim": 13824, "num_heads": 40, "num_layers": 40, "in_dim": 36, "out_dim": 16,
           "text_dim": 4096, "freq_dim": 256, "clip_dim": 1280, "cam_dim": 1536, "buffer_embed_dim": 20480,
           "buffer_squeeze": 256}
DIT_LAYOUT = "f1k1f4s2f1s1f16k4f2k2f1k1_g20"
CLIP_TOKENS = 257            # ViT-H/14 at 224 px: 16·16 patches + the class token
TEXT_TOKENS = 512
DEPTH_WINDOW = 10            # DA3 views per depth update (csrc/pipeline/ar_driver.h LYRA_AR_DEPTH_WINDOW)
DIT_DTYPES = ("bf16", "fp8")
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


def _dit_weights(m, dtype):
    """(non-block bytes, one block's bytes) of the DiT weights in `dtype`, from the measured parameter table."""
    layers = DIT_14B["num_layers"]
    block = m["block_bytes"]
    if dtype == "fp8":
        # e4m3 matrices (1 byte) + one f32 scale per output channel; the block's vectors stay f32.
        block = m["block_matrix_elems"] + 4 * m["block_matrix_rows"] + 4 * m["block_vector_elems"]
    return m["weight_bytes"] - layers * m["block_bytes"], block


def _network_costs(resolution):
    from .models.clip import clip_cost
    from .models.depth import da3_cost
    from .models.moge import moge_cost
    from .models.umt5 import UMT5_XXL, umt5_cost
    from .models.vae import memory_plan as vae_plan
    from .testing import vae_tensor_shapes

    H, W = resolution
    dh, dw = H // 14 * 14, W // 14 * 14   # DA3's input: the largest multiples of its 14-pixel patch inside
    t5 = umt5_cost(UMT5_XXL, tokens=TEXT_TOKENS, precision="bf16")
    clip = clip_cost(precision="f16")
    da3_one = da3_cost(1, dh, dw, False, precision="bf16")
    da3_win = da3_cost(DEPTH_WINDOW, dh, dw, True, precision="bf16")
    moge = moge_cost(H, W, precision="f16")
    vae = vae_plan(dim=96, height=H, width=W, frames=81, precision="bf16")
    vae_params = sum(_numel(shape) for _, shape in vae_tensor_shapes(96, 16))
    return {
        "umt5": (t5["params"] * BF16, t5["arena_bytes"]),
        "clip": (clip["params"] * BF16, clip["arena_bytes"]),
        "da3": (da3_one["weight_bytes"], da3_one["arena_bytes"], da3_win["arena_bytes"]),
        "moge": (moge["weight_bytes"], moge["arena_bytes"]),
        "vae": (vae_params * BF16,
                vae["encode_stream"]["arena_peak"] + vae["encode_stream"]["cache_bytes"],
                vae["decode_stream"]["arena_peak"] + vae["decode_stream"]["cache_bytes"]),
    }


def _numel(shape):
    n = 1
    for v in shape:
        n *= int(v)
    return n


def _stages(dit_fixed, dit_blocks_resident, net, dit, chunk, keep_da3, fp8_copy):
    """{stage: (bytes, {what: bytes})} for a DiT whose resident weights are dit_fixed + dit_blocks_resident."""
    umt5_w, umt5_a = net["umt5"]
    clip_w, clip_a = net["clip"]
    da3_w, da3_a1, da3_aw = net["da3"]
    moge_w, moge_a = net["moge"]
    vae_w, vae_enc, vae_dec = net["vae"]
    dit_w = dit_fixed + dit_blocks_resident
    loop = {"dit weights": dit_w, "vae weights": vae_w, "clip weights": clip_w, "chunk state": chunk}
    if keep_da3:
        loop["da3 weights"] = da3_w
    st = {
        "text": {"umt5 weights": umt5_w, "umt5 activations": umt5_a},
        "depth": {"da3 weights": da3_w, "moge weights": moge_w, "da3 activations": da3_a1,
                  "moge activations": moge_a},
        "clip": dict(loop, **{"clip activations": clip_a}),
        "vae_encode": dict(loop, **{"vae encode activations": vae_enc}),
        "dit": dict(loop, **{"dit activations": dit["arena_peak"], "dit inputs": dit["io_bytes"]},
                    **({"fp8 activation copy": fp8_copy} if fp8_copy else {})),
        "vae_decode": dict(loop, **{"vae decode activations": vae_dec}),
        "depth_update": dict(loop, **{"da3 weights": da3_w, "da3 activations": da3_aw}),
    }
    return {k: (sum(v.values()), v) for k, v in st.items()}


def memory_plan(resolution="480p", num_frames=81, dit_dtype="bf16", max_gpu_memory=None) -> dict:
    """The device memory plan of a run (see the module docstring) at "480p" / "720p" (or an (H, W) pair of
    multiples of 16). Returns a dict:

    ``peak_bytes`` (the largest stage), ``stage_peaks`` {stage: bytes}, ``stages`` {stage: {what: bytes}},
    ``resident_blocks`` / ``streamed_blocks`` (DiT attention blocks kept on the device / streamed),
    ``stream_buffer_bytes`` (the two block buffers, 0 without streaming), ``pinned_host_bytes`` (streamed
    blocks in host memory), ``da3_resident`` (kept through the chunk loop), ``dit`` (the measured forward:
    tokens, arena, weights, FLOPs), ``weights`` {network: bytes}, ``max_gpu_memory`` and the arguments.

    With ``max_gpu_memory`` (GB, 1e9 bytes) the plan keeps as many DiT blocks resident as fit and streams the
    rest; a budget below the smallest plan (every block streamed, DA3 loaded per call) raises ValueError naming
    the minimum."""
    _check_args(resolution, num_frames, dit_dtype, max_gpu_memory)
    H, W = _frame_size(resolution)
    h, w = H // 8, W // 8
    dit = _core.dit_measure(DIT_14B, DIT_LAYOUT, h, w, CLIP_TOKENS, "bf16", "cuda")
    fixed, block = _dit_weights(dit, dit_dtype)
    layers = DIT_14B["num_layers"]
    net = _network_costs((H, W))
    # Device state that lives through the chunk loop: the history latents of every generated frame (f32,
    # 16 channels, one latent per 4 frames), the text embeddings of prompt and negative prompt, the velocity
    # pair of CFG and the sampler's latent.
    latents = 1 + (int(num_frames) - 1) // 4
    new = 16 * 20 * h * w * 4
    chunk = 16 * latents * h * w * 4 + 2 * TEXT_TOKENS * DIT_14B["text_dim"] * 4 + 3 * new
    # fp8: the e4m3 codes of a block Linear's input (one byte per element of the widest input, the FFN's second
    # layer) with one f32 scale per token (lyra_op_quantize_fp8_rows, in the DiT's arena), and the f32 sums tile
    # of the CUDA FP8 GEMM (64 MiB at most, csrc/nn/cuda/cuda_fp8.cu); the activations themselves are the
    # measured (unquantized) forward's.
    fp8_copy = dit["tokens"] * (DIT_14B["ffn_dim"] + 4) + (64 << 20) if dit_dtype == "fp8" else 0

    def plan_for(resident, keep_da3):
        streamed = layers - resident
        buffers = 2 * block if streamed else 0
        stages = _stages(fixed + buffers, resident * block, net, dit, chunk, keep_da3, fp8_copy)
        return stages, buffers

    # Preference: as many DiT blocks resident as fit (they run 4 to 56 times per chunk), then DA3 resident
    # (it runs once per chunk). Without a budget: every block resident, DA3 loaded per call (the smallest
    # fully resident peak).
    budget = None if max_gpu_memory is None else int(float(max_gpu_memory) * GB)
    choice = None
    for resident in range(layers, -1, -1):
        for keep_da3 in ((True, False) if budget is not None else (False,)):
            stages, buffers = plan_for(resident, keep_da3)
            peak = max(v[0] for v in stages.values())
            if budget is None or peak <= budget:
                choice = (resident, keep_da3, stages, buffers, peak)
                break
        if choice:
            break
    if choice is None:
        stages, _ = plan_for(0, False)
        minimum = max(v[0] for v in stages.values())
        worst = max(stages, key=lambda k: stages[k][0])
        minimum_gb = math.ceil(minimum / GB * 100) / 100   # rounded up: the printed minimum is a valid budget
        raise ValueError(f"max_gpu_memory: {max_gpu_memory!r} GB is below the minimum of {minimum_gb:.2f} GB for "
                         f"{resolution if isinstance(resolution, str) else f'{H}x{W}'} with dit_dtype={dit_dtype!r} (every DiT block streamed, DA3 loaded per call; "
                         f"the largest stage is {worst!r})")
    resident, keep_da3, stages, buffers, peak = choice
    streamed = layers - resident
    return {
        "resolution": resolution if isinstance(resolution, str) else (H, W), "num_frames": int(num_frames), "dit_dtype": dit_dtype,
        "max_gpu_memory": max_gpu_memory,
        "peak_bytes": int(peak),
        "stage_peaks": {k: int(v[0]) for k, v in stages.items()},
        "stages": {k: {n: int(b) for n, b in v[1].items()} for k, v in stages.items()},
        "resident_blocks": resident, "streamed_blocks": streamed,
        "stream_buffer_bytes": int(buffers), "pinned_host_bytes": int(streamed * block),
        "da3_resident": keep_da3,
        "dit": {"tokens": dit["tokens"], "arena_bytes": dit["arena_peak"], "input_bytes": dit["io_bytes"],
                "weight_bytes": int(fixed + layers * block), "block_bytes": int(block), "flops": dit["flops"],
                "params": dit["matrix_elems"] + dit["vector_elems"]},
        "weights": {"dit": int(fixed + layers * block), "umt5": net["umt5"][0], "clip": net["clip"][0],
                    "vae": net["vae"][0], "da3": net["da3"][0], "moge": net["moge"][0]},
    }


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
             f"  umT5 runs first and is freed; DA3 {'stays resident' if plan['da3_resident'] else 'loads per depth call'}"]
    lines += [f"  {k:13s} {g(v)}" for k, v in plan["stage_peaks"].items()]
    return "\n".join(lines)


def log_run_plan(resolution, num_frames, max_gpu_memory, device, log, dit_dtype="bf16"):
    """The plan of a generate run, written to `log` line by line, when the run asked for a budget or for the
    GPU (the plan is of the released network sizes at the run's frame size, with the run's dit_dtype). Raises
    ValueError when the budget is below the minimum. Returns the plan or None."""
    if max_gpu_memory is None and device != "cuda":
        return None
    plan = memory_plan(resolution, num_frames, dit_dtype, max_gpu_memory)
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


def prep_stage_bytes(resolution="480p", num_frames=81) -> dict:
    """Device memory of the chunk-input stage (issue 14: the chunk inputs built on the device, in the VAE's
    memory; csrc/pipeline/ar_driver.c ``prep_buffers`` / ``frame_needed`` and csrc/pipeline/prep.c
    ``lyra_prep_scratch_bytes``), all f32 unless said otherwise. Not yet part of ``memory_plan``'s stages.

    ``run``: live through the chunk loop: the canonical coordinate images of the S spatial slots (constant per run),
    the decoded frames kept for later steps (frame 0, every spatial-memory frame, the next buffer frame, the next
    depth window's frames: an upper bound of cache entries + window + 1), the spatial memory's full-resolution
    depths, the buffer depth, the uint8 staging of the output / DA3 frames (u8) and one encoder latent with the
    latent constants. (The history latents are already in ``memory_plan``'s "chunk state"; the VAE's decoded-frame
    block ``pix`` predates this stage.)
    ``scratch``: live while one chunk's inputs are assembled (the fresh VAE encodes run inside it): one batch of
    16 warped images (16, 3, H, W) (the warps run 16 targets at a time, LYRA_AR_WARP_CHUNK, each batch's frames
    encoded before the next; reused by the correspondence warps), their warped depths (16, H, W), the warped depths
    of the kept frames (S, G, H, W: normalised over the range of all groups at the end), the camera latents
    (G + 1, 16, h, w), the spatial latents (S, 16, h, w) and the depth range.
    Returns {"run_bytes", "scratch_bytes", "run": {what: bytes}, "scratch": {what: bytes}}."""
    H, W = _frame_size(resolution)
    HW, hw, f32, C = H * W, (H // 8) * (W // 8), 4, 16
    fp = _core.dit_framepack(DIT_LAYOUT)
    S, G = fp["spatial_frames"], fp["new_frames"]
    F = 4 * G
    n_chunks = max(1, (int(num_frames) - 1) // F)
    interval = 8  # LYRA_AR_DEPTH_INTERVAL: every 8th frame of each depth window joins the spatial memory
    cache_entries = 1 + (F * (n_chunks - 1)) // interval
    kept_frames = cache_entries + (DEPTH_WINDOW + 1 if n_chunks > 1 else 0)
    run = {
        "canonical coordinates": S * 3 * HW * f32,
        "kept frames": kept_frames * 3 * HW * f32,
        "spatial-memory depths": cache_entries * HW * f32,
        "buffer depth": HW * f32,
        "uint8 frames": max(4, DEPTH_WINDOW) * HW * 3,
        "encoder latent": C * hw * f32 + 2 * C * f32,
    }
    batch = 16  # LYRA_AR_WARP_CHUNK
    scratch = {
        "warp image": batch * 3 * HW * f32,
        "warp depth": batch * HW * f32,
        "kept depths": S * G * HW * f32,
        "camera latents": C * (G + 1) * hw * f32,
        "spatial latents": S * C * hw * f32,
        "depth range": 2 * f32,
    }
    return {"run_bytes": sum(run.values()), "scratch_bytes": sum(scratch.values()), "run": run, "scratch": scratch}
