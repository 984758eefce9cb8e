"""Lyra 2.0 samplers with a Python denoiser: numpy-identical noise, flow schedules, UniPC + CFG, DMD.

The arithmetic runs in C (csrc/sample) exactly in upstream's operation order (upstream UNI, SF, M; tags in
docs/REFERENCES.md); this module is the thin Python face used by tests and experiments. The solver loops are the
ones the generate driver runs on the DiT's device (lyra_unipc_run, lyra_dmd_run, their element-wise updates the
backend op latent_update), here on a CPU backend over host memory, so these results are the device sampler's too.

A denoiser is a callable ``denoise(x, t) -> v``: ``x`` is the whole float32 state
``(1, C, T_hist + num_new, h, w)`` (a fresh copy each call), ``t`` the network timestep (a Python int
0..999 on the UniPC path, a float 1000·σ on the DMD path), and ``v`` the velocity ``ε − x0`` of the
generated frames only, shape ``(1, C, num_new, h, w)`` (cast to float32). Exceptions raised by the
denoiser propagate unchanged. Compose classifier-free guidance in the denoiser with :func:`cfg`.

DMD re-noise is a deliberate deviation from upstream (upstream M:832, M:816-817, Z:502): upstream draws it from torch's
global CUDA generator, which no port can reproduce; here it continues the chunk's numpy-legacy stream
after the initial noise (one ``standard_normal((T, C, h, w))`` block per re-noise, frames T_hist..
used), so a run is deterministic given ``seed``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import _core

__all__ = ["randn", "flow_timesteps", "dmd_timesteps", "unipc_coefficients", "cfg", "unipc_sample", "dmd_sample"]


_C_INT_MAX = 2**31 - 1  # the C side takes these counts as int


def _int_arg(value, what):
    """An int count: ints and integral floats (3.0) pass; bools, 2.9, None, strings raise naming `what`."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what}: expected an int, got {value!r}")
    if isinstance(value, numbers.Integral):
        value = int(value)
    elif isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        value = int(value)
    elif isinstance(value, numbers.Real):
        raise ValueError(f"{what}: expected a whole number, got {value!r}")
    else:
        raise TypeError(f"{what}: expected an int, got {type(value).__name__}")
    if not -_C_INT_MAX <= value <= _C_INT_MAX:
        raise ValueError(f"{what}: {value} is out of range")
    return value


def _real_arg(value, what):
    """A real number (int, float, numpy scalar); bools, None, strings raise naming `what`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what}: expected a real number, got {type(value).__name__}")
    return float(value)


def randn(seed, shape) -> np.ndarray:
    """``numpy.random.RandomState(seed).standard_normal(shape)``, bit for bit (float64).

    ``seed`` is an int in [0, 2**32) or a non-empty 1-d sequence of such ints (numpy's legacy
    seeding: init_genrand for an int, init_by_array for a sequence)."""
    return _core.sample_randn(seed, shape)


def flow_timesteps(num_steps: int, shift: float = 5.0, return_f64: bool = False):
    """The UniPC grid of upstream's ``set_timesteps(num_steps, shift)`` (upstream T2V:157-159, M:650, UNI:117-139).

    Returns ``(timesteps, sigmas)``: int64 ``(N,)`` network timesteps and float32 ``(N+1,)`` solver
    sigmas ending in 0; with ``return_f64`` also the float64 sigmas ``(N,)`` before the cast."""
    ts, sig, sig64 = _core.sample_flow_schedule(_int_arg(num_steps, "num_steps"), _real_arg(shift, "shift"))
    return (ts, sig, sig64) if return_f64 else (ts, sig)


def dmd_timesteps():
    """The fixed DMD schedule (upstream M:710-728, SF:11-49, SF:40-43): ``(timesteps, sigmas)``, float32 ``(4,)`` each:
    ``[1000, 937.5, 833.3333, 625]`` and ``[1, 0.9375, 0.8333333, 0.625]``."""
    return _core.sample_dmd_schedule()


def unipc_coefficients(num_steps: int, shift: float = 5.0) -> dict:
    """The UniPC per-step float32 scalars (upstream UNI:265-266, UNI:399-400, UNI:422, tables of
    docs/REFERENCES.md#sampler-test-vectors) as a dict of arrays:
    ``sigma``, ``lambda`` (N+1), predictor ``order``, ``c1``, ``c2`` (= c3), ``r``, ``rinv`` (0 where the
    order is 1), corrector ``corr_order`` (0 at step 0), ``rho0``, ``rho1``."""
    return _core.sample_unipc_plan(_int_arg(num_steps, "num_steps"), _real_arg(shift, "shift"))


def cfg(cond, uncond, g: float) -> np.ndarray:
    """Classifier-free guidance in velocity space: ``uncond + g * (cond - uncond)`` in float32 with one
    rounding per operation, ``g`` rounded to float32 (upstream M:641-647, WL:1006-1018, M:986-994)."""
    return _core.sample_cfg(cond, uncond, _real_arg(g, "g"))


def unipc_sample(denoise, history, seed, num_steps: int, shift: float = 5.0, num_new: int = 20, *,
                 uncond=None, guidance=None, noise=None, return_trace: bool = False):
    """One chunk with the UniPC-2 (bh2, predict-x0) flow solver (upstream UNI:88-107, UNI:265-266, UNI:399-400,
    M:615-626).

    ``history`` (1, C, T_hist, h, w) float32; the initial noise of the ``num_new`` generated frames is
    ``float32(RandomState(seed).standard_normal((1, C, num_new, h, w)))`` unless ``noise`` (same shape)
    is given. ``denoise`` is called once per step; with ``uncond`` (a second denoiser) and
    ``guidance`` the C loop applies CFG itself as upstream does: ``denoise`` (conditional) then
    ``uncond`` every step, combined as :func:`cfg`. Returns the generated latents
    (1, C, num_new, h, w) float32; with ``return_trace`` also a dict of per-step intermediates:
    ``x`` (N+1, C, T, h, w) states, ``v``, ``x0``, ``x_corrected`` (N, C, T, h, w), ``order`` (N,)."""
    return _core.sample_unipc(denoise, history, seed, _int_arg(num_steps, "num_steps"), _real_arg(shift, "shift"),
                              _int_arg(num_new, "num_new"), uncond,
                              None if guidance is None else _real_arg(guidance, "guidance"), noise, bool(return_trace))


def dmd_sample(denoise, history, seed, num_new: int = 20, *, noise=None, renoise=None,
               return_trace: bool = False):
    """One chunk with the DMD 4-step sampler (upstream M:710-728, SF:11-49, SF:40-43): conditional denoiser only, x0 in
    float64,
    re-noise to the next σ, history kept exactly.

    Initial noise as in :func:`unipc_sample`. Re-noise ε_k continues the same numpy-legacy stream
    (see the module docstring) unless ``renoise`` (3, T, C, h, w) is given. Returns the generated
    latents (1, C, num_new, h, w); with ``return_trace`` also ``x_in`` (4, C, T, h, w), ``t_in`` (4,),
    ``v`` (4, C, num_new, h, w), ``x0`` (4, C, T, h, w) and ``eps`` (3, T, C, h, w)."""
    return _core.sample_dmd(denoise, history, seed, _int_arg(num_new, "num_new"), noise, renoise, bool(return_trace))
