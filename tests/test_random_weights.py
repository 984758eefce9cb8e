"""Random weights of the real shapes created where the network lives, without a file (lyra2.testing.random_weights;
the backend op fill_random, csrc/nn/ops.h lyra_op_fill_random; the DiT's loader and placement, models/dit.h
lyra_dit_load_random).

The op is a counter-based hash with an exactly rounded conversion, so every check here is bit for bit: the CPU
twin against a NumPy restatement of the formula, the device kernels (cuda-marked: the kernel-emulation build or a
GPU) against the twin, a DiT built from the random spec against the same DiT loaded from a bf16 file of
RandomWeights.arrays() (same weights, same forward), on the CPU and on the device — where the spec is filled at
placement with no upload of weight bytes and no host copy (peak RSS, measured in a subprocess)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import lyra2
from lyra2 import _core, testing
from lyra2.io import bf16_bits_to_f32, save_safetensors, to_bf16_bits
from lyra2.models.dit import LyraDiT

U64 = np.uint64
M64 = (1 << 64) - 1


def mix(z):
    with np.errstate(over="ignore"):
        z = (z ^ (z >> U64(30))) * U64(0xbf58476d1ce4e5b9)
        z = (z ^ (z >> U64(27))) * U64(0x94d049bb133111eb)
        return z ^ (z >> U64(31))


def ref_fill(shape, name, seed, bf16):
    """The formula of nn/ops.h lyra_op_fill_random / lyra_random_fill_rule, restated with NumPy."""
    h = 0xcbf29ce484222325
    for c in name.encode():
        h = ((h ^ c) * 0x100000001b3) & M64
    key = mix(U64(seed) ^ mix(U64(h)))
    last = name
    if last.endswith("bias"):
        mean, std = 0.0, 0.02
    elif len(shape) <= 1 or last.endswith("gamma"):
        mean, std = 1.0, 0.1
    else:
        mean, std = 0.0, 1.0 / np.sqrt(max(float(np.prod(shape[1:])), 1.0))
    n = int(np.prod(shape))
    with np.errstate(over="ignore"):
        r = mix(key + (np.arange(n, dtype=U64) + U64(1)) * U64(0x9e3779b97f4a7c15))
    s = sum(((r >> U64(16 * q)) & U64(0xffff)).astype(np.int64) for q in range(4)) - 131070
    v = s.astype(np.float32) * np.float32(std * np.sqrt(3.0) / 65536.0) + np.float32(mean)
    if bf16:
        u = v.view(np.uint32)
        v = ((u + np.uint32(0x7fff) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xffff0000)).view(np.float32)
    return v.astype(np.float32).reshape(shape)


CASES = [((64, 96), "blocks.0.self_attn.q.weight"), ((96,), "blocks.0.self_attn.q.bias"),
         ((333,), "blocks.1.norm3.weight"), ((8, 4, 3, 3, 3), "decoder.conv.weight"),
         ((1, 6, 32), "blocks.0.modulation"),
         ((16, 1, 1, 1), "encoder.head.0.gamma"), ((0, 5), "empty.weight")]


@pytest.mark.parametrize("shape,name", CASES)
@pytest.mark.parametrize("bf16", [False, True])
def test_cpu_fill_is_the_formula(shape, name, bf16):
    got = _core.random_weight_values(shape, name, 12345, bf16)
    np.testing.assert_array_equal(got, ref_fill(shape, name, 12345, bf16))


def test_fill_statistics_follow_the_rule():
    w = _core.random_weight_values((1024, 2048), "a.weight", 1)
    assert abs(w.mean()) < 1e-3 / np.sqrt(2048) * 30 and abs(w.std() * np.sqrt(2048) - 1) < 0.01
    assert np.abs(w).max() <= 2 * np.sqrt(3) / np.sqrt(2048) * 1.0001   # |s| <= 2·65535: a bounded "normal"
    g = _core.random_weight_values((100000,), "a.norm.weight", 1)
    assert abs(g.mean() - 1) < 2e-3 and abs(g.std() - 0.1) < 2e-3
    b = _core.random_weight_values((100000,), "a.bias", 1)
    assert abs(b.mean()) < 5e-4 and abs(b.std() - 0.02) < 5e-4
    # the values depend on the seed and the name, not on anything else
    assert not np.array_equal(w, _core.random_weight_values((1024, 2048), "a.weight", 2))
    assert not np.array_equal(w, _core.random_weight_values((1024, 2048), "b.weight", 1))
    np.testing.assert_array_equal(w, _core.random_weight_values((1024, 2048), "a.weight", 1))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16"])
@pytest.mark.parametrize("bf16", [False, True])
def test_device_fill_is_the_cpu_fill(dtype, bf16):
    from lyra2 import _testops

    shape, name = (300, 517), "blocks.3.ffn.0.weight"
    ref = _core.random_weight_values(shape, name, 99, bf16)
    got = _testops.fill_random(shape, name, seed=99, bf16_values=bf16, backend="cuda", dtype=dtype)
    want = {"f32": ref, "f16": ref.astype(np.float16).astype(np.float32),
            "bf16": bf16_bits_to_f32(to_bf16_bits(ref))}[dtype]
    np.testing.assert_array_equal(got, want)


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="network"):
        testing.random_weights("unet")
    with pytest.raises(ValueError, match="config"):
        testing.random_weights("dit", "huge")
    with pytest.raises(ValueError, match="dtype"):
        testing.random_weights("dit", dtype="f64")
    with pytest.raises(ValueError, match="seed"):
        testing.random_weights("dit", seed=-1)
    from lyra2.models.moge import MoGe
    with pytest.raises(TypeError, match="random weights .* not supported by this network"):
        MoGe(testing.random_weights("clip"))
    with pytest.raises(ValueError, match="only the DiT and umT5"):
        testing.use_random_weights(".", vae=testing.random_weights("vae"))
    with pytest.raises(TypeError, match="umt5: expected"):
        testing.use_random_weights(".", umt5=testing.random_weights("dit"))
    with pytest.raises(TypeError, match="LoRA source"):
        LyraDiT(testing.random_weights("dit"), lora=[testing.random_weights("dit")], num_heads=1)


# ---------------------------------------------------------------- the DiT

LAYOUT_T = 45  # total frames of the released FramePack layout (TINY's)


def dit_inputs(c, seed=0, H=4, W=6):
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return dict(x_B_C_T_H_W=f(1, c["out_dim"], LAYOUT_T, H, W), timesteps_B_T=np.array([[0.7]], np.float32),
                crossattn_emb=f(1, 512, c["text_dim"]), frame_cond_crossattn_emb_B_L_D=f(1, 257, c["clip_dim"]),
                y_B_C_T_H_W=f(1, c["in_dim"] - c["out_dim"] + 384, LAYOUT_T, H, W),
                y_buffer_B_C_T_H_W=f(1, c["buffer_in"], LAYOUT_T, H, W))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny DiT as random weights and as the bf16 file of the same values."""
    rw = testing.random_weights("dit", "tiny", seed=5)
    path = str(tmp_path_factory.mktemp("rw") / "dit.safetensors")
    save_safetensors(rw.arrays(), path, dtype="bf16")  # the values are bf16 already: the file holds them exactly
    return rw, path


def lora_mapping(rw):
    rng = np.random.default_rng(1)
    D = rw.config["dim"]
    return {f"diffusion_model.blocks.0.self_attn.{m}.lora_{ab}.weight":
            (rng.standard_normal((4, D) if ab == "A" else (D, 4)) / 8).astype(np.float32)
            for m in "qo" for ab in "AB"}


def test_cpu_random_dit_is_the_file_dit(tiny):
    rw, path = tiny
    a, b = LyraDiT(rw, n_threads=1), LyraDiT(path, n_threads=1)
    assert a.config == b.config
    for name, _ in rw.shapes:
        np.testing.assert_array_equal(_core.dit_param(a._model, name)[0], rw.array(name), err_msg=name)
    inp = dit_inputs(rw.config)
    np.testing.assert_array_equal(a(**inp), b(**inp))


def test_device_random_dit_is_filled_there(tiny, device):
    rw, path = tiny
    testing.emulated_cuda_reset() if lyra2.backends()["emulated"] else None
    a = LyraDiT(rw, device=device, n_threads=1)
    if lyra2.backends()["emulated"]:
        st = testing.emulated_cuda_stats()
        assert st["uploads"] == 0 and st["upload_bytes"] == 0, st   # filled on the device: nothing went up
        assert st["allocations"] == 1                                 # one weight block, as a placed checkpoint
    for name, _ in rw.shapes:   # the device's weights are the CPU-filled ones, bit for bit
        np.testing.assert_array_equal(_core.dit_param(a._model, name)[0], rw.array(name), err_msg=name)
    b = LyraDiT(path, device=device, n_threads=1)
    inp = dit_inputs(rw.config)
    np.testing.assert_array_equal(a(**inp), b(**inp))     # bf16 activations: the same weights, the same run
    cpu = LyraDiT(rw, n_threads=1)(**inp)
    d = np.abs(a(**inp) - cpu)
    assert d.max() <= 0.05 * np.abs(cpu).max(), d.max()   # bf16 activations vs the f32 CPU run


def test_device_fp8_random_dit_is_quantized_there(tiny, device):
    rw, path = tiny
    a = LyraDiT(rw, device=device, dtype="fp8", n_threads=1)
    b = LyraDiT(path, device=device, dtype="fp8", n_threads=1)
    n_fp8 = 0
    for name, _ in rw.shapes:
        (va, sa), (vb, sb) = _core.dit_param(a._model, name), _core.dit_param(b._model, name)
        np.testing.assert_array_equal(va, vb, err_msg=name)
        assert (sa is None) == (sb is None)
        if sa is not None:
            n_fp8 += 1
            np.testing.assert_array_equal(sa, sb, err_msg=name)
    assert n_fp8 == 15 * rw.config["layers"]
    inp = dit_inputs(rw.config, seed=1)
    np.testing.assert_array_equal(a(**inp), b(**inp))


@pytest.mark.parametrize("dtype", ["bf16", "fp8"])
def test_device_streamed_random_dit(tiny, device, dtype):
    # block streaming: the resident part is filled on the device and the streamed blocks in their host copy (the
    # source of each forward's uploads); nothing is uploaded at placement
    rw, path = tiny
    emulated = lyra2.backends()["emulated"]
    if emulated:
        testing.emulated_cuda_reset()
    a = LyraDiT(rw, device=device, n_threads=1, resident_blocks=1, dtype=dtype)
    if emulated:
        assert testing.emulated_cuda_stats()["upload_bytes"] == 0
    b = LyraDiT(path, device=device, n_threads=1, resident_blocks=1, dtype=dtype)
    for name, _ in rw.shapes:   # the streamed block's weights in host memory, the others on the device
        for va, vb in zip(_core.dit_param(a._model, name), _core.dit_param(b._model, name)):
            np.testing.assert_array_equal(va, vb, err_msg=name)
    inp = dit_inputs(rw.config, seed=2)
    np.testing.assert_array_equal(a(**inp), b(**inp))
    assert a.streaming_stats() == b.streaming_stats()   # the same uploads per forward as a checkpoint's


def test_device_fp8_random_dit_with_a_lora_is_written_on_the_host_first(tiny, device):
    # merging a LoRA reads the host weights: the random values are written into the host block first
    # (lyra_dit_random_materialize), then merged and quantized as a checkpoint's
    rw, path = tiny
    kw = dict(dtype="fp8", lora=[lora_mapping(rw)])
    a = LyraDiT(rw, device=device, n_threads=1, **kw)
    b = LyraDiT(path, device=device, n_threads=1, **kw)
    inp = dit_inputs(rw.config, seed=2)
    np.testing.assert_array_equal(a(**inp), b(**inp))


RSS_SCRIPT = r"""
import json, os, sys
import lyra2
from lyra2 import _core, testing
from lyra2.models.dit import LyraDiT
c = dict(testing.TINY["dit"], dim=1024, ffn=4096, layers=4, text_dim=512, clip_dim=256, squeeze=256)
rw = testing.random_weights("dit", c, seed=0)
def hwm():  # this process's peak resident bytes (ru_maxrss would carry the forking parent's over exec)
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
base = hwm()
testing.emulated_cuda_reset()
resident = int(sys.argv[1]) if len(sys.argv) > 1 else None
m = LyraDiT(rw, device="cuda", n_threads=1, resident_blocks=resident)
st = testing.emulated_cuda_stats()
print(json.dumps({"base": base, "peak": hwm(), "buffers": m.streaming_stats()["buffer_bytes"],
                  "weight_bytes": _core.dit_config(m._model)["weight_bytes"], "spec_bytes": rw.nbytes, **st}))
"""


@pytest.mark.parametrize("resident", [None, 2])
def test_medium_random_dit_makes_no_host_copy(resident):
    # ~250 MB of bf16 weights on the emulated device, whose pool is host memory: the process grows by that one
    # copy (the device block; streamed: the resident part there, the streamed blocks in host memory, plus the two
    # block buffers), not by a second host block or staging buffer, and nothing is uploaded
    env = dict(os.environ, LYRA2_EMULATED_CUDA="1", LYRA2_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT] + ([] if resident is None else [str(resident)]), env=env,
                         capture_output=True, text=True, timeout=600,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(r)
    assert r["weight_bytes"] > 150e6
    assert r["upload_bytes"] == 0 and r["uploads"] == 0
    assert r["peak_bytes"] >= (r["weight_bytes"] if resident is None else r["buffers"])
    grown = r["peak"] - r["base"]
    assert grown < 1.15 * r["weight_bytes"] + r["buffers"] + 48e6, (grown, r["weight_bytes"], r["buffers"])


# ---------------------------------------------------------------- the generate models (use_random_weights)

@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two tiny checkpoint folders: `ref` with DiT and umT5 files of the random values, `rnd` without those files
    and the random weights registered for it."""
    from lyra2.checkpoint import FILES

    rws = {c: testing.random_weights(c, "tiny", seed=5) for c in ("dit", "umt5")}
    ref = testing.make_tiny_checkpoint(str(tmp_path_factory.mktemp("ref")))
    rnd = testing.make_tiny_checkpoint(str(tmp_path_factory.mktemp("rnd")))
    for c, rw in rws.items():
        save_safetensors(rw.arrays(), os.path.join(ref, FILES[c]), dtype="bf16")
        os.remove(os.path.join(rnd, FILES[c]))
    testing.use_random_weights(rnd, **rws)
    yield ref, rnd
    testing.use_random_weights(rnd)


def generate_run(folder, device, **kw):
    import importlib

    from lyra2 import fields
    from lyra2.progress import Progress

    gen = importlib.import_module("lyra2.generate")
    H, W = 32, 48
    y, x = np.mgrid[0:H, 0:W]
    image = (np.stack([x * 5, y * 7, (x + y) * 3], -1) % 256).astype(np.uint8)
    depth = (2.0 + 0.05 * y).astype(np.float32)
    args = fields.validate({"prompt": "a quiet street", "seed": 0}, require_image=False)
    args["resolution"] = (H, W)
    v = gen.run_generate(image, args, checkpoint_folder=folder, device=device, report=Progress(bar=False),
                         depth=depth, **kw)
    gen.release_models()
    return v.frames


def test_generate_with_a_random_dit_is_the_file_run(folders, monkeypatch):
    ref, rnd = folders
    monkeypatch.setenv("LYRA2_NUM_THREADS", "1")
    np.testing.assert_array_equal(generate_run(rnd, "cpu"), generate_run(ref, "cpu"))
    monkeypatch.setenv("LYRA2_EMULATED_CUDA", "1")
    want = generate_run(ref, "cuda")
    testing.emulated_cuda_reset()
    got = generate_run(rnd, "cuda")
    np.testing.assert_array_equal(got, want)
    ups = [(n, b) for d, b, n in testing.emulated_cuda_transfers() if d == "upload"]
    assert not [u for u in ups if u[0] in ("the weights", "umT5 encoder weights")], ups   # filled, not uploaded
    assert any(n == "Wan VAE weights" for n, _ in ups)                  # the other networks still upload theirs


def test_generate_fp8_with_a_random_dit_folds_and_quantizes_on_the_device(folders, monkeypatch):
    # fp8 with the DMD and style LoRAs: the random DiT's block Linears are filled, folded and quantized on the device
    # (models/dit_lora_fold.c), nothing uploaded; the file run folds and quantizes on the host. The two folds differ
    # only by the GEMM's summation order (1-ulp bf16 elements, tests/test_lora_fold.py), so the frames agree closely.
    ref, rnd = folders
    monkeypatch.setenv("LYRA2_NUM_THREADS", "1")
    monkeypatch.setenv("LYRA2_EMULATED_CUDA", "1")
    want = generate_run(ref, "cuda", dit_dtype="fp8")
    testing.emulated_cuda_reset()
    got = generate_run(rnd, "cuda", dit_dtype="fp8")
    ups = {n for d, _, n in testing.emulated_cuda_transfers() if d == "upload"}
    assert not ups & {"the weights", "umT5 encoder weights"}, ups
    assert "LoRA fold: A" in ups                                        # the factors, once per folded Linear
    d = np.abs(got.astype(np.int16) - want.astype(np.int16))
    print(f"fp8 frames, device fold vs host fold: max {d.max()}, mean {d.mean():.4f} levels of 255")
    assert d.mean() <= 0.5 and d.max() <= 16, (d.mean(), d.max())


def test_benchmark_dry_run_with_random_weights(tmp_path):
    # benchmarks/zoom_e2e.py --random-weights at tiny size on the emulated device, every variant the GPU run times
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, LYRA2_EMULATED_CUDA="1", LYRA2_NUM_THREADS="1")
    out = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "zoom_e2e.py"), "--random-weights", "tiny",
                          "--device", "cuda", "--cfg-steps", "1", "--variants", "bf16,stream24,fp8",
                          "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")],
                         env=env, capture_output=True, text=True, timeout=600, cwd=root)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    with open(tmp_path / "out" / "zoom_e2e.json") as f:
        report = json.load(f)
    assert [(r["variant"], r["run"][:3]) for r in report["runs"]] == [
        (v, r) for v in ("bf16", "stream24", "fp8") for r in ("DMD", "Uni")]
    assert all(r["frames"] == 81 and r["dit_calls"] > 0 for r in report["runs"])
    assert "random weights: RandomWeights('dit'" in out.stdout and "RandomWeights('umt5'" in out.stdout


def test_benchmark_runs_do_not_hold_each_others_models(tmp_path):
    # zoom_e2e.py's configuration load must not keep a reference to the models: the cache is then their only
    # holder, so a run of another key (use_dmd, streaming, fp8) frees the previous run's placed networks (35 GB at
    # 480p; held, the UniPC run's umT5 and DiT would not fit beside them on an 80 GB card). The untimed load before
    # each run is the run's own (its dit_dtype and use_dmd), so each run starts with an empty device.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = f"""
import sys
sys.path.insert(0, {os.path.join(root, "benchmarks")!r})
import zoom_e2e as z
from lyra2 import testing
run = z.gen.run_generate
def probe(*a, **k):
    z.gen._da3_cache.clear()  # the depth window's DA3 stays by design (the next run's _da3_for_run decides)
    print("live at the run's start:", testing.emulated_cuda_stats()["live_bytes"])
    return run(*a, **k)
z.gen.run_generate = probe
sys.argv = ["zoom_e2e.py", "--random-weights", "tiny", "--device", "cuda", "--cfg-steps", "1", "--variants", "bf16",
            "--work", {str(tmp_path / "work")!r}]
sys.exit(z.main())
"""
    env = dict(os.environ, LYRA2_EMULATED_CUDA="1", LYRA2_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600, cwd=root)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    live = [int(line.split(":")[1]) for line in out.stdout.splitlines() if line.startswith("live at the run's")]
    assert live == [0, 0], live


def test_real_folder_writer_at_tiny_size(tmp_path, monkeypatch):
    # benchmarks/make_random_checkpoint.py's real-size writer (the networks --random-weights real still loads from
    # files), with its size table swapped for tiny sizes: the folder it writes without the DiT loads with a random DiT
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.syspath_prepend(os.path.join(root, "benchmarks"))
    import importlib

    import make_random_checkpoint as mrc

    tiny = {k: dict(v) if isinstance(v, dict) else v for k, v in testing.TINY.items()}
    tiny["umt5"]["vocab"] = testing.tiny_spm_model()[1] + 300
    monkeypatch.setattr(mrc, "REAL", tiny)
    folder = str(tmp_path / "nodit")
    mrc.make_real(folder, seed=1, skip=("dit", "umt5"))
    assert not os.path.exists(os.path.join(folder, "dit.safetensors"))
    testing.use_random_weights(folder, dit=testing.random_weights("dit", "tiny"),
                               umt5=testing.random_weights("umt5", "tiny"))
    try:
        gen = importlib.import_module("lyra2.generate")
        info = gen.load_models(folder, "cpu", None, lambda m: None)[1]
        assert info["dit_config"]["dim"] == testing.TINY["dit"]["dim"] and info["has_dmd"]
    finally:
        testing.use_random_weights(folder)


# ---------------------------------------------------------------- umT5 and CLIP (text_weights.h loaders)

@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    out = {}
    for net in ("umt5", "clip"):
        rw = testing.random_weights(net, "tiny", seed=11)
        path = str(tmp_path_factory.mktemp(net) / f"{net}.safetensors")
        save_safetensors(rw.arrays(), path, dtype="bf16")
        out[net] = (rw, path)
    return out


def encode(net, model):
    if net == "umt5":
        ids = np.random.default_rng(0).integers(0, model.config["vocab"], (2, 9))
        return model.encode_raw(ids, np.ones((2, 9), np.uint8))
    return model(np.random.default_rng(0).uniform(-1, 1, (1, 3, 40, 50)).astype(np.float32))


def make(net, weights, device):
    from lyra2.models.clip import CLIPVision
    from lyra2.models.umt5 import UMT5Encoder

    return UMT5Encoder(weights, device) if net == "umt5" else CLIPVision(weights, device, num_heads=1)


@pytest.mark.parametrize("net", ["umt5", "clip"])
def test_cpu_random_encoder_is_the_file_encoder(encoders, net):
    rw, path = encoders[net]
    np.testing.assert_array_equal(encode(net, make(net, rw, "cpu")), encode(net, make(net, path, "cpu")))


@pytest.mark.parametrize("net", ["umt5", "clip"])
def test_device_random_encoder_is_filled_there(encoders, net, device):
    rw, path = encoders[net]
    emulated = lyra2.backends()["emulated"]
    if emulated:
        testing.emulated_cuda_reset()
    a = make(net, rw, device)
    if emulated:
        st = testing.emulated_cuda_stats()
        assert st["uploads"] == 0 and st["upload_bytes"] == 0, st
    b = make(net, path, device)
    np.testing.assert_array_equal(encode(net, a), encode(net, b))   # the same weights on the device, the same run
