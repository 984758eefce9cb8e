"""The samplers' elementwise latent updates (nn/ops.h "sampler state": op latent_update, per element
nn/latent_math.h), which keep the AR driver's sampler state on the device: CFG, UniPC's x0 / corrector / predictor,
DMD's f64 x0 and re-noise, and the decoder's latent denormalisation. Each formula rounds every step once in
upstream's order, so the NumPy references below (float32 ufuncs, one rounding each; float64 for DMD's x0) must
match bit for bit (compared as raw bits, so a -0 or a NaN payload counts) on the CPU backend. The cuda-marked cases
run the same checks on the CUDA kernel (nn/cuda/cuda_latent.cu: in the kernel-emulation build, on the emulated
device, or on a GPU), also bit for bit: it rounds with __fmul_rn / __fadd_rn / __fsub_rn / __dmul_rn / __dsub_rn,
so nvcc cannot contract a product and a sum into an FMA. The sampler loops built on the op are checked against the
golden sampler vectors by test_sampling.py (the host API runs them on a CPU backend)."""
import numpy as np
import pytest

from lyra2 import _testops as _ops

RNG = np.random.default_rng(14)
BACKENDS = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
f32 = np.float32
SHAPE = (3, 5, 4, 6)   # (C, T, h, w), a small latent state


def state(shape=SHAPE):
    # normals with exact zeros of both signs and a few large values (products near the f32 range's rounding)
    x = RNG.standard_normal(shape).astype(f32)
    flat = x.reshape(-1)
    flat[::17] = 0.0
    flat[5::23] = -0.0
    flat[3::29] *= f32(1e6)
    return x


def bits(a):
    return np.ascontiguousarray(a, f32).view(np.uint32)


def check(got, ref):
    assert got.shape == ref.shape and got.dtype == f32
    np.testing.assert_array_equal(bits(got), bits(ref))


def run(backend, kind, xs, **p):
    return _ops.latent_update(kind, xs, backend=backend, **p)


# scalars of the kind a UniPC plan and the DMD schedule produce (f32)
C1, C2, RINV, RHO0, RHO1 = f32(0.8571428), f32(-0.1285417), f32(1.7320508), f32(0.4166667), f32(0.3333333)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cfg(backend):
    c, u, g = state(), state(), f32(5.0)
    check(run(backend, "cfg", [c, u], guidance=g), u + g * (c - u))


@pytest.mark.parametrize("backend", BACKENDS)
def test_unipc_x0(backend):
    x, v, s = state(), state(), f32(0.9375)
    check(run(backend, "x0", [x, v], sigma=s), x - s * v)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dmd_x0_rounds_through_f64(backend):
    x, v, s = state(), state(), f32(0.8333333)
    ref = (x.astype(np.float64) - np.float64(s) * v.astype(np.float64)).astype(f32)
    got = run(backend, "x0_f64", [x, v], sigma=s)
    check(got, ref)
    # not the f32 formula: the double round trip changes some elements
    assert np.any(bits(ref) != bits(x - s * v))


@pytest.mark.parametrize("backend", BACKENDS)
def test_dmd_renoise(backend):
    x, e, s = state(), state(), f32(0.625)
    a = f32(1.0) - s
    check(run(backend, "renoise", [x, e], alpha=a, sigma=s), a * x + s * e)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("order", [1, 2])
def test_unipc_corrector(backend, order):
    last, m, m1, m2 = state(), state(), state(), state()
    y = C1 * last - C2 * m1
    dt = m - m1
    if order == 1:
        k = f32(0.0) + RHO1 * dt
        xs = [last, m, m1]
    else:
        k = RHO0 * ((m2 - m1) * RINV) + RHO1 * dt
        xs = [last, m, m1, m2]
    got = run(backend, "unipc_correct", xs, order=order, c1=C1, c2=C2, rinv=RINV, rho0=RHO0, rho1=RHO1)
    check(got, y - C2 * k)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("order", [1, 2])
def test_unipc_predictor(backend, order):
    xc, m, m1 = state(), state(), state()
    y = C1 * xc - C2 * m
    if order == 1:
        ref, xs = y - C2 * f32(0.0), [xc, m]
    else:
        ref, xs = y - C2 * (f32(0.5) * ((m1 - m) * RINV)), [xc, m, m1]
    check(run(backend, "unipc_predict", xs, order=order, c1=C1, c2=C2, rinv=RINV), ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_denorm_broadcasts_the_channel_tables(backend):
    # the decoder's input: z / inv_std + mean per channel with Lyra's bf16 tables (1, C, 1, 1, 1), broadcast (the
    # host's lyra_vae_denormalize, models/vae_latent.c, uses this formula too)
    from lyra2.models.vae import latent_constants
    z = state((1, 16, 2, 4, 6))
    mean, inv = (np.asarray(t, f32).reshape(1, 16, 1, 1, 1) for t in latent_constants("bf16"))
    check(run(backend, "denorm", [z, inv, mean]), z / inv + mean)


def test_bad_arguments_name_the_field():
    x = state()
    with pytest.raises(ValueError, match="latent_update: kind 0 takes 2 inputs, got 3"):
        _ops.latent_update("cfg", [x, x, x])
    with pytest.raises(ValueError, match="UniPC order 3"):
        _ops.latent_update("unipc_predict", [x, x], order=3)
    with pytest.raises(ValueError, match="x\\[1\\] of shape .* does not broadcast"):
        _ops.latent_update("x0", [x, x[:, :2]])
    with pytest.raises(ValueError, match="kind must be one of"):
        _ops.latent_update("euler", [x, x])


# ---- the tensor samplers on a backend (lyra_unipc_run, lyra_dmd_run) against the host API ----

T_HIST, T_NEW, C, h, w = 3, 2, 4, 3, 5


def toy_cond(x, t):
    return np.ascontiguousarray(x[:, :, T_HIST:])              # v = the generated frames of x


def toy_uncond(x, t):
    g = x[:, :, T_HIST:]
    return g * g                                                # one f32 rounding, as the op mul


def chunk(seed):
    r = np.random.default_rng(seed)
    hist = (0.5 * r.standard_normal((C, T_HIST, h, w))).astype(f32)
    noise = r.standard_normal((C, T_NEW, h, w)).astype(f32)
    renoise = r.standard_normal((3, T_HIST + T_NEW, C, h, w)).astype(f32)
    return hist, noise, renoise


def host_run(kind, hist, noise, renoise, num_steps, guidance):
    from lyra2 import sampling
    if kind == "dmd":
        return sampling.dmd_sample(toy_cond, hist[None], 0, T_NEW, noise=noise[None], renoise=renoise)[0]
    cfg = {} if guidance is None else {"uncond": toy_uncond, "guidance": guidance}
    return sampling.unipc_sample(toy_cond, hist[None], 0, num_steps, 5.0, T_NEW, noise=noise[None], **cfg)[0]


RUNS = {"unipc-1": ("unipc", 1, None), "unipc-3": ("unipc", 3, None), "unipc-cfg-3": ("unipc", 3, 5.0),
        "dmd": ("dmd", 4, None)}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("run_id", sorted(RUNS))
def test_tensor_sampler_is_the_host_sampler(backend, run_id):
    # UniPC with 3 steps runs orders 1, 2, 1 and both corrector orders; with CFG the guided velocity
    kind, steps, g = RUNS[run_id]
    hist, noise, renoise = chunk(len(run_id))
    ref = host_run(kind, hist, noise, renoise, steps, g)
    got = _ops.sampler_run(kind, hist, noise, num_steps=steps, guidance=g,
                           renoise=renoise if kind == "dmd" else None, backend=backend)
    assert got.shape == (C, T_HIST + T_NEW, h, w)
    check(got[:, T_HIST:], ref)
    if kind == "dmd":   # DMD restores the history exactly
        check(got[:, :T_HIST], hist)


MOVES = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
import lyra2
from lyra2 import _testops, testing
from test_sampler_ops import RUNS, chunk, host_run, bits
kind, steps, g = RUNS[{run_id!r}]
hist, noise, renoise = chunk(7)
testing.emulated_cuda_reset()
got = _testops.sampler_run(kind, hist, noise, num_steps=steps, guidance=g, renoise=renoise if kind == "dmd" else None,
                           backend="cuda")
log = [list(e) for e in testing.emulated_cuda_transfers()]
same = bool((bits(got[:, 3:]) == bits(host_run(kind, hist, noise, renoise, steps, g))).all())
print(json.dumps({{"log": log, "refused": testing.emulated_cuda_stats()["refused"], "same": same}}))
"""


@pytest.mark.parametrize("run_id", ["unipc-cfg-3", "dmd"])
def test_tensor_sampler_moves_only_the_noise(run_id):
    """On the emulated device (its transfer log; a fresh interpreter, as the variable is read when the backend is
    created): the history and the noise go up (the initial block once, each DMD re-noise step's generated frames),
    the final state comes down; per network call nothing crosses, and the result is the host sampler's."""
    import json
    import os
    import subprocess
    import sys

    import lyra2
    if lyra2.backends()["cuda_compiled"]:
        pytest.skip("a CUDA build: the transfer log is the emulated device's (CPU builds)")
    tests = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(tests)
    env = dict(os.environ, LYRA2_EMULATED_CUDA="1", LYRA2_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r})\n" +
                        MOVES.format(tests=tests, run_id=run_id)], cwd=root, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    kind = RUNS[run_id][0]
    gen_bytes = 4 * C * T_NEW * h * w
    want = [["upload", 4 * C * T_HIST * h * w, "history"], ["upload", gen_bytes, "initial noise"]]
    want += [["upload", gen_bytes, "re-noise"]] * (3 if kind == "dmd" else 0)
    want += [["download", 4 * C * (T_HIST + T_NEW) * h * w, "sampler state x"]]
    assert out["log"] == want
    assert out["refused"] == 0 and out["same"]
