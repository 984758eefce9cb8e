"""Generate mode with every network on the device, checked on the emulated CUDA device (LYRA2_EMULATED_CUDA=1: the
CPU kernels behind a separate memory pool that refuses host pointers, counts transfers and stores activations in
the dtypes the CUDA backend keeps) against the CPU run of the same tiny random checkpoint (lyra2.testing, 32x48).

Two precisions, two claims:
* f32 on the device (generate.DIT_DEVICE_PRECISION = "f32") is the CPU computation moved: the frames agree to the
  float rounding of a different summation order (measured: max 1 level of 255), so placement, uploads and the
  device-resident conditioning carry no error of their own.
* upstream's GPU precision (generate.DIT_DEVICE_PRECISION = "bf16", docs/PRECISION.md: the DiT's bf16 policy, the
  Wan VAE and umT5 in bf16, CLIP in f16) rounds activations to 8 (bf16) or 11 (f16) mantissa bits, a relative 2^-9
  per rounding. Measured here with the DiT alone in bf16: max 3, mean 0.18 levels (81 frames, DMD); with every
  network in its policy: max 16, mean 0.66 (81 and 161 frames, DMD) — the bf16 VAE decoder of this random tiny
  checkpoint amplifies its roundings into a few isolated pixels. UniPC with CFG at guidance g evaluates
  u + g·(c − u): the two calls' rounding errors enter with weights g + 1 and g, so the mean grows with g: measured
  max 17, mean 1.21 at g = 5 (161 frames, 2 steps). Since the device placement folds the LoRAs into the DiT's bf16
  weights (docs/PRECISION.md, LoRA fold): DMD max 13 / 15, mean 0.67 / 0.69 (81 / 161 frames); CFG 5 max 15, mean 1.10.
  Bounds: DMD max <= 32, mean <= 1.5; CFG 5 max <= 40, mean <= 2.5 (about twice the measured values; a misplaced
  or stale tensor reads the pool's NaN poison or wrong data and moves frames by tens of levels on average).
"""
import collections
import os

import numpy as np
import pytest

import lyra2
import importlib

from lyra2 import fields, testing
from lyra2.geometry import trajectory
from lyra2.progress import Progress

from tiny_generate import H, W, ckpt, depth, image  # noqa: F401 (fixtures)

gen = importlib.import_module("lyra2.generate")


@pytest.fixture
def emulated(monkeypatch):
    monkeypatch.setenv("LYRA2_EMULATED_CUDA", "1")
    # a card larger than the run's plan (the released sizes at this frame size), not this box's memory: the runs keep
    # the VAE caches on the device and the placed networks beside a new caption's umT5, the same on every machine
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", "1000G")
    yield
    gen.release_models()  # the placed models hold pool memory


def run(ckpt, image, depth, device, logs=None, **kw):
    args = fields.validate({"prompt": "a quiet street", "seed": 0, **kw}, require_image=False)
    args["resolution"] = (H, W)
    report = Progress(bar=False, on_log=None if logs is None else logs.append)
    return gen.run_generate(image, args, checkpoint_folder=ckpt, device=device, report=report, depth=depth)


CASES = {"dmd-81": dict(num_frames=81), "dmd-161": dict(num_frames=161),
         "unipc-cfg-161": dict(num_frames=161, use_dmd=False, num_inference_steps=2, guidance_scale=5.0)}
BF16_BOUND = {"dmd-81": (32, 1.5), "dmd-161": (32, 1.5), "unipc-cfg-161": (40, 2.5)}  # (max, mean) levels


@pytest.fixture(scope="module")
def cpu_runs(ckpt, image, depth):
    return {k: run(ckpt, image, depth, "cpu", **kw) for k, kw in CASES.items()}


def level_diff(a, b):
    assert a.shape == b.shape
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(d.max()), float(d.mean())


def test_f32_on_the_device_is_the_cpu_run(ckpt, image, depth, cpu_runs, emulated, monkeypatch):
    monkeypatch.setattr(gen, "DIT_DEVICE_PRECISION", "f32")
    logs = []
    v = run(ckpt, image, depth, "cuda", logs, **CASES["unipc-cfg-161"])
    assert any("networks on the cuda-emulated backend" in e["message"] for e in logs)
    assert any("1 new caption(s) through umT5 on the device (loaded for them, then freed)" in e["message"] for e in logs)
    mx, mean = level_diff(v.frames, cpu_runs["unipc-cfg-161"].frames)
    assert mx <= 1 and mean <= 0.01, (mx, mean)
    assert testing.emulated_cuda_stats()["refused"] == 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_bf16_policy_within_its_tolerance(ckpt, image, depth, cpu_runs, emulated, case):
    v = run(ckpt, image, depth, "cuda", **CASES[case])
    ref = cpu_runs[case]
    mx, mean = level_diff(v.frames, ref.frames)
    print(f"{case}: bf16 device vs CPU max {mx} mean {mean:.3f} levels")
    assert mx <= BF16_BOUND[case][0] and mean <= BF16_BOUND[case][1], (case, mx, mean)
    np.testing.assert_array_equal(v.frames[0], ref.frames[0])  # the anchor frame is the input itself
    st = v.stage_timings["in"]
    assert st["dit_calls"] == ref.stage_timings["in"]["dit_calls"]
    assert st["cache_frames"] == ref.stage_timings["in"]["cache_frames"]


# What crosses between host and device in a run once the models are placed (names as the driver and the networks
# give them to the emulated device's transfer log), per run, per chunk or per DiT call. Everything else that goes
# up is a weight upload, which happens at placement only. The chunk inputs (x, y, the correspondence buffer), the
# history latents, the VAE's inputs and outputs and the kept frames are built and stay on the device; the host sees
# the input image, the cameras, the uint8 frames, the sampler's noise and what the depth callback exchanges. The sampler
# runs on the DiT's backend (its state x, the velocities and UniPC's history stay there) and the decoder reads the
# generated latents from x there, so no latent crosses per network call or per decoded latent.
PER_CALL = {("upload", "time sinusoid")}   # the DiT's host-built time features (1 KB)
# Per chunk: the RoPE table (10 MB at 480p), rebuilt in the DiT's arena once per chunk: the driver gives that arena
# back after the chunk's sampling, so the VAE decode and the depth window do not sit beside it (lyra2.memory_plan);
# the initial noise of the generated frames, C·G·h·w f32, drawn on the host from the seedable numpy-legacy stream
# (sample/rng.h, sample/dmd.h).
PER_CHUNK = {("upload", "rope angles"), ("upload", "initial noise")}
# Per DMD re-noise step (3 per chunk): the generated frames' part of that step's ε block, C·G·h·w f32, the same stream.
PER_RENOISE = {("upload", "re-noise")}
PER_LATENT = {("download", "video frames")}   # the output: 4 uint8 frames per latent (+ frame 0 once per run)
PER_RUN = {("upload", "text embeddings"),  # the captions' (cached after the first run with them: no umT5 at all)
           ("upload", "input image"), ("upload", "first-frame depth"), ("upload", "canonical coordinates"),
           ("upload", "Wan VAE latent mean"), ("upload", "Wan VAE latent scale"),
           ("upload", "Wan VAE latent mean (decoder)"),
           ("upload", "spatial-memory depth")}   # frame 0's (the first-frame depth); the window's stay on the device
# Per depth-window update: DA3 reads the window where the frames are (its pixels built there from the uint8 frames,
# pipeline/depth_window.c), merges its heads' maps there (op da3_merge: only its four scalars come down, "DA3 merge
# scalars") and divides and resizes the depth there (op depth_resize); the buffer depth and the new spatial-memory
# depths are device copies of it. What comes down: the window's views and their depths once for the Python API's point cloud
# (recorded views), and for each frame added to the spatial memory its depth[::4, ::4] (the retrieval's points).
PER_UPDATE = {("download", "depth window views"), ("download", "depth window view depths"),
              ("download", "spatial-memory points' depth")}
# Only when the run's memory plan parks them (vae_parked): the VAE streams' causal caches wait in host memory outside
# their own phase (down when parked, up at the stream's next push).
VAE_CACHE = {("upload", "Wan VAE cache"), ("download", "Wan VAE cache")}
# A run with a caption not seen before loads umT5 onto the device for it and frees it before the chunks.
NEW_CAPTION = {("upload", "umT5 encoder weights"), ("upload", "umT5 ids"), ("upload", "umT5 mask"),
               ("upload", "umT5 buckets"), ("download", "caption embedding")}
# Gone since the chunk inputs are assembled on the device (issue 14): what used to cross per chunk (the re-encode
# reads the chunk's decoded frames from the VAE's memory, in its bf16).
# Gone since the depth window runs DA3 where the frames are: the frames one by one for a host callback and DA3's pixels
# uploaded by its Python class.
# Gone since DA3's nested merge and the depth's resize run on the device: the heads' maps down, the buffer depth and the
# spatial-memory depths of the window up.
NEVER = {("upload", "condition y"), ("upload", "correspondence buffer"), ("upload", "clip frame"),
         ("upload", "Wan VAE video"), ("download", "Wan VAE mu"), ("download", "decoded frames"),
         ("download", "Wan VAE frames"), ("download", "depth window frames"), ("upload", "DA3 pixels"),
         ("download", "DA3 head maps"), ("upload", "buffer depth"),
         # gone since the sampler runs on the device: the per-call latent up and velocity down, the sampler's host
         # copy of the assembled latent, the decoder's latent uploads and the priming latents' download
         ("upload", "latent x"), ("download", "velocity"), ("download", "chunk latent x"),
         ("upload", "Wan VAE latents"), ("download", "priming latents")}


@pytest.mark.parametrize("parked", [False, True], ids=["caches-kept", "caches-parked"])
def test_transfers_of_a_run(ckpt, image, depth, emulated, monkeypatch, parked):
    """Kept: a 1000 GB card. Parked: a card one byte short of the run's unparked plan (the released sizes at this
    frame size), which the parked plan fits."""
    if parked:
        kept = lyra2.memory_plan((H, W), 161)
        monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", str(kept["peak_bytes"] - 1))
        assert lyra2.memory_plan((H, W), 161, device_memory=kept["peak_bytes"] - 1)["vae_parked"]
    gen.release_models()
    run(ckpt, image, depth, "cuda", num_frames=161)       # loads and places the models
    testing.emulated_cuda_reset()
    logs = []
    v = run(ckpt, image, depth, "cuda", logs, num_frames=161)   # cached: no weight moves again
    assert any("every caption embedded before (cached), umT5 not loaded" in e["message"] for e in logs)
    stats = testing.emulated_cuda_stats()
    assert stats["refused"] == 0
    log = testing.emulated_cuda_transfers()
    count = collections.Counter((d, name) for d, _, name in log)
    calls, chunks, G = v.stage_timings["in"]["dit_calls"], 2, info_new_latents(ckpt)
    assert calls == 8
    for k in PER_CALL:
        assert count[k] == calls, (k, count[k])
    for k in PER_CHUNK:
        assert count[k] == chunks, (k, count[k])
    for k in PER_RENOISE:   # DMD: 4 calls per chunk, a re-noise between each two
        assert count[k] == calls - chunks, (k, count[k])
    assert count[("download", "video frames")] == 1 + chunks * G
    for k in PER_RUN:
        assert count[k] == 1, (k, count[k])
    # one depth-window update (after chunk 1 of 2): the window of 10 frames (8, 16, .., 80) down once as the recorded
    # views with their depths; the buffer depth and the 10 new spatial-memory depths stay on the device (only frame 0's
    # goes up, at the start), each new entry's depth[::4, ::4] comes down; nothing of DA3's goes up
    cached = v.stage_timings["in"]["cache_frames"]
    assert cached == 11
    assert count[("download", "depth window views")] == chunks - 1
    assert sizes_of(log, "download", "depth window views") == [10 * H * W * 3]
    assert sizes_of(log, "download", "depth window view depths") == [10 * H * W * 4]
    assert sizes_of(log, "download", "spatial-memory points' depth") == [4 * -(-H // 4) * -(-W // 4)] * (cached - 1)
    assert count[("upload", "spatial-memory depth")] == 1
    # DA3's pixels are built on the device; what DA3's forward itself still uploads is its host-built position tables
    # (the heads' UV embeddings, the pose encoding), nothing of the frames; what comes down is the pose (CameraDec's
    # 9 numbers per view) and the merge's 4 scalars, never its maps
    assert {k for k in count if k[0] == "upload" and k[1].startswith("DA3")} <= {("upload", "DA3 UV embedding"),
                                                                                ("upload", "DA3 pose encoding")}
    da3_down = {k: sum(b for d, b, n in log if (d, n) == k) for k in count if k[0] == "download" and "DA3" in k[1]}
    assert sum(da3_down.values()) <= (chunks - 1) * (10 * 9 + 4) * 4, da3_down
    assert sizes_of(log, "download", "DA3 merge scalars") == [16] * (chunks - 1)
    for k in NEVER:
        assert count[k] == 0, (k, count[k])
    # parked: each stream's caches are parked once per chunk and once after the priming, and come back once per
    # chunk: the bytes of the two streams' caches (lyra2.memory's dry walk of the VAE, in bf16); kept: none move
    vplan = lyra2.models.vae.memory_plan(dim=gen.load_models(ckpt, "cuda")[1]["vae_dim"], height=H, width=W,
                                         frames=81, precision="bf16")
    caches = vplan["encode_stream"]["cache_bytes"] + vplan["decode_stream"]["cache_bytes"]
    down = sum(b for d, b, name in log if (d, name) == ("download", "Wan VAE cache"))
    up = sum(b for d, b, name in log if (d, name) == ("upload", "Wan VAE cache"))
    assert (down, up) == (((chunks + 1) * caches, chunks * caches) if parked else (0, 0)), (down, up, caches)
    assert not [k for k in count if "weights" in k[1] or "LoRA" in k[1] or "negative" in k[1]], count
    unexplained = {k for k in count if k not in PER_CALL | PER_CHUNK | PER_RENOISE | PER_LATENT | PER_RUN | PER_UPDATE
                   | (VAE_CACHE if parked else set()) and not k[1].startswith("DA3") and not k[1].startswith("ViT")}
    assert not unexplained, unexplained
    # only uint8 frames come down: 3 bytes per pixel
    assert sum(b for d, b, n in log if n == "video frames") == (1 + 4 * chunks * G) * H * W * 3
    # the noise is the generated frames' only: (C, G, h, w) f32 per upload, the initial block and each re-noise
    gen_bytes = 4 * 16 * G * (H // 8) * (W // 8)
    assert sum(b for d, b, n in log if n == "initial noise") == chunks * gen_bytes
    assert sum(b for d, b, n in log if n == "re-noise") == (calls - chunks) * gen_bytes
    if parked:   # the card also refuses a new caption's umT5 beside the placed networks (test_memory_whole_run)
        return
    # a new caption: umT5 on the device for it beside the placed networks (they fit this card), then freed (the
    # pool's live bytes return to where they were)
    live = testing.emulated_cuda_stats()["live_bytes"]
    testing.emulated_cuda_reset()
    logs = []
    run(ckpt, image, depth, "cuda", logs, num_frames=81, prompt="a new caption")
    new = collections.Counter((d, name) for d, _, name in testing.emulated_cuda_transfers())
    for k in NEW_CAPTION:
        assert new[k] == 1, (k, new[k])
    assert any("1 new caption(s) through umT5 on the device" in e["message"] for e in logs)
    assert testing.emulated_cuda_stats()["live_bytes"] == live


def sizes_of(log, direction, name):
    return [b for d, b, n in log if (d, n) == (direction, name)]


def info_new_latents(ckpt):
    return gen.load_models(ckpt, "cuda")[1]["new_latents"]


def test_out_of_device_memory_is_a_lyra2error_and_writes_nothing(ckpt, image, depth, emulated, monkeypatch, tmp_path):
    gen.release_models()
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", "4M")  # less than the tiny DiT's weights
    out = tmp_path / "v.mp4"
    w2c, K = trajectory("horizontal_zoom", 81, 0.5, depth)
    with pytest.raises(lyra2.Lyra2Error, match="bytes"):
        lyra2.generate(image, w2c, K, "a", checkpoint_dir=ckpt, device="cuda", depth=depth, progress=False,
                       output_path=str(out))
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_failed_chunk_writes_no_video(ckpt, image, depth, emulated, monkeypatch, tmp_path):
    """A failure in chunk 2 (here the depth-window update after chunk 1 raising) ends the run with that error and
    no output file, as on the CPU."""
    class Boom(Exception):
        pass

    def failing(da3):
        def depth_window(images, w2c, K):
            raise Boom("depth window")
        return depth_window

    monkeypatch.setattr(gen, "_depth_window_fn", failing)
    out = tmp_path / "v.mp4"
    w2c, K = trajectory("horizontal_zoom", 161, 0.5, depth)
    with pytest.raises(Boom):
        lyra2.generate(image, w2c, K, "a", checkpoint_dir=ckpt, device="cuda", depth=depth, progress=False,
                       output_path=str(out))
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_depth_model_off_the_frames_device_is_refused(ckpt, image, depth, emulated, monkeypatch, tmp_path):
    """DA3 reads the window where the frames are: a DA3 placed on the CPU for a run on the device is an error naming
    both devices, and no video is written."""
    from lyra2.checkpoint import FILES
    from lyra2.models.depth import DepthAnything3, DepthWindow

    cpu_da3 = DepthAnything3(os.path.join(ckpt, FILES["da3"]), device="cpu")
    monkeypatch.setattr(gen, "_depth_window_fn", lambda da3: DepthWindow(cpu_da3))
    out = tmp_path / "v.mp4"
    w2c, K = trajectory("horizontal_zoom", 161, 0.5, depth)
    with pytest.raises(ValueError, match="DA3 is on the CPU but the frames are on the GPU"):
        lyra2.generate(image, w2c, K, "a", checkpoint_dir=ckpt, device="cuda", depth=depth, progress=False,
                       output_path=str(out))
    assert not out.exists()


@pytest.mark.cuda
def test_generate_on_the_gpu_matches_the_cpu(ckpt, image, depth, cpu_runs):
    """On a real GPU (benchmarks/device_check.sh): the same bf16 tolerance as on the emulated device."""
    b = lyra2.backends()
    if b["emulated"] or b["cuda_emulation_build"]:
        pytest.skip("a real GPU run (the emulated device is covered above; the kernel-emulation build runs the "
                    "kernels one thread at a time, too slow for whole runs)")
    for case, kw in CASES.items():
        v = run(ckpt, image, depth, "cuda", **kw)
        mx, mean = level_diff(v.frames, cpu_runs[case].frames)
        assert mx <= BF16_BOUND[case][0] and mean <= BF16_BOUND[case][1], (case, mx, mean)
    gen.release_models()


def test_da3_follows_the_plan_under_a_budget(ckpt, image, depth, emulated):
    """With a max_gpu_memory whose plan does not keep DA3 resident (lyra2.memory_plan(...)["da3_resident"] False,
    here 11.65 GB at this frame size: the chunk stages then have DA3's 3.7 GB back), DA3 is loaded for the depth
    call and freed after it, in every run; without a budget it stays resident (cached) between runs."""
    budget = 11.65
    assert not lyra2.memory_plan((H, W), 161, "bf16", budget)["da3_resident"]
    for _ in range(2):
        testing.emulated_cuda_reset()
        logs = []
        args = fields.validate({"prompt": "a quiet street", "seed": 0, "num_frames": 161}, require_image=False)
        args["resolution"] = (H, W)
        gen.run_generate(image, args, checkpoint_folder=ckpt, device="cuda", depth=depth, max_gpu_memory=budget,
                         report=Progress(bar=False, on_log=logs.append))
        assert any("DA3 is loaded for each depth call" in e["message"] for e in logs)
        ups = [n for d, _, n in testing.emulated_cuda_transfers() if d == "upload"]
        assert ups.count("Depth Anything 3 weights") == 1   # 161 frames: one depth-window update
        assert not gen._da3_cache


def test_device_placement_folds_the_loras_once_per_use_dmd(ckpt, image, depth, emulated):
    """Issue 14's "fixed DMD LoRA merged once": the bf16 placement folds the run's LoRAs (the two style ones, and the
    DMD one with use_dmd) into the DiT's weights on the device as it places them (lyra_ar_models_place ->
    lyra_dit_place, models/dit_lora_fold.c): each folded Linear's packed factors go up once, f32, and are freed, no
    adapter block is uploaded, and the placed DiT holds its weights' bytes only (lyra2.memory plans no adapters;
    tests/test_lora_fold.py checks the fold's values). The placed models then serve that
    use_dmd only: lyra2.generate caches them per use_dmd, and the driver refuses a run of the other. That each fold
    holds the right adapters is test_bf16_policy_within_its_tolerance (DMD and UniPC runs against the CPU's
    unfolded adapters) and tests/test_lora.py's drift test."""
    from lyra2 import _core

    gen.release_models()
    testing.emulated_cuda_reset()
    logs = []
    run(ckpt, image, depth, "cuda", logs, num_frames=81)              # DMD: loads, places, folds
    lora_ups = [(b, n) for d, b, n in testing.emulated_cuda_transfers() if "LoRA" in n]
    assert {n for _, n in lora_ups} <= {"LoRA fold: A", "LoRA fold: B", "LoRA fold: diff_b"}  # no adapter block
    # the factors of the three adapters, f32, each once (packed per Linear: B (out, Σr), A (Σr, in))
    assert sum(b for b, n in lora_ups if n != "LoRA fold: diff_b") == \
        factor_bytes(ckpt, ("lora_realism", "lora_detail", "lora_dmd"))
    testing.emulated_cuda_reset()
    run(ckpt, image, depth, "cuda", logs, num_frames=81)              # the placed models: nothing folded again
    assert not [n for _, _, n in testing.emulated_cuda_transfers() if "LoRA" in n]
    assert any("LoRAs: realism_boost 0.4, detail_enhancer 0.4, dmd_distillation 1" in e["message"] for e in logs)
    models, info = gen.load_models(ckpt, "cuda")                       # the cached, placed models
    assert info["device"] == "cuda-emulated" and info["loras_folded"] and info["adapter_bytes"] == 0
    assert info["has_dmd"] and [(n, round(w, 6)) for n, w in info["style_loras"]] == [("realism_boost", 0.4),
                                                                                      ("detail_enhancer", 0.4)]
    # the driver refuses the other use_dmd on these models
    n = 81
    x = np.zeros((3, H, W), np.float32)
    w2c, K = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)), np.tile(np.eye(3, dtype=np.float32), (n, 1, 1))
    with pytest.raises(ValueError, match="folded into its weights for use_dmd=True"):
        _core.ar_generate(models, x, depth.astype(np.float32), w2c, K, ["a quiet street"], False, 5.0, 1, 5.0, 0,
                          "generate", None, None, None, False, "cuda", "bf16", False)
    # lyra2.generate loads them again for a UniPC run, folded without the DMD LoRA (the DMD models given back)
    logs = []
    run(ckpt, image, depth, "cuda", logs, num_frames=81, use_dmd=False, num_inference_steps=1)
    assert any("folded into the DiT's weights; loading them again for use_dmd=False" in e["message"] for e in logs)
    other, info = gen.load_models(ckpt, "cuda", use_dmd=False)
    assert other is not models and info["loras_folded"] and not info["has_dmd"] and info["adapter_bytes"] == 0


def factor_bytes(folder, components):
    """f32 bytes of the lora_A/lora_B (lora_down/lora_up) factors of the folder's LoRA files `components`."""
    from lyra2 import io as lio
    from lyra2.checkpoint import FILES

    total = 0
    for c in components:
        for k, v in lio.load_safetensors(os.path.join(folder, FILES[c])).items():
            if k.endswith((".lora_A.weight", ".lora_B.weight", ".lora_down.weight", ".lora_up.weight")):
                total += 4 * v.size
    return total


def test_a_lora_that_cannot_be_folded_is_a_clear_error(ckpt, image, depth, emulated, tmp_path):
    """A .diff_b on a Linear without a bias (the camera encoder here; no Wan LoRA targets Lyra's encoders) has no
    bias to fold into: the device run fails at placement naming the Linear and the way out (the CPU evaluates the
    adapters unfolded), and writes nothing to the device's weights."""
    import shutil

    from lyra2 import io as lio
    from lyra2.checkpoint import FILES

    folder = str(tmp_path / "ckpt")
    shutil.copytree(ckpt, folder)
    dit = lio.load_safetensors(os.path.join(folder, FILES["dit"]))
    out, inp = dit["blocks.0.cam_encoder.weight"].shape
    rng = np.random.default_rng(0)
    lio.save_safetensors({"diffusion_model.blocks.0.cam_encoder.lora_down.weight": rng.standard_normal((2, inp)),
                          "diffusion_model.blocks.0.cam_encoder.lora_up.weight": rng.standard_normal((out, 2)),
                          "diffusion_model.blocks.0.cam_encoder.diff_b": rng.standard_normal(out)},
                         os.path.join(folder, FILES["lora_detail"]), dtype="bf16")
    gen.release_models()
    with pytest.raises(lyra2.Lyra2Error, match=r"blocks\.0\.cam_encoder\.weight.*no bias.*device='cpu'"):
        run(folder, image, depth, "cuda", num_frames=81)
    gen.release_models()
