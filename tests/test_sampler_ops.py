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
