"""Lyra's DA3 -> MoGe scale alignment (upstream DU:33-89, MOGE:302-395, Z:624-626) and lyra2.depth.estimate_depth,
against the golden
(tests/data/moge_tiny.npz "align_*" keys, README §8: rel 3e-5) and a NumPy transcription of the zoom script."""
import os

import numpy as np
import pytest

from conftest import DATA
import numpy_refs
from lyra2 import Lyra2Error, _core
from lyra2.depth import align_to_moge, estimate_depth, moge_input

G = np.load(os.path.join(DATA, "moge_tiny.npz"))


def rel(a, b):
    return numpy_refs.rel(a, b, floor=1e-30)


def reference_align(d_da3, m_da3, d_moge, m_moge):
    """Z:634-652 in NumPy float32 (the independent reference)."""
    valid = (m_da3 > 0.5) & (m_moge > 0.5)
    if valid.sum() <= 10:
        return d_da3, None
    a = np.float32(1) / (d_da3[valid] + np.float32(1e-6))
    b = np.float32(1) / (d_moge[valid] + np.float32(1e-6))
    num, den = np.sum(a * b, dtype=np.float64), np.sum(a * a, dtype=np.float64)
    if np.float32(den) <= np.float32(1e-8):
        return d_da3, None
    s = np.float32(num) / np.float32(den)
    return (d_da3 / s if s > np.float32(1e-6) else d_da3), s


def test_alignment_matches_golden():
    depth, info = align_to_moge(G["align_da3_depth"], G["align_da3_mask"], G["lyra_moge_depth"], G["lyra_moge_mask"])
    assert info["applied"] and info["n_valid"] == int(G["align_valid"].sum())
    assert rel(info["numerator"], G["align_numerator"]) < 3e-5
    assert rel(info["denominator"], G["align_denominator"]) < 3e-5
    assert rel(info["scale"], G["align_scale"]) < 3e-5
    assert rel(depth, G["align_depth"]) < 3e-5


def test_alignment_through_moge_network():
    from lyra2.models import MoGe
    moge = MoGe(dict(np.load(os.path.join(DATA, "moge_tiny_weights.npz"))), num_heads=4, num_tokens_range=(30, 60))
    m = moge(G["moge_input"])
    depth, info = align_to_moge(G["align_da3_depth"], G["align_da3_mask"], m["depth"], m["mask"])  # raw infer depth
    assert rel(info["scale"], G["align_scale"]) < 3e-5
    assert rel(depth, G["align_depth"]) < 3e-5


def test_moge_input_from_original_image():
    # the DA3 golden's original 80x140 image, resized by cv2 INTER_LINEAR to 72x128 and / 255
    orig = np.load(os.path.join(DATA, "moge_orig_rgb.npy"))
    assert np.abs(moge_input(orig, (72, 128)) - G["moge_input"]).max() < 1e-7


@pytest.mark.parametrize("case", ["random", "few", "negative", "zero"])
def test_alignment_matches_reference(case):
    rng = np.random.default_rng(3)
    d = rng.uniform(0.5, 20, (40, 60)).astype(np.float32)
    dm = (rng.uniform(size=d.shape) > 0.1).astype(np.float32)
    md = (d * rng.uniform(0.2, 0.4)) * rng.uniform(0.9, 1.1, d.shape).astype(np.float32)
    mm = rng.uniform(size=d.shape) > 0.2
    if case == "few":             # at most 10 valid pixels: left unscaled
        mm[:] = False
        mm[0, :10] = True
    if case == "negative":        # MoGe inverse depths that cancel: s <= 1e-6, left unscaled
        md = np.where(np.arange(d.size).reshape(d.shape) % 2, 1.0, -1.0).astype(np.float32) * 3
        d[:] = 2.0
    if case == "zero":            # non-positive MoGe depth is clamped to 0 (inverse 1e6), as upstream
        md[5, 5] = -2.0
    md_lyra = _core.moge_lyra_depth(md.astype(np.float32), mm)
    got, info = align_to_moge(d, dm, md, mm)
    want, s = reference_align(d, dm, md_lyra, mm.astype(np.float32))
    assert info["applied"] == (s is not None and s > 1e-6)
    assert rel(got, want) < 3e-6
    if info["applied"]:
        assert rel(info["scale"], s) < 3e-6


def test_estimate_depth_errors(tmp_path, monkeypatch):
    img = np.zeros((16, 16, 3), np.uint8)
    monkeypatch.delenv("LYRA2_CHECKPOINT_DIR", raising=False)
    with pytest.raises(Lyra2Error, match="no converted checkpoint folder"):
        estimate_depth(img)
    (tmp_path / "da3.safetensors").write_bytes(b"")
    with pytest.raises(Lyra2Error, match="moge.safetensors"):
        estimate_depth(img, tmp_path)
    with pytest.raises(ValueError, match="uint8 RGB"):
        estimate_depth(np.zeros((16, 16), np.uint8), tmp_path)


def test_estimate_depth_without_da3_module(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_depth(name, globals=None, locals=None, fromlist=(), level=0):
        if name.endswith("models.depth") or (level and name == "models.depth"):
            raise ImportError("no DA3 in this build")
        return real_import(name, globals, locals, fromlist, level)

    for f in ("da3.safetensors", "moge.safetensors"):
        (tmp_path / f).write_bytes(b"")
    monkeypatch.setattr(builtins, "__import__", no_depth)
    with pytest.raises(Lyra2Error, match="Depth Anything 3"):
        estimate_depth(np.zeros((16, 16, 3), np.uint8), tmp_path)


def _da3_available():
    try:
        from lyra2.models.depth import DepthAnything3
        return hasattr(DepthAnything3, "first_frame_depth")
    except ImportError:
        return False


# The tiny DA3's head counts and taps (golden README §7); the released model's are the class defaults.
DA3_TINY = dict(metric_heads=3, cam_enc_heads=2, taps=(3, 5, 7, 9), metric_taps=(1, 2, 4, 5))


@pytest.mark.skipif(not _da3_available(), reason="lyra2.models.depth.DepthAnything3 is not in this checkout")
def test_estimate_depth_end_to_end(tmp_path):
    """Both tiny goldens' weights converted to a checkpoint folder, run from the original image."""
    import json
    from lyra2.io import save_safetensors
    save_safetensors(dict(np.load(os.path.join(DATA, "da3_tiny_weights.npz"))), tmp_path / "da3.safetensors",
                     dtype="bf16")
    save_safetensors(dict(np.load(os.path.join(DATA, "moge_tiny_weights.npz"))), tmp_path / "moge.safetensors",
                     dtype="bf16", metadata={"model_config": json.dumps({"num_tokens_range": [30, 60]})})
    orig = np.load(os.path.join(DATA, "moge_orig_rgb.npy"))
    r = estimate_depth(orig, tmp_path, size=(72, 128), da3_options=DA3_TINY, moge_options={"num_heads": 4})
    assert np.array_equal(r["mask"], G["align_da3_mask"])
    assert rel(r["align"]["scale"], G["align_scale"]) < 3e-5
    assert rel(r["depth"], G["align_depth"]) < 3e-5
    valid = r["depth"][r["mask"] > 0.5]
    assert abs(r["subject_depth"] - np.quantile(valid, 0.25)) <= 1e-5 * abs(r["subject_depth"])


@pytest.mark.skipif(not _da3_available(), reason="lyra2.models.depth.DepthAnything3 is not in this checkout")
def test_estimate_depth_through_lyra2_convert(tmp_path):
    """The tiny goldens' weights saved as upstream checkpoints (.pth zips, hand-written pickles: DA3 with the
    HF/Lyra `model.` prefix, MoGe as {"model_config", "model"}), converted by `lyra2.convert`, then
    estimate_depth from the converted folder reproduces the golden alignment."""
    import importlib
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    import pth_builder as pb

    convert = importlib.import_module("lyra2.convert").convert
    src = tmp_path / "upstream"
    src.mkdir()
    da3 = dict(np.load(os.path.join(DATA, "da3_tiny_weights.npz")))
    st = pb.Storages()
    with open(src / "da3_model.pt", "wb") as f:
        f.write(pb.torch_zip_bytes(pb.state_dict({"model." + k: v for k, v in da3.items()}, st), st))
    moge = dict(np.load(os.path.join(DATA, "moge_tiny_weights.npz")))
    st = pb.Storages()
    obj = {"model_config": {"num_tokens_range": [30, 60], "mask_threshold": 0.5, "remap_output": "exp"},
           "model": pb.state_dict(moge, st)}
    with open(src / "moge_model.pt", "wb") as f:
        f.write(pb.torch_zip_bytes(obj, st))
    dst = tmp_path / "converted"
    convert(src, dst, progress=False)
    assert (dst / "da3.safetensors").exists() and (dst / "moge.safetensors").exists()
    orig = np.load(os.path.join(DATA, "moge_orig_rgb.npy"))
    r = estimate_depth(orig, dst, size=(72, 128), da3_options=DA3_TINY, moge_options={"num_heads": 4})
    assert np.array_equal(r["mask"], G["align_da3_mask"])
    assert rel(r["align"]["scale"], G["align_scale"]) < 3e-5
    assert rel(r["depth"], G["align_depth"]) < 3e-5
