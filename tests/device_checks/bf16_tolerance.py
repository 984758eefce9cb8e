"""How the device checks compare a network run in upstream's 16-bit GPU policy (docs/PRECISION.md) with its f32
golden.

The goldens are f32 runs of upstream's graph on bf16-grid weights and inputs, so storing the weights in bf16 loses
nothing and every difference comes from rounding activations. One such rounding of the network's *input* (a
relative perturbation of one bf16 unit roundoff u = 2⁻⁹, run through the CPU f32 reference) moves the output by a
measured rms-relative amount s1; the device rounds at the output of each of the R ops it runs (R counted by the
emulated device for one call); independent roundings add in quadrature, so the expected distance is about
sqrt(R)·s1. Each check's bound `tol` is 2·sqrt(R)·s1 with s1 and R measured on the tiny network (the numbers are
in docs/PRECISION.md), the largest single element may be off by 2·tol of the output's max, and the distance must
also be above MIN_RMS_REL, which an f32 run (about 1e-6) cannot reach: the checks fail if the activations are not
actually rounded."""
import numpy as np

U = 2.0 ** -9           # bf16 unit roundoff (8 significant bits, round to nearest even)
MIN_RMS_REL = 3e-4      # well below one bf16 rounding of every activation, well above f32 run-to-run noise


def rms_rel(out, ref):
    d = np.asarray(out, np.float64) - ref
    return float(np.sqrt((d ** 2).mean() / max((np.asarray(ref, np.float64) ** 2).mean(), 1e-30)))


def max_rel(out, ref):
    return float(np.abs(np.asarray(out, np.float64) - ref).max() / max(float(np.abs(ref).max()), 1e-30))


def bf16_close(out, ref, tol, min_rms=MIN_RMS_REL):
    """out (a 16-bit device run) against ref (the f32 golden): min_rms < rms-rel <= tol, max-rel <= 2·tol.
    min_rms = 0 for outputs of f32 stages fed by 16-bit ones (a head after an autocast backbone), which damp the
    rounding."""
    out, ref = np.asarray(out), np.asarray(ref)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    r, m = rms_rel(out, ref), max_rel(out, ref)
    assert min_rms < r <= tol, f"rms-rel distance {r:.3g} outside ({min_rms:.3g}, {tol:.3g}]"
    assert m <= 2 * tol, f"max-rel distance {m:.3g} > {2 * tol:.3g}"
    return r, m


def input_ulp_sensitivity(run, x, seed=0):
    """s1: the rms-rel change of run(x) (the CPU f32 reference) when x is perturbed by one bf16 unit roundoff."""
    rng = np.random.default_rng(seed)
    ref = run(x)
    return rms_rel(run((x * (1 + rng.uniform(-U, U, x.shape))).astype(x.dtype)), ref)
