"""FP8 e4m3 DiT blocks (csrc/core/fp8.c, csrc/models/dit_fp8.c): the conversion against a table built here from
the format's definition, and the drift of the tiny DiT's output against its float32 and bf16 runs."""
import numpy as np
import pytest

from conftest import DATA
from lyra2 import _testops
from lyra2.models.dit import LyraDiT


def e4m3_table():
    """Value of every code 0..255 from the e4m3fn definition (bias 7, no inf, S.1111.111 = NaN)."""
    vals = []
    for c in range(256):
        s, e, m = c >> 7, (c >> 3) & 15, c & 7
        if e == 15 and m == 7:
            vals.append(np.nan)
            continue
        v = (1 + m / 8) * 2.0 ** (e - 7) if e else m / 8 * 2.0 ** -6
        vals.append(-v if s else v)
    return np.array(vals)


def reference_round(x):
    """Nearest finite e4m3 value, ties to the even code (mantissa LSB 0), saturating at ±448."""
    table = e4m3_table()
    pos = np.array([(c, table[c]) for c in range(128) if not np.isnan(table[c])])
    out = []
    for v in x.astype(np.float64):
        a = min(abs(v), 448.0)
        d = np.abs(pos[:, 1] - a)
        best = np.flatnonzero(d == d.min())
        code = int(pos[best[0], 0]) if len(best) == 1 else int(next(pos[b, 0] for b in best if int(pos[b, 0]) % 2 == 0))
        out.append(np.copysign(table[code], v))
    return np.array(out, dtype=np.float32)


def test_e4m3_decodes_every_code_and_rounds_like_the_reference():
    table = e4m3_table()
    codes = np.arange(256, dtype=np.uint8)
    finite = ~np.isnan(table)
    _, vals = _testops.fp8_e4m3(table[finite].astype(np.float32))
    np.testing.assert_array_equal(vals, table[finite].astype(np.float32))  # exact values survive
    c, _ = _testops.fp8_e4m3(table[finite].astype(np.float32))
    np.testing.assert_array_equal(c, codes[finite])   # every finite code round-trips, -0 included
    assert np.nanmax(table) == 448 and np.nanmin(np.abs(table[table != 0])) == 2.0 ** -9
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(3000) * 10 ** rng.uniform(-4, 3, 3000),
                        (table[finite][:-1] + np.diff(table[finite])[:] / 2)[np.isfinite(np.diff(table[finite]))],
                        [500.0, -1e6, 448.0, 464.0, 2.0 ** -10, 3 * 2.0 ** -11, 0.0]]).astype(np.float32)
    _, got = _testops.fp8_e4m3(x)
    np.testing.assert_array_equal(got, reference_round(x))
    c, v = _testops.fp8_e4m3(np.array([np.nan], np.float32))
    assert np.isnan(v[0]) and c[0] & 0x7F == 0x7F


@pytest.fixture(scope="module")
def tiny():
    with np.load(f"{DATA}/dit_tiny_weights.npz") as z:
        weights = {k: z[k] for k in z.files}
    with np.load(f"{DATA}/dit_tiny.npz") as z:
        args = {k: z["caseb_" + k] for k in ("x_B_C_T_H_W", "timesteps_B_T", "crossattn_emb",
                                             "frame_cond_crossattn_emb_B_L_D", "y_B_C_T_H_W", "y_buffer_B_C_T_H_W")}
    return weights, args


def rel_rms(a, ref):
    return float(np.sqrt(np.mean((a.astype(np.float64) - ref) ** 2) / np.mean(ref.astype(np.float64) ** 2)))


def test_fp8_drift_on_the_tiny_dit(tiny):
    """fp8 rounds every block Linear's weights and inputs to 3 mantissa bits (relative step 2^-4, ~2 % rms per
    operand); the tiny DiT's velocity drifts by a few percent (relative rms, printed), nonzero and below 10 %.
    (Its weights are already bf16 values, so bf16 weights would not drift at all: no bf16 row here.)"""
    weights, args = tiny
    ref = LyraDiT(weights, num_heads=4)(**args)
    m = LyraDiT(weights, num_heads=4)
    m.quantize_fp8()
    out = m(**args)
    d8 = rel_rms(out, ref)
    print(f"tiny DiT velocity drift vs float32: fp8 rel-rms {d8:.3e}, max-abs {np.abs(out - ref).max():.3e} "
          f"(max |ref| {np.abs(ref).max():.3e})")
    assert 1e-3 < d8 < 0.1
    m.quantize_fp8()   # a second call does nothing
    np.testing.assert_array_equal(m(**args), out)


def test_fp8_needs_merged_adapters(tiny):
    weights, args = tiny
    D = 48
    lora = {"blocks.0.ffn.0.lora_A.weight": np.ones((2, D), np.float32) * 0.01,
            "blocks.0.ffn.0.lora_B.weight": np.ones((weights["blocks.0.ffn.0.weight"].shape[0], 2), np.float32) * 0.01}
    m = LyraDiT(weights, num_heads=4, lora=[(lora, 1.0)])
    with pytest.raises(ValueError, match="merge"):
        m.quantize_fp8()
    m.merge_lora()
    m.quantize_fp8()
    assert np.isfinite(m(**args)).all()


def test_fp8_streams_and_measures(tiny):
    """fp8 blocks stream bit for bit, and the arena measured for the fp8 forward is its real peak."""
    from lyra2 import _core

    weights, args = tiny
    a = LyraDiT(weights, num_heads=4)
    a.quantize_fp8()
    ref = a(**args)
    c = _core.dit_config(a._model)
    assert c["arena_peak"] == c["arena_need"]
    b = LyraDiT(weights, num_heads=4)
    b.quantize_fp8()
    b.set_streaming(0)
    np.testing.assert_array_equal(b(**args), ref)
