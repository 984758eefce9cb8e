"""The measuring backend (csrc/nn/measure) and the memory plan built on it (lyra2.memory_plan).

Independent references: parameter counts from lyra2.testing's shape tables (written from the checkpoint layout,
not from the loader's table); the DiT's activation peak from a hand count of what is live in one block; the
tiny DiT's real forward, whose arena high-water mark must equal the measured one."""
import numpy as np
import pytest

import lyra2
from conftest import DATA
from lyra2 import _core
from lyra2.memory import DIT_14B, DIT_LAYOUT, GB
from lyra2.models.dit import LyraDiT
from lyra2.testing import dit_tensor_shapes

A = 64  # LYRA_ARENA_ALIGN: every arena allocation starts on it


def f32(n):
    return (n * 4 + A - 1) // A * A


def full_shapes():
    c = DIT_14B
    return dit_tensor_shapes({"dim": c["dim"], "ffn": c["ffn_dim"], "layers": c["num_layers"],
                              "text_dim": c["text_dim"], "freq_dim": c["freq_dim"], "clip_dim": c["clip_dim"],
                              "squeeze": c["buffer_squeeze"], "in_dim": c["in_dim"], "out_dim": c["out_dim"],
                              "cam_dim": c["cam_dim"], "buffer_in": c["buffer_embed_dim"] // 16,
                              "layout": DIT_LAYOUT})


def test_full_size_dit_parameters_match_the_checkpoint_layout():
    m = _core.dit_measure(DIT_14B, DIT_LAYOUT, 60, 104, 257, "bf16", "cpu")
    shapes = full_shapes()
    numel = {n: int(np.prod(s)) for n, s in shapes}
    assert m["matrix_elems"] + m["vector_elems"] == sum(numel.values())
    assert 17.0e9 < sum(numel.values()) < 17.1e9            # the "17B-parameter DiT"
    block = [n for n in numel if n.startswith("blocks.0.")]
    matrices = [n for n in block if len(dict(shapes)[n]) == 2]
    assert m["block_matrix_elems"] == sum(numel[n] for n in matrices)
    assert m["block_matrix_rows"] == sum(dict(shapes)[n][0] for n in matrices)
    # bf16 matrices, f32 vectors, every tensor 64-byte aligned by the carver: within 64 bytes per tensor
    raw = 2 * m["matrix_elems"] + 4 * m["vector_elems"]
    assert raw <= m["weight_bytes"] <= raw + 64 * len(shapes)
    # the 14B-parameter Wan backbone alone: 2·D·D·10 attention matrices + 2·D·ffn per block
    D, F = DIT_14B["dim"], DIT_14B["ffn_dim"]
    assert m["block_matrix_elems"] > 10 * D * D + 2 * D * F


@pytest.mark.parametrize("hw", [(60, 104), (90, 160)])
def test_full_size_dit_activation_peak_equals_a_hand_count(hw):
    """The peak is the persistent activations plus one block's self-attention: modulation (6D), the q/k bias kq
    (L, D) and five (L, D) temporaries (norm1, q, k, v, attention output), all f32 on the CPU path."""
    h, w = hw
    m = _core.dit_measure(DIT_14B, DIT_LAYOUT, h, w, 257, "bf16", "cpu")
    fp = lyra2.models.dit.framepack_layout(DIT_LAYOUT, (h, w))
    L, D, C = fp["tokens"], DIT_14B["dim"], DIT_14B["cam_dim"]
    Cb = DIT_14B["buffer_embed_dim"] // 16
    assert m["tokens"] == L == {(60, 104): 38246, (90, 160): 88360}[hw]
    persistent = (f32(L * D) + f32(L * C) + f32(L * (4 * Cb + 1)) + f32(L * 64) + f32(D) + f32(6 * D)
                  + f32(512 * D) + f32(257 * D))
    block = f32(6 * D) + 6 * f32(L * D)
    assert m["arena_peak"] == persistent + block
    T = fp["total_frames"]
    assert m["io_bytes"] == 4 * (16 * T * h * w + 512 * 4096 + 257 * 1280 + (36 - 16 + 384) * T * h * w
                                 + Cb * T * h * w + 16 * 20 * h * w)
    # FLOPs per block: the linears over L tokens (all but the cross-attention k/v pairs, which act on the 512
    # text and 257 CLIP tokens), self-attention 4·L²·D, cross-attention 4·L·D·(512 + 257); the embeddings and
    # the head add well under 1 %
    per_block = (2 * L * (m["block_matrix_elems"] - 4 * D * D) + 2 * (512 + 257) * 2 * D * D + 4 * L * L * D
                 + 4 * L * D * (512 + 257))
    assert 40 * per_block <= m["flops"] <= 1.01 * 40 * per_block


def test_measured_arena_is_the_real_forward_peak():
    """The tiny DiT's forward runs in an arena sized by measuring the same forward: its real high-water mark
    equals the measured bytes, and the full-size measurement takes milliseconds."""
    with np.load(f"{DATA}/dit_tiny_weights.npz") as z:
        weights = {k: z[k] for k in z.files}
    with np.load(f"{DATA}/dit_tiny.npz") as z:
        g = {k: z[k] for k in z.files}
    model = LyraDiT(weights, num_heads=4)  # tiny: dim 48, 4 heads of 12
    args = {k: g["caseb_" + k] for k in ("x_B_C_T_H_W", "timesteps_B_T", "crossattn_emb", "frame_cond_crossattn_emb_B_L_D",
                              "y_B_C_T_H_W", "y_buffer_B_C_T_H_W")}
    model(**args)
    c = _core.dit_config(model._model)
    assert c["arena_need"] > 0 and c["arena_peak"] == c["arena_need"]
    cfg = {k: c[k] for k in DIT_14B if k != "num_heads"}
    cfg["num_heads"] = 4
    H, W = args["x_B_C_T_H_W"].shape[-2:]
    m = _core.dit_measure(cfg, DIT_LAYOUT, H, W, args["frame_cond_crossattn_emb_B_L_D"].shape[1], "f32", "cpu")
    assert m["arena_peak"] == c["arena_need"]


def test_measure_validates_the_configuration():
    bad = dict(DIT_14B, num_heads=7)
    with pytest.raises(ValueError, match="heads 7"):
        _core.dit_measure(bad, DIT_LAYOUT, 60, 104, 257, "bf16", "cpu")
    with pytest.raises(KeyError, match="ffn_dim"):
        _core.dit_measure({k: v for k, v in DIT_14B.items() if k != "ffn_dim"}, DIT_LAYOUT, 60, 104, 257, "bf16")
    with pytest.raises(ValueError, match="device"):
        _core.dit_measure(DIT_14B, DIT_LAYOUT, 60, 104, 257, "bf16", "tpu")
    with pytest.raises(ValueError, match="latent_h"):
        _core.dit_measure(DIT_14B, DIT_LAYOUT, 61, 104, 257, "bf16", "cpu")


# ---------------------------------------------------------------- lyra2.memory_plan


def test_plan_fully_resident_480p():
    p = lyra2.memory_plan(num_frames=161)
    assert p["resident_blocks"] == 40 and p["streamed_blocks"] == 0 and p["stream_buffer_bytes"] == 0
    assert list(p["stage_peaks"]) == ["text", "depth", "prep", "clip", "dit", "vae_decode", "vae_encode",
                                      "depth_update"]
    assert p["peak_bytes"] == max(p["stage_peaks"].values())
    for k, parts in p["stages"].items():
        assert p["stage_peaks"][k] == sum(parts.values())
    # umT5 is never resident beside the DiT
    assert "umt5 weights" in p["stages"]["text"] and "dit weights" not in p["stages"]["text"]
    assert all("umt5 weights" not in p["stages"][k] for k in p["stages"] if k != "text")
    # the arenas the driver gives back between phases are counted in their own stage only
    assert [k for k in p["stages"] if "dit activations" in p["stages"][k]] == ["dit"]
    assert [k for k in p["stages"] if "vae decode activations" in p["stages"][k]] == ["vae_decode"]
    # without a budget or a known device memory the VAE streams' caches stay on the device through the chunk loop
    # (nothing to make room for); y and the buffer from the chunk's prep to its sampling
    loop = ["prep", "clip", "dit", "vae_decode", "vae_encode", "depth_update"]
    assert not p["vae_parked"] and p["device_memory"] is None
    assert [k for k in p["stages"] if "vae decoder caches" in p["stages"][k]] == loop
    assert [k for k in p["stages"] if "vae encoder caches" in p["stages"][k]] == loop
    assert [k for k in p["stages"] if "chunk condition" in p["stages"][k]] == ["prep", "dit"]
    # without a budget the run keeps DA3 resident (lyra2.generate._da3_for_run), with its window arena
    assert p["da3_resident"] and p["stages"]["dit"]["da3 activations"] == p["stages"]["depth_update"]["da3 activations"]
    dit = p["stages"]["dit"]
    m = _core.dit_measure(DIT_14B, DIT_LAYOUT, 60, 104, 257, "bf16", "cuda")
    assert dit["dit weights"] == m["weight_bytes"] and dit["dit activations"] == m["arena_peak"]
    assert p["dit"]["tokens"] == 38246
    # the driver's buffers: the measured forward's inputs (y and the buffer in bf16 on the device), one caption
    # per chunk (2 here), the CLIP frame, and the sampler's state beside x: DMD's is the velocity alone (one of the
    # forward's inputs); UniPC's adds its three x0 predictions and the corrected sample (C, T, h, w) each and CFG's
    # unconditional velocity (C, G, h, w)
    fp = lyra2.models.dit.framepack_layout(DIT_LAYOUT, (60, 104))
    T, hw, Cb = fp["total_frames"], 60 * 104, DIT_14B["buffer_embed_dim"] // 16
    cond = 2 * (404 + Cb) * T * hw
    assert m["io_bytes"] == 4 * (16 * T * hw + 512 * 4096 + 257 * 1280 + 16 * 20 * hw) + cond
    assert dit["chunk condition"] == cond
    assert dit["run buffers"] == m["io_bytes"] - cond + 512 * 4096 * 4 + 3 * 480 * 832 * 4
    cfg = lyra2.memory_plan(num_frames=161, use_dmd=False)
    assert p["use_dmd"] and not cfg["use_dmd"]
    assert cfg["stages"]["dit"]["run buffers"] - dit["run buffers"] == 4 * (4 * 16 * T * hw + 16 * 20 * hw)
    # the chunk-input prep on the device: its scratch and the CUDA warp's temporaries in the prep stage only (as the
    # C function and the measuring backend size them), the re-encode's chunk block (20 latents' 4 frames in the
    # VAE's bf16) in the decode and the re-encode only, the history latents through the loop (25 + 20 per chunk)
    prep = p["stages"]["prep"]
    assert prep["prep scratch"] == _core.prep_scratch_bytes(DIT_LAYOUT, 480, 832, 16, 16)
    testops = pytest.importorskip("lyra2._testops")
    assert prep["warp temporaries"] == testops.warp_forward_measure(3, 480, 832, 16)["alloc_peak"]
    assert [k for k in p["stages"] if "warp temporaries" in p["stages"][k]] == ["prep"]
    assert [k for k in p["stages"] if "chunk frames" in p["stages"][k]] == ["vae_decode", "vae_encode"]
    assert p["stages"]["vae_decode"]["chunk frames"] == 80 * 3 * 480 * 832 * 2
    assert dit["history latents"] == (25 + 20 * 2) * 16 * hw * 4
    # kept frames: frame 0 and the spatial memory (1 + the 10 frames of the one window), plus, from the decode of
    # chunk 1 to the window's update, those 10 frames before they join it
    assert dit["kept frames"] == 11 * 3 * 480 * 832 * 4 and dit["spatial-memory depths"] == 11 * 480 * 832 * 4
    assert 40e9 < p["peak_bytes"] < 50e9
    # 81 frames: one chunk, no depth-window update
    assert "depth_update" not in lyra2.memory_plan()["stages"]


def test_vae_caches_are_parked_only_when_the_run_needs_it():
    """Parking the VAE streams' caches in host memory (3.0 GB each way per 480p chunk) is the plan's first
    concession: without a budget only when the device's memory is known and the unparked plan exceeds it, with a
    budget when the unparked plan exceeds the budget (before DA3 per call or streamed blocks). Parked, each stream's
    caches are counted in its own phase only; the difference is the caches, in every stage from the prep on."""
    kept = lyra2.memory_plan(num_frames=161)
    assert not lyra2.memory_plan(num_frames=161, device_memory=80 * 10**9)["vae_parked"]   # an 80 GB card
    assert not lyra2.memory_plan(num_frames=161, device_memory=kept["peak_bytes"])["vae_parked"]
    p = lyra2.memory_plan(num_frames=161, device_memory=kept["peak_bytes"] - 1)
    assert p["vae_parked"] and p["device_memory"] == kept["peak_bytes"] - 1
    # no budget: the rest is as without one (every block and DA3 resident), even on a card too small for it all
    assert p["resident_blocks"] == 40 and p["da3_resident"]
    assert not lyra2.memory_plan(num_frames=161, device_memory=10**9)["streamed_blocks"]
    assert [k for k in p["stages"] if "vae decoder caches" in p["stages"][k]] == ["vae_decode"]
    assert [k for k in p["stages"] if "vae encoder caches" in p["stages"][k]] == ["vae_encode"]
    caches = p["vae_cache_bytes"]
    assert caches == p["stages"]["vae_decode"]["vae decoder caches"] + p["stages"]["vae_encode"]["vae encoder caches"]
    assert 2.5e9 < caches < 3.5e9   # 480p: 1.1 + 1.9 GB
    for k in ("prep", "clip", "dit", "depth_update"):
        assert kept["stage_peaks"][k] - p["stage_peaks"][k] == caches
    assert kept["stage_peaks"]["text"] == p["stage_peaks"]["text"]
    # a budget the kept plan fits keeps them; one just below parks, with the same blocks and DA3
    assert not lyra2.memory_plan(num_frames=161, max_gpu_memory=kept["peak_bytes"] / GB)["vae_parked"]
    b = lyra2.memory_plan(num_frames=161, max_gpu_memory=(kept["peak_bytes"] - 1) / GB)
    assert b["vae_parked"] and b["resident_blocks"] == 40 and b["da3_resident"]
    assert b["peak_bytes"] == p["peak_bytes"]
    # the 40 GB budget parks too (the target is met with the caches parked)
    assert lyra2.memory_plan("480p", 81, "bf16", 40)["vae_parked"]
    text = lyra2.memory.format_memory_plan(p)
    assert "VAE caches" in text and "parked in pinned host memory" in text
    assert "kept on the device for the run" in lyra2.memory.format_memory_plan(kept)
    with pytest.raises(TypeError, match="device_memory"):
        lyra2.memory_plan(device_memory=4.0e10)
    with pytest.raises(ValueError, match="device_memory"):
        lyra2.memory_plan(device_memory=0)


def test_a_later_caption_beside_the_placed_networks_is_planned():
    """A later run with a new caption loads umT5 (11.5 GB) beside what the first run left placed: later_text_bytes.
    It exceeds 40 GB at 480p, so a 40 GB budget's plan (and an 80 GB card's, not) says to give the placed networks
    back first."""
    p = lyra2.memory_plan(num_frames=161)
    placed = p["stages"]["dit"]
    umt5 = p["stages"]["text"]
    expect = (placed["dit weights"] + placed["clip weights"] + placed["clip activations"] + placed["negative prompt"]
              + placed["vae weights"] + placed["da3 weights"] + placed["da3 activations"] + umt5["umt5 weights"]
              + umt5["umt5 activations"] + umt5["caption embedding"] + lyra2.memory.ALLOC_ROUNDING)
    assert p["later_text_bytes"] == expect and 45e9 < expect < 60e9
    assert not p["new_caption_releases_placed"]                        # no limit known
    assert not lyra2.memory_plan(num_frames=161, device_memory=80 * 10**9)["new_caption_releases_placed"]
    assert lyra2.memory_plan(num_frames=161, device_memory=48 * 10**9)["new_caption_releases_placed"]
    b = lyra2.memory_plan("480p", 81, "bf16", 40)
    assert b["new_caption_releases_placed"] and b["later_text_bytes"] > 40 * GB
    assert "given back first" in lyra2.memory.format_memory_plan(b)


def test_480p_bf16_fits_40_gb_with_every_dit_block_resident():
    """Issue 14's target: at 480p in bf16 a 40 GB budget keeps all 40 DiT blocks on the device (DA3 loaded for its
    calls). Runs past one chunk add the depth-window update, where the resident DiT beside DA3 and its 10-view
    arena alone come close to 40 GB: there the plan streams a few blocks."""
    p = lyra2.memory_plan("480p", 81, "bf16", 40)
    assert p["resident_blocks"] == 40 and p["streamed_blocks"] == 0 and not p["da3_resident"]
    assert p["peak_bytes"] <= 40 * GB
    p2 = lyra2.memory_plan("480p", 161, "bf16", 40)
    assert p2["peak_bytes"] <= 40 * GB and 0 < p2["streamed_blocks"] <= 4
    upd = p2["stages"]["depth_update"]
    assert upd["da3 weights"] + upd["da3 activations"] + p["weights"]["dit"] > 39e9


def test_plan_720p_is_reported():
    p = lyra2.memory_plan(resolution="720p")
    assert p["dit"]["tokens"] == 88360
    assert p["peak_bytes"] > lyra2.memory_plan()["peak_bytes"]


def test_fp8_480p_one_chunk_fits_24_gb_fully_resident():
    p = lyra2.memory_plan(dit_dtype="fp8", max_gpu_memory=24)
    assert p["peak_bytes"] <= 24 * GB and p["resident_blocks"] == 40 and not p["da3_resident"]


@pytest.mark.parametrize("dtype", ["bf16", "fp8"])
def test_plan_streams_within_24_gb(dtype):
    p = lyra2.memory_plan(num_frames=161, dit_dtype=dtype, max_gpu_memory=24)
    assert p["peak_bytes"] <= 24 * GB
    assert p["streamed_blocks"] > 0 and p["resident_blocks"] + p["streamed_blocks"] == 40
    blk = p["dit"]["block_bytes"]
    assert p["stream_buffer_bytes"] == 2 * blk and p["pinned_host_bytes"] == p["streamed_blocks"] * blk
    # one more resident block would not fit: the plan keeps as many as the budget allows
    dit = p["stages"]["dit"]
    assert max(p["stage_peaks"][k] for k, parts in p["stages"].items() if "dit weights" in parts) + blk > 24 * GB
    assert dit["dit weights"] == p["weights"]["dit"] - p["pinned_host_bytes"] + 2 * blk


def test_fp8_weights_count_one_byte_per_matrix_element_plus_scales():
    m = _core.dit_measure(DIT_14B, DIT_LAYOUT, 60, 104, 257, "bf16", "cuda")
    b16, f8 = lyra2.memory_plan(), lyra2.memory_plan(dit_dtype="fp8")
    saved = 40 * (m["block_bytes"] - (m["block_matrix_elems"] + 4 * m["block_matrix_rows"]
                                      + 4 * m["block_vector_elems"]))
    assert b16["weights"]["dit"] - f8["weights"]["dit"] == saved
    assert 16e9 < saved < 17.5e9


def test_too_small_budget_names_max_gpu_memory_and_the_minimum():
    with pytest.raises(ValueError, match=r"max_gpu_memory: 8 GB is below the minimum of \d+\.\d\d GB"):
        lyra2.memory_plan(max_gpu_memory=8)
    minimum = float(str(pytest.raises(ValueError, lyra2.memory_plan, max_gpu_memory=1).value).split("minimum of ")[1]
                    .split(" GB")[0])
    p = lyra2.memory_plan(max_gpu_memory=minimum)          # the printed minimum is itself a valid budget
    assert p["peak_bytes"] <= minimum * GB and p["streamed_blocks"] > 0
    with pytest.raises(ValueError, match="minimum"):
        lyra2.memory_plan(max_gpu_memory=minimum - 0.02)


@pytest.mark.parametrize("kw, exc, word", [
    ({"resolution": "1080p"}, ValueError, "resolution"), ({"resolution": 480}, TypeError, "resolution"),
    ({"num_frames": 80}, ValueError, "num_frames"), ({"num_frames": 81.0}, TypeError, "num_frames"),
    ({"dit_dtype": "int4"}, ValueError, "dit_dtype"), ({"max_gpu_memory": 0}, ValueError, "max_gpu_memory"),
    ({"max_gpu_memory": "24"}, TypeError, "max_gpu_memory")])
def test_plan_argument_errors(kw, exc, word):
    with pytest.raises(exc, match=word):
        lyra2.memory_plan(**kw)


def test_format_memory_plan_lists_residency():
    text = lyra2.memory.format_memory_plan(lyra2.memory_plan(dit_dtype="fp8", max_gpu_memory=24))
    assert "blocks resident" in text and "streamed" in text and "peak" in text and "dit" in text


# ---------------------------------------------------------------- DiT block streaming


@pytest.fixture(scope="module")
def tiny_dit():
    with np.load(f"{DATA}/dit_tiny_weights.npz") as z:
        weights = {k: z[k] for k in z.files}
    with np.load(f"{DATA}/dit_tiny.npz") as z:
        args = {k: z["caseb_" + k] for k in ("x_B_C_T_H_W", "timesteps_B_T", "crossattn_emb",
                                             "frame_cond_crossattn_emb_B_L_D", "y_B_C_T_H_W", "y_buffer_B_C_T_H_W")}
    return weights, args


@pytest.mark.parametrize("resident", [0, 1])
def test_streaming_gives_the_resident_output_bit_for_bit(tiny_dit, resident):
    weights, args = tiny_dit
    model = LyraDiT(weights, num_heads=4)
    ref = model(**args)
    model.set_streaming(resident)
    assert model.resident_blocks == resident
    out = model(**args)
    np.testing.assert_array_equal(out, ref)
    st = model.streaming_stats()
    streamed = model.config["num_layers"] - resident
    # two block buffers of exactly the planned block bytes; one upload per streamed block per forward
    c = _core.dit_config(model._model)
    m = _core.dit_measure({**{k: c[k] for k in DIT_14B if k != "num_heads"}, "num_heads": 4}, DIT_LAYOUT,
                          *args["x_B_C_T_H_W"].shape[-2:], 257, "f32", "cpu")
    assert st["buffer_bytes"] == 2 * m["block_bytes"]
    assert st["uploads"] == streamed and st["upload_bytes"] == streamed * m["block_bytes"]
    model(**args)
    assert model.streaming_stats()["uploads"] == 2 * streamed
    model.set_streaming(model.config["num_layers"])
    assert model.streaming_stats()["buffer_bytes"] == 0
    np.testing.assert_array_equal(model(**args), ref)


def test_streaming_after_a_lora_merge(tiny_dit):
    """Streamed blocks are uploaded from the (merged) weights every forward, so a merge made before or after
    turning streaming on gives the resident model's output."""
    weights, args = tiny_dit
    rng = np.random.default_rng(0)
    D = 48
    lora = {"blocks.1.ffn.0.lora_A.weight": rng.standard_normal((4, D)).astype(np.float32) * 0.1,
            "blocks.1.ffn.0.lora_B.weight": rng.standard_normal((weights["blocks.1.ffn.0.weight"].shape[0], 4))
            .astype(np.float32) * 0.1}
    a = LyraDiT(weights, num_heads=4, lora=[(lora, 1.0)])
    a.merge_lora()
    ref = a(**args)
    b = LyraDiT(weights, num_heads=4, lora=[(lora, 1.0)])
    b.set_streaming(0)
    b.merge_lora()
    np.testing.assert_array_equal(b(**args), ref)


def test_streaming_argument_errors(tiny_dit):
    weights, _ = tiny_dit
    model = LyraDiT(weights, num_heads=4)
    with pytest.raises(ValueError, match="resident_blocks"):
        model.set_streaming(3)
    with pytest.raises(ValueError, match="resident_blocks"):
        model.set_streaming(-1)
    with pytest.raises(TypeError, match="resident_blocks"):
        model.set_streaming(1.0)


# ---------------------------------------------------------------- max_gpu_memory on the API and CLI


def test_plan_of_a_custom_frame_size_and_its_errors():
    p = lyra2.memory_plan((32, 48), 81)
    assert p["resolution"] == (32, 48) and p["dit"]["tokens"] < 1000
    with pytest.raises(ValueError, match="multiples of 16"):
        lyra2.memory_plan((30, 48))
    with pytest.raises(TypeError, match="resolution"):
        lyra2.memory_plan((32.0, 48))


def test_log_run_plan_writes_the_plan_only_when_asked():
    from lyra2.memory import log_run_plan

    lines = []
    assert log_run_plan("480p", 81, None, "cpu", lines.append) is None and not lines
    plan = log_run_plan("480p", 161, 24, "cpu", lines.append)
    assert plan["num_frames"] == 161 and plan["streamed_blocks"] > 0
    text = "\n".join(lines)
    assert "budget 24 GB" in text and f"{plan['resident_blocks']} blocks resident" in text and "peak" in text
    assert log_run_plan("480p", 81, None, "cuda", lines.append)["resident_blocks"] == 40


def test_generate_refuses_a_budget_below_the_minimum_before_loading(tmp_path):
    import importlib

    from lyra2 import fields
    gen = importlib.import_module("lyra2.generate")
    from lyra2.progress import Progress

    args = fields.validate({"prompt": "a street", "seed": 0}, require_image=False)
    logs = []
    img = np.zeros((480, 832, 3), np.uint8)
    # no checkpoint is needed: the budget is checked before any weight is read
    with pytest.raises(ValueError, match=r"max_gpu_memory: 5 GB is below the minimum"):
        gen.run_generate(img, args, checkpoint_folder=str(tmp_path), device="cpu",
                         report=Progress(bar=False, on_log=logs.append), max_gpu_memory=5)
    with pytest.raises(ValueError, match="max_gpu_memory"):
        lyra2.zoom(img, "a street", max_gpu_memory=-1, mode="preview", progress=False)
    with pytest.raises(TypeError, match="max_gpu_memory"):
        lyra2.generate(img, np.eye(4)[None].repeat(81, 0), np.eye(3), "x", checkpoint_dir=str(tmp_path),
                       max_gpu_memory="24", progress=False)


def test_cli_passes_max_gpu_memory(monkeypatch, capsys):
    from lyra2 import cli

    seen = {}

    def fake_zoom(image, **kw):   # the CLI's job is the flag -> keyword mapping; zoom() is tested above
        seen.update(kw)
        raise ValueError("max_gpu_memory: stop here")

    monkeypatch.setattr(lyra2, "zoom", fake_zoom)
    assert cli.main(["zoom", "in.png", "--prompt", "p", "-o", "o.mp4", "--max-gpu-memory", "24"]) == 2
    assert seen["max_gpu_memory"] == 24.0
    assert "max_gpu_memory" in capsys.readouterr().err


def test_generate_with_every_dit_block_streamed_gives_the_same_frames(tmp_path, monkeypatch):
    """A tiny generate run (DMD, one chunk) with both DiT blocks streamed equals the resident run bit for bit.
    The released plan's block counts apply only to a 40-block DiT, so the test forces streaming of the tiny one
    through the same hook the run uses."""
    import importlib

    from lyra2 import fields, memory
    from lyra2.progress import Progress
    gen = importlib.import_module("lyra2.generate")

    monkeypatch.setenv("LYRA2_NUM_THREADS", "1")
    ckpt = lyra2.testing.make_tiny_checkpoint(str(tmp_path / "tiny"), seed=0)
    H, W = 32, 48
    y, x = np.mgrid[0:H, 0:W]
    img = (np.stack([x * 5, y * 7, (x + y) * 3], -1) % 256).astype(np.uint8)
    depth = np.broadcast_to(2.0 + 0.05 * np.arange(H, dtype=np.float32)[:, None], (H, W)).copy()
    args = fields.validate({"prompt": "a quiet street", "seed": 0}, require_image=False)
    args["resolution"] = (H, W)

    def run(logs):
        return gen.run_generate(img, args, checkpoint_folder=ckpt, device="cpu",
                                report=Progress(bar=False, on_log=logs.append), depth=depth, max_gpu_memory=40)

    logs = []
    ref = run(logs)
    messages = [e["message"] for e in logs]
    assert any("memory plan" in m and "budget 40 GB" in m for m in messages)
    assert not any("has 2 blocks" in m for m in messages)  # at 40 GB nothing streams
    calls = []

    def stream_all(models, info, plan, log):
        calls.append(plan["resident_blocks"])
        _core.ar_models_dit_streaming(models, 0)
        return 0

    monkeypatch.setattr(memory, "apply_dit_streaming", stream_all)
    out = run([])
    assert calls and out.frames.shape == ref.frames.shape
    np.testing.assert_array_equal(out.frames, ref.frames)
    monkeypatch.undo()
    models, info = gen.load_models(ckpt)
    lines = []
    plan = lyra2.memory_plan((H, W), 81, "bf16", 12.5)   # streams most of the released DiT's blocks
    assert plan["streamed_blocks"] > 0
    assert memory.apply_dit_streaming(models, info, plan, lines.append) == 2 and "has 2 blocks" in lines[0]


def test_streaming_on_the_emulated_device(tiny_dit, monkeypatch):
    """On the emulated CUDA device (separate pool, counted copies): a DiT placed with its last block streamed
    from host memory gives the resident output bit for bit; the pool holds the resident weights plus two block
    buffers, and a forward adds exactly the measured arena and its inputs/output (pool blocks are 256-aligned)."""
    monkeypatch.setenv("LYRA2_EMULATED_CUDA", "1")
    from lyra2 import testing

    weights, args = tiny_dit
    io = sum(v.astype(np.float32).nbytes for k, v in args.items() if k != "timesteps_B_T") + \
        4 * 16 * 20 * np.prod(args["x_B_C_T_H_W"].shape[-2:])
    runs = {}
    for resident in (None, 1):
        testing.emulated_cuda_reset()
        base = testing.emulated_cuda_stats()["live_bytes"]
        model = LyraDiT(weights, num_heads=4, device="cuda", resident_blocks=resident)
        placed = testing.emulated_cuda_stats()["live_bytes"] - base
        out = model(**args)
        st = testing.emulated_cuda_stats()
        c = _core.dit_config(model._model)
        assert st["refused"] == 0 and c["arena_peak"] == c["arena_need"]
        runs[resident] = (out, placed, st["peak_bytes"] - base - placed, c["arena_need"], model.streaming_stats())
        del model
    ref, placed_all, fwd_all, need, _ = runs[None]
    out, placed_stream, fwd_stream, need_s, stats = runs[1]
    np.testing.assert_array_equal(out, ref)
    span = stats["buffer_bytes"] // 2
    assert stats["uploads"] == 1 and stats["upload_bytes"] == span
    # one block left the device, two buffers joined it
    assert abs(placed_stream - (placed_all - span + 2 * span)) <= 3 * 256
    # a forward: the measured arena + the call's inputs and output, nothing else
    assert need_s == need and abs(fwd_stream - (need + io)) <= 8 * 256 and abs(fwd_all - (need + io)) <= 8 * 256


def test_streaming_is_decided_before_placement(tiny_dit, monkeypatch):
    monkeypatch.setenv("LYRA2_EMULATED_CUDA", "1")
    weights, _ = tiny_dit
    model = LyraDiT(weights, num_heads=4, device="cuda")
    with pytest.raises(lyra2.Lyra2Error, match="before the model is placed"):
        model.set_streaming(0)


def test_measuring_backend_sets_every_op_of_the_table():
    """A backend op added to csrc/nn/backend.h must be given to the measuring backend too (a NULL entry would be
    called by the op wrappers during a measured forward): read from the sources."""
    import os
    import re

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc", "nn")
    with open(os.path.join(root, "backend.h"), encoding="utf-8") as f:
        table = f.read().split("typedef struct lyra_backend_ops {")[1].split("} lyra_backend_ops;")[0]
    ops = set(re.findall(r"\(\*(\w+)\)\(", table))
    with open(os.path.join(root, "measure", "measure_backend.c"), encoding="utf-8") as f:
        given = set(re.findall(r"^\s+\.(\w+) = ", f.read(), re.M))
    assert len(ops) > 30 and ops - given == set()


def test_umt5_arena_is_measured_and_the_cost_model_bounds_it():
    """The umT5 encode sizes its arena by measuring itself on these inputs: the real high-water mark is the
    measured size, and the no-weights cost model (umt5_plan) is an upper bound of it."""
    from lyra2.models.umt5 import UMT5Encoder

    enc = UMT5Encoder(dict(np.load(f"{DATA}/umt5_tiny_weights.npz")))
    cfg = enc.config
    rng = np.random.default_rng(0)
    B, L = 2, 24
    ids = rng.integers(0, cfg["vocab"], (B, L))
    enc.encode_raw(ids, np.ones((B, L), np.uint8))
    cap, peak = _core.umt5_arena(enc._net)
    assert 0 < peak <= cap < peak + 64          # the arena is exactly the measured peak (64-byte rounding)
    bound = _core.umt5_plan(cfg, B, L)["arena_bytes"]
    assert peak <= bound
    print(f"umT5 tiny B={B} L={L}: measured arena {peak} bytes, cost model {bound} bytes")


def test_clip_arena_is_measured_and_the_cost_model_bounds_it():
    """CLIP sizes its arena by measuring its encode: the real high-water mark is the measured size, and the
    no-weights cost model (clip_plan) is an upper bound of it."""
    from lyra2.models.clip import CLIPVision

    clip = CLIPVision(dict(np.load(f"{DATA}/clip_tiny_weights.npz")), num_heads=4)
    img = np.random.default_rng(0).uniform(-1, 1, (2, 3, 40, 52)).astype(np.float32)
    clip(img)
    cap, peak = _core.clip_arena(clip._net)
    assert 0 < peak <= cap < peak + 64
    bound = _core.clip_plan(clip.config, 2)["arena_bytes"]
    assert peak <= bound
    print(f"CLIP tiny B=2: measured arena {peak} bytes, cost model {bound} bytes")


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_da3_arena_is_measured_and_the_cost_model_bounds_it(device, monkeypatch):
    """DA3's forward measured on the measuring backend (lyra_da3_arena_measure) against the cost model the forward
    reserves and the memory plan counts (lyra_da3_arena_bytes): the model bounds the measurement, for one view
    without poses and the depth window's 10 views with poses, on the CPU (f32) and on the emulated device (bf16
    autocast). Measured on the golden tiny model at 28 x 42: 405 856 vs 465 984 bytes (1 view), 447 328 vs
    606 848 bytes (10 views): the cost model reserves 15 % and 36 % more than the forward uses."""
    from lyra2.models.depth import DepthAnything3

    if device == "cuda":
        monkeypatch.setenv("LYRA2_EMULATED_CUDA", "1")
    weights = {"model." + k: v for k, v in np.load(f"{DATA}/da3_tiny_weights.npz").items()}
    d = DepthAnything3(weights, device=device, metric_heads=3, cam_enc_heads=2, taps=(3, 5, 7, 9),
                       metric_taps=(1, 2, 4, 5))
    for views, poses in ((1, False), (10, True)):
        measured, model = _core.da3_arena(d._net, views, 28, 42, poses)
        assert 0 < measured <= model
        print(f"DA3 tiny {device} {views} view(s): measured arena {measured} bytes, cost model {model} bytes")


def test_device_memory_keeps_the_cuda_context_reserve_on_a_real_gpu(monkeypatch):
    """The plan's device memory is the card's total less CUDA_CONTEXT_RESERVE on a real GPU (the context and the
    cuBLAS workspaces are not lyra2's pool), the whole pool on the emulated device, None without a device."""
    from lyra2 import memory

    def fake(cuda, emulated, total):
        return lambda: {"cuda": cuda, "emulated": emulated, "devices": [{"memory_bytes": total}] if cuda else []}

    monkeypatch.setattr(lyra2, "backends", fake(True, False, 80 * GB))
    assert memory.device_memory_bytes() == 80 * GB - memory.CUDA_CONTEXT_RESERVE
    monkeypatch.setattr(lyra2, "backends", fake(True, True, 80 * GB))
    assert memory.device_memory_bytes() == 80 * GB
    monkeypatch.setattr(lyra2, "backends", fake(False, False, 0))
    assert memory.device_memory_bytes() is None
