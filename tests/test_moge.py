"""MoGe v1 in C against the upstream golden (tests/data/moge_tiny*.npz, golden README §8) and the focal/shift
solver against scipy.optimize.least_squares. Tolerances are the README's float32 ones unless a comment says."""
import os

import numpy as np
import pytest

from conftest import DATA
import numpy_refs
from lyra2 import _core

G = np.load(os.path.join(DATA, "moge_tiny.npz"))
LM_CASES = ["", "lmunit0_", "lmunit1_", "lmunit2_"]


def rel(a, b):
    return numpy_refs.rel(a, b, floor=1e-30)


# ---------------------------------------------------------------- focal / shift (upstream MGT:40-52, MGN:79-112)

@pytest.mark.parametrize("case", LM_CASES)
def test_lm_matches_golden(case):
    r = _core.moge_lm_solve(G[case + "lm_uv"], G[case + "lm_xyz"], 256)
    x, cost, nfev, _, _ = G[case + "lm_result_f64"]
    # scipy 1.10 adds 2 evaluations before MINPACK's and 3 after: MINPACK's own are trace[2 : 2 + nfev].
    ref = G[case + "lm_trace_f64"][2:2 + int(nfev)]
    assert r["nfev"] == int(nfev)          # one iteration more or less is a real difference (README)
    assert r["status"] == 1                # MINPACK info 1 (ftol) = scipy status 2
    assert rel(r["trace"][:, 0], ref[:, 0]) < 1e-9
    assert rel(r["trace"][:, 1], ref[:, 1]) < 1e-9
    assert rel(r["shift"], x) < 2e-5
    assert rel(np.float32(r["shift"]), G[case + "lm_shift"]) < 2e-5
    assert rel(r["cost"], cost) < 2e-5
    assert rel(r["focal"], G[case + "lm_focal_f64"]) < 2e-5


def _synthetic(rng, n, f_true, s0, noise, z0, z1):
    uv = rng.uniform(-0.8, 0.8, (n, 2))
    z = rng.uniform(z0, z1, n)
    xy = uv * z[:, None] / f_true + noise * rng.standard_normal((n, 2))
    return uv.astype(np.float32), np.c_[xy, z - s0].astype(np.float32)


def _scipy_shift(uv, xyz):
    """MoGe's solve_optimal_focal_shift, written out with scipy (the independent reference)."""
    from scipy.optimize import least_squares
    xy, z = xyz[:, :2], xyz[:, 2]

    def fn(shift):
        q = xy / (z + shift)[:, None]
        f = (q * uv).sum() / np.square(q).sum()
        return (f * q - uv).ravel()

    return least_squares(fn, x0=0, ftol=1e-3, method="lm").x[0]


def test_lm_matches_scipy_on_random_maps():
    pytest.importorskip("scipy")
    rng = np.random.default_rng(7)
    worst = 0.0
    for _ in range(12):
        n = int(rng.integers(50, 4096))
        f_true, s0 = rng.uniform(0.5, 2.5), rng.uniform(-1.0, 3.0)
        uv, xyz = _synthetic(rng, n, f_true, s0, rng.uniform(0, 0.01), 2.0 + abs(s0), 8.0 + abs(s0))
        mine = _core.moge_lm_solve(uv, xyz)["shift"]
        ref = _scipy_shift(uv, xyz)
        # scipy >= 1.15 runs a C translation of MINPACK whose finite-difference step uses DBL_EPSILON instead of
        # Fortran dpmpar's 12-digit constant: the iterates then differ at ~1e-7 relative, so 1e-5 here.
        worst = max(worst, abs(mine - ref) / max(abs(ref), 1e-3))
        assert abs(mine - ref) <= 1e-5 * max(abs(ref), 1e-3), (mine, ref)
        assert abs(mine - s0) < 0.2        # and it recovers the planted shift (noise-limited)
    assert worst < 1e-5


def test_lm_rejects_bad_shapes():
    with pytest.raises(ValueError, match="uv"):
        _core.moge_lm_solve(np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="same number of rows"):
        _core.moge_lm_solve(np.zeros((4, 2), np.float32), np.zeros((5, 3), np.float32))


def test_samples_and_recovery_match_golden():
    pts, mask = G["moge_fwd_points"][0], G["moge_mask"]
    uv, xyz = _core.moge_samples(pts, mask)
    assert uv.shape == G["lm_uv"].shape
    assert np.abs(uv - G["lm_uv"]).max() <= 1e-6
    assert np.array_equal(xyz, G["lm_xyz"])
    focal, shift, n, nfev, _ = _core.moge_recover_focal_shift(pts, mask)
    assert n == len(G["lm_uv"]) and nfev == int(G["lm_result_f64"][2])
    assert rel(shift, G["moge_shift"]) < 2e-5 and rel(focal, G["moge_focal"]) < 2e-5


def test_recovery_with_too_few_samples():
    pts = np.ones((200, 200, 3), np.float32)
    mask = np.zeros((200, 200), bool)
    mask[3, 3] = True                      # nearest 64×64 samples rows/cols floor(i·3.125): one valid sample
    assert _core.moge_recover_focal_shift(pts, mask)[:3] == (1.0, 0.0, 1)   # upstream: focal 1, shift 0


def test_uv_grid():
    H, W = 7, 12
    uv = _core.moge_uv(H, W)
    a = W / H
    u = np.linspace(-a / np.hypot(1, a) * (W - 1) / W, a / np.hypot(1, a) * (W - 1) / W, W)
    v = np.linspace(-1 / np.hypot(1, a) * (H - 1) / H, 1 / np.hypot(1, a) * (H - 1) / H, H)
    assert np.abs(uv[..., 0] - u[None, :]).max() < 1e-6 and np.abs(uv[..., 1] - v[:, None]).max() < 1e-6


def test_finish_matches_golden_infer_outputs():
    r = _core.moge_finish(G["moge_fwd_points"][0], G["moge_fwd_mask"][0], 0.5)
    assert np.array_equal(r["mask"], G["moge_mask"].astype(bool))
    for key in ("depth", "points"):
        ref = G["moge_" + key]
        assert np.array_equal(np.isinf(r[key]), np.isinf(ref))
        fin = np.isfinite(ref)
        # depth: README rel 3e-5. points: the golden's utils3d is a stand-in (unused by Lyra); 1e-4 relative.
        assert rel(r[key][fin], ref[fin]) < (3e-5 if key == "depth" else 1e-4)
    assert np.abs(r["intrinsics"] - G["moge_intrinsics"]).max() < 2e-5 * np.abs(G["moge_intrinsics"]).max()
    lyra = _core.moge_lyra_depth(r["depth"], r["mask"])
    assert rel(lyra, G["lyra_moge_depth"]) < 3e-5


# ---------------------------------------------------------------- the network (upstream MOGE:269-283, MHUB:18-82,
# MVIT, MOGE:24-142)

W_TINY = dict(np.load(os.path.join(DATA, "moge_tiny_weights.npz")))
TINY = dict(num_heads=4, num_tokens_range=(30, 60))   # the tiny backbone's heads; golden num_tokens_range


@pytest.fixture(scope="module")
def tiny():
    from lyra2.models import MoGe
    return MoGe(W_TINY, **TINY)


@pytest.fixture(scope="module")
def tiny_run(tiny):
    return tiny.run(G["moge_input"], debug=True)


def test_config_from_weights(tiny):
    c = tiny.config
    assert (c["dim"], c["depth"], c["heads"], c["n_features"], c["dim_proj"]) == (64, 6, 4, 4, 32)
    assert c["dim_up"] == [32, 16, 16] and c["hidden"] == [64, 32, 32] and c["n_res"] == 2
    assert (c["last_ch"], c["last_res"], c["last_k"]) == (8, 0, 1)


def test_intermediates_match_golden(tiny_run):
    r = tiny_run
    assert r["num_tokens"] == int(G["moge_num_tokens"])
    checks = [("image_resized", G["moge_image_resized"][0], 3e-5), ("image_14", G["moge_image_14"][0], 3e-5),
              ("taps", np.stack([G[f"moge_tap{k}"][0] for k in range(4)]), 5e-5)]
    checks += [(f"stages{b}", G[f"moge_head_up{b}"][0], 5e-5) for b in range(3)]
    checks += [("head", np.concatenate([G["moge_head_points"][0], G["moge_head_mask"][0]]), 1e-4),
               ("fwd_points", G["moge_fwd_points"][0], 1e-4), ("fwd_mask", G["moge_fwd_mask"][0], 1e-4)]
    for name, ref, tol in checks:
        got = r["stages"][int(name[-1])] if name.startswith("stages") else r[name]
        assert got.shape == ref.shape, name
        err = np.abs(got - ref).max()
        assert err <= tol, (name, err)


def test_infer_outputs_match_golden(tiny, tiny_run):
    r = tiny(G["moge_input"])
    assert set(r) == {"depth", "mask", "intrinsics", "points"}
    # mask exact except logits within 1e-5 of the threshold (README)
    near = np.abs(G["moge_fwd_mask"][0] - 0.5) < 1e-5
    assert np.array_equal(r["mask"][~near], G["moge_mask"].astype(bool)[~near])
    assert rel(tiny_run["shift"], G["moge_shift"]) < 2e-5 and rel(tiny_run["focal"], G["moge_focal"]) < 2e-5
    fin = np.isfinite(G["moge_depth"])
    assert np.array_equal(np.isfinite(r["depth"]), fin)
    assert rel(r["depth"][fin], G["moge_depth"][fin]) < 3e-5
    assert np.abs(r["intrinsics"] - G["moge_intrinsics"]).max() < 2e-5 * G["moge_intrinsics"].max()
    assert rel(r["points"][fin], G["moge_points"][fin]) < 1e-4
    assert rel(_core.moge_lyra_depth(r["depth"], r["mask"]), G["lyra_moge_depth"]) < 3e-5


def test_arena_plan_covers_the_run(tiny_run):
    assert 0 < tiny_run["arena_peak"] <= tiny_run["arena_bytes"]


def test_safetensors_with_model_config(tmp_path):
    import json
    from lyra2.io import save_safetensors
    from lyra2.models import MoGe
    path = tmp_path / "moge.safetensors"
    # the golden weights lie on the bf16 grid: storing them as bf16 is lossless
    save_safetensors(W_TINY, path, dtype="bf16",
                     metadata={"model_config": json.dumps({"num_tokens_range": [30, 60], "remap_output": "exp"})})
    m = MoGe(str(path), num_heads=4)
    assert (m.config["tokens_min"], m.config["tokens_max"]) == (30, 60)
    r = m(G["moge_input"])
    fin = np.isfinite(G["moge_depth"])
    assert rel(r["depth"][fin], G["moge_depth"][fin]) < 3e-5


def test_weight_errors():
    from lyra2 import Lyra2Error
    from lyra2.models import MoGe
    w = dict(W_TINY)
    del w["head.upsample_blocks.1.2.layers.5.bias"]
    with pytest.raises(Lyra2Error, match="head.upsample_blocks.1.2.layers.5.bias"):
        MoGe(w, **TINY)
    w = dict(W_TINY, **{"head.output_block.1.0.weight": np.zeros((8, 17, 3, 3), np.float32)})
    with pytest.raises(Lyra2Error, match="head.output_block.1.0.weight"):
        MoGe(w, **TINY)
    w = dict(W_TINY, **{"head.extra": np.zeros(3, np.float32)})
    with pytest.raises(Lyra2Error, match="head.extra"):
        MoGe(w, **TINY)
    with pytest.raises(Lyra2Error, match="CUDA"):
        MoGe(W_TINY, device="cuda", **TINY)
    with pytest.raises(ValueError, match="heads"):
        MoGe(W_TINY, num_heads=5, num_tokens_range=(30, 60))


def test_image_errors(tiny):
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        tiny(np.zeros((72, 128, 3), np.float32))
    with pytest.raises(TypeError, match="float"):
        tiny(np.zeros((3, 72, 128), np.uint8))
    with pytest.raises(ValueError, match="smaller than one 14x14 patch"):
        tiny(np.zeros((3, 2, 400), np.float32))


def test_cost_note_numbers():
    from lyra2.models.moge import moge_cost
    c = moge_cost(480, 832)
    # upstream MOGE:269-283 sizes and docs/REFERENCES.md#weight-names's parameter count less the unused mask_token
    # (1024)
    assert (c["h1"], c["w1"], c["h14"], c["w14"], c["tokens"]) == (531, 921, 518, 910, 2500)
    assert c["params"] == 314_174_020 - 1024
    c7 = moge_cost(720, 1280)
    assert (c7["h1"], c7["w1"], c7["h14"], c7["w14"]) == (525, 933, 518, 924)
    assert 2.0e12 < c["flops"] < c7["flops"] < 2.6e12
