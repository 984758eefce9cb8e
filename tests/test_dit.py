"""The Lyra-2 DiT (csrc/models/dit*.c, lyra2.models.LyraDiT).

References: the upstream golden run tests/data/dit_tiny*.npz (golden README §3: float32 upstream forward of a
tiny Lyra2WanModel; tolerances: out abs 5e-5 with rms <= 5e-6, intermediates rel 1e-5, integer items exact),
and a NumPy RoPE reference written here (angles at the mean position of each pooled cell)."""
import math

import numpy as np
import pytest

import lyra2
from conftest import DATA
from lyra2 import io as lio
from lyra2.models.dit import DEFAULT_FRAMEPACK, LyraDiT, framepack_layout, rope_angles

INPUTS = ["x_B_C_T_H_W", "timesteps_B_T", "crossattn_emb", "frame_cond_crossattn_emb_B_L_D", "y_B_C_T_H_W",
          "y_buffer_B_C_T_H_W"]
OUT_ABS, OUT_RMS, INTER_REL = 5e-5, 5e-6, 1e-5  # golden README §3


@pytest.fixture(scope="module")
def golden():
    with np.load(f"{DATA}/dit_tiny.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def weights():
    with np.load(f"{DATA}/dit_tiny_weights.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def model(weights):
    return LyraDiT(weights, num_heads=4)  # tiny: dim 48, 4 heads of 12 (not derivable from the weights)


def case_inputs(golden, case):
    return {k: golden[f"case{case}_{k}"] for k in INPUTS}


def errors(a, ref):
    d = (a.astype(np.float64) - ref)
    return float(np.abs(d).max()), float(np.sqrt(np.mean(d * d)))


# ---------------- golden parity ----------------

@pytest.mark.parametrize("case", ["a", "b"])
def test_golden_output(model, golden, case):
    out = model(**case_inputs(golden, case))
    ref = golden[f"case{case}_out"]
    assert out.dtype == np.float32 and out.shape == ref.shape
    mx, rms = errors(out, ref)
    print(f"case {case}: out max-abs {mx:.3g} rms {rms:.3g} (max|ref| {np.abs(ref).max():.3g})")
    assert mx <= OUT_ABS and rms <= OUT_RMS


INTERMEDIATES = ["tokens", "freqs", "camera_tokens", "buffer_tokens", "time_embedding", "time_projection",
                 "text_embedding", "img_emb", "block0", "block1", "head"]


def test_golden_intermediates(model, golden):
    out, inter = model(**case_inputs(golden, "b"), return_intermediates=True)
    assert sorted(inter) == sorted(INTERMEDIATES)
    for k in INTERMEDIATES:
        ref = golden[f"inter_{k}"]
        assert inter[k].shape == ref.shape, k
        mx, rms = errors(inter[k], ref)
        scale = float(np.abs(ref).max())
        print(f"{k:16s} max-abs {mx:.3g} rms {rms:.3g} rel {mx / scale:.3g}")
        assert mx <= INTER_REL * scale, k  # rel 1e-5 of the tensor's range
    # Exact items: the buffer/camera tokens are copies and means of bf16-grid inputs; validity is 0/1.
    assert np.array_equal(inter["buffer_tokens"][..., -1], golden["inter_buffer_tokens"][..., -1])
    fp = framepack_layout(DEFAULT_FRAMEPACK, golden["caseb_x_B_C_T_H_W"].shape[3:])
    gen = fp["chunks"][-1]
    assert (fp["gen_start"], fp["tokens"]) == tuple(golden["inter_gen_range"])
    assert gen["grid"] == tuple(golden["inter_gen_grid"])


def test_float64_and_strided_inputs_accepted(model, golden):
    args = case_inputs(golden, "a")
    ref = model(**args)
    args64 = {k: np.asfortranarray(v.astype(np.float64)) for k, v in args.items()}
    np.testing.assert_array_equal(model(**args64), ref)


def test_repeated_and_multithread_calls_agree(weights, golden):
    # Same numbers from a single-threaded model and from a second call (arena reuse); threads only split work.
    one = LyraDiT(weights, num_heads=4, n_threads=1)
    args = case_inputs(golden, "b")
    a = one(**args)
    np.testing.assert_array_equal(one(**args), a)
    mx, _ = errors(LyraDiT(weights, num_heads=4)(**args), a)
    assert mx <= 1e-5


def test_bf16_safetensors_with_net_prefix(weights, golden, model, tmp_path):
    # The golden weights lie on the bf16 grid, so a bf16 file holds them exactly; matrices stay bf16 in memory.
    path = tmp_path / "dit.safetensors"
    lio.save_safetensors({"net." + k: v for k, v in weights.items()}, str(path), dtype="bf16")
    m = LyraDiT(str(path), num_heads=4)
    assert m.config["weight_bytes"] < model.config["weight_bytes"] * 0.6
    args = case_inputs(golden, "b")
    mx, _ = errors(m(**args), model(**args))
    assert mx <= 1e-5


# ---------------- RoPE: averaged angles vs a NumPy reference ----------------

def rope_reference(layout, h_lat, w_lat, head_dim):
    """Angles at the mean of the clamped positions of each pooled cell (angles are linear in position)."""
    fp = framepack_layout(layout, (h_lat, w_lat))
    hb, wb = h_lat // 2, w_lat // 2
    dh = 2 * (head_dim // 6)
    dt = head_dim - 2 * dh
    wt = 10000.0 ** (-np.arange(dt // 2) * 2.0 / dt)
    wh = 10000.0 ** (-np.arange(dh // 2) * 2.0 / dh)
    rows = []
    for c in fp["chunks"]:
        pt, ph, _ = c["patch"]
        k = ph // 2  # pool kernel on the 2x2 token grid
        f, gh, gw = c["grid"]
        for fi in range(f):
            ts = [c["slot0"] + min(fi * pt + a, c["frames"] - 1) for a in range(pt)]
            for i in range(gh):
                hs = [min(i * k + r, hb - 1) for r in range(k)]
                for j in range(gw):
                    ws = [min(j * k + s, wb - 1) for s in range(k)]
                    rows.append(np.concatenate([np.mean(ts) * wt, np.mean(hs) * wh, np.mean(ws) * wh]))
    return np.array(rows), fp


@pytest.mark.parametrize("layout,hw,head_dim", [
    (DEFAULT_FRAMEPACK, (4, 6), 12),       # golden case b
    (DEFAULT_FRAMEPACK, (60, 104), 128),   # 14B at 480p: 38246 tokens
    ("f3k2f1s3f5k4_g3", (10, 14), 24),     # odd frame counts and kernels that do not divide the grid
])
def test_rope_angle_averaging(layout, hw, head_dim):
    got = rope_angles(layout, *hw, head_dim=head_dim)
    ref, fp = rope_reference(layout, *hw, head_dim)
    assert got.shape == (fp["tokens"], head_dim // 2)
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-5)  # f32 table averaged vs f64 mean position


def test_rope_border_positions():
    # Spec upstream W:93-188, W:203-232, WL:586-596: the first h and w frequencies are 1, so those angles are the
    # positions themselves.
    nt = (128 - 4 * (128 // 6)) // 2
    nh = 128 // 6
    a = rope_angles(DEFAULT_FRAMEPACK, 60, 104, 128)
    fp = framepack_layout(DEFAULT_FRAMEPACK, (60, 104))
    c3 = fp["chunks"][3]
    f, gh, gw = c3["grid"]
    h_pos = a[c3["token0"]:c3["token0"] + c3["n_tokens"], nt].reshape(f, gh, gw)
    assert h_pos[0, -1, 0] == pytest.approx(28.75)  # rows {28, 29, 29, 29}, not the clamped centre 29
    assert h_pos[0, 0, 0] == pytest.approx(1.5)
    b = rope_angles(DEFAULT_FRAMEPACK, 4, 6, 12)  # golden case b: chunk 3 h=0.75, w=1.25; chunk 1 w=2.0
    fpb = framepack_layout(DEFAULT_FRAMEPACK, (4, 6))
    t3, t1 = fpb["chunks"][3]["token0"], fpb["chunks"][1]["token0"]
    assert (b[t3, 2], b[t3, 4]) == (pytest.approx(0.75), pytest.approx(1.25))
    assert b[t1 + 1, 4] == pytest.approx(2.0)
    assert nh == 21


# ---------------- errors ----------------

def test_input_shape_errors(model, golden):
    args = case_inputs(golden, "b")
    bad = dict(args, y_B_C_T_H_W=args["y_B_C_T_H_W"][:, :400])
    with pytest.raises(ValueError, match="y_B_C_T_H_W"):
        model(**bad)
    with pytest.raises(ValueError, match="x_B_C_T_H_W"):
        model(**dict(args, x_B_C_T_H_W=args["x_B_C_T_H_W"][:, :, :44]))
    with pytest.raises(ValueError, match="x_B_C_T_H_W"):
        model(**dict(args, x_B_C_T_H_W=args["x_B_C_T_H_W"][0]))
    with pytest.raises(ValueError, match="crossattn_emb"):
        model(**dict(args, crossattn_emb=args["crossattn_emb"][:, :300]))
    with pytest.raises(ValueError, match="frame_cond_crossattn_emb_B_L_D"):
        model(**dict(args, frame_cond_crossattn_emb_B_L_D=args["frame_cond_crossattn_emb_B_L_D"][..., :1000]))
    with pytest.raises(ValueError, match="y_buffer_B_C_T_H_W"):
        model(**dict(args, y_buffer_B_C_T_H_W=args["y_buffer_B_C_T_H_W"][..., :4]))
    with pytest.raises(ValueError, match="timesteps_B_T"):
        model(**dict(args, timesteps_B_T=np.array([937.5])))
    with pytest.raises(ValueError, match="timesteps_B_T"):
        model(**dict(args, timesteps_B_T=np.array([[np.nan]])))
    odd = {k: (v[..., :3] if v.ndim == 5 else v) for k, v in args.items()}
    with pytest.raises(ValueError, match="even"):
        model(**odd)


def test_device_and_argument_errors(weights):
    if not lyra2.backends()["cuda"]:  # with a device (or the emulated one) tests/device_checks/check_dit.py runs it
        with pytest.raises(lyra2.Lyra2Error, match="(?i)cuda backend"):
            LyraDiT(weights, num_heads=4, device="cuda")
    with pytest.raises(ValueError, match="device"):
        LyraDiT(weights, num_heads=4, device="tpu")
    with pytest.raises(ValueError, match="num_heads"):
        LyraDiT(weights)  # width 48 is not a multiple of 128
    with pytest.raises(ValueError, match="num_heads"):
        LyraDiT(weights, num_heads=5)
    with pytest.raises(TypeError, match="weights"):
        LyraDiT(42)


def test_weight_errors_name_the_tensor(weights):
    missing = dict(weights)
    del missing["blocks.1.cross_attn.norm_k_img.weight"]
    with pytest.raises(lyra2.Lyra2Error, match=r"'blocks\.1\.cross_attn\.norm_k_img\.weight' is missing"):
        LyraDiT(missing, num_heads=4)
    extra = dict(weights, **{"blocks.0.self_attn.alpha": np.zeros(1, np.float32)})
    with pytest.raises(lyra2.Lyra2Error, match=r"unexpected tensor 'blocks\.0\.self_attn\.alpha'"):
        LyraDiT(extra, num_heads=4)
    shaped = dict(weights, **{"blocks.0.ffn.2.weight": np.zeros((48, 95), np.float32)})
    with pytest.raises(lyra2.Lyra2Error, match=r"'blocks\.0\.ffn\.2\.weight' has shape \(48, 95\)"):
        LyraDiT(shaped, num_heads=4)
    ints = dict(weights, **{"head.head.bias": np.zeros(64, np.int64)})
    with pytest.raises(TypeError, match=r"'head\.head\.bias'"):
        LyraDiT(ints, num_heads=4)
    with pytest.raises(lyra2.Lyra2Error, match="clean_patch_embeddings"):
        LyraDiT(weights, framepack="f1k1f4s2f1s1f16k4f2k2_g20", num_heads=4)  # 5 segments, 6 embeddings
    with pytest.raises(lyra2.Lyra2Error, match=r"clean_patch_embeddings\.3\.weight"):
        LyraDiT(weights, framepack="f1k1f4s2f1s1f16k2f2k2f1k1_g20", num_heads=4)  # k2 where the weights have k4
    gap = {k: v for k, v in weights.items() if not k.startswith("blocks.0.")}
    with pytest.raises(lyra2.Lyra2Error, match="blocks"):
        LyraDiT(gap, num_heads=4)


def test_concurrent_calls_wait_for_the_model(model, golden):
    """Calls on one model from several threads are serialised by its lock (they used to raise "in use by
    another thread" when they overlapped); each result equals the single-threaded one bit for bit."""
    import threading

    args = case_inputs(golden, "a")
    ref = model(**args)
    results, failures = [], []
    start = threading.Barrier(4)

    def work():
        try:
            start.wait()
            for _ in range(2):
                results.append(model(**args))
                model.set_lora_weights([])  # a short locked call interleaved with the forwards
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    assert len(results) == 8 and all(np.array_equal(r, ref) for r in results)


def test_matches_plain_torch_port():
    # The whole forward against benchmarks/torch_dit.py, the plain-PyTorch port of the network that
    # benchmarks/cpu_vs_torch.py times (fp32, written from the network's definition), on random weights of a small
    # config with the real text/CLIP/camera/buffer widths and the released layout: max error relative to
    # max |torch| <= 1e-5 (the golden intermediates' bound).
    torch = pytest.importorskip("torch")
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import cpu_vs_torch as bench
    from torch_dit import TorchDiT, dit_weights
    rng = np.random.default_rng(3)
    cfg = dict(bench.dit_config(64, 2, True), text_dim=32, squeeze=16)
    w = dit_weights(rng, cfg)
    net = LyraDiT(w, cfg["layout"], num_heads=2, n_threads=2)
    H, W = 6, 10
    inp = bench.dit_inputs(rng, cfg, net.layout["total_frames"], H, W)
    ref = TorchDiT(w, cfg["layout"], 2, (H, W))
    with torch.no_grad():
        want = ref(*(torch.from_numpy(np.asarray(inp[k], np.float32)) for k in INPUTS)).numpy()
    got = net(**inp)
    assert got.shape == want.shape
    err = float(np.abs(got.astype(np.float64) - want).max()) / float(np.abs(want).max())
    assert err <= 1e-5, err
