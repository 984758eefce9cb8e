"""Generate mode end to end on a tiny random checkpoint (lyra2.testing), 32x48 pixels, 81 frames = 1 chunk of the
real FramePack layout (161 = 2 chunks for the multi-chunk paths). The networks are random, so these tests check
the pipeline's plumbing (shapes, determinism, directions, chunking, captions, the depth hook, DA3 + MoGe depth,
style LoRAs, devices, interruption), not image quality; the chunk inputs have their own golden test
(test_pipeline_prep.py)."""
import os
import _thread

import numpy as np
import pytest

import lyra2
import importlib

from lyra2 import _core, fields, testing

from tiny_generate import H, W, ckpt, depth, image, zoom_args  # noqa: F401 (fixtures)

gen = importlib.import_module("lyra2.generate")  # the module; lyra2.generate itself is the generate() function
from lyra2.geometry import trajectory
from lyra2.progress import Progress


def run(ckpt, image, depth, logs=None, device="auto", **kw):
    report = Progress(bar=False, on_log=None if logs is None else logs.append)
    return gen.run_generate(image, zoom_args(**kw), checkpoint_folder=ckpt, device=device, report=report, depth=depth)


@pytest.fixture(scope="module")
def zoom_in(ckpt, image, depth):
    return run(ckpt, image, depth)


@pytest.fixture(scope="module")
def zoom_both(ckpt, image, depth):
    return run(ckpt, image, depth, zoom_direction="both")


def test_tiny_checkpoint_files_and_reproducible(tmp_path, ckpt):
    from lyra2.checkpoint import FILES, missing_for_generate
    assert missing_for_generate(ckpt) == []
    again = testing.make_tiny_checkpoint(str(tmp_path / "a"), seed=0)
    other = testing.make_tiny_checkpoint(str(tmp_path / "b"), seed=1)
    for name in ("dit", "vae", "tokenizer", "lora_dmd", "lora_realism", "lora_detail", "da3", "moge"):
        a = open(os.path.join(ckpt, FILES[name]), "rb").read()
        assert a == open(os.path.join(again, FILES[name]), "rb").read()
        if name != "tokenizer":
            assert a != open(os.path.join(other, FILES[name]), "rb").read()


def test_vae_names_match_golden_layout():
    # The generated VAE table equals the upstream parameter list of the golden tiny VAE (dim 8, z 16).
    z = np.load(os.path.join(os.path.dirname(__file__), "data", "vae_tiny_weights.npz"))
    mine = dict(testing.vae_tensor_shapes(8, 16))
    assert set(mine) == set(z.files)
    assert all(tuple(z[k].shape) == mine[k] for k in z.files)


@pytest.mark.parametrize("model, unused", [("da3", "_aux."), ("moge", "mask_token")])
def test_depth_model_names_match_golden_layout(model, unused):
    # The generated DA3 / MoGe tables equal the upstream parameter lists of the golden tiny models, less the
    # tensors Lyra never runs (DualDPT aux branch, DINOv2 mask token), which the loaders ignore.
    z = np.load(os.path.join(os.path.dirname(__file__), "data", f"{model}_tiny_weights.npz"))
    mine = dict(getattr(testing, f"{model}_tensor_shapes")(testing.TINY[model]))
    assert set(mine) <= set(z.files)
    assert all(unused in k for k in set(z.files) - set(mine))
    assert all(tuple(z[k].shape) == mine[k] for k in mine)


def test_depth_models_take_their_options_from_the_metadata(ckpt):
    from lyra2.checkpoint import FILES
    from lyra2.io import save_safetensors, load_safetensors
    from lyra2.models.depth import DepthAnything3
    from lyra2.models.moge import MoGe

    da3 = DepthAnything3(os.path.join(ckpt, FILES["da3"]))
    opt = testing.TINY["da3_options"]
    assert da3.config["metric"]["heads"] == opt["metric_heads"] and da3.config["cam_enc_heads"] == opt["cam_enc_heads"]
    assert list(da3.config["taps"]) == opt["taps"] and list(da3.config["metric_taps"]) == opt["metric_taps"]
    # keyword arguments win over the metadata
    assert DepthAnything3(os.path.join(ckpt, FILES["da3"]), metric_heads=1).config["metric"]["heads"] == 1
    moge = MoGe(os.path.join(ckpt, FILES["moge"]))
    assert moge.config["heads"] == 4
    assert (moge.config["tokens_min"], moge.config["tokens_max"]) == (30, 60)
    # an unknown key is an error naming the file
    w = load_safetensors(os.path.join(ckpt, FILES["moge"]))
    bad = os.path.join(os.path.dirname(ckpt), "bad_moge.safetensors")
    save_safetensors(w, bad, metadata={"lyra2_config": '{"heads": 4}'})
    with pytest.raises(lyra2.Lyra2Error, match="bad_moge.safetensors.*unknown keys \\['heads'\\]"):
        MoGe(bad)


def test_tokenizer_model_is_valid(tmp_path):
    from lyra2.models.tokenizer import Tokenizer
    data, n = testing.tiny_spm_model()
    p = tmp_path / "spiece.model"
    p.write_bytes(data)
    tok = Tokenizer(str(p))
    ids, mask = tok.encode("the camera, a street!")
    assert len(tok) == n + 300
    assert ids[int(mask.sum()) - 1] == 1 and mask.sum() > 3  # </s> after the tokens
    assert tok.id_to_piece(int(ids[0])) == "\u2581the"


def test_zoom_in_shapes(zoom_in, image):
    v = zoom_in
    assert v.mode == "generate" and v.depth_source == "user"
    assert v.frames.shape == (81, H, W, 3) and v.frames.dtype == np.uint8
    assert v.w2c.shape == (81, 4, 4) and v.intrinsics.shape == (81, 3, 3)
    np.testing.assert_array_equal(v.frames[0], image)
    assert set(v.timings) == {"encode_s", "zoom_in_s"}
    st = v.stage_timings["in"]
    assert st["dit_calls"] == 4  # DMD: one conditional call per step
    assert v.frames[1:].std() > 1.0  # generated frames are not constant


def test_both_directions_and_determinism(zoom_in, zoom_both, image):
    f = zoom_both.frames
    assert f.shape == (161, H, W, 3)  # reverse(out) ++ in, anchor once
    np.testing.assert_array_equal(f[80], image)
    # Same seed, same inputs: the zoom-in half equals the separate zoom-in run bit for bit.
    np.testing.assert_array_equal(f[80:], zoom_in.frames)
    assert not np.array_equal(f[:80][::-1], zoom_in.frames[1:])  # zoom-out moves elsewhere
    assert set(zoom_both.timings) == {"encode_s", "zoom_in_s", "zoom_out_s"}


def test_other_seed_differs(ckpt, image, depth, zoom_in):
    v = run(ckpt, image, depth, seed=1)
    assert not np.array_equal(v.frames[1:], zoom_in.frames[1:])


def test_unipc_cfg_path(ckpt, image, depth, zoom_in):
    v = run(ckpt, image, depth, use_dmd=False, num_inference_steps=2, guidance_scale=3.0)
    assert v.stage_timings["in"]["dit_calls"] == 4  # 2 steps x (cond + uncond)
    assert v.frames.shape == (81, H, W, 3)
    assert not np.array_equal(v.frames[1:], zoom_in.frames[1:])


def test_custom_trajectory_two_chunks_captions_and_depth_hook(ckpt, image, depth):
    # Two chunks through the C driver directly with a recording depth-window callback: called once (not after
    # the last chunk) with the 10 frames 8, 16, ..., 80 and their cameras (upstream AR:1059-1060, AR:1071-1393,
    # AR:261-366).
    models, info = gen.load_models(ckpt)
    w2c, K = trajectory("horizontal_zoom", 161, 0.5, depth)
    calls, logs = [], []

    def depth_window(images, cams, Ks):
        calls.append((images.copy(), cams.copy(), Ks.copy()))
        return np.full(images.shape[:3], 2.5, np.float32)

    x = image.transpose(2, 0, 1).astype(np.float32) / 255 * 2 - 1
    frames, warp, t = _core.ar_generate(models, x, depth, w2c, K, ["first caption", "second caption"], True, 5.0, 28,
                                        5.0, 0, "custom", depth_window, None, logs.append, True)
    assert frames.shape == warp.shape == (161, H, W, 3)
    assert len(calls) == 1
    images, cams, Ks = calls[0]
    assert images.shape == (10, H, W, 3)
    np.testing.assert_allclose(cams, w2c[8:81:8], atol=1e-6)
    np.testing.assert_array_equal(Ks, K[8:81:8])
    assert t["dit_calls"] == 8
    # Chunk 2 retrieves from a cache that now holds frames 8..80.
    assert any("chunk 2/2: " in m and "0 spatial" not in m for m in logs)


def test_generate_public_api(ckpt, image, depth, tmp_path):
    w2c, K = trajectory("orbit_horizontal", 81, 0.5, depth)
    out = tmp_path / "custom.mp4"
    v = lyra2.generate(image, w2c, K[0], {"0": "a street", "40": "unused within chunk 1"},
                                checkpoint_dir=ckpt, seed=3, depth=depth, output_path=str(out), progress=False)
    assert v.frames.shape == (81, H, W, 3) and v.mode == "generate"
    assert out.exists() and v.path == str(out)
    with pytest.raises(ValueError, match="1 \\+ 80k"):
        lyra2.generate(image, w2c[:40], K[:40], "x", checkpoint_dir=ckpt, depth=depth, progress=False)
    with pytest.raises(ValueError, match="one per chunk"):
        lyra2.generate(image, w2c, K, ["a", "b"], checkpoint_dir=ckpt, depth=depth, progress=False)
    with pytest.raises(ValueError, match="multiple of 16"):
        lyra2.generate(image[:30], w2c, K, "x", checkpoint_dir=ckpt, depth=depth[:30], progress=False)


def test_interrupt_leaves_no_file(ckpt, image, depth, tmp_path):
    out = tmp_path / "never.mp4"

    class Interrupting(Progress):
        def update(self, stage, done, total):
            if "denoise" in stage and done == 2:
                _thread.interrupt_main()  # what Ctrl-C does: a pending SIGINT, seen at the next check

    w2c, K = trajectory("horizontal_zoom", 81, 0.5, depth)
    import lyra2.progress as progress_mod
    orig = progress_mod.Progress
    progress_mod.Progress = Interrupting
    try:
        with pytest.raises(KeyboardInterrupt):
            lyra2.generate(image, w2c, K, "a", checkpoint_dir=ckpt, depth=depth, output_path=str(out),
                                    progress=False)
    finally:
        progress_mod.Progress = orig
    assert not out.exists()
    assert not list(tmp_path.iterdir())


def test_zoom_auto_mode_picks_generate_with_a_checkpoint(ckpt, image, depth, monkeypatch):
    """lyra2.zoom's mode="auto" runs generate mode when the converted folder is complete (via
    $LYRA2_CHECKPOINT_DIR here), and preview when it is not. The endpoint's 480p is far too slow for a tiny CPU
    test, so this goes through the validated-arguments entry that zoom() and subscribe() share."""
    from lyra2.api import _zoom_validated

    monkeypatch.setenv("LYRA2_CHECKPOINT_DIR", ckpt)
    video = _zoom_validated(image, zoom_args(seed=3), depth=depth, progress=False)
    assert video.mode == "generate" and video.frames.shape == (81, H, W, 3) and video.seed == 3
    ref = run(ckpt, image, depth, seed=3)
    np.testing.assert_array_equal(video.frames, ref.frames)
    with pytest.warns(UserWarning, match="PREVIEW"):
        preview = _zoom_validated(image, zoom_args(seed=3), depth=depth, progress=False,
                                  checkpoint_dir=os.path.dirname(ckpt))
    assert preview.mode == "preview"


def test_two_chunks_with_da3_and_moge(ckpt, image, monkeypatch):
    """No depth=: frame 0's depth is DA3 aligned to MoGe from the tiny folder, and the depth-window update between
    the two chunks (upstream AR:1059-1060, AR:1071-1393, AR:261-366) runs DA3 on frames 8, 16, ..., 80 with their
    cameras, filling the spatial memory."""
    from lyra2.checkpoint import FILES
    from lyra2.depth import estimate_depth
    from lyra2.models.depth import DepthAnything3

    calls = []
    real = gen._depth_window_fn

    def recording(da3):
        assert isinstance(da3, DepthAnything3)
        window = real(da3)   # DA3 on the window where the frames are (the driver's device form)

        def record(images, d, w2c, K):
            calls.append((images.copy(), w2c.copy(), K.copy(), d.copy()))
        window.record = record
        return window

    monkeypatch.setattr(gen, "_depth_window_fn", recording)
    logs = []
    v = run(ckpt, image, None, logs=logs, num_frames=161)
    assert v.depth_source == "model:da3+moge"
    assert any("Depth Anything 3 aligned to MoGe" in m["message"] for m in logs)
    assert v.frames.shape == (161, H, W, 3)
    # frame 0's depth is what estimate_depth gives for the input at the output size (same networks, same input)
    ref = estimate_depth(image, ckpt, size=(H, W))
    np.testing.assert_array_equal(v.depth, ref["depth"])
    assert ref["align"]["applied"] and np.all(v.depth > 0) and np.all(np.isfinite(v.depth))
    # one window update (none after the last chunk), 10 frames; its depth is DA3's, aligned to the given poses
    assert len(calls) == 1
    images, w2c, K, d = calls[0]
    assert images.shape == (10, H, W, 3) and d.shape == (10, H, W)
    np.testing.assert_allclose(w2c, v.w2c[8:81:8], atol=1e-5)  # up to the tiny pose-alignment offsets
    own = DepthAnything3(os.path.join(ckpt, FILES["da3"]))(images, w2c, K)["depth"]
    # same network, same float32 path: DA3's pixels built from the frames by op u8_pixels, the depth / s and the
    # resize in C (pipeline/depth_window.c) give exactly what the host class and generate._bilinear give
    np.testing.assert_array_equal(d, gen._bilinear(own, H, W))
    assert np.all(d > 0) and np.all(np.isfinite(d))
    # the spatial memory grew from frame 0 to frames 0, 8, ..., 80, and chunk 2 retrieves from it
    assert v.stage_timings["in"]["cache_frames"] == 11
    assert any("chunk 2/2: " in m["message"] and " 0 spatial" not in m["message"] and " 1 spatial" not in m["message"]
               for m in logs)
    # same seed, same files: the same video
    again = run(ckpt, image, None, num_frames=161)
    np.testing.assert_array_equal(again.frames, v.frames)
    np.testing.assert_array_equal(again.depth, v.depth)


def test_device_is_checked_and_passed_to_the_depth_networks(ckpt, image, depth, monkeypatch):
    w2c, K = trajectory("horizontal_zoom", 81, 0.5, depth)
    # "cuda": a Lyra2Error saying why, before any work (no GPU here, or the AR driver not on the device yet)
    why = "generate path does not run on the device yet" if lyra2.backends()["cuda"] else "no usable CUDA GPU"
    with pytest.raises(lyra2.Lyra2Error, match=why):
        lyra2.generate(image, w2c, K, "a", checkpoint_dir=ckpt, device="cuda", progress=False)
    with pytest.raises(lyra2.Lyra2Error, match=why):
        run(ckpt, image, depth, device="cuda")
    for bad in ("gpu", None, 0):
        with pytest.raises(ValueError, match="device"):
            lyra2.generate(image, w2c, K, "a", checkpoint_dir=ckpt, device=bad, progress=False)
    # "auto" resolves to the CPU and that device reaches DA3 and the first-frame depth (DA3 + MoGe)
    seen = []

    class Stop(Exception):
        pass

    real_da3 = gen._da3

    def da3(folder, device="cpu"):
        seen.append(("da3", device))
        return real_da3(folder, device)

    def first_frame_depth(*a, device="cpu", **kw):
        seen.append(("first_frame_depth", device))
        raise Stop

    monkeypatch.setattr(gen, "_da3", da3)
    monkeypatch.setattr(gen, "first_frame_depth", first_frame_depth)
    for call in (lambda dev: lyra2.generate(image, w2c, K, "a", checkpoint_dir=ckpt, device=dev, progress=False),
                 lambda dev: run(ckpt, image, None, device=dev)):
        for dev in ("auto", "cpu"):
            seen.clear()
            with pytest.raises(Stop):
                call(dev)
            assert seen == [("da3", "cpu"), ("first_frame_depth", "cpu")]


def test_style_loras_applied_at_0_4_and_removable(ckpt, image, depth, zoom_in, tmp_path):
    """The tiny folder's realism_boost (kohya keys) and detail_enhancer (musubi keys) are applied at 0.4 each in
    every run (upstream's zoom-GS default, upstream ML:74-92, Z:464-486, CTI:181-199): the video equals that of a DiT
    with both folded in by NumPy, and removing the two files gives the no-LoRA video."""
    import shutil
    from lyra2 import io as lio
    from lyra2.checkpoint import FILES

    info = gen.load_models(ckpt)[1]
    assert [n for n, _ in info["style_loras"]] == ["realism_boost", "detail_enhancer"]
    assert [w for _, w in info["style_loras"]] == pytest.approx([0.4, 0.4])
    folder = str(tmp_path / "ck")
    shutil.copytree(ckpt, folder)
    dit = lio.load_safetensors(os.path.join(folder, FILES["dit"]))
    module = {}  # every key prefix the two formats use -> the DiT Linear
    for k in dit:
        if k.endswith(".weight"):
            m = k[:-len(".weight")]
            module["diffusion_model." + m] = module["lora_unet_" + m.replace(".", "_")] = m
    for comp in ("lora_realism", "lora_detail"):
        lora = lio.load_safetensors(os.path.join(folder, FILES[comp]))
        for k in lora:
            if k.endswith(".lora_down.weight"):
                p = k[:-len(".lora_down.weight")]
                down, up = lora[k].astype(np.float64), lora[p + ".lora_up.weight"].astype(np.float64)
                w = dit[module[p] + ".weight"].astype(np.float64)
                dit[module[p] + ".weight"] = (w + 0.4 * float(lora[p + ".alpha"]) / len(down) * (up @ down)).astype(
                    np.float32)
        os.remove(os.path.join(folder, FILES[comp]))

    logs = []
    plain = run(folder, image, depth, logs=logs).frames.astype(np.int32)  # same folder, style files removed
    assert any("LoRAs: dmd_distillation 1 (no style LoRAs" in m["message"] for m in logs)
    effect = np.abs(plain - zoom_in.frames).mean()
    assert effect > 1.0  # the style LoRAs change the video
    meta = lio.safetensors_info(os.path.join(folder, FILES["dit"]))["metadata"]
    lio.save_safetensors(dit, os.path.join(folder, FILES["dit"]), metadata=meta)  # float32: no rounding of W'
    merged = run(folder, image, depth).frames.astype(np.int32)
    # Unmerged W·x + 0.4·B·(A·x) vs merged W'·x differ by float32 rounding only, which can flip a uint8 level here
    # and there (measured: mean 4e-5, max 1); the LoRA effect itself is ~5 levels on average.
    d = np.abs(merged - zoom_in.frames)
    assert d.max() <= 2 and d.mean() < 1e-3 * effect
