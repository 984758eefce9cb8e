"""Run-time LoRA of the Lyra-2 DiT (csrc/models/dit_lora.c; upstream T2V:353-432, Z:525-530, T2V:379-380, MU:58-457).

Reference: the LoRA math done in NumPy (float64) on the tiny golden model's weights: W' = W + Σ_a w_a·(alpha_a/r_a)·
B_a·A_a and b' = b + Σ_a w_a·bias_a, from the tensors this file generates (so the reference never parses a key).
The merged weights are then run by LyraDiT without adapters, whose forward is checked against the upstream golden
in test_dit.py. Unmerged adapters add their terms in separate float32 GEMMs, so they differ from the merged
reference only by float32 reassociation: tolerance abs 5e-5 on outputs of magnitude ~5 (the golden's own output
tolerance), while every adapter moves the output by > 100x that."""
import math

import numpy as np
import pytest

import lyra2
from conftest import DATA
from lyra2 import io as lio
from lyra2.models.dit import LyraDiT

INPUTS = ["x_B_C_T_H_W", "timesteps_B_T", "crossattn_emb", "frame_cond_crossattn_emb_B_L_D", "y_B_C_T_H_W",
          "y_buffer_B_C_T_H_W"]
TOL = 5e-5


@pytest.fixture(scope="module")
def weights():
    with np.load(f"{DATA}/dit_tiny_weights.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def args():
    with np.load(f"{DATA}/dit_tiny.npz") as z:
        return {k: z[f"caseb_{k}"] for k in INPUTS}


def make_terms(rng, weights, modules, rank, gain):
    """module -> [A (r, in), B (out, r)] random, scaled so the adapter visibly changes the output."""
    terms = {}
    for m in modules:
        out, inp = weights[m + ".weight"].shape
        a = rng.standard_normal((rank, inp)) / math.sqrt(inp)
        b = rng.standard_normal((out, rank)) * gain / math.sqrt(rank)
        terms[m] = [a.astype(np.float32), b.astype(np.float32)]
    return terms


BLOCKS = (0, 1)


@pytest.fixture(scope="module")
def adapters(weights, tmp_path_factory):
    """Three adapters in the three key formats of upstream T2V:353-432, Z:525-530, T2V:379-380, and their reference
    terms
    {module: (A, B, alpha/r, bias or None)} built from exactly the values stored."""
    rng = np.random.default_rng(2024)
    out = {}

    # "dmd": PEFT names with a leading "net." (the DMD LoRA's form), no alpha; Lyra-specific targets included.
    mods = [f"blocks.{i}.{m}" for i in BLOCKS for m in ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                                                         "ffn.0", "ffn.2", "cam_encoder", "buffer_encoder.0",
                                                         "buffer_encoder.1")]
    mods += ["patch_embedding", "clean_patch_embeddings.1", "clean_patch_embeddings.3", "time_projection.1",
             "head.head"]
    terms = make_terms(rng, weights, mods, 4, 0.3)
    src = {}
    for m, (a, b) in terms.items():
        src[f"net.{m}.lora_A.weight"] = a
        src[f"net.{m}.lora_B.weight"] = b
    out["dmd"] = (src, {m: (a, b, 1.0, None) for m, (a, b) in terms.items()}, 0)

    # "realism": kohya names under "diffusion_model.", lora_down/lora_up, alpha 2 at rank 4, float16 tensors,
    # one kept diff_b, one negligible diff_b (dropped) and one full-weight .diff (ignored), as upstream does.
    mods = [f"blocks.{i}.cross_attn.{m}" for i in BLOCKS for m in ("q", "k", "v", "o", "k_img", "v_img")]
    mods += ["text_embedding.0", "text_embedding.2", "time_embedding.0", "time_embedding.2", "img_emb.proj.1",
             "img_emb.proj.3"]
    terms = make_terms(rng, weights, mods, 4, 0.5)
    src, ref = {}, {}
    for m, (a, b) in terms.items():
        a16, b16 = a.astype(np.float16), b.astype(np.float16)
        src[f"diffusion_model.{m}.lora_down.weight"] = a16
        src[f"diffusion_model.{m}.lora_up.weight"] = b16
        src[f"diffusion_model.{m}.alpha"] = np.array(2.0, np.float16)
        ref[m] = (a16.astype(np.float32), b16.astype(np.float32), 2.0 / 4, None)
    bias = (0.2 * rng.standard_normal(48)).astype(np.float16)
    src["diffusion_model.blocks.0.cross_attn.o.diff_b"] = bias
    ref["blocks.0.cross_attn.o"] = ref["blocks.0.cross_attn.o"][:3] + (bias.astype(np.float32),)
    src["diffusion_model.blocks.1.cross_attn.q.diff_b"] = np.full(48, 1e-3, np.float16)  # max-min < 1.6e-2
    src["diffusion_model.blocks.0.norm3.diff"] = (0.5 * rng.standard_normal(48)).astype(np.float16)
    out["realism"] = (src, ref, 2)

    # "detail": musubi names (lora_unet_*, underscores), lora_down/lora_up with alpha, stored as a bf16 file.
    mods = ["blocks.0.self_attn.q", "blocks.1.self_attn.v", "blocks.0.cross_attn.k_img", "blocks.1.ffn.0",
            "blocks.0.ffn.2"]
    alphas = {m: (8.0 if i % 2 else 2.0) for i, m in enumerate(mods)}  # alpha/r = 1 or 0.25 at rank 8
    terms = make_terms(rng, weights, mods, 8, 0.4)
    src = {}
    for m, (a, b) in terms.items():
        key = "lora_unet_" + m.replace(".", "_")
        src[f"{key}.lora_down.weight"] = a
        src[f"{key}.lora_up.weight"] = b
        src[f"{key}.alpha"] = np.array(alphas[m], np.float32)
    path = tmp_path_factory.mktemp("lora") / "detail.safetensors"
    lio.save_safetensors(src, str(path), dtype="bf16")
    stored = lio.load_safetensors(str(path))  # the bf16-rounded values, as float32
    ref = {}
    for m in mods:
        key = "lora_unet_" + m.replace(".", "_")
        ref[m] = (stored[f"{key}.lora_down.weight"], stored[f"{key}.lora_up.weight"], alphas[m] / 8, None)
    out["detail"] = (str(path), ref, 0)
    return out


def merged(weights, refs_and_weights):
    """NumPy reference: base weights with every LoRA term folded in (float64, rounded to float32 at the end)."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    for ref, wa in refs_and_weights:
        for m, (a, b, scale, bias) in ref.items():
            w[m + ".weight"] += wa * scale * (b.astype(np.float64) @ a.astype(np.float64))
            if bias is not None:
                w[m + ".bias"] += wa * bias.astype(np.float64)
    return {k: v.astype(np.float32) for k, v in w.items()}


def reference_out(weights, args, refs_and_weights):
    return LyraDiT(merged(weights, refs_and_weights), num_heads=4, n_threads=1)(**args)


@pytest.fixture(scope="module")
def base_out(weights, args):
    return LyraDiT(weights, num_heads=4, n_threads=1)(**args)


def check(got, ref, base, what):
    err = float(np.abs(got - ref).max())
    effect = float(np.abs(ref - base).max())
    print(f"{what}: max-abs vs NumPy-merged reference {err:.3g}, LoRA effect {effect:.3g}")
    assert err <= TOL
    assert effect > 100 * TOL  # the adapter really changed the output, so the comparison can fail


@pytest.mark.parametrize("name", ["dmd", "realism", "detail"])
def test_each_adapter_alone(weights, args, adapters, base_out, name):
    src, ref, n_ignored = adapters[name]
    m = LyraDiT(weights, num_heads=4, n_threads=1, lora=[(src, 1.0)])
    (adapter,) = m.lora_adapters
    assert adapter[1] == 1.0 and adapter[3] == len(ref)
    assert m.ignored_lora_keys == n_ignored
    check(m(**args), reference_out(weights, args, [(ref, 1.0)]), base_out, name)


@pytest.fixture(scope="module")
def all_three(weights, adapters):
    # The zoom-GS script's set: DMD 1.0 plus realism_boost and detail_enhancer at 0.4 each (upstream ML:74-92,
    # Z:464-486, CTI:181-199).
    return LyraDiT(weights, num_heads=4, n_threads=1,
                   lora=[(adapters["realism"][0], 0.4), (adapters["detail"][0], 0.4), adapters["dmd"][0]])


def test_all_three_together(weights, args, adapters, base_out, all_three):
    assert [a[1] for a in all_three.lora_adapters] == pytest.approx([0.4, 0.4, 1.0])
    ref = reference_out(weights, args, [(adapters["realism"][1], 0.4), (adapters["detail"][1], 0.4),
                                        (adapters["dmd"][1], 1.0)])
    check(all_three(**args), ref, base_out, "realism 0.4 + detail 0.4 + dmd 1.0")


def test_weights_are_settable_and_merge(weights, args, adapters, base_out):
    m = LyraDiT(weights, num_heads=4, n_threads=1,
                lora=[(adapters["realism"][0], 0.4), (adapters["detail"][0], 0.4), adapters["dmd"][0]])
    m.set_lora_weights([1.0, 0.0, -0.5])
    ref = reference_out(weights, args, [(adapters["realism"][1], 1.0), (adapters["dmd"][1], -0.5)])
    check(m(**args), ref, base_out, "weights 1.0 / 0.0 / -0.5")
    m.merge_lora()
    assert m.lora_adapters == []
    check(m(**args), ref, base_out, "merged in C")
    with pytest.raises(ValueError, match="LoRA weights"):
        m.set_lora_weights([1.0])


def test_merge_into_bf16_weights(weights, args, adapters, base_out, tmp_path):
    # bf16 matrices: the merge is computed in f32 and rounded to bf16 (upstream T2V:353-432, Z:525-530, T2V:379-380), so
    # compare loosely.
    path = tmp_path / "dit.safetensors"
    lio.save_safetensors(weights, str(path), dtype="bf16")
    m = LyraDiT(str(path), num_heads=4, n_threads=1, lora=[adapters["dmd"][0]])
    unmerged = m(**args)
    m.merge_lora()
    ref = reference_out(weights, args, [(adapters["dmd"][1], 1.0)])
    np.testing.assert_allclose(unmerged, ref, atol=TOL, rtol=0)
    assert float(np.abs(m(**args) - ref).max()) < 0.05 * float(np.abs(ref - base_out).max())


def test_diff_b_on_a_linear_without_bias(weights, args, base_out):
    # Unmerged, a .diff_b on cam_encoder (no bias) is just added; merging it has no bias to go to.
    rng = np.random.default_rng(5)
    a = (rng.standard_normal((2, 1536)) / 40).astype(np.float32)
    b = (rng.standard_normal((48, 2)) * 0.3).astype(np.float32)
    bias = (rng.standard_normal(48) * 0.5).astype(np.float32)
    src = {"blocks.0.cam_encoder.lora_A.weight": a, "blocks.0.cam_encoder.lora_B.weight": b,
           "blocks.0.cam_encoder.diff_b": bias}
    m = LyraDiT(weights, num_heads=4, n_threads=1, lora=[src])
    before = m(**args)
    assert float(np.abs(before - base_out).max()) > 100 * TOL
    with pytest.raises(lyra2.Lyra2Error, match="cam_encoder"):
        m.merge_lora()
    np.testing.assert_array_equal(m(**args), before)  # a refused merge changes nothing


def lora_error(weights, src, match):
    with pytest.raises(lyra2.Lyra2Error, match=match):
        LyraDiT(weights, num_heads=4, lora=[src])


def test_lora_errors_name_the_key(weights):
    a = np.zeros((4, 48), np.float32)
    b = np.zeros((48, 4), np.float32)
    lora_error(weights, {"blocks.7.self_attn.q.lora_A.weight": a, "blocks.7.self_attn.q.lora_B.weight": b},
               r"blocks\.7\.self_attn\.q.*no Linear")
    lora_error(weights, {"blocks.0.norm3.lora_A.weight": a, "blocks.0.norm3.lora_B.weight": b},
               r"no Linear 'blocks\.0\.norm3'")
    lora_error(weights, {"blocks.0.ffn.0.lora_A.weight": a, "blocks.0.ffn.0.lora_B.weight": b},
               r"blocks\.0\.ffn\.0\.lora_B\.weight.*\(96, 4\)")
    lora_error(weights, {"blocks.0.ffn.2.lora_A.weight": a, "blocks.0.ffn.2.lora_B.weight": b},
               r"blocks\.0\.ffn\.2\.lora_A\.weight.*\(rank, 96\)")
    lora_error(weights, {"blocks.0.self_attn.q.lora_A.weight": a}, r"blocks\.0\.self_attn\.q.*no up")
    lora_error(weights, {"blocks.0.self_attn.q.lora_A.weight": a, "blocks.0.self_attn.q.lora_B.weight": b,
                         "blocks.0.self_attn.q.weight": b}, r"blocks\.0\.self_attn\.q\.weight")
    lora_error(weights, {"lora_unet_blocks_0_self_attn_q.lora_down.weight": a,
                         "blocks.0.self_attn.q.lora_up.weight": b}, "musubi")
    lora_error(weights, {"lora_unet_blocks_0_self_attn_z.lora_down.weight": a,
                         "lora_unet_blocks_0_self_attn_z.lora_up.weight": b}, "blocks_0_self_attn_z")
    lora_error(weights, {"blocks.0.self_attn.q.lora_A.weight": a, "blocks.0.self_attn.q.lora_down.weight": a,
                         "blocks.0.self_attn.q.lora_B.weight": b}, "already has")
    lora_error(weights, {"blocks.0.self_attn.q.diff": np.ones(48, np.float32)}, "no lora_A")
    with pytest.raises(TypeError, match="LoRA source"):
        LyraDiT(weights, num_heads=4, lora=[42])


# Folding on a device in upstream's bf16 policy (docs/PRECISION.md): the generate pipeline folds a run's fixed LoRAs
# into the DiT's bf16 weights before placing them (csrc/pipeline/ar_models.c), where upstream evaluates the adapters
# unfolded in bf16. Both land at the bf16 policy's own distance from the float32 unfolded reference: the fold trades
# the adapter branch's roundings (its bf16 down and up projections, the scale, the add into the output) for one
# rounding of each folded weight to bf16 (a relative 2^-9, like the checkpoint's own), while the bf16 activations of
# the rest of the network dominate both errors. Measured here (the three adapters at 0.4 / 0.4 / 1.0, case b): folded /
# unfolded max-abs error 1.03, rms 1.12; on three more random adapter sets x two inputs (docs/PRECISION.md) 0.80-1.27
# and 0.93-1.10. Bound: folded max-abs <= 1.5x and rms <= 1.3x the unfolded run's (a fold that double-counted or
# dropped an adapter moves the output by up to the LoRA effect, ~70x the bf16 error here).
def test_folded_bf16_drift_on_the_emulated_device(weights, args, adapters, base_out, monkeypatch, tmp_path):
    monkeypatch.setenv("LYRA2_EMULATED_CUDA", "1")
    path = str(tmp_path / "dit.safetensors")
    lio.save_safetensors(weights, path, dtype="bf16")  # the checkpoint's dtype: the fold rounds to it
    lora = [(adapters["realism"][0], 0.4), (adapters["detail"][0], 0.4), adapters["dmd"][0]]
    ref = LyraDiT(path, num_heads=4, n_threads=1, lora=lora)(**args)           # CPU, float32, unfolded
    unfolded = LyraDiT(path, num_heads=4, n_threads=1, lora=lora, device="cuda")
    folded = LyraDiT(path, num_heads=4, n_threads=1, lora=lora, device="cuda", fold_lora=True)
    assert len(unfolded.lora_adapters) == 3 and folded.lora_adapters == []
    assert unfolded.precision == folded.precision == "bf16"
    u, f = unfolded(**args), folded(**args)
    scale, rms = float(np.abs(ref).max()), lambda d: float(np.sqrt(np.mean(d ** 2) / np.mean(ref ** 2)))
    eu, ef = float(np.abs(u - ref).max()), float(np.abs(f - ref).max())
    effect = float(np.abs(ref - LyraDiT(path, num_heads=4, n_threads=1)(**args)).max())
    print(f"bf16 vs f32 unfolded: unfolded max-abs {eu:.3g} (rel {eu / scale:.3g}, rms-rel {rms(u - ref):.3g}); "
          f"folded max-abs {ef:.3g} (rel {ef / scale:.3g}, rms-rel {rms(f - ref):.3g}); LoRA effect {effect:.3g}")
    assert ef <= 1.5 * eu and rms(f - ref) <= 1.3 * rms(u - ref)
    assert effect > 20 * ef   # the LoRAs matter: a wrong fold could not hide in the bound
    with pytest.raises(TypeError, match="fold_lora"):
        LyraDiT(path, num_heads=4, fold_lora=1)
