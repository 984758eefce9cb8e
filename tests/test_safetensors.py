"""lyra2.io: safetensors round trips, bf16 rounding, strict header validation (csrc/io/safetensors.c)."""
import json
import os
import struct

import numpy as np
import pytest

import lyra2
from lyra2 import io as lio


def bf16_reference(x):
    """Independent float32 -> bf16 bits: round to nearest, ties to even, on the integer bit pattern;
    NaN -> quiet NaN with the same sign and top payload bits."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), rounded)


def bf16_value(bits):
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


ROUND_TRIP = [
    np.float32, np.float16, np.float64, np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16,
    np.uint32, np.uint64, np.bool_,
]


@pytest.mark.parametrize("dt", ROUND_TRIP, ids=lambda d: np.dtype(d).name)
def test_round_trip_exact(tmp_path, dt):
    rng = np.random.default_rng(0)
    if np.dtype(dt).kind == "f":
        a = rng.standard_normal((3, 5, 2)).astype(dt)
        a.flat[0] = np.inf
        a.flat[1] = -0.0
    elif dt is np.bool_:
        a = rng.integers(0, 2, (7,)).astype(bool)
    else:
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, (4, 3), dtype=dt, endpoint=True)
    scalar = np.asarray(a.flat[2], dt)
    empty = np.zeros((0, 4), dt)
    p = tmp_path / "x.safetensors"
    lio.save_safetensors({"a": a, "s": scalar, "e": empty, "t": a.T}, p, metadata={"note": "ü"})
    r = lio.load_safetensors(p)
    assert list(r) == ["a", "s", "e", "t"]
    for k, ref in {"a": a, "s": scalar, "e": empty, "t": a.T}.items():
        assert r[k].dtype == np.dtype(dt) and r[k].shape == ref.shape
        # bit-for-bit (NaN/inf/-0 included): compare raw bytes
        assert np.ascontiguousarray(r[k]).tobytes() == np.ascontiguousarray(ref).tobytes()
    info = lio.safetensors_info(p)
    assert info["metadata"] == {"note": "ü"}
    assert info["tensors"]["s"]["shape"] == [] and info["tensors"]["e"]["nbytes"] == 0


def test_bf16_write_rounds_to_nearest_even(tmp_path):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(10000) * 10.0 ** rng.integers(-30, 30, 10000)).astype(np.float32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 3.4e38, -3.4e38, 1e-40,
                         1.00390625, 1.01171875, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8], np.float32)
    # every 4096th bit pattern: all exponents, both signs, ties and NaN payloads
    patterns = ((np.arange(-70000, 70000, 7, dtype=np.int64) << 12) & 0xFFFFFFFF).astype(np.uint32)
    x = np.concatenate([x, specials, patterns.view(np.float32)])
    assert x.dtype == np.float32
    p = tmp_path / "b.safetensors"
    lio.save_safetensors({"x": x}, p, dtype="bf16")
    assert lio.safetensors_info(p)["tensors"]["x"]["dtype"] == "BF16"
    got = lio.load_safetensors(p)["x"]
    assert got.dtype == np.float32
    want = bf16_value(bf16_reference(x))
    assert got.view(np.uint32).tolist() == want.view(np.uint32).tolist()  # exact, NaN payloads included
    # the raw helpers agree with the reference and invert exactly on bf16 values
    assert np.array_equal(lio.to_bf16_bits(x), bf16_reference(x))
    assert np.array_equal(lio.bf16_bits_to_f32(bf16_reference(x)).view(np.uint32), want.view(np.uint32))


def test_bf16_matches_torch_when_available():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal(4096).astype(np.float32) * 1e3
    ref = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(lio.to_bf16_bits(x), ref)


def test_interoperates_with_reference_safetensors(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    arrays = {"w": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "i": np.arange(5, dtype=np.int64),
              "h": np.linspace(-1, 1, 6).astype(np.float16), "b": np.array([True, False])}
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    lio.save_safetensors(arrays, ours, metadata={"k": "v"})
    st.save_file(arrays, str(theirs), metadata={"k": "v"})
    for path in (ours, theirs):
        for loaded in (lio.load_safetensors(path), st.load_file(str(path))):
            for k, v in arrays.items():
                assert np.array_equal(loaded[k], v) and loaded[k].dtype == v.dtype


def test_bf16_file_from_torch_safetensors(tmp_path):
    torch = pytest.importorskip("torch")
    sttorch = pytest.importorskip("safetensors.torch")
    t = torch.randn(33, 7).to(torch.bfloat16)
    sttorch.save_file({"t": t, "f": t.half()}, str(tmp_path / "t.safetensors"))
    r = lio.load_safetensors(tmp_path / "t.safetensors")
    assert np.array_equal(r["t"], t.float().numpy()) and r["t"].dtype == np.float32
    assert np.array_equal(r["f"], t.half().numpy()) and r["f"].dtype == np.float16


def test_subset_and_missing_names(tmp_path):
    p = tmp_path / "x.safetensors"
    lio.save_safetensors({"a": np.ones(2, np.float32), "b": np.zeros(3, np.int32)}, p)
    assert list(lio.load_safetensors(p, names=["b"])) == ["b"]
    with pytest.raises(KeyError, match="'c'"):
        lio.load_safetensors(p, names=["c"])
    with pytest.raises(KeyError, match="'c'"):  # more names than tensors: still checked one by one
        lio.load_safetensors(p, names=["a", "a", "b", "c"])
    with pytest.raises(TypeError):
        lio.load_safetensors(p, names="a")


def test_save_argument_errors(tmp_path):
    with pytest.raises(TypeError, match="dtype object"):
        lio.save_safetensors({"a": np.array(["x"], dtype=object)}, tmp_path / "o.safetensors")
    with pytest.raises(ValueError, match="reserved"):
        lio.save_safetensors({"__metadata__": np.ones(1)}, tmp_path / "o.safetensors")
    with pytest.raises(ValueError, match="dtype='int4'"):
        lio.save_safetensors({"a": np.ones(1)}, tmp_path / "o.safetensors", dtype="int4")
    with pytest.raises(TypeError, match="metadata"):
        lio.save_safetensors({"a": np.ones(1)}, tmp_path / "o.safetensors", metadata={"k": 1})


def test_failed_write_leaves_nothing(tmp_path):
    p = tmp_path / "x.safetensors"

    def boom():
        raise RuntimeError("producer failed")

    entries = [("a", "F32", (2,), lambda: np.ones(2, np.float32)), ("b", "F32", (2,), boom)]
    with pytest.raises(RuntimeError, match="producer failed"):
        lio.write_safetensors(p, entries)
    assert os.listdir(tmp_path) == []
    # a producer of the wrong size is caught too
    with pytest.raises(ValueError, match="produced 4 bytes"):
        lio.write_safetensors(p, [("a", "F32", (2,), lambda: np.ones(1, np.float32))])
    assert os.listdir(tmp_path) == []


def test_unaligned_data_area_loads(tmp_path):
    # header length 13 (not a multiple of 8): tensor data starts at an odd offset
    header = json.dumps({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}},
                        separators=(",", ":")).encode()
    values = np.array([1.5, -2.25, 3e-39], np.float32)
    header += b" " * ((-len(header) - 8) % 8 + 1)
    raw = struct.pack("<Q", len(header)) + header + values.tobytes()
    p = tmp_path / "u.safetensors"
    p.write_bytes(raw)
    assert lio.load_safetensors(p)["a"].tolist() == values.tolist()


def test_fp8_is_listed_but_not_loaded(tmp_path):
    header = json.dumps({"q": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}).encode()
    header += b" " * (-len(header) % 8)
    p = tmp_path / "f8.safetensors"
    p.write_bytes(struct.pack("<Q", len(header)) + header + b"\x01\x02")
    assert lio.safetensors_info(p)["tensors"]["q"]["dtype"] == "F8_E4M3"
    with pytest.raises(lyra2.Lyra2Error, match="'q' has dtype F8_E4M3"):
        lio.load_safetensors(p)


# ---- corrupt files: each must give Lyra2Error naming the file and the problem, never a crash -----

def build(header_obj=None, data=b"", *, header_bytes=None, length=None):
    h = header_bytes if header_bytes is not None else json.dumps(header_obj, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def t(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


CORRUPT = {
    "too_short": (b"\x05\x00\x00", "too short"),
    "empty_file": (b"", "too short"),
    "header_over_cap": (struct.pack("<Q", 200_000_000) + b"{}", "exceeds the 100000000-byte cap"),
    "header_past_eof": (build({"a": t("F32", [1], 0, 4)}, length=4000), "runs past the end of the file"),
    "not_json": (build(header_bytes=b"{not json}"), "invalid JSON header"),
    "not_object": (build(header_bytes=b"[1, 2]  "), "does not start with '{'"),
    "trailing_garbage": (build(header_bytes=b"{}x"), "trailing characters"),
    "unknown_dtype": (build({"w": t("F33", [1], 0, 4)}, b"\0" * 4), "'w': unknown dtype 'F33'"),
    "shape_bytes_mismatch": (build({"w": t("F32", [2, 3], 0, 20)}, b"\0" * 20), "'w': data_offsets [0, 20] hold 20 bytes but dtype F32 x shape [2, 3] needs 24"),
    "offsets_past_data": (build({"w": t("F32", [4], 0, 16)}, b"\0" * 8), "'w': data_offsets [0, 16] run past the end of the data area"),
    "overlap": (build({"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, b"\0" * 12), "overlaps tensor"),
    "gap": (build({"a": t("F32", [1], 0, 4), "b": t("F32", [1], 8, 12)}, b"\0" * 12), "'b' starts 4 bytes after"),
    "trailing_bytes": (build({"a": t("F32", [1], 0, 4)}, b"\0" * 9), "5 bytes at the end of the file belong to no tensor"),
    "duplicate_name": (build(header_bytes=b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                          b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', data=b"\0\0"),
                       "'a' is listed twice"),
    "begin_after_end": (build({"a": t("U8", [0], 3, 2)}, b"\0" * 3), "begin > end"),
    "negative_dim": (build({"a": t("U8", [-1], 0, 0)}), "shape[0] is not a non-negative integer"),
    "float_dim": (build({"a": t("U8", [1.5], 0, 1)}, b"\0"), "shape[0] is not a non-negative integer"),
    "too_many_dims": (build({"a": t("U8", [1] * 9, 0, 1)}, b"\0"), "9 dims"),
    "shape_overflow": (build({"a": t("F64", [2 ** 62, 4], 0, 8)}, b"\0" * 8), "overflows"),
    "missing_field": (build({"a": {"dtype": "U8", "shape": [1]}}, b"\0"), "missing field 'data_offsets'"),
    "unknown_field": (build({"a": dict(t("U8", [1], 0, 1), extra=1)}, b"\0"), "unknown field 'extra'"),
    "offsets_not_pair": (build({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0]}}, b"\0"), "not a pair"),
    "entry_not_object": (build({"a": [1, 2]}), "'a': entry is not a JSON object"),
    "metadata_not_strings": (build({"__metadata__": {"k": 1}}), "__metadata__ entry 'k' is not a string"),
    "bad_utf8_name": (build(header_bytes=b'{"\xff\xfe":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', data=b"\0"),
                      "invalid UTF-8"),
    "lone_surrogate": (build(header_bytes=b'{"\\udc00":{}}'), "lone low surrogate"),
    "deep_nesting": (build(header_bytes=b'{"a":' + b"[" * 100 + b"]" * 100 + b"}"), "nesting too deep"),
    "unterminated_string": (build(header_bytes=b'{"abc'), "unterminated string"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_file_raises_named_error(tmp_path, case):
    raw, fragment = CORRUPT[case]
    p = tmp_path / f"{case}.safetensors"
    p.write_bytes(raw)
    for fn in (lio.load_safetensors, lio.safetensors_info):
        with pytest.raises(lyra2.Lyra2Error) as e:
            fn(p)
        msg = str(e.value)
        assert str(p) in msg, msg
        assert fragment in msg, msg


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(lyra2.Lyra2Error, match="cannot open"):
        lio.load_safetensors(tmp_path / "nope.safetensors")
    with pytest.raises(lyra2.Lyra2Error, match="not a regular file"):
        lio.load_safetensors(tmp_path)


def test_random_damage_never_crashes(tmp_path):
    """Byte flips and truncations of a valid file: either a clean load or Lyra2Error."""
    p = tmp_path / "ok.safetensors"
    lio.save_safetensors({"a": np.arange(6, dtype=np.float32), "b": np.ones((2, 2), np.float16)}, p,
                         metadata={"m": "x"})
    good = p.read_bytes()
    rng = np.random.default_rng(3)
    q = tmp_path / "bad.safetensors"
    outcomes = {"ok": 0, "error": 0}
    for i in range(400):
        raw = bytearray(good)
        if i % 4 == 0:
            raw = raw[: rng.integers(0, len(raw))]
        else:
            for _ in range(rng.integers(1, 4)):
                raw[rng.integers(0, min(len(raw), 140))] = rng.integers(0, 256)
        q.write_bytes(bytes(raw))
        try:
            lio.load_safetensors(q)
            outcomes["ok"] += 1
        except lyra2.Lyra2Error:
            outcomes["error"] += 1
    assert outcomes["error"] > 100  # most damage is detected; the rest are still valid files
