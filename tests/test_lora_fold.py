"""The LoRA fold at placement (csrc/models/dit_lora_fold.c, lyra_dit_lora_fold_at_placement): a device run folds its
fixed adapters into the weights where the placement puts them, with the ops of the backend that holds them, one Linear
at a time: delta = [w_1·B_1 | w_2·B_2 | …]·[A_1; A_2; …] in one f32 GEMM, W = round(f32(W) + delta) once,
b += w_a·diff_b.

Reference: the host fold of the same model and adapters (lyra_dit_lora_merge, ``merge_lora`` on the CPU), which sums
w_a·(B_a·A_a) adapter by adapter. The two differ only by the f32 summation order of delta, so after the bf16 rounding
they agree except for elements whose f32 sum lands next to a rounding midpoint: at most 1 bf16 ulp, on at most
0.5 % of a weight's elements (measured: see test_device_fold_is_the_host_fold). With one adapter per Linear the emulated
device runs the host's very GEMM (the CPU kernel), so there the fold is bit-identical."""
import gc

import numpy as np
import pytest

import lyra2
from lyra2 import _core, testing
from lyra2.io import save_safetensors
from lyra2.models.dit import LyraDiT

LINEARS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.o", "ffn.0",
           "ffn.2", "cam_encoder")
ULP_FRACTION = 5e-3  # bf16 elements allowed to differ from the host fold (by 1 ulp), per weight


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny DiT as random weights and as the bf16 file of the same values."""
    rw = testing.random_weights("dit", "tiny", seed=7)
    path = str(tmp_path_factory.mktemp("fold") / "dit.safetensors")
    save_safetensors(rw.arrays(), path, dtype="bf16")
    return rw, path


def modules(rw):
    return [f"blocks.{i}.{m}" for i in range(rw.config["layers"]) for m in LINEARS] + ["patch_embedding", "head.head"]


def adapter(rw, seed, rank, gain, mods, diff_b=False):
    """A PEFT-named LoRA on `mods` (f32 factors; a kept .diff_b on the Linears with a bias when asked)."""
    rng = np.random.default_rng(seed)
    shapes = dict(rw.shapes)
    src = {}
    for m in mods:
        out, inp = shapes[m + ".weight"][:2] if len(shapes[m + ".weight"]) == 2 else \
            (shapes[m + ".weight"][0], int(np.prod(shapes[m + ".weight"][1:])))
        src[f"diffusion_model.{m}.lora_A.weight"] = (rng.standard_normal((rank, inp)) / np.sqrt(inp)).astype(np.float32)
        src[f"diffusion_model.{m}.lora_B.weight"] = (rng.standard_normal((out, rank)) * gain / np.sqrt(rank)).astype(
            np.float32)
        if diff_b and m + ".bias" in shapes:
            src[f"diffusion_model.{m}.diff_b"] = rng.uniform(-0.5, 0.5, out).astype(np.float32)
    return src


def three(rw):
    """Three adapters overlapping on every block Linear (rank 8 at 1, two rank 4 at 0.4, one with .diff_b), so most
    Linears fold a sum of adapters: the case where the device's single GEMM and the host's per-adapter sums differ."""
    mods = modules(rw)
    return [(adapter(rw, 1, 8, 0.3, mods), 1.0), (adapter(rw, 2, 4, 0.5, mods, diff_b=True), 0.4),
            (adapter(rw, 3, 4, 0.5, mods[: len(mods) // 2]), 0.4)]


def bf16_bits(v):
    return (np.ascontiguousarray(v, np.float32).view(np.uint32) >> 16).astype(np.int64)


def compare(a, b, names, exact):
    """Per weight: the largest bf16 ulp distance and the fraction of elements that differ, over the elements the fold
    did not cancel (|W'| >= 2^-8·max|W'|: where W + delta nearly cancels, the f32 rounding of delta is many ulps of the
    small result — every element must agree within max(2^-7·|W'|, 2^-16·max|W'|)); biases (f32, the same ops) equal."""
    worst, frac = 0, 0.0
    for name in names:
        va, vb = _core.dit_param(a._model, name)[0], _core.dit_param(b._model, name)[0]
        if name.endswith(".bias") or exact:
            np.testing.assert_array_equal(va, vb, err_msg=name)
            continue
        top = float(np.abs(vb).max())
        bad = np.abs(va - vb) > np.maximum(2 ** -7 * np.abs(vb), 2 ** -16 * top)
        assert not bad.any(), (name, va[bad][:4], vb[bad][:4])
        big = np.abs(vb) >= 2 ** -8 * top
        np.testing.assert_array_equal(np.sign(va[big]), np.sign(vb[big]), err_msg=name)
        d = np.abs(bf16_bits(np.abs(va[big])) - bf16_bits(np.abs(vb[big])))
        worst, frac = max(worst, int(d.max())), max(frac, float(np.mean(d > 0)))
    return worst, frac


def folded_names(rw):
    return [f"{m}.{s}" for m in modules(rw) for s in ("weight", "bias") if f"{m}.{s}" in dict(rw.shapes)]


def test_device_fold_is_the_host_fold(tiny, device):
    rw, path = tiny
    emulated = lyra2.backends()["emulated"]
    lora = three(rw)
    host = LyraDiT(path, lora=lora, n_threads=1, fold_lora=True)                  # CPU: lyra_dit_lora_merge
    if emulated:
        testing.emulated_cuda_reset()
    dev = LyraDiT(path, lora=lora, n_threads=1, fold_lora=True, device=device)    # folded on the device
    assert dev.lora_adapters == [] and host.lora_adapters == []
    if emulated:   # the packed factors go up once each (f32), and no adapter block
        ups = [(b, n) for d, b, n in testing.emulated_cuda_transfers() if d == "upload"]
        names = {n for _, n in ups}
        assert names == {"the weights", "LoRA fold: A", "LoRA fold: B", "LoRA fold: diff_b"}, names
        factors = sum(4 * v.size for src, _ in lora for k, v in src.items() if "lora_" in k)
        assert sum(b for b, n in ups if n in ("LoRA fold: A", "LoRA fold: B")) == factors
    worst, frac = compare(dev, host, folded_names(rw), exact=False)
    print(f"device fold vs host fold: max {worst} bf16 ulp, at most {frac:.2%} of a weight's elements")
    assert worst <= 1 and frac <= ULP_FRACTION
    base = LyraDiT(path, n_threads=1)
    moved = max(float(np.abs(_core.dit_param(host._model, n)[0] - _core.dit_param(base._model, n)[0]).max())
                for n in folded_names(rw))
    assert moved > 0.05   # the adapters changed the weights: a fold that did nothing could not pass


def test_one_adapter_folds_bit_identically_on_the_emulated_device(tiny, monkeypatch):
    # one adapter per Linear at weight 1 (the DMD LoRA's case): the emulated device runs the host's GEMM
    if lyra2.backends()["cuda"] and not lyra2.backends()["emulated"]:
        pytest.skip("a CUDA build: cuBLAS sums in its own order (test_device_fold_is_the_host_fold)")
    monkeypatch.setenv("LYRA2_EMULATED_CUDA", "1")
    rw, path = tiny
    lora = [adapter(rw, 4, 8, 0.3, modules(rw), diff_b=True)]
    host = LyraDiT(path, lora=lora, n_threads=1, fold_lora=True)
    dev = LyraDiT(path, lora=lora, n_threads=1, fold_lora=True, device="cuda")
    compare(dev, host, folded_names(rw), exact=True)


def test_random_dit_is_folded_on_the_device(tiny, device):
    # random weights + LoRAs: filled, then folded, on the device; the weights never go up (nor to the host block)
    rw, path = tiny
    emulated = lyra2.backends()["emulated"]
    lora = three(rw)
    if emulated:
        testing.emulated_cuda_reset()
    a = LyraDiT(rw, lora=lora, n_threads=1, fold_lora=True, device=device)
    if emulated:
        ups = {n for d, _, n in testing.emulated_cuda_transfers() if d == "upload"}
        assert ups == {"LoRA fold: A", "LoRA fold: B", "LoRA fold: diff_b"}, ups
    b = LyraDiT(path, lora=lora, n_threads=1, fold_lora=True, device=device)   # the file's values, folded there too
    for name, _ in rw.shapes:
        np.testing.assert_array_equal(_core.dit_param(a._model, name)[0], _core.dit_param(b._model, name)[0],
                                      err_msg=name)
    inp = dit_inputs(rw.config)
    np.testing.assert_array_equal(a(**inp), b(**inp))


@pytest.mark.parametrize("resident", [None, 1])
def test_fp8_random_dit_is_filled_folded_and_quantized_on_the_device(tiny, device, resident):
    # fp8: each block Linear filled as bf16, folded, then quantized per row on the device (streamed blocks: the same
    # in their pinned host copy, on the CPU); the reference folds and quantizes the file's weights on the host
    rw, path = tiny
    emulated = lyra2.backends()["emulated"]
    lora = [adapter(rw, 5, 8, 0.3, modules(rw), diff_b=True)] if emulated else three(rw)
    kw = dict(lora=lora, n_threads=1, dtype="fp8", resident_blocks=resident, device=device)
    if emulated:
        testing.emulated_cuda_reset()
    a = LyraDiT(rw, fold_lora=True, **kw)
    if emulated:
        ups = {n for d, _, n in testing.emulated_cuda_transfers() if d == "upload"}
        assert ups <= {"LoRA fold: A", "LoRA fold: B", "LoRA fold: diff_b"}, ups
    b = LyraDiT(path, **kw)   # host: merged, quantized, uploaded
    n_codes, folded = 0, set(folded_names(rw))
    for name, _ in rw.shapes:
        (va, sa), (vb, sb) = _core.dit_param(a._model, name), _core.dit_param(b._model, name)
        if sa is None and not emulated and name in folded:   # a bf16 Linear folded by the GPU's GEMM
            worst, frac = compare(a, b, [name], exact=False)
            assert worst <= 1 and frac <= ULP_FRACTION, name
            continue
        if sa is None or emulated:   # one adapter on the emulated device: the host's GEMM, the host's codes
            np.testing.assert_array_equal(va, vb, err_msg=name)
            if sa is not None:
                np.testing.assert_array_equal(sa, sb, err_msg=name)
            n_codes += sa is not None
            continue
        # the GPU's GEMM order: a 1-ulp bf16 difference can move a row's scale by as much, and a code by one step
        np.testing.assert_allclose(sa, sb, rtol=2 ** -7, err_msg=name)
        assert np.mean(va != vb) <= 2 * ULP_FRACTION, name
        n_codes += 1
    assert n_codes == 15 * rw.config["layers"]
    inp = dit_inputs(rw.config, seed=3)
    if emulated:
        np.testing.assert_array_equal(a(**inp), b(**inp))


@pytest.mark.parametrize("dtype", ["bf16", "fp8"])
def test_streamed_blocks_fold_where_they_live(tiny, device, dtype):
    # the streamed blocks' weights live in pinned host memory: folded there (CPU backend), the rest on the device
    rw, path = tiny
    lora = three(rw) if dtype == "bf16" else [adapter(rw, 6, 8, 0.3, modules(rw), diff_b=True)]
    kw = dict(lora=lora, n_threads=1, fold_lora=True, dtype=dtype, device=device)
    a = LyraDiT(rw, resident_blocks=1, **kw)
    b = LyraDiT(rw, **kw)
    if lyra2.backends()["emulated"]:   # the CPU's GEMM on both sides
        compare(a, b, [n for n, _ in rw.shapes], exact=True)
        inp = dit_inputs(rw.config, seed=4)
        np.testing.assert_array_equal(a(**inp), b(**inp))
    elif dtype == "bf16":
        worst, frac = compare(a, b, folded_names(rw), exact=False)
        assert worst <= 1 and frac <= ULP_FRACTION


def test_fold_transient_is_one_linear(tiny, monkeypatch):
    # one Linear at a time: the pool's placement peak is the weights plus the largest Linear's f32 delta, its packed
    # factors and bias temporaries (what lyra2.memory's placement term counts), not the adapters or all the deltas
    if lyra2.backends()["cuda"] and not lyra2.backends()["emulated"]:
        pytest.skip("the emulated device's pool counters")
    monkeypatch.setenv("LYRA2_EMULATED_CUDA", "1")
    rw, path = tiny
    lora = three(rw)
    gc.collect()   # the models of earlier tests give their blocks back
    testing.emulated_cuda_reset()
    live = testing.emulated_cuda_stats()["live_bytes"]
    m = LyraDiT(rw, lora=lora, n_threads=1, fold_lora=True, device="cuda")
    st = testing.emulated_cuda_stats()
    weights = _core.dit_config(m._model)["weight_bytes"]
    shapes = dict(rw.shapes)
    ranks = {}
    for src, _ in lora:
        for k, v in src.items():
            if k.endswith(".lora_A.weight"):
                mod = k[len("diffusion_model."):-len(".lora_A.weight")]
                ranks[mod] = ranks.get(mod, 0) + v.shape[0]
    per = max(4 * (shapes[mod + ".weight"][0] * int(np.prod(shapes[mod + ".weight"][1:]))
                   + r * (shapes[mod + ".weight"][0] + int(np.prod(shapes[mod + ".weight"][1:])))
                   + 2 * shapes[mod + ".weight"][0]) for mod, r in ranks.items())
    extra = st["peak_bytes"] - live - weights
    print(f"placement peak {st['peak_bytes']} B = weights {weights} + {extra} (largest Linear's fold: {per} B)")
    assert 0 < extra <= per + 5 * 4096, (extra, per)


def test_fold_refusals(tiny, device):
    rw, path = tiny
    m = LyraDiT(path, lora=three(rw), n_threads=1, device=device)    # placed with its adapters unfolded
    with pytest.raises(lyra2.Lyra2Error, match="placed already"):
        _core.dit_lora_fold_at_placement(m._model)
    c = LyraDiT(path, lora=three(rw), n_threads=1)
    _core.dit_lora_fold_at_placement(c._model)
    with pytest.raises(lyra2.Lyra2Error, match="folded at placement"):
        c.merge_lora()
    src = adapter(rw, 8, 2, 0.3, ["blocks.0.cam_encoder"])          # a Linear without a bias
    src["diffusion_model.blocks.0.cam_encoder.diff_b"] = np.linspace(-1, 1, dict(rw.shapes)[
        "blocks.0.cam_encoder.weight"][0]).astype(np.float32)
    c = LyraDiT(path, lora=[src], n_threads=1)
    with pytest.raises(lyra2.Lyra2Error, match=r"cam_encoder\.weight' has no bias"):
        _core.dit_lora_fold_at_placement(c._model)


def dit_inputs(c, seed=0, H=4, W=6):
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    T = 45  # total frames of the released FramePack layout (TINY's)
    return dict(x_B_C_T_H_W=f(1, c["out_dim"], T, H, W), timesteps_B_T=np.array([[0.7]], np.float32),
                crossattn_emb=f(1, 512, c["text_dim"]), frame_cond_crossattn_emb_B_L_D=f(1, 257, c["clip_dim"]),
                y_B_C_T_H_W=f(1, c["in_dim"] - c["out_dim"] + 384, T, H, W),
                y_buffer_B_C_T_H_W=f(1, c["buffer_in"], T, H, W))


@pytest.mark.parametrize("kw", [dict(), dict(max_gpu_memory=40), dict(num_frames=161, max_gpu_memory=40),
                                dict(dit_dtype="fp8", max_gpu_memory=24)])
def test_the_plan_covers_the_fold_transient(kw):
    # At the real shapes the fold's device transient is the largest Linear's f32 delta (ffn: 13824 x 5120, 283 MB),
    # its packed factors (here the DMD + two style LoRAs at rank 64 each) and bias temporaries, plus for fp8 the
    # Linear's bf16 scratch it is filled, folded and quantized in. It happens while lyra_ar_models_place places the
    # DiT, before CLIP, the negative prompt and the VAE go up; the plan's CLIP stage holds those on top of the same
    # DiT bytes, so the placement's peak stays under the plan's when the transient is under their bytes.
    from lyra2.testing import REAL

    plan = lyra2.memory_plan(**kw)
    c = REAL["dit"]
    out, inp, rank = c["ffn"], c["dim"], 3 * 64
    transient = 4 * out * inp + 4 * rank * (out + inp) + 2 * 4 * out
    if kw.get("dit_dtype") == "fp8":
        transient += 2 * out * inp
    later = plan["stages"]["clip"]
    assert transient <= later["clip weights"] + later["negative prompt"] + later["vae weights"], transient
