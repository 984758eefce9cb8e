"""Tests of lyra2.sampling (csrc/sample): numpy-legacy noise, schedules, UniPC, CFG, DMD.

References: numpy itself (RNG), the worked tables of docs/REFERENCES.md#sampler-test-vectors (copied below), the
upstream golden run tests/data/sampler.npz (golden README §4), and NumPy re-implementations of upstream RF:224,
M:676-679, RF:225, UNI:88-107 written here. Convergence properties live in test_sampling_props.py.
"""
import math
import struct

import numpy as np
import pytest

from conftest import DATA
from lyra2 import sampling

f32 = np.float32
GOLDEN = f"{DATA}/sampler.npz"


def bits(x):
    """float32 -> its hex bit pattern, as the spec tables print it."""
    return "0x%08x" % struct.unpack("<I", struct.pack("<f", float(f32(x))))[0]


def from_bits(h):
    return struct.unpack("<f", struct.pack("<I", int(h, 16)))[0]


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as z:
        return {k: z[k] for k in z.files}


# ---- worked tables (UniPC, N = 28, shift 5): docs/REFERENCES.md#sampler-test-vectors
# ----------------------

# (i, sigma_i float64 repr, t_i, sigma_i float32 hex, lambda_i hex)
SPEC_GRID_N28 = [
    (0, '0.999799842450943', 999, '0x3f7ff2e2', '0xc108427c'),
    (1, '0.99244253052514231', 992, '0x3f7e10b7', '0xc09c1596'),
    (2, '0.98463941556458801', 984, '0x3f7c1154', '0xc0852293'),
    (3, '0.97634871268424694', 976, '0x3f79f1fd', '0xc06e1b0f'),
    (4, '0.96752324661940292', 967, '0x3f77af9a', '0xc0593acd'),
    (5, '0.9581095535388261', 958, '0x3f7546ab', '0xc048505b'),
    (6, '0.94804679707107498', 948, '0x3f72b332', '0xc039dc21'),
    (7, '0.9372654521088315', 937, '0x3f6ff0a1', '0xc02d0f39'),
    (8, '0.92568569620119934', 925, '0x3f6cf9bd', '0xc0216c3e'),
    (9, '0.91321542982885129', 913, '0x3f69c87d', '0xc016a075'),
    (10, '0.8997478216783461', 899, '0x3f6655e0', '0xc00c717a'),
    (11, '0.88515824041413826', 885, '0x3f6299bb', '0xc002b397'),
    (12, '0.86930038628705641', 869, '0x3f5e8a78', '0xbff28860'),
    (13, '0.8520013680628209', 852, '0x3f5a1cc3', '0xbfe00c9f'),
    (14, '0.83305537382788297', 833, '0x3f55431e', '0xbfcdc086'),
    (15, '0.81221544370200283', 812, '0x3f4fed5a', '0xbfbb73c3'),
    (16, '0.78918264541784744', 789, '0x3f4a07e0', '0xbfa8f5f2'),
    (17, '0.76359164316445949', 763, '0x3f437abe', '0xbf961395'),
    (18, '0.73499117517983181', 734, '0x3f3c2862', '0xbf82927d'),
    (19, '0.70281721364535377', 702, '0x3f33ebd4', '0xbf5c5a13'),
    (20, '0.66635539355079654', 666, '0x3f2a9644', '0xbf31164e'),
    (21, '0.62468734769917578', 624, '0x3f1feb83', '0xbf026e10'),
    (22, '0.57661228659516672', 576, '0x3f139cdd', '0xbe9e25c2'),
    (23, '0.5205293911595017', 520, '0x3f05416a', '0xbda84578'),
    (24, '0.45425609685154139', 454, '0x3ee89441', '0x3e3be47c'),
    (25, '0.37473742460797982', 374, '0x3ebfdd95', '0x3f030ee8'),
    (26, '0.27756168315620311', 277, '0x3e8e1c91', '0x3f74e302'),
    (27, '0.15611326591865937', 156, '0x3e1fdc28', '0x3fd7fdeb'),
]
# (i, p_i, c1 hex, c2 hex, r (9 digits) or None, 1/r hex or None, q_i or None, rho0 hex or None, rho1)
SPEC_STEPS_N28 = [
    (0, 1, '0x3f7e1dbc', '0xbbf121db', None, None, None, None, '-'),
    (1, 2, '0x3f7dfcb8', '0xbc00d1f7', '-5.07358694', '0xbe49d460', 1, None, '0.5'),
    (2, 2, '0x3f7dd82f', '0xbc09f443', '-1.62966394', '0xbf1d166d', 2, '0x3cdee506', '0x3f083459'),
    (3, 2, '0x3f7daf9a', '0xbc141972', '-1.34912837', '0xbf3dc08d', 2, '0x3d81623c', '0x3ef25eb8'),
    (4, 2, '0x3f7d825c', '0xbc1f6915', '-1.23411274', '0xbf4f6fbd', 2, '0x3d910bd5', '0x3ee9a19b'),
    (5, 2, '0x3f7d4fb2', '0xbc2c139b', '-1.17031896', '0xbf5abe69', 2, '0x3d989ad5', '0x3ee51ce6'),
    (6, 2, '0x3f7d16b7', '0xbc3a525e', '-1.12918293', '0xbf62b66d', 2, '0x3d9d2426', '0x3ee257b6'),
    (7, 2, '0x3f7cd650', '0xbc4a6bcf', '-1.10000932', '0xbf68b9ad', 2, '0x3da03471', '0x3ee07a08'),
    (8, 2, '0x3f7c8d24', '0xbc5cb6f8', '-1.0778625', '0xbf6d81d1', 2, '0x3da2722f', '0x3edf244e'),
    (9, 2, '0x3f7c3983', '0xbc719f65', '-1.060148', '0xbf7179c9', 2, '0x3da43208', '0x3ede252c'),
    (10, 2, '0x3f7bd952', '0xbc84d5c6', '-1.04534841', '0xbf74e4f9', 2, '0x3da59c4e', '0x3edd6226'),
    (11, 2, '0x3f7b69e7', '0xbc92c321', '-1.03249323', '0xbf77f18a', 2, '0x3da6d187', '0x3edcc993'),
    (12, 2, '0x3f7ae7d7', '0xbca3051a', '-1.02093315', '0xbf7ac041', 2, '0x3da7df54', '0x3edc51cc'),
    (13, 2, '0x3f7a4eac', '0xbcb62a84', '-1.01017404', '0xbf7d6bf3', 2, '0x3da8d635', '0x3edbf31f'),
    (14, 2, '0x3f799889', '0xbccceee1', '-0.99985826', '0xbf8004a5', 2, '0x3da9bde2', '0x3edba953'),
    (15, 2, '0x3f78bd88', '0xbce84eff', '-0.989637375', '0xbf81571e', 2, '0x3daaa080', '0x3edb70fc'),
    (16, 2, '0x3f77b2d9', '0xbd04d264', '-0.979201615', '0xbf82b7ff', 2, '0x3dab7e60', '0x3edb49c6'),
    (17, 2, '0x3f766957', '0xbd196a9a', '-0.968209982', '0xbf8433e6', 2, '0x3dac65c4', '0x3edb316f'),
    (18, 2, '0x3f74cb2f', '0xbd334d0f', '-0.956265509', '0xbf85daa2', 2, '0x3dad5ab8', '0x3edb2906'),
    (19, 2, '0x3f72b806', '0xbd547fab', '-0.942860186', '0xbf87c1d4', 2, '0x3dae6830', '0x3edb31b0'),
    (20, 2, '0x3f6ffdf5', '0xbd801059', '-0.927289426', '0xbf8a0967', 2, '0x3daf9a5c', '0x3edb4e7f'),
    (21, 2, '0x3f6c4c71', '0xbd9d9c77', '-0.908501983', '0xbf8ce42a', 2, '0x3db10278', '0x3edb8504'),
    (22, 2, '0x3f6719ca', '0xbdc731b5', '-0.884843886', '0xbf90a885', 2, '0x3db2baf8', '0x3edbdf02'),
    (23, 2, '0x3f5f6805', '0xbe025fee', '-0.853438377', '0xbf95fb46', 2, '0x3db4efc0', '0x3edc6e48'),
    (24, 2, '0x3f532fc2', '0xbe3340f9', '-0.808788359', '0xbf9e42ed', 2, '0x3db7f20c', '0x3edd55b5'),
    (25, 2, '0x3f3d9d6a', '0xbe84c52d', '-0.738699734', '0xbfad4706', 2, '0x3dbc5e9c', '0x3edee589'),
    (26, 2, '0x3f0ffc6a', '0xbee0072b', '-0.608393133', '0xbfd263e9', 2, '0x3dc3ac08', '0x3ee1fdc2'),
    (27, 1, '0x00000000', '0xbf800000', None, None, 2, '0x3dd25ac4', '0x3eea51ef'),
]


# ---- NumPy references of upstream T2V:157-159, M:650, UNI:117-139 / upstream UNI:88-107, UNI:265-266, UNI:399-400 /
# upstream M:710-728, SF:11-49, SF:40-43 ---------------------------------------------------


def ref_flow_schedule(n, shift):
    """Upstream's set_timesteps in numpy (upstream T2V:157-159, M:650, UNI:117-139), float64 until the casts."""
    a = np.linspace(1, 1 / 1000, 1000)[::-1].copy()
    s_train = (1.0 - a).astype(np.float32)
    u = np.linspace(float(s_train[0]), float(s_train[-1]), n + 1).copy()[:-1]
    sig = shift * u / (1 + (shift - 1) * u)
    return (sig * 1000).astype(np.int64), np.concatenate([sig, [0.0]]).astype(np.float32), sig


def log32(x):
    x = float(x)
    return f32(-np.inf) if x == 0.0 else f32(math.log(x))


def expm1_32(x):
    return f32(math.expm1(float(x)))


def ref_unipc_scalars(n, shift):
    """Per-step float32 scalars (upstream UNI:265-266, UNI:399-400, UNI:422, UNI:214-224, LAPACK-order 2x2 solve of
    upstream UNI:214-224, UNI:636-719, M:656-668)."""
    _, sig, _ = ref_flow_schedule(n, shift)
    lam = [f32(log32(f32(f32(1) - s)) - log32(s)) for s in sig]
    order = [min(2, n - i, i + 1) for i in range(n)]
    pred = []
    for i in range(n):
        h = f32(lam[i + 1] - lam[i])
        hh = f32(-h)
        phi = expm1_32(hh)
        c1 = f32(sig[i + 1] / sig[i])
        c2 = f32(f32(f32(1) - sig[i + 1]) * phi)
        r = f32(f32(lam[i - 1] - lam[i]) / h) if order[i] == 2 else None
        rinv = f32(f32(1) / r) if r is not None else None
        pred.append(dict(c1=c1, c2=c2, r=r, rinv=rinv, hh=hh, phi=phi))
    rho = [None]
    for i in range(1, n):
        if order[i - 1] == 1:
            rho.append((f32(0), f32(0.5)))
            continue
        hh, phi, r = pred[i - 1]["hh"], pred[i - 1]["phi"], pred[i - 1]["r"]
        psi1 = f32(f32(phi / hh) - f32(1))
        b1 = f32(f32(psi1 * f32(1)) / phi)
        psi2 = f32(f32(psi1 / hh) - f32(0.5))
        b2 = f32(f32(psi2 * f32(2)) / phi)
        A, b = [[f32(1), f32(1)], [r, f32(1)]], [b1, b2]
        if abs(r) > 1:
            A, b = [A[1], A[0]], [b[1], b[0]]
        l = f32(A[1][0] * f32(f32(1) / A[0][0]))
        u22 = f32(A[1][1] - f32(l * A[0][1]))
        x2 = f32(f32(b[1] - f32(l * b[0])) / u22)
        x1 = f32(f32(b[0] - f32(A[0][1] * x2)) / A[0][0])
        rho.append((x1, x2))
    return sig, lam, order, pred, rho


def ref_unipc(x, velocity, n, shift, t_hist):
    """UniPC-2 bh2 over the full float32 state (upstream UNI:214-224, UNI:636-719, M:656-668), CUDA's
    reciprocal-multiply division.
    x: (1, C, T, H, W); velocity(x, t) -> (1, C, T_new, H, W). Returns the list of states."""
    ts, _, _ = ref_flow_schedule(n, shift)
    sig, _, order, pred, rho = ref_unipc_scalars(n, shift)
    x = np.array(x, np.float32)
    ms, last, states = [], None, [x.copy()]
    for i in range(n):
        v = np.zeros_like(x)
        v[:, :, t_hist:] = velocity(x, int(ts[i]))
        m = x - sig[i] * v
        if i >= 1:
            p = pred[i - 1]
            y = p["c1"] * last - p["c2"] * ms[-1]
            dt = m - ms[-1]
            if order[i - 1] == 1:
                k = f32(0) + f32(0.5) * dt
            else:
                k = rho[i][0] * ((ms[-2] - ms[-1]) * p["rinv"]) + rho[i][1] * dt
            x = y - p["c2"] * k
        ms.append(m)
        last = x.copy()
        p = pred[i]
        y = p["c1"] * x - p["c2"] * m
        x = y - p["c2"] * (f32(0.5) * ((ms[-2] - m) * p["rinv"])) if order[i] == 2 else y - p["c2"] * f32(0)
        states.append(x.copy())
    return states


DMD_T = [f32(1000.0), f32(937.5), f32(from_bits("0x44505555")), f32(625.0)]
DMD_S = [f32(1.0), f32(0.9375), f32(from_bits("0x3f555555")), f32(0.625)]


def ref_dmd(x, velocity, eps, t_hist):
    """DMD 4 steps (upstream M:815-850, M:765-769, M:673-691). eps: 3 arrays (T, C, H, W)."""
    x = np.array(x, np.float32)
    for k in range(4):
        v = velocity(x, float(DMD_T[k]))
        x0 = (x[:, :, t_hist:].astype(np.float64) - np.float64(DMD_S[k]) * v.astype(np.float64)).astype(np.float32)
        if k < 3:
            s = DMD_S[k + 1]
            e = np.transpose(eps[k], (1, 0, 2, 3))[None, :, t_hist:]
            x[:, :, t_hist:] = (f32(1) - s) * x0 + s * e
        else:
            x[:, :, t_hist:] = x0
    return x


def toy_velocity(P, t_hist, a=0.5, b=0.001):
    """Golden README §4 toy field: ((a·x_g) + (t·b)) + P, float32 left to right."""
    def v(x, t):
        return ((f32(a) * x[:, :, t_hist:]) + (f32(t) * f32(b))) + P
    return v


# ---- RNG ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 12345, 478163327, 2**32 - 1])
def test_randn_matches_numpy(seed):
    # 6 seeds x 200,001 values (odd: ends on a fresh pair's first value) > 10^6 draws; exact.
    n = 200_001
    got = sampling.randn(seed, n)
    assert got.dtype == np.float64 and got.shape == (n,)
    assert np.array_equal(got, np.random.RandomState(seed).standard_normal(n))


@pytest.mark.parametrize("count", [0, 1, 2, 3, 7, 625, 1249])
def test_randn_small_and_odd_counts(count):
    for seed in (0, 3, 99):
        assert np.array_equal(sampling.randn(seed, count), np.random.RandomState(seed).standard_normal(count))


def test_randn_shape_is_c_order():
    shape = (1, 3, 5, 2, 3)
    got = sampling.randn(7, shape)
    assert got.shape == shape
    assert np.array_equal(got, np.random.RandomState(7).standard_normal(shape))
    assert sampling.randn(7, (2, 0, 3)).shape == (2, 0, 3)


@pytest.mark.parametrize("seed", [[0], [1, 2, 3], np.arange(700, dtype=np.uint32), [2**32 - 1, 0, 5],
                                  np.array([5]), np.array(9, dtype=np.uint64), np.int64(3)])
def test_randn_array_seed_is_init_by_array(seed):
    assert np.array_equal(sampling.randn(seed, 1001), np.random.RandomState(seed).standard_normal(1001))


@pytest.mark.parametrize("seed,exc", [(-1, ValueError), (2**32, ValueError), ([], ValueError),
                                      ([1, -2], ValueError), (1.5, TypeError), ("a", TypeError),
                                      ([[1, 2]], ValueError), (np.float64(2.0), TypeError)])
def test_randn_rejects_bad_seeds(seed, exc):
    with pytest.raises(exc):
        sampling.randn(seed, 3)


def test_randn_golden_vectors(golden):
    for s in (0, 1, 2):
        got = sampling.randn(s, 64)
        assert np.array_equal(got, golden[f"rng_seed{s}_f64"])
        assert np.array_equal(got.astype(np.float32), golden[f"rng_seed{s}_f32"])


def test_randn_spec_7_3_vectors():
    want = {0: ["0x3fe1cc78", "0x3ecce168", "0x3f7a8e93", "0x400f6acb", "0x3fef0c24", "0xbf7a2ee2"],
            1: ["0x3fcfea8d", "0xbf1c9c11", "0xbf073644", "0xbf895709", "0x3f5d8b5b", "0xc0134c69"],
            2: ["0xbed56149", "0xbd66780b", "0xc008b770", "0x3fd1f465", "0xbfe58f4c", "0xbf577cc1"]}
    for s, hx in want.items():
        assert [bits(v) for v in sampling.randn(s, 6)] == hx
    big = sampling.randn(1, (1, 16, 20, 60, 104)).astype(np.float32)
    assert bits(big[0, 1, 0, 0, 0]) == "0xc00dc522"
    assert bits(big.reshape(-1)[-1]) == "0x3f54d617"
    # The spec's float64 sum: numpy's pairwise summation order; 1e-9 covers a different order.
    assert abs(float(big.astype(np.float64).sum()) - (-408.15199480731667)) < 1e-9


# ---- schedules ---------------------------------------------------------------------------------


def test_flow_schedule_spec_table_n28():
    ts, sig, sig64 = sampling.flow_timesteps(28, 5.0, return_f64=True)
    assert ts.dtype == np.int64 and ts.shape == (28,) and sig.dtype == np.float32 and sig.shape == (29,)
    for i, s64, t, shex, _ in SPEC_GRID_N28:
        assert sig64[i] == float(s64), i
        assert ts[i] == t, i
        assert bits(sig[i]) == shex, i
    assert sig[28] == 0.0


def test_flow_schedule_spec_appendix():
    n35 = [999, 993, 987, 981, 974, 967, 960, 952, 943, 935, 925, 915, 905, 894, 882, 869, 855, 840, 824, 807,
           789, 768, 746, 722, 695, 666, 633, 596, 555, 508, 454, 391, 318, 232, 128]
    n50 = [999, 995, 991, 987, 982, 978, 973, 968, 963, 957, 952, 946, 940, 934, 927, 920, 913, 906, 898, 890,
           882, 873, 863, 854, 843, 833, 821, 809, 796, 783, 768, 753, 737, 720, 701, 681, 660, 636, 611, 584,
           555, 522, 487, 448, 405, 356, 302, 241, 172, 92]
    for n, want in [(35, n35), (50, n50), (1, [999]), (2, [999, 833]), (3, [999, 908, 713]), (4, [999, 937, 833, 624])]:
        assert sampling.flow_timesteps(n)[0].tolist() == want


@pytest.mark.parametrize("shift", [1.0, 2.5, 3.0, 5.0, 7.3, 12.0])
def test_flow_schedule_matches_numpy_for_all_step_counts(shift):
    # Bit-exact against upstream's numpy formula for every N in 1..100.
    for n in range(1, 101):
        rts, rsig, rsig64 = ref_flow_schedule(n, shift)
        if n >= 2 and rts[0] == rts[1]:  # upstream cannot run this grid (upstream T2V:157-159, M:650, UNI:117-139)
            with pytest.raises(ValueError, match="equal first timesteps"):
                sampling.flow_timesteps(n, shift)
            continue
        ts, sig, sig64 = sampling.flow_timesteps(n, shift, return_f64=True)
        assert np.array_equal(ts, rts) and np.array_equal(sig64, rsig64), (n, shift)
        assert np.array_equal(sig.view(np.uint32), rsig.view(np.uint32)), (n, shift)


def test_flow_schedule_golden(golden):
    for n in (28, 4, 10):
        ts, sig = sampling.flow_timesteps(n)
        assert np.array_equal(ts, golden[f"unipc_N{n}_timesteps"])
        assert np.array_equal(sig, golden[f"unipc_N{n}_sigmas"])


def test_flow_schedule_rejects_bad_arguments():
    for bad in (0, -3, 1001):
        with pytest.raises(ValueError, match="num_steps"):
            sampling.flow_timesteps(bad)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="shift"):
            sampling.flow_timesteps(10, bad)
    # shift 100 with 100 steps: t_0 = t_1 = 999, where upstream's step-index lookup starts at 1.
    with pytest.raises(ValueError, match="equal first timesteps"):
        sampling.flow_timesteps(100, 100.0)


def test_dmd_schedule_spec_and_golden(golden):
    ts, sig = sampling.dmd_timesteps()
    assert [bits(t) for t in ts] == ["0x447a0000", "0x446a6000", "0x44505555", "0x441c4000"]
    assert [bits(s) for s in sig] == ["0x3f800000", "0x3f700000", "0x3f555555", "0x3f200000"]
    assert np.array_equal(ts, golden["dmd_timesteps"])
    idx = [0, 250, 500, 750]
    assert np.array_equal(sig, golden["dmd_table_sigmas"][idx])
    assert np.array_equal(ts, golden["dmd_table_timesteps"][idx])
    assert np.array_equal(ts, golden["dmd_t_in"].reshape(-1))


# ---- UniPC scalars -----------------------------------------------------------------------------


def test_unipc_scalars_spec_table_n28():
    co = sampling.unipc_coefficients(28, 5.0)
    for i, _, _, _, lhex in SPEC_GRID_N28:
        assert bits(co["lambda"][i]) == lhex, i
    assert co["lambda"][28] == np.inf
    for i, p, c1, c2, r, rinv, q, rho0, rho1 in SPEC_STEPS_N28:
        assert co["order"][i] == p, i
        assert bits(co["c1"][i]) == c1 and bits(co["c2"][i]) == c2, i
        if r is not None:
            assert f"{float(co['r'][i]):.9g}" == r and bits(co["rinv"][i]) == rinv, i
        assert co["corr_order"][i] == (q or 0), i
        if q == 2:
            assert bits(co["rho0"][i]) == rho0 and bits(co["rho1"][i]) == rho1, i
        elif q == 1:
            assert co["rho1"][i] == 0.5
    # The worked corrector of step 2 (docs/REFERENCES.md#sampler-test-vectors): ρ = (0.0272088163, 0.532048762).
    assert f"{float(co['rho0'][2]):.9g}" == "0.0272088163" and f"{float(co['rho1'][2]):.9g}" == "0.532048762"


@pytest.mark.parametrize("n,shift", [(1, 5.0), (2, 5.0), (3, 5.0), (7, 1.0), (35, 5.0), (50, 5.0), (100, 3.0)])
def test_unipc_scalars_match_numpy_reference(n, shift):
    co = sampling.unipc_coefficients(n, shift)
    sig, lam, order, pred, rho = ref_unipc_scalars(n, shift)
    assert np.array_equal(co["sigma"], sig[:n]) and co["order"].tolist() == order
    assert np.array_equal(co["lambda"], np.array(lam, np.float32))
    for i in range(n):
        assert co["c1"][i] == pred[i]["c1"] and co["c2"][i] == pred[i]["c2"], i
        if order[i] == 2:
            assert co["rinv"][i] == pred[i]["rinv"], i
        if i >= 1:
            assert (co["rho0"][i], co["rho1"][i]) == (rho[i][0] if order[i - 1] == 2 else 0, rho[i][1]), i


# ---- UniPC runs --------------------------------------------------------------------------------

# Golden README §4: "UniPC: abs 2e-6 per state" (upstream ran on torch CPU: true division where CUDA
# multiplies by 1/r, LAPACK solve, SLEEF logs), timesteps/sigmas/orders exact.
UNIPC_GOLDEN_ATOL = 2e-6


def golden_cfg_denoiser(g, calls=None):
    """The golden toy (README §4): cond/uncond fields combined with CFG g = 5 by sampling.cfg."""
    P, th = g["toy_P"], g["history"].shape[2]
    cond = toy_velocity(P, th, 0.5, 0.001)
    minus_p = -P

    def uncond(x, t):
        return ((f32(-0.25) * x[:, :, th:]) + (f32(t) * f32(0.0005))) + minus_p  # "− P": exact negation

    def den(x, t):
        if calls is not None:
            calls.append((x.copy(), t))
        return sampling.cfg(cond(x, t), uncond(x, t), 5.0)
    return den


@pytest.mark.parametrize("n", [28, 4, 10])
def test_unipc_golden_every_intermediate(golden, n):
    calls = []
    out, tr = sampling.unipc_sample(golden_cfg_denoiser(golden, calls), golden["history"], 1, n, 5.0, 20,
                                    return_trace=True)
    pre = f"unipc_N{n}_"
    assert np.array_equal(tr["order"], golden[pre + "order"])
    assert np.array_equal(tr["x"][0][:, 25:], golden["init_noise"][0])  # initial noise: exact
    assert np.array_equal(tr["x"][0], golden[pre + "x"][0])
    for key in ("x", "v", "x0", "x_corrected"):
        err = np.abs(tr[key] - golden[pre + key]).max()
        assert err <= UNIPC_GOLDEN_ATOL, (key, err)
    assert np.abs(out - golden[pre + "out"]).max() <= UNIPC_GOLDEN_ATOL
    assert np.array_equal(out[0], tr["x"][-1][:, 25:])
    # The denoiser saw the whole state at each step, with the int64 timesteps as Python ints.
    assert [t for _, t in calls] == golden[pre + "timesteps"].tolist() and all(type(t) is int for _, t in calls)
    for i, (x, _) in enumerate(calls):
        assert x.shape == (1, 16, 45, 2, 3) and x.dtype == np.float32 and np.array_equal(x[0], tr["x"][i])


def test_unipc_golden_cfg_combination_is_exact(golden):
    # v on the generated frames = u + 5·(c − u) of the golden's own cond/uncond: bit for bit.
    for n in (28, 4, 10):
        pre = f"unipc_N{n}_"
        v = sampling.cfg(golden[pre + "v_cond"], golden[pre + "v_uncond"], 5.0)
        assert np.array_equal(v[:, 0], golden[pre + "v"][:, :, 25:])
        assert not golden[pre + "v"][:, :, :25].any()


@pytest.mark.parametrize("n,shift,th", [(1, 5.0, 2), (2, 5.0, 0), (3, 5.0, 1), (7, 1.0, 3), (28, 5.0, 2), (50, 3.0, 1)])
def test_unipc_matches_numpy_reference_bit_for_bit(n, shift, th):
    rng = np.random.default_rng(n)
    C, TN, H, W = 3, 4, 2, 5
    hist = rng.standard_normal((1, C, th, H, W)).astype(np.float32)
    P = (0.1 * rng.standard_normal((1, C, TN, H, W))).astype(np.float32)
    vel = toy_velocity(P, th, 0.3, 0.002)
    out, tr = sampling.unipc_sample(vel, hist, 11 + n, n, shift, TN, return_trace=True)
    x_init = np.concatenate([hist, sampling.randn(11 + n, (1, C, TN, H, W)).astype(np.float32)], axis=2)
    states = ref_unipc(x_init, vel, n, shift, th)
    assert np.array_equal(tr["x"], np.concatenate(states, axis=0))
    assert np.array_equal(out, states[-1][:, :, th:])


def test_unipc_spec_7_4_toy():
    # Element 0 is history (v = 0), elements 1..4 generated: v = fl32(fl32(0.5·x) + fl32(t·0.001)).
    x0 = np.array([0.3, 1.0, -0.5, 0.25, -1.75], np.float32).reshape(1, 1, 5, 1, 1)
    out, tr = sampling.unipc_sample(toy_velocity(0.0, 1), x0[:, :, :1], 0, 28, 5.0, 4, noise=x0[:, :, 1:],
                                    return_trace=True)
    want = {0: ["0x3e99999a", "0x3f7d2d3b", "0xbf016925", "0x3e77882c", "0xbfe01de4"],
            1: ["0x3e99999a", "0x3f7a38aa", "0xbf02e060", "0x3e6eb094", "0xbfe03a9f"],
            13: ["0x3e99999a", "0x3f460b42", "0xbf1b3cff", "0x3dab3911", "0xbfe0d1ee"],
            27: ["0x3e99999c", "0x3e748ae3", "0xbf2b6338", "0xbe5c80fe", "0xbfb69414"]}
    for step, hx in want.items():
        assert [bits(v) for v in tr["x"][step + 1].reshape(-1)] == hx, step
    assert [bits(v) for v in out.reshape(-1)] == want[27][1:]


def test_unipc_history_drifts_like_upstream(golden):
    # Spec upstream M:616-626, M:671: the history is carried through the solver (v = 0), not frozen; the golden shows
    # the same drift, so our final history equals upstream's within the state tolerance.
    _, tr = sampling.unipc_sample(golden_cfg_denoiser(golden), golden["history"], 1, 28, return_trace=True)
    assert not np.array_equal(tr["x"][-1][:, :25], golden["history"][0])
    assert np.abs(tr["x"][-1][:, :25] - golden["unipc_N28_x"][-1][:, :25]).max() <= UNIPC_GOLDEN_ATOL
    assert not tr["v"][:, :, :25].any()


def test_unipc_cfg_in_c_equals_python_composition(golden):
    # uncond= + guidance= run lyra_cfg_denoise in C: cond then uncond each step, u + g·(c − u).
    P, order = golden["toy_P"], []
    cond_v, uncond_v = toy_velocity(P, 25, 0.5, 0.001), toy_velocity(-P, 25, -0.25, 0.0005)

    def cond(x, t):
        order.append("c")
        return cond_v(x, t)

    def uncond(x, t):
        order.append("u")
        return uncond_v(x, t)
    out, tr = sampling.unipc_sample(cond, golden["history"], 1, 10, uncond=uncond, guidance=5.0, return_trace=True)
    ref, rtr = sampling.unipc_sample(golden_cfg_denoiser(golden), golden["history"], 1, 10, return_trace=True)
    assert order == ["c", "u"] * 10
    assert np.array_equal(out, ref) and np.array_equal(tr["v"], rtr["v"])
    assert np.abs(out - golden["unipc_N10_out"]).max() <= UNIPC_GOLDEN_ATOL
    with pytest.raises(ValueError, match="guidance"):
        sampling.unipc_sample(cond, golden["history"], 1, 10, uncond=uncond)
    with pytest.raises(Boom):
        sampling.unipc_sample(cond, golden["history"], 1, 10, uncond=lambda x, t: (_ for _ in ()).throw(Boom()),
                              guidance=2.0)


def test_cfg_matches_numpy_and_g1_is_cond():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((1, 4, 3, 5, 6)).astype(np.float32)
    u = rng.standard_normal((1, 4, 3, 5, 6)).astype(np.float32)
    for g in (5.0, 1.5, 0.0, 1.0, 0.3):
        assert np.array_equal(sampling.cfg(c, u, g), u + f32(g) * (c - u))
    # g = 1: u + (c − u) equals c up to the one rounding of c − u (<= 1 ulp of max(|c|, |u|)).
    tol = np.spacing(np.maximum(np.abs(c), np.abs(u)))
    assert np.all(np.abs(sampling.cfg(c, u, 1.0) - c) <= tol)
    with pytest.raises(ValueError, match="same shape"):
        sampling.cfg(c, u[:, :2], 1.0)


def test_unipc_cfg_g1_equals_conditional_run():
    rng = np.random.default_rng(1)
    hist = rng.standard_normal((1, 2, 1, 3, 3)).astype(np.float32)
    P = (0.2 * rng.standard_normal((1, 2, 5, 3, 3))).astype(np.float32)
    cond, uncond = toy_velocity(P, 1, 0.5, 0.001), toy_velocity(-P, 1, -0.25, 0.0005)
    a = sampling.unipc_sample(cond, hist, 3, 12, num_new=5)
    b = sampling.unipc_sample(lambda x, t: sampling.cfg(cond(x, t), uncond(x, t), 1.0), hist, 3, 12, num_new=5)
    # Per-call CFG rounding (<= 1 ulp) carried through 12 steps: 1e-5 absolute on O(1) values.
    assert np.abs(a - b).max() < 1e-5


# ---- denoiser callback contract ----------------------------------------------------------------


class Boom(Exception):
    pass


@pytest.mark.parametrize("which", ["unipc", "dmd"])
def test_denoiser_exception_propagates(which):
    hist = np.zeros((1, 2, 1, 2, 2), np.float32)
    seen = []

    def den(x, t):
        seen.append(t)
        if len(seen) == 3:
            raise Boom("from step 3")
        return np.zeros((1, 2, 4, 2, 2), np.float32)
    with pytest.raises(Boom, match="from step 3"):
        if which == "unipc":
            sampling.unipc_sample(den, hist, 0, 10, num_new=4)
        else:
            sampling.dmd_sample(den, hist, 0, num_new=4)
    assert len(seen) == 3
    # The module keeps working afterwards (no stale error or GIL state).
    assert sampling.unipc_sample(lambda x, t: np.zeros((1, 2, 4, 2, 2)), hist, 0, 2, num_new=4).shape == (1, 2, 4, 2, 2)


def test_denoiser_bad_results_and_arguments():
    hist = np.zeros((1, 2, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match=r"shape \(1, 2, 4, 2, 2\)"):
        sampling.unipc_sample(lambda x, t: np.zeros((1, 2, 5, 2, 2), np.float32), hist, 0, 3, num_new=4)
    with pytest.raises(ValueError, match="shape"):
        sampling.dmd_sample(lambda x, t: x, hist, 0, num_new=4)  # the whole state, not the generated part
    with pytest.raises(TypeError):
        sampling.unipc_sample(lambda x, t: "nope", hist, 0, 3, num_new=4)
    with pytest.raises(TypeError, match="callable"):
        sampling.unipc_sample(None, hist, 0, 3, num_new=4)
    with pytest.raises(ValueError, match="batch"):
        sampling.unipc_sample(lambda x, t: x, np.zeros((2, 2, 1, 2, 2), np.float32), 0, 3)
    with pytest.raises(ValueError, match="dimensions"):
        sampling.unipc_sample(lambda x, t: x, np.zeros((2, 1, 2, 2), np.float32), 0, 3)
    with pytest.raises(ValueError, match="num_new"):
        sampling.dmd_sample(lambda x, t: x, hist, 0, num_new=0)
    with pytest.raises(ValueError, match="num_steps"):
        sampling.unipc_sample(lambda x, t: x, hist, 0, 0)
    with pytest.raises(ValueError, match="seed"):
        sampling.unipc_sample(lambda x, t: x, hist, -1, 3)
    with pytest.raises(ValueError, match="noise"):
        sampling.unipc_sample(lambda x, t: x, hist, 0, 3, num_new=4, noise=np.zeros((1, 2, 3, 2, 2)))
    with pytest.raises(ValueError, match="renoise"):
        sampling.dmd_sample(lambda x, t: x, hist, 0, num_new=4, renoise=np.zeros((3, 4, 2, 2, 2)))
    # float64 velocities are accepted and cast to float32, as upstream's .float().
    out = sampling.unipc_sample(lambda x, t: np.ones((1, 2, 4, 2, 2)), hist, 0, 2, num_new=4)
    assert out.dtype == np.float32


# ---- DMD ---------------------------------------------------------------------------------------


def test_dmd_golden_bit_exact(golden):
    calls = []
    vel = toy_velocity(golden["toy_P"], 25)

    def den(x, t):
        calls.append(t)
        return vel(x, t)
    out, tr = sampling.dmd_sample(den, golden["history"], 1, 20, return_trace=True)
    # Golden README §4: "DMD: bit-exact is achievable", including the numpy-stream re-noise.
    for mine, key in (("x_in", "dmd_x_in"), ("v", "dmd_v"), ("x0", "dmd_x0"), ("eps", "dmd_eps")):
        assert np.array_equal(tr[mine], golden[key]), mine
    assert np.array_equal(tr["t_in"], golden["dmd_t_in"].reshape(-1))
    assert np.array_equal(out, golden["dmd_out"])
    assert all(type(t) is float for t in calls) and np.array_equal(np.array(calls, np.float32), tr["t_in"])
    # History is restored exactly at every step (upstream M:815-850, M:765-769, M:673-691).
    assert all(np.array_equal(tr["x_in"][k][:, :25], golden["history"][0]) for k in range(4))


def test_dmd_spec_7_4_toy():
    x0 = np.array([0.3, 1.0, -0.5, 0.25, -1.75], np.float32).reshape(1, 1, 5, 1, 1)
    eps = np.array([[9.0, 0.1, -0.2, 0.3, -0.4], [9.0, -1, 0.5, 0, 2], [9.0, 0.7, 0.7, -0.7, -0.7]],
                   np.float32).reshape(3, 5, 1, 1, 1)  # (step, T, C, H, W); the history entry is ignored
    out, tr = sampling.dmd_sample(toy_velocity(0.0, 1), x0[:, :, :1], 0, 4, noise=x0[:, :, 1:], renoise=eps,
                                  return_trace=True)
    hx = lambda a: [bits(v) for v in a.reshape(-1)]  # noqa: E731
    assert hx(tr["x0"][0]) == ["0x3e99999a", "0xbf000000", "0xbfa00000", "0xbf600000", "0xbff00000"]
    assert hx(tr["x_in"][1]) == ["0x3e99999a", "0x3d800000", "0xbe880000", "0x3e680000", "0xbefc0000"]
    assert hx(tr["x_in"][2]) == ["0x3e99999a", "0xbf796aab", "0x3e7c9553", "0xbe017556", "0x3fbd0155"]
    assert hx(tr["x_in"][3]) == ["0x3e99999a", "0xbd13a000", "0x3e6c95ff", "0xbf39bf16", "0xbebff42c"]
    assert hx(out) == ["0xbed4afc0", "0xbe6d58e1", "0xbf63b35f", "0xbf25fbef"]


@pytest.mark.parametrize("shape", [(1, 1, 3, 1, 3), (3, 2, 5, 3, 1), (16, 0, 2, 1, 1)])
def test_dmd_stream_continues_numpy_and_matches_reference(shape):
    # Odd element counts exercise the cached second normal across the draws (deviation rule, upstream M:832, M:816-817,
    # Z:502): RandomState(seed): standard_normal((1, C, T_new, H, W)), then one (T, C, H, W) block per re-noise.
    C, th, tn, H, W = shape
    rng = np.random.default_rng(sum(shape))
    hist = rng.standard_normal((1, C, th, H, W)).astype(np.float32)
    vel = toy_velocity((0.1 * rng.standard_normal((1, C, tn, H, W))).astype(np.float32), th, 0.4, 0.003)
    seed = 1234 + C
    out, tr = sampling.dmd_sample(vel, hist, seed, tn, return_trace=True)
    rs = np.random.RandomState(seed)
    x_init = np.concatenate([hist, rs.standard_normal((1, C, tn, H, W)).astype(np.float32)], axis=2)
    eps = [rs.standard_normal((th + tn, C, H, W)).astype(np.float32) for _ in range(3)]
    assert np.array_equal(tr["x_in"][0], x_init[0])
    assert np.array_equal(tr["eps"], np.stack(eps))
    assert np.array_equal(out, ref_dmd(x_init, vel, eps, th)[:, :, th:])
